"""Changes made together with the site file, in the same transaction: the main config's
include line (``--edit-main-config``) and a distro default site disabled
(``--disable-default-site``) — and, for ``sockwizard rollback``, the same changes undone.

A ``Companion`` is one such change: a file's new bytes (a main config), or a link removed or
put back (``sites-enabled/default``). ``wizard.deploy.stock`` decides which ones a deploy needs;
this module is the shell text that backs one up, checks it is still what was read, makes it,
and undoes it byte for byte. ``wizard.deploy.plan`` puts that text into the backup, activation
and restore scripts (``wizard.deploy.scripts``), so the dry run lists exactly what runs.
A change the proxy reads only at start carries a restart (``reload_for``): the deploy, its
rollback and ``sockwizard rollback`` run it instead of the reload.
"""

from __future__ import annotations

import difflib
import hashlib
import posixpath
import shlex
from dataclasses import dataclass
from typing import Any

EDIT_MAIN_CONFIG = "--edit-main-config"
DISABLE_DEFAULT_SITE = "--disable-default-site"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Companion:
    """One change beside the site file. A file: ``old``/``new`` are its bytes. A link:
    ``old``/``new`` are its target (None: no link there); ``on_cmd``/``off_cmd`` are the
    distro's tool run before it is put back / removed (a2ensite / a2dissite)."""

    path: str
    old: bytes | None
    new: bytes | None
    link: bool = False
    on_cmd: str = ""
    off_cmd: str = ""
    flag: str = ""  # the flag that allows it ("": a rollback's undo, allowed by the rollback)
    title: str = ""  # what and why, one sentence (the refusal, the TUI's question)
    # Run instead of the reload when this change is made or undone: the proxy reads the file
    # only at start (HAProxy's /etc/default/haproxy; ``SiteInclude.restart_cmd``).
    restart_cmd: str = ""

    def diff(self) -> str:
        """The exact change, as a unified diff (a link as ``path -> target``)."""
        def lines(value: bytes | None) -> list[str]:
            if value is None:
                return []
            if self.link:
                return [f"{self.path} -> {value.decode('utf-8', 'replace')}\n"]
            return value.decode("utf-8", "replace").splitlines(keepends=True)

        label = f"{self.path} (link)" if self.link else self.path
        out = difflib.unified_diff(lines(self.old), lines(self.new), fromfile=label,
                                   tofile=f"{label} (sockwizard)")
        return "".join(ln if ln.endswith("\n") else ln + "\n" for ln in out)

    def entry(self, backup: str | None) -> dict[str, Any]:
        """What the backup index records, for ``sockwizard rollback`` (``stock.undo_of``)."""
        if self.link:
            return {"path": self.path, "link": True, "old_target": _text(self.old),
                    "new_target": _text(self.new), "on_cmd": self.on_cmd,
                    "off_cmd": self.off_cmd}
        return {"path": self.path, "link": False, "backup": backup,
                "sha256": _sha(self.old) if self.old is not None else None,
                "new_sha256": _sha(self.new) if self.new is not None else None,
                **({"restart_cmd": self.restart_cmd} if self.restart_cmd else {})}


def reload_for(changes: tuple[Companion, ...], reload_cmd: str) -> str:
    """The command that makes the proxy take a transaction in: a companion's restart when
    one needs it (the deploy, its rollback and ``sockwizard rollback`` alike), else the
    reload."""
    return next((c.restart_cmd for c in changes if c.restart_cmd), reload_cmd)


def _text(value: bytes | None) -> str | None:
    return value.decode("utf-8", "replace") if value is not None else None


def backup_path(c: Companion, backup_dir: str, name: str) -> str | None:
    """Where the backup script copies a file companion (links need none: the target is the
    whole state)."""
    return None if c.link else posixpath.join(backup_dir, name)


def backup_lines(c: Companion, backup: str | None) -> list[str]:
    """Lines of the backup script (``set -e``): copy the file and print its sha256."""
    if backup is None:
        return []
    return [f"cp -p -- {shlex.quote(c.path)} {shlex.quote(backup)}",
            f"sha256sum -- {shlex.quote(backup)}"]


def is_as(c: Companion, value: bytes | None) -> str:
    """A shell test: the companion's path is exactly ``value`` now."""
    p = shlex.quote(c.path)
    if c.link:
        if value is None:
            return f"[ ! -L {p} ] && [ ! -e {p} ]"
        return f'[ -L {p} ] && [ "$(readlink -- {p})" = {shlex.quote(_text(value) or "")} ]'
    if value is None:
        return f"[ ! -e {p} ]"
    return (f'[ -f {p} ] && [ ! -L {p} ] && [ "$(sha256sum -- {p} | cut -d" " -f1)" = '
            f"{_sha(value)} ]")


def _set_link(c: Companion, target: bytes | None) -> str:
    p = shlex.quote(c.path)
    if target is None:
        tool = f"{{ {c.off_cmd}; }} >/dev/null 2>&1; " if c.off_cmd else ""
        return f"{{ {tool}rm -f -- {p} && [ ! -L {p} ]; }}"
    tool = f"{{ {c.on_cmd}; }} >/dev/null 2>&1; " if c.on_cmd else ""
    # The distro's tool first (it records the site as enabled), then exactly the old target.
    return f"{{ {tool}ln -sfn -- {shlex.quote(_text(target) or '')} {p}; }}"


def put_line(c: Companion, tmp: str | None) -> str:
    """Make the change: a link set or removed, or the uploaded ``tmp`` renamed over the file
    (given the file's mode and owner first)."""
    if c.link:
        return _set_link(c, c.new)
    assert tmp is not None
    p, t = shlex.quote(c.path), shlex.quote(tmp)
    return (f"{{ chmod --reference={p} -- {t} 2>/dev/null; chown --reference={p} -- {t} "
            f"2>/dev/null; mv -f -- {t} {p}; }}")


def undo_line(c: Companion, backup: str | None) -> str:
    """Put the companion back as it was: the link's old target, or the backup's bytes (copied
    beside it, then renamed over). Safe to run when the change never happened."""
    if c.link:
        return _set_link(c, c.old)
    if backup is None:  # a file that did not exist: never the case for a main config
        return f"rm -f -- {shlex.quote(c.path)}"
    # Beside the file, as a dot file: a main config's directory is the tree's root, which no
    # include glob reads (and it stays on the file's own filesystem: one rename).
    directory, base = posixpath.split(c.path)
    r = shlex.quote(posixpath.join(directory, f".{base}.sockwizard-restore.tmp"))
    return (f"{{ cp -p -- {shlex.quote(backup)} {r} && mv -f -- {r} {shlex.quote(c.path)}; }}")


def planned_temp(c: Companion) -> str | None:
    """The temp file a file companion is uploaded to, as the plan shows it (the remote picks
    the random part): beside the file, a dot file no include glob of the tree matches."""
    if c.link:
        return None
    directory, base = posixpath.split(c.path)
    return posixpath.join(directory, f".{base}.sockwizard-XXXXXXXX.tmp")
