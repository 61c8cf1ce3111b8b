"""Stock hosts without hand edits: which changes beside the site file a deploy needs.

Called by the deploy's detect step (``wizard.deploy.steps``) after detection, before the lock:
a main config that does not load the site directory (Debian's Caddyfile; an nginx.conf or an
apache2.conf someone trimmed) needs its include line (``--edit-main-config``), and a distro
default site that answers the port first for requests naming no server needs disabling
(``--disable-default-site``). Without the flag the deploy stops here, before anything changed,
naming the flag and showing the exact change; with it the change becomes a ``Companion`` of
the transaction (backed up, validated with the site, undone on any failure and by
``sockwizard rollback`` — see ``wizard.deploy.companions``).

Which line, where, and which default site are data in each proxy's profile
(``site_includes``, ``default_sites``, ``wizard.proxies``); the text edits are pure functions
here (``add_include``, ``comment_out_block``).
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
import shlex
from collections.abc import Callable, Sequence
from typing import Any

from wizard.deploy.companions import DISABLE_DEFAULT_SITE, EDIT_MAIN_CONFIG, Companion
from wizard.deploy.detect import HostTarget
from wizard.deploy.options import DeployOptions
from wizard.errors import BadInput
from wizard.model import DeploySpec, Layout
from wizard.proxies import profile
from wizard.proxies.base import SiteInclude
from wizard.remote import Remote

# A link target we put back with `ln -s`: what Debian's links look like, nothing a shell or
# a later reader could misread.
_SAFE_TARGET = re.compile(r"[A-Za-z0-9._/+@-]{1,255}")
DISABLED_NOTE = "# Disabled by sockwizard (--disable-default-site): it answered the port first."


def add_include(text: str, inc: SiteInclude) -> str | None:
    """``text`` with exactly ``inc.line`` added (after the first ``inc.after`` line, or at
    the end), or the one line ``inc.extend`` names extended; None when there is no such
    line to add it after, or the line to extend is not one sockwizard can edit safely."""
    lines = text.splitlines(keepends=True)
    ext = inc.extend
    setting = [i for i, ln in enumerate(lines) if re.match(ext.sets, ln)] if ext else []
    if ext is not None and setting:
        if len(setting) > 1:  # which one wins depends on the reader: by hand
            return None
        i = setting[0]
        body = lines[i].rstrip("\r\n")
        m = re.fullmatch(ext.form, body)
        if m is None:
            return None
        lines[i] = f"{m['head']}{ext.insert}{m['tail']}{lines[i][len(body):]}"
        return "".join(lines)
    if inc.after is None:
        end = "" if not text or text.endswith("\n") else "\n"
        return f"{text}{end}{inc.line}\n"
    after = re.compile(inc.after)
    for i, line in enumerate(lines):
        if after.match(line.rstrip("\r\n")):
            return "".join([*lines[:i + 1], inc.line + "\n", *lines[i + 1:]])
    return None


def comment_out_block(text: str, opener: str) -> str | None:
    """``text`` with the block whose first line matches ``opener`` commented out, line by
    line, under a note saying why; None when there is no such block (or it never closes)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if re.match(opener, ln.rstrip("\r\n"))), None)
    if start is None:
        return None
    depth = 0
    for end in range(start, len(lines)):
        code = lines[end].split("#", 1)[0]
        depth += code.count("{") - code.count("}")
        if depth <= 0:
            break
    else:
        return None
    block = [("# " + ln if ln.strip() else ln) for ln in lines[start:end + 1]]
    return "".join([*lines[:start], DISABLED_NOTE + "\n", *block, *lines[end + 1:]])


def changes(remote: Remote, spec: DeploySpec, target: HostTarget,
            run: Callable[[str], str]) -> list[Companion]:
    """The changes beside the site file this host needs, in order, each naming its flag
    (several may edit one file: ``merged`` makes one change per path). What the detect
    script read for this destination (``target.facts.stock``) is used as is; the rest is
    read here: a file with ``remote``, a link with ``run`` (runs a read-only command and
    returns its stdout). Raises BadInput when a needed change cannot be made (no place for
    the include line)."""
    if spec.layout is not Layout.SITE or "dest" in target.overridden:
        return []
    prof = profile(spec.proxy)
    out: list[Companion] = []
    read = target.facts.stock.for_dest(target.dest)  # none when the facts moved it
    texts: dict[str, bytes | None] = dict(read.files)

    def current(path: str) -> bytes | None:
        if path not in texts:
            texts[path] = remote.read_file(path)
        return texts[path]

    def link_of(path: str) -> str:
        if path in read.links:
            return read.links[path]
        q = shlex.quote(path)
        return run(f"[ -L {q} ] && readlink -- {q}").strip()

    site_dir = posixpath.dirname(target.dest)
    inc = next((i for i in prof.site_includes if i.site_dir == site_dir), None)
    if inc is not None:
        old = current(inc.main_config)
        text = old.decode("utf-8", "replace") if old is not None else None
        if text is not None and not re.search(inc.present, text):
            new = add_include(text, inc)
            if new is None:
                raise _cannot_edit(inc)
            texts[inc.main_config] = new.encode()
            # The restart the edit needs: the profile's, or the host's own --reload-cmd.
            restart = inc.restart_cmd and (target.reload_cmd if "reload" in target.overridden
                                           else inc.restart_cmd)
            out.append(Companion(
                inc.main_config, old, new.encode(), flag=EDIT_MAIN_CONFIG,
                title=f"{inc.main_config} does not load {site_dir}/ (no "
                      f"`{inc.line.strip()}` line): a site file there would never be used.",
                restart_cmd=restart or ""))
    port = spec.tls_port if spec.tls else spec.listen_port
    for site in prof.default_sites:
        if site.path not in target.shadowing_sites:
            continue
        why = (f"{site.path} answers port {port} first for requests that name no server "
               "(without --server-name): the new config would never be used.")
        if site.block is not None:
            before = current(site.path)
            edited = comment_out_block(before.decode("utf-8", "replace"),
                                       site.block.format(port=port)) if before else None
            if edited is not None:
                texts[site.path] = edited.encode()
                out.append(Companion(site.path, before, edited.encode(),
                                     flag=DISABLE_DEFAULT_SITE, title=why))
            continue
        link = link_of(site.path)
        if not _SAFE_TARGET.fullmatch(link):
            # Not a link (or one whose target we would not write back): only by hand.
            raise BadInput(why,
                           f"{site.path} is not a plain link sockwizard can put back: give "
                           f"--server-name, or disable it yourself ({prof.unshadow_how}). "
                           "Nothing was changed.")
        out.append(Companion(site.path, link.encode(), None, link=True, on_cmd=site.on_cmd,
                             off_cmd=site.off_cmd, flag=DISABLE_DEFAULT_SITE, title=why))
    return out


def _cannot_edit(inc: SiteInclude) -> BadInput:
    """The refusal when the main config lacks the line and sockwizard cannot place it (no
    line to add it after, or a line to extend in a form it does not edit)."""
    how = f"`{inc.line.strip()}`"
    if inc.extend is not None:
        how += f" (or `{inc.extend.insert.strip()}` on the line that sets it, if there is one)"
    then = f", then run `{inc.restart_cmd}` once" if inc.restart_cmd else ""
    return BadInput(
        f"{inc.main_config} does not load {inc.site_dir}/, and sockwizard cannot tell how to "
        "edit it safely.",
        f"Add {how} to it yourself{then}, or deploy a whole main config with --layout full. "
        "Nothing was changed.")


def merged(found: Sequence[Companion]) -> tuple[Companion, ...]:
    """One change per path: the first one's old state, the last one's new state."""
    by_path: dict[str, Companion] = {}
    for c in found:
        first = by_path.get(c.path)
        by_path[c.path] = c if first is None else Companion(
            c.path, first.old, c.new, c.link, c.on_cmd, c.off_cmd,
            f"{first.flag} {c.flag}", f"{first.title} {c.title}",
            first.restart_cmd or c.restart_cmd)
    return tuple(by_path.values())


def missing_flags(found: Sequence[Companion], allowed: set[str]) -> list[str]:
    """The flags the changes need that were not given, in order."""
    return list(dict.fromkeys(c.flag for c in found if c.flag not in allowed))


def refusal(found: Sequence[Companion], flags: Sequence[str], host: str) -> BadInput:
    """The error that stops a deploy before anything changed: what the host's stock config
    lacks, the flag(s) that let sockwizard fix it in the same transaction, and the diff."""
    asked = [c for c in found if c.flag in flags]
    what = {EDIT_MAIN_CONFIG: "add the include line", DISABLE_DEFAULT_SITE:
            "disable the default site"}
    fixes = " and ".join(f"{f} ({what.get(f, 'make the change')})" for f in flags)
    return BadInput(
        f"{host}: " + " ".join(c.title for c in asked),
        f"Pass {fixes} to make {'these changes' if len(asked) > 1 else 'this change'} in the "
        "same transaction: backed up, validated with the site, undone on any failure and by "
        "`sockwizard rollback`. Or give --server-name / --layout full. Nothing was changed; "
        "the exact change is shown above.",
        detail="".join(c.diff() for c in merged(asked)))


def consent(options: DeployOptions, flags: Sequence[str]) -> DeployOptions:
    """``options`` with the stock-host flags in ``flags`` given: what the TUI runs after the
    user agreed to the change a dry run showed (``DeployResult.needs`` / ``needs_text``)."""
    return dataclasses.replace(
        options, edit_main_config=options.edit_main_config or EDIT_MAIN_CONFIG in flags,
        disable_default_site=options.disable_default_site or DISABLE_DEFAULT_SITE in flags)


def undo_of(recorded: Sequence[Any], read: Callable[[str], bytes | None],
            sha: Callable[[bytes], str]) -> tuple[Companion, ...]:
    """The changes that undo a deploy's companions (its backup-index entry's
    ``companions``), for ``sockwizard rollback``: links back to their old target, files back
    to their backup's bytes. A file changed since that deploy is refused (nothing changed)."""
    out: list[Companion] = []
    for rec in recorded:
        if not isinstance(rec, dict) or not isinstance(rec.get("path"), str):
            continue
        path = rec["path"]
        if rec.get("link"):
            def enc(v: object) -> bytes | None:
                return v.encode() if isinstance(v, str) and _SAFE_TARGET.fullmatch(v) else None
            out.append(Companion(path, enc(rec.get("new_target")), enc(rec.get("old_target")),
                                 link=True, on_cmd=str(rec.get("on_cmd") or ""),
                                 off_cmd=str(rec.get("off_cmd") or "")))
            continue
        backup = rec.get("backup")
        now = read(path)
        was = read(backup) if isinstance(backup, str) else None
        if was is None or sha(was) != rec.get("sha256"):
            raise BadInput(f"The backup of {path} ({backup}) is missing or damaged.",
                           "Restore it by hand; nothing was changed.")
        if now is not None and sha(now) == rec.get("sha256"):
            continue  # already as it was
        if now is None or sha(now) != rec.get("new_sha256"):
            raise BadInput(f"{path} changed since sockwizard edited it; putting the backup "
                           "back would lose that change.",
                           f"Compare it with {backup} and restore by hand; nothing was changed.")
        out.append(Companion(path, now, was, restart_cmd=str(rec.get("restart_cmd") or "")))
    return tuple(out)
