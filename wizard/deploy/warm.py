"""The warm redeploy (issue #15: never wait a round trip for something already known).

A deploy that ended ``deployed`` leaves, under the user's state dir, what its client-side
decisions were derived from — the detect script's raw output, and Apache's module list — and
the bytes it deployed (``remember``, called by ``transaction`` at the end). The next plain
deploy to the same host as connected (host key, user, address, port) with the same detect
script (``load``) derives the target from those cached facts with the same parse/resolve code
(``detect(first=..., modules=...)``), renders, diffs against the cached bytes and sends ONE
command (``command``): the detect script again, then a host-side guard — the facts' sha256 as
cached (and the module list's), the destination's sha256 the cached deployed bytes', no
journal, no lock — and only then the activation (which takes the lock and compares the file
again, as ever). If the guard fails the command changes nothing and prints what the detect
command of a cold run prints: the client goes on the cold way from that answer, without
another round trip.

Called by ``wizard.deploy.steps.detect_target`` (``first_exchange``), ``steps.activate``
(``answer``: the activation's result, already in) and ``transaction`` (``remember``).
Any cache trouble — a missing, corrupt, foreign or oversized entry — means a cold run.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
import json
import os
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from wizard.deploy import hoststate, plan
from wizard.deploy.backups import sha, state_dir
from wizard.deploy.context import Context
from wizard.deploy.detect import ALSO, HostTarget, detect, first_script
from wizard.deploy.readback import Readback
from wizard.errors import NotStarted, SockwizardError
from wizard.remote import CommandResult, Remote, guarded_var, path_problem, temp_path_beside

CONFIRMED = "facts from the last deploy, confirmed by the host"
COLD = ("The host is not as the last deploy left it (its facts, the file, a lock or a "
        "journal): deploying the usual way.")
LOST = "facts from the last deploy; the host's answer was lost"
MAX_BYTES = 1 << 20  # a deployed config larger than this gets no warm entry
MAX_ENTRY = 4 << 20  # an entry file larger than this is not read
MARK = "@@sw warm"  # printed by the guard once it passed, before the activation
REFUSED = 89  # the guard's exit: nothing was done (not an ``Activation`` value)
VERSION = 1


@dataclass(frozen=True)
class Entry:
    """One host+target's facts from the last deploy."""

    facts: str  # the detect script's stdout, ending in exactly one newline
    deployed: bytes  # what that deploy put at the destination
    modules: str | None = None  # the module list's answer (Apache), stdout + stderr


@dataclass(frozen=True)
class WarmRun:
    """The one command's answer when the guard passed (``result``), or what cut it off
    (``error``: a lost link, a timeout, Ctrl-C — what the host did is unknown; raised again
    where the activation is handled); ``tmp``: its upload name."""

    tmp: str
    result: CommandResult | None
    error: BaseException | None = None

    @property
    def detail(self) -> str:
        return CONFIRMED if self.error is None else LOST


class Offline(Exception):  # noqa: N818 - a signal: deriving from the cache needs the host
    pass


class _NoHost:
    """A Remote for deriving from cached facts: any use of the host means "go cold"."""

    def __getattr__(self, name: str) -> Any:
        raise Offline(name)


def lines_sum(answer: str) -> str:
    """The sha256 of an answer's lines sorted, as ``( cmd ) 2>&1 | LC_ALL=C sort`` prints
    them on the host: stdout and stderr interleave there, and were joined here."""
    lines = answer.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return hashlib.sha256("".join(f"{x}\n" for x in sorted(lines)).encode()).hexdigest()


def normal(facts: str) -> str:
    """The facts as the host-side guard hashes them (``printf '%s\\n' "$(...)"``)."""
    return facts.rstrip("\n") + "\n"


def identity(remote: Remote) -> str | None:
    """The host as connected: its host key's sha256, the user, the address, the port. None
    (no warm path) for a remote that is not SSH (local, in memory) or shows no host key."""
    target = getattr(remote, "target", None)
    key = getattr(remote, "host_key_sha256", None)
    if target is None or not isinstance(key, str):
        return None
    return json.dumps([key, getattr(target, "user", ""),
                       getattr(target, "host", ""), getattr(target, "port", 0)])


def entry_path(ctx: Context) -> Path | None:
    who = identity(ctx.remote)
    if who is None:
        return None
    script = first_script(ctx.spec, ctx.options.overrides)
    key = hashlib.sha256(json.dumps([who, script]).encode()).hexdigest()
    return state_dir(ctx.options.state_dir) / "facts" / f"{key}.json"


def plain(ctx: Context) -> bool:
    """A plain real deploy: not a dry run, no preset (rollback, diagnose fix)."""
    return not ctx.options.dry_run and ctx.preset is None


def load(ctx: Context) -> Entry | None:
    path = entry_path(ctx) if plain(ctx) else None
    if path is None:
        return None
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_ENTRY + 1)
        if len(raw) > MAX_ENTRY:
            return None
        data = json.loads(raw)
        facts, deployed = data["facts"], base64.b64decode(data["deployed"], validate=True)
        modules = data.get("modules")
        if (data.get("v") != VERSION or not isinstance(facts, str) or
                not isinstance(modules, str | None) or
                sha(deployed) != data.get("sha256") or len(deployed) > MAX_BYTES):
            return None
    except (OSError, ValueError, TypeError, KeyError, binascii.Error):
        return None  # absent, corrupt or foreign: a cold run
    return Entry(normal(facts), deployed, modules)


def asked(t: HostTarget) -> bool:
    """The target was decided from the detect script alone, or with the module list."""
    return len(t.commands) == 1 or (len(t.commands) == 2 and t.facts.modules_answer is not None)


def remember(ctx: Context, facts: str | None) -> None:
    """After a deploy that ended ``deployed``: keep its facts and bytes for the next run —
    only when nothing else was read to decide (the detect command and the module list, no
    peek apart, no stock change, nothing prepared, no symlink) and the bytes are small.
    Never raises."""
    t = ctx.target
    if (facts is None or t is None or not plain(ctx) or not asked(t) or ctx.peeks
            or ctx.claimed_apart or t.companions or ctx.stock or t.make_dir or t.extra_files
            or t.prepare_cmds or t.real_dest != t.dest or ctx.new is None
            or len(ctx.new) > MAX_BYTES):
        return
    with contextlib.suppress(Exception):  # a cache that cannot be written: cold next time
        path = entry_path(ctx)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        body = json.dumps({"v": VERSION, "facts": normal(facts), "sha256": sha(ctx.new),
                           "deployed": base64.b64encode(ctx.new).decode(),
                           "modules": t.facts.modules_answer})
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".facts-")  # 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def command(ctx: Context, entry: Entry, tmp: str, also: str) -> str:
    """The one command: detect, the guard, the activation — or, the guard failing, nothing
    changed and the cold run's detect answer (the facts, :data:`ALSO`, ``also``)."""
    t, backups = ctx.tgt, ctx.options.backup_dir
    d = shlex.quote(t.real_dest)
    script = first_script(ctx.spec, ctx.options.overrides)
    guard = (f"[ -f {d} ] && [ ! -L {d} ] && [ \"$(sha256sum < {d} | cut -d' ' -f1)\" = "
             f"{sha(entry.deployed)} ] && "
             f"[ ! -e {shlex.quote(hoststate.lock_path(backups, t.real_dest))} ] && "
             f"[ ! -e {shlex.quote(hoststate.journal_path(backups, t.real_dest))} ] "
             f"{modules_check(t, entry)}|| exit {REFUSED}")
    inner = "\n".join([guard, f"echo {shlex.quote(MARK)}", plan.activation_cmd(ctx, tmp)])
    if ctx.options.sudo:  # as the activation would run: root, or sudo -n under its timeout
        # The script once, in a variable: either branch runs it (it was sent twice: 77 KB).
        sudo = f"LC_ALL=C sudo -n -- {guarded_var('swi', plan.activation_timeout(ctx))}"
        privileged = (f"swi={shlex.quote(inner)}\n"
                      'if [ "$(id -u)" -eq 0 ]; then sh -c "$swi"; elif LC_ALL=C sudo -n true '
                      ">/dev/null 2>&1 && command -v timeout >/dev/null 2>&1; then "
                      f"{sudo}; else ( exit {REFUSED} ); fi")
    else:
        privileged = f"sh -c {shlex.quote(inner)}"
    fsum = hashlib.sha256(entry.facts.encode()).hexdigest()
    return "\n".join([
        f"facts=$(sh -c {shlex.quote(script)} </dev/null)",
        f"if [ \"$(printf '%s\\n' \"$facts\" | sha256sum | cut -d' ' -f1)\" = {fsum} ]; then",
        privileged,
        f'rc=$?; [ "$rc" -eq {REFUSED} ] || exit "$rc"',
        "fi",
        # Not taken: the new bytes on stdin are read and dropped, the cold answer printed.
        f"head -c {len(ctx.new or b'')} >/dev/null 2>&1",
        "printf '%s\\n' \"$facts\"",
        f"echo {shlex.quote(ALSO)}",
        also,
        "exit 0",
    ])


def modules_check(t: HostTarget, entry: Entry) -> str:
    """The module list asked again, privileged as the cold run asks it: its lines as cached
    (``lines_sum``)."""
    if len(t.commands) != 2 or entry.modules is None:
        return ""
    return (f"&& [ \"$(sh -c {shlex.quote(t.commands[1][0])} 2>&1 | LC_ALL=C sort | sha256sum | "
            f"cut -d' ' -f1)\" = {lines_sum(entry.modules)} ] ")


def first_exchange(ctx: Context, also: str, derive: Callable[[Context, Remote], None]
                   ) -> str | None:
    """The detect step's warm attempt. Sets ``ctx.warm`` when the guard passed (or the answer
    was lost after the command started); returns the cold detect answer when the guard
    failed; None: go the cold way from the start (no entry, nothing to gain, or no answer)."""
    entry = load(ctx)
    if entry is None:
        return None
    offline = cast(Remote, _NoHost())
    try:
        ctx.target = detect(offline, ctx.spec, ctx.options.overrides, sudo=ctx.options.sudo,
                            first=entry.facts, modules=entry.modules)
        derive(ctx, offline)
    except (Offline, SockwizardError):  # more to ask the host, or to refuse: the cold way
        return None
    t = ctx.tgt
    if (ctx.new is None or ctx.new == entry.deployed or t.companions or ctx.stock
            or t.make_dir or t.extra_files or t.prepare_cmds or t.real_dest != t.dest
            or not asked(t) or path_problem(t.real_dest) is not None):
        return None  # unchanged (the cold path records it), or more than one file to write
    ctx.old, ctx.readback = entry.deployed, Readback(entry.deployed)
    tmp = temp_path_beside(plan.upload_name(ctx))
    script = command(ctx, entry, tmp, also)
    ctx.changed = True  # from here on the file may change (the activation may run)
    try:
        result = ctx.remote.run(script, sudo=False, input=ctx.new.decode(
            "utf-8", "surrogateescape"), timeout=plan.activation_timeout(ctx) + 30)
    except NotStarted:
        ctx.changed, ctx.old, ctx.readback = False, None, None
        raise
    except BaseException as exc:  # what the host did is unknown: activate() takes it up
        ctx.warm = WarmRun(tmp, None, exc)
        return None
    head, marked, rest = result.stdout.partition(f"{MARK}\n")
    if marked and not head.strip():
        ctx.warm = WarmRun(tmp, dataclasses.replace(result, stdout=rest))
        ctx.facts_heard = entry.facts
        return None
    ctx.changed, ctx.old, ctx.readback = False, None, None  # the guard refused: nothing done
    return result.stdout if f"\n{ALSO}\n" in result.stdout else None


def answer(run: WarmRun) -> CommandResult:
    """The activation's result as the one command brought it (or the error that cut it)."""
    if run.error is not None:
        raise run.error
    assert run.result is not None
    return run.result
