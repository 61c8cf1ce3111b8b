"""The guarded deploy: put a rendered config on a host so that it is never left broken.

Called by ``sockwizard deploy`` (``wizard.commands.deploy``), ``sockwizard rollback``, the
sandbox and the TUI's deploy screen. Every step is reported through a callback as small frozen
event dataclasses (``StepStarted`` / ``StepFinished`` / ``Notice``); the CLI prints them on
stderr, the TUI turns them into messages. The result is a ``DeployResult`` with the documented
exit code; nothing here raises for a failed deploy, so many hosts can run side by side.

The transaction, one SSH connection for all of it::

    connect -> detect (+ inspect the destination, take the host-side lock) -> diff -> backup
    (host + local copy) -> prepare -> upload (temp file in ``.sockwizard-tmp`` beside the
    target's directory) -> rename -> validate -> reload -> settle -> probe -> done

The destination checks, the lock, the journal that lets a rerun finish a deploy killed
between validate and reload, and where temp files go are in ``wizard.hoststate``.

Decisions:

* **Rename, then validate the whole tree in place.** ``nginx -t``, ``apache2ctl -t`` and
  ``caddy validate`` check the tree that *includes* the file, so a temp file outside the target's
  directory is invisible to them; validating a modified copy of the
  tree cannot work for arbitrary ``--validate-cmd`` values. So the temp file is renamed over the
  target and the real checker runs. That rename, the checker and — when it refuses — putting
  the old bytes back run as **one** shell script on the host, with SIGHUP/SIGPIPE ignored: a
  dropped SSH connection cannot stop it between "renamed" and "restored". The proxy is not
  reloaded in between, so it keeps serving the old config throughout.
* **Backups** are ``cp -p`` copies (bytes, mode, owner) in ``/var/backups/sockwizard/`` (not
  beside the target: ``import sites/*`` or ``Include sites-enabled/*`` would load them), listed
  in ``index.jsonl`` there for ``sockwizard rollback``, and mirrored under the user's state dir
  (``$XDG_STATE_HOME/sockwizard/backups/<host>/``). A restore copies the backup beside the target
  and renames it over, then reads the file back and compares it byte for byte.
* **Settle by marker, not by sleep.** The deployed config answers with ``X-Sockwizard-Config:
  <id>`` (``wizard.stamp``); the deploy polls until every answer carries the new id (see
  ``SETTLE_QUIET`` for nginx's 100 ms overlap of worker generations), then probes.
* **Rollback** on a failed validate (already done by the script), reload, settle or probe —
  or any exception there (a probe crashing on a hostile answer counts as a failed probe):
  restore, validate, reload, settle on the old config's id when it has one. ``--no-rollback``
  keeps a config that failed reload or probe; one that fails validation is never kept. A
  reload that hangs is stopped after ``reload_timeout``; the rollback then gives the reload of
  the restored config one short try (``RERELOAD_TIMEOUT``) and says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import http.client
import json
import os
import posixpath
import re
import secrets
import shlex
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

from wizard import hoststate
from wizard.detect import HostTarget, Overrides, detect, unshadow_advice
from wizard.errors import (
    BadInput,
    ConnectionFailed,
    DeployFailed,
    ExitCode,
    SockwizardError,
    SudoPasswordRequired,
)
from wizard.model import DeploySpec, ProxyKind
from wizard.proxies import profile
from wizard.remote import CommandResult, Remote
from wizard.render import render
from wizard.stamp import HEADER, existing_id, stamp

if TYPE_CHECKING:
    from wizard.probe import ProbeReport

_T = TypeVar("_T")

DEFAULT_BACKUP_DIR = "/var/backups/sockwizard"
INDEX_NAME = "index.jsonl"
# nginx's master starts the new workers, sleeps 100 ms ("allow new processes to start", in
# ngx_master_process_cycle), and only then tells the old ones to stop accepting. Measured here:
# old and new answers interleave for 50-200 ms, with runs of up to 17 new answers in a row. So
# for nginx, "settled" means every answer carried the new id for this long; the others switch
# at once (caddy reload is synchronous, a restarted node refuses until it listens, Apache's
# graceful restart never served an old answer in 60 tries).
SETTLE_QUIET = {ProxyKind.NGINX: 0.25, ProxyKind.APACHE: 0.0, ProxyKind.CADDY: 0.0,
                ProxyKind.NODE: 0.0}
# After a reload that hung, the rollback reloads the restored config once more, briefly: the
# same daemon is likely to hang again, and the deploy must end (issue #10, item 8).
RERELOAD_TIMEOUT = 15.0


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


class Step(StrEnum):
    CONNECT = "connect"
    DETECT = "detect"
    DIFF = "diff"
    BACKUP = "backup"
    PREPARE = "prepare"
    UPLOAD = "upload"
    RENAME = "rename"
    VALIDATE = "validate"
    RELOAD = "reload"
    SETTLE = "settle"
    PROBE = "probe"
    RESTORE = "restore"
    RECHECK = "recheck"  # validate the restored config
    RERELOAD = "reload-old"
    DONE = "done"


StepStatus = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True)
class StepStarted:
    host: str
    step: Step
    title: str


@dataclass(frozen=True)
class StepFinished:
    """One finished step: what it did, how long it took, and the tool's own output."""

    host: str
    step: Step
    status: StepStatus
    seconds: float
    detail: str = ""
    output: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step.value, "status": self.status,
                "ms": round(self.seconds * 1000, 1), "detail": self.detail,
                "output": self.output}


@dataclass(frozen=True)
class Notice:
    """A warning or note that does not stop the deploy (e.g. "this reload drops WebSockets")."""

    host: str
    step: Step
    level: Literal["warning", "info"]
    text: str


DeployEvent = StepStarted | StepFinished | Notice
EventSink = Callable[[DeployEvent], None]


def _ignore(event: DeployEvent) -> None:
    """The default sink."""


# --------------------------------------------------------------------------------------------
# Options and results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployOptions:
    """The deploy flags (everything but the spec and how to connect)."""

    dest: str | None = None
    validate_cmd: str | None = None
    reload_cmd: str | None = None
    probe_url: str | None = None
    probe: bool = True
    rollback: bool = True
    dry_run: bool = False
    probe_timeout: float = 5.0
    settle_timeout: float = 20.0  # Apache's first connection after a graceful can stall 1-2 s
    command_timeout: float = 120.0  # per command on the host (npm install can be slow)
    # The reload gets less: a reload that hangs is killed, and the rollback's reload of the
    # restored config gets a short try (RERELOAD_TIMEOUT), so a deploy stays bounded.
    reload_timeout: float = 60.0
    backup_dir: str = DEFAULT_BACKUP_DIR
    state_dir: Path | None = None  # default: $XDG_STATE_HOME/sockwizard
    # Write through a symlinked destination whose target is outside its config tree (or not
    # readable by others). Devices, FIFOs and directories are refused regardless.
    follow_symlink: bool = False
    # Run the checker, reload and file moves through sudo (a no-op for root). The sandbox, and
    # anyone deploying into directories they own, turn it off.
    sudo: bool = True

    @property
    def overrides(self) -> Overrides:
        return Overrides(self.dest, self.validate_cmd, self.reload_cmd)


@dataclass(frozen=True)
class ConnectOptions:
    """How to reach the hosts (see ``wizard.remote.open_remote``)."""

    known_hosts: Path | None = None
    accept_host_key: str | None = None
    identity: Path | None = None
    password: str | None = field(default=None, repr=False)
    sudo_password: str | None = field(default=None, repr=False)
    connect_timeout: float = 10.0
    passphrase_prompt: Callable[[str], str] | None = None
    ssh_config: Path | None = None


class Outcome(StrEnum):
    DEPLOYED = "deployed"
    UNCHANGED = "unchanged"  # the host already had these bytes
    PLANNED = "planned"  # --dry-run
    ROLLED_BACK = "rolled back"
    KEPT = "kept"  # failed after the rename, kept on purpose (--no-rollback)
    FAILED = "failed"  # failed before anything on the host changed (or the probe of a no-op)
    ROLLBACK_FAILED = "rollback failed"


@dataclass(frozen=True)
class PlanItem:
    step: Step
    command: str
    sudo: bool = False

    def __str__(self) -> str:
        return f"{self.step.value:>10}  {'sudo ' if self.sudo else ''}{self.command}"


@dataclass(frozen=True)
class SettleResult:
    ok: bool
    seconds: float
    answers: int
    detail: str


@dataclass(frozen=True)
class DeployResult:
    """What happened on one host; ``exit_code`` is the documented process exit code."""

    host: str
    outcome: Outcome
    exit_code: ExitCode
    title: str
    hint: str = ""
    detail: str = ""  # the checker's / reload's own output, or the probe's findings
    failed_step: Step | None = None
    dest: str | None = None
    config_id: str | None = None
    diff: str = ""
    plan: tuple[PlanItem, ...] = ()
    backup: str | None = None  # on the host
    local_backup: str | None = None
    steps: tuple[StepFinished, ...] = ()
    warnings: tuple[str, ...] = ()
    probe: ProbeReport | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK

    def message(self) -> str:
        """One paragraph: what happened, the evidence, what to do next."""
        parts = [self.title]
        if self.detail:
            parts.append(self.detail.rstrip())
        if self.hint:
            parts.append(self.hint)
        return "\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "outcome": self.outcome.value,
            "exit_code": int(self.exit_code),
            "ok": self.ok,
            "title": self.title,
            "hint": self.hint,
            "detail": self.detail,
            "failed_step": self.failed_step.value if self.failed_step else None,
            "dest": self.dest,
            "config_id": self.config_id,
            "diff": self.diff,
            "plan": [{"step": p.step.value, "command": p.command, "sudo": p.sudo}
                     for p in self.plan],
            "backup": self.backup,
            "local_backup": self.local_backup,
            "steps": [s.to_dict() for s in self.steps],
            "warnings": list(self.warnings),
            "probe": self.probe.to_dict() if self.probe is not None else None,
            "seconds": round(self.seconds, 3),
        }


# --------------------------------------------------------------------------------------------
# Live checks (settle + probe), replaceable in tests
# --------------------------------------------------------------------------------------------

class SettleFn(Protocol):
    def __call__(self, url: str, path: str, config_id: str | None, quiet: float,
                 timeout: float, *, connect_to: str | None = None) -> SettleResult: ...


class ProbeFn(Protocol):
    def __call__(self, url: str, path: str, timeout: float, *,
                 connect_to: str | None = None) -> ProbeReport: ...


@dataclass(frozen=True)
class LiveChecks:
    """How the deploy talks to the proxy after a reload; unit tests pass fakes."""

    settle: SettleFn
    probe: ProbeFn


def settle_http(url: str, path: str, config_id: str | None, quiet: float,
                timeout: float, *, connect_to: str | None = None) -> SettleResult:
    """Poll ``GET {path}`` until the answers carry ``X-Sockwizard-Config: config_id``
    continuously for ``quiet`` seconds (any HTTP answer will do when ``config_id`` is None).

    ``GET {path}`` without a query is answered by Engine.IO with 400 "Transport unknown" and
    creates no session, so polling it costs the backend nothing; a dead backend's 502 carries
    the marker too (``always``), which is exactly what must reach the probe. ``connect_to``:
    connect there, with the URL's host as the Host header and SNI.
    """
    parts = urlsplit(url)
    https = parts.scheme in ("https", "wss")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if https else 80)
    started = time.monotonic()
    deadline = started + timeout
    matched_since: float | None = None
    answers = 0
    last = "no answer yet"
    pause = 0.01
    while True:
        now = time.monotonic()
        if now >= deadline:
            return SettleResult(False, now - started, answers,
                                f"the proxy did not serve the new config within {timeout:g} s "
                                f"(last answer: {last})")
        try:
            status, got = _marker_request(host, port, https, path, min(5.0, deadline - now),
                                          connect_to)
        except (OSError, http.client.HTTPException) as exc:
            matched_since = None
            last = str(exc) or type(exc).__name__
        else:
            answers += 1
            if config_id is None or got == config_id:
                now = time.monotonic()
                matched_since = matched_since if matched_since is not None else now
                if now - matched_since >= quiet:
                    return SettleResult(True, now - started, answers,
                                        f"HTTP {status} with {HEADER}: {got}" if config_id
                                        else f"HTTP {status}")
                time.sleep(0.01)
                continue
            matched_since = None
            last = (f"HTTP {status} from an older config ({got})" if got
                    else f"HTTP {status} from a config without the {HEADER} marker")
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 1.5, 0.2)


def _marker_request(host: str, port: int, https: bool, path: str, timeout: float,
                    connect_to: str | None = None) -> tuple[int, str | None]:
    conn: http.client.HTTPConnection
    if https:
        # Only the marker is read here; the probe that follows judges the certificate.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = _HTTPSConnectTo(host, port, timeout=timeout, context=context)
    else:
        conn = _HTTPConnectTo(host, port, timeout=timeout)
    conn.connect_to = connect_to
    try:
        conn.request("GET", path, headers={"User-Agent": "sockwizard-settle"})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader(HEADER)
    finally:
        conn.close()


class _HTTPConnectTo(http.client.HTTPConnection):
    """An HTTP connection to ``connect_to`` (when set) that still names ``host``."""

    connect_to: str | None = None

    def connect(self) -> None:
        address = (self.connect_to or self.host, self.port)
        self.sock = socket.create_connection(address, self.timeout)


class _HTTPSConnectTo(http.client.HTTPSConnection):
    """The same over TLS, with SNI = ``host``."""

    connect_to: str | None = None

    def __init__(self, host: str, port: int, *, timeout: float,
                 context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.tls_context = context

    def connect(self) -> None:
        if self.connect_to is None:
            super().connect()
            return
        sock = socket.create_connection((self.connect_to, self.port), self.timeout)
        self.sock = self.tls_context.wrap_socket(sock, server_hostname=self.host)


def probe_live(url: str, path: str, timeout: float, *,
               connect_to: str | None = None) -> ProbeReport:
    from wizard.probe import ProbeOptions, run_probe

    # The raw CONNECT proves the same as python-socketio here, ~200 ms of imports sooner. The
    # marker tells which config answered the handshake and the upgrade (see settle_and_probe).
    return run_probe(url, ProbeOptions(path=path, timeout=timeout, raw_connect=True,
                                       marker_header=HEADER, connect_to=connect_to))


def probe_markers(report: ProbeReport) -> list[str | None] | None:
    """The config ids that answered the probe's handshake and upgrade (as far as the probe
    got), or None when the report does not say (no connection, or no marker_header)."""
    seen = [stage.data["marker"] for stage in map(report.stage, ("polling", "websocket"))
            if stage is not None and "marker" in stage.data]
    return seen or None


LIVE = LiveChecks(settle=settle_http, probe=probe_live)


# --------------------------------------------------------------------------------------------
# Host-side scripts (pure functions: the dry run prints them, the tests read them)
# --------------------------------------------------------------------------------------------

# Exit statuses of the activation script (distinct from sudo's 1 and a shell's 126/127).
RENAME_FAILED, VALIDATE_RESTORED, VALIDATE_RESTORE_FAILED, CHANGED_MEANWHILE = 90, 91, 92, 93


def restore_lines(dest: str, backup: str | None, disable_cmds: Sequence[str],
                  reenable_cmds: Sequence[str] = ()) -> list[str]:
    """Shell lines that put the backup's bytes back at ``dest`` in one rename (or remove a
    file that did not exist before). Exit status 0 only when it worked. ``reenable_cmds``
    (a2ensite) run after the bytes are back when the change being undone had removed the file
    and disabled it (a rollback that put a file away)."""
    d = shlex.quote(dest)
    if backup is None:
        undo = " && ".join(f"{{ {cmd}; }} >/dev/null 2>&1" for cmd in disable_cmds) or ":"
        return [f"rm -f -- {d} && {{ {undo} || :; }}"]
    # Staged outside the destination's directory: no include glob can load it (hoststate).
    tdir = hoststate.temp_dir(dest)
    r = shlex.quote(posixpath.join(tdir, f"{hoststate.state_key(dest)}.restore"))
    redo = "".join(f" && {cmd}" for cmd in reenable_cmds)
    return [f"mkdir -p -m 0700 -- {shlex.quote(tdir)} && cp -p -- {shlex.quote(backup)} {r} "
            f"&& mv -f -- {r} {d}{redo}"]


def activation_script(tmp: str | None, dest: str, backup: str | None, validate_cmd: str,
                      enable_cmds: Sequence[str], disable_cmds: Sequence[str],
                      remove_cmds: Sequence[str] = (), reenable_cmds: Sequence[str] = (), *,
                      expect_sha: str | None = None, expect_absent: bool = False,
                      journal: Sequence[str] = (), clear_journal: str | None = None) -> str:
    """Rename the uploaded temp file over ``dest`` (``tmp`` None: remove ``dest``), run the
    checker on the whole tree, and put the old file back at once if the checker refuses. One
    script, so that a dropped connection cannot separate the rename from the restore (HUP and
    PIPE are ignored).

    Before the rename it refuses (exit CHANGED_MEANWHILE) when ``dest`` is no longer the file
    that was backed up (``expect_sha``; ``expect_absent``: it must not exist) or is no longer a
    plain file, and writes the ``journal`` lines (``hoststate.journal_lines``); a refused
    config removes the journal again (``clear_journal``)."""
    d = shlex.quote(dest)
    guard = []
    if expect_sha is not None or expect_absent:
        t = f"rm -f -- {shlex.quote(tmp)}; " if tmp is not None else ""
        refuse = f"{{ echo '@@sw changed'; {t}exit {CHANGED_MEANWHILE}; }}"
        # A plain file first: sha256sum of a FIFO that appeared meanwhile would block.
        guard.append(f"if [ -L {d} ] || {{ [ -e {d} ] && [ ! -f {d} ]; }}; then {refuse}; fi")
        if expect_absent:
            guard.append(f"[ ! -e {d} ] || {refuse}")
        else:
            guard.append(f"cur=$(sha256sum -- {d} 2>/dev/null) || cur=")
            guard.append(f'[ "${{cur%% *}}" = {shlex.quote(expect_sha or "")} ] || {refuse}')
    if tmp is not None:
        # The temp file was written elsewhere (hoststate.temp_dir): give it the mode and owner
        # of the file it replaces.
        q = shlex.quote(tmp)
        guard.append(f"if [ -e {d} ]; then chmod --reference={d} -- {q} 2>/dev/null; "
                     f"chown --reference={d} -- {q} 2>/dev/null; fi")
    guard.extend(journal)
    unjournal = f"rm -f -- {shlex.quote(clear_journal)}; " if clear_journal else ""
    if tmp is None:
        undo = "".join(f" && {{ {cmd}; }} >/dev/null 2>&1" for cmd in remove_cmds)
        put = f"{{ rm -f -- {d}{undo}; }}"
    else:
        put = f"mv -f -- {shlex.quote(tmp)} {d}"
    # Putting a removed file back also enables it again (remove_cmds disabled it).
    reenable = reenable_cmds if tmp is None else ()
    restore = " && ".join(restore_lines(dest, backup, disable_cmds, reenable))
    enable = "".join(f"{cmd} && " for cmd in enable_cmds)
    return "\n".join([
        "trap '' HUP PIPE",
        *guard,
        f"{put} || {{ echo '@@sw rename failed'; {unjournal}exit {RENAME_FAILED}; }}",
        'echo "@@sw renamed $(date +%s%N)"',
        f"out=$( {{ {enable}{validate_cmd} ; }} 2>&1 ); st=$?",
        'echo "@@sw validated $st $(date +%s%N)"',
        'if [ "$st" -ne 0 ]; then',
        f"  if {restore}; then {unjournal}rs={VALIDATE_RESTORED}; "
        f"else rs={VALIDATE_RESTORE_FAILED}; fi",
        '  printf "%s\\n" "$out"',
        '  exit "$rs"',
        "fi",
        'printf "%s\\n" "$out"',
        "exit 0",
    ])


def backup_script(dest: str, backup_dir: str, backup: str | None, entry: dict[str, Any]) -> str:
    """Copy ``dest`` into the backup dir (bytes, mode, owner), print its sha256, and append
    the entry ``sockwizard rollback`` reads."""
    lines = ["set -e", "umask 077", f"mkdir -p -- {shlex.quote(backup_dir)}"]
    if backup is not None:
        lines.append(f"cp -p -- {shlex.quote(dest)} {shlex.quote(backup)}")
        lines.append(f"sha256sum -- {shlex.quote(backup)}")
    index = shlex.quote(posixpath.join(backup_dir, INDEX_NAME))
    lines.append(f"printf '%s\\n' {shlex.quote(json.dumps(entry, sort_keys=True))} >> {index}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def state_dir(explicit: Path | None = None) -> Path:
    """$XDG_STATE_HOME/sockwizard (default ~/.local/state/sockwizard)."""
    if explicit is not None:
        return explicit
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "sockwizard"


def host_key(name: str) -> str:
    """A host name as a directory name (local state)."""
    return re.sub(r"[^A-Za-z0-9@._-]+", "_", name).strip("._") or "host"


def dest_key(dest: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", dest.strip("/")) or "root"


def timestamp() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z"


def unified_diff(old: bytes | None, new: bytes | None, dest: str, host: str) -> str:
    before = (old or b"").decode("utf-8", "replace").splitlines(keepends=True)
    after = (new or b"").decode("utf-8", "replace").splitlines(keepends=True)
    lines = difflib.unified_diff(before, after,
                                 fromfile="/dev/null" if old is None else f"{host}:{dest}",
                                 tofile="/dev/null" if new is None else f"{dest} (sockwizard)")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)


def default_probe_url(spec: DeploySpec, probe_host: str) -> str:
    """Where the probe reaches the proxy from this machine, on the port the config listens on:
    the site's ``server_name`` when it has one (virtual hosts and certificates answer to that
    name), else the host we deploy to (or the listen address, deploying locally)."""
    scheme = "https" if spec.tls else "http"
    port = spec.tls_port if spec.tls else spec.listen_port
    host = probe_host
    wildcard = spec.listen_address in (None, "0.0.0.0", "::", "*")
    if spec.server_name and not spec.server_name.startswith("*."):
        host = spec.server_name
    elif not wildcard and probe_host in ("127.0.0.1", "localhost") and spec.listen_address:
        host = spec.listen_address
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def check_probe_url(url: str) -> None:
    """Refuse a probe URL that cannot work before anything on the host changes."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise BadInput(f"Invalid probe URL {url!r}.",
                       "Give --probe-url as http(s)://HOST[:PORT], the address this machine "
                       "reaches the proxy at, or --no-probe.")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tail(text: str, lines: int = 40) -> str:
    kept = text.strip("\n").splitlines()
    return "\n".join(kept[-lines:])


def _probe_summary(report: ProbeReport) -> tuple[str, str, str]:
    """(short reason, evidence lines, first fix) from a failed probe."""
    errors = [f for f in report.findings if f.severity == "error"] or list(report.findings)
    if errors:
        reason = errors[0].title
        evidence = "\n".join(f"  [{f.code}] {f.title} ({f.evidence})" for f in errors[:4])
        return reason, evidence, errors[0].fix
    failed = [s for s in report.stages if not s.ok]
    reason = (f"stage {failed[0].name}: {failed[0].detail}" if failed
              else f"transport {report.transport or 'none'}")
    return reason, "\n".join(f"  {s.name}: {s.detail}" for s in failed[:4]), ""


# --------------------------------------------------------------------------------------------
# The transaction
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """Deploy given bytes to a known target instead of rendering and detecting: what
    ``sockwizard rollback`` uses, so that a rollback is itself a guarded transaction (backed
    up, validated in place, reloaded, probed, and undone if that fails). ``content`` None
    removes the file (the first deploy created it)."""

    target: HostTarget
    content: bytes | None
    config_id: str | None
    entry: dict[str, Any] = field(default_factory=dict)  # extra keys for the index entry


class _StepFailed(Exception):
    """A step's command failed; the transaction decides what that means."""

    def __init__(self, step: Step, title: str, output: str = "") -> None:
        super().__init__(title)
        self.step = step
        self.title = title
        self.output = output


@dataclass
class _Running:
    """The state of one step while it runs (set detail/output, or skip)."""

    detail: str = ""
    output: str = ""
    status: StepStatus = "ok"
    seconds: float | None = None  # measured by the host (script markers) when known


class Transaction:
    """One deploy on one host, over an open Remote. Use :func:`apply` or :func:`deploy_host`."""

    def __init__(self, remote: Remote, spec: DeploySpec, options: DeployOptions, *,
                 on_event: EventSink = _ignore, checks: LiveChecks = LIVE,
                 probe_host: str = "127.0.0.1",
                 reconnect: Callable[[], Remote] | None = None,
                 host: str | None = None, preset: Preset | None = None) -> None:
        self.remote = remote
        self.preset = preset
        self.spec = spec
        self.options = options
        self.on_event = on_event
        self.checks = checks
        self.probe_host = probe_host
        self.reconnect = reconnect
        self.host = host or remote.name
        self.started = time.monotonic()
        self.steps: list[StepFinished] = []
        self.warnings: list[str] = []
        self.target: HostTarget | None = None
        self.old: bytes | None = None
        self.new: bytes | None = b""  # None: the transaction removes the file (a rollback)
        self.config_id: str | None = None
        self.diff = ""
        self.plan: list[PlanItem] = []
        self.backup: str | None = None
        self.local_backup: str | None = None
        self.changed = False  # the destination on the host may differ from self.old
        self.prepared = False  # prepare_cmds ran: a rollback undoes them (unprepare_cmds)
        self.probe_report: ProbeReport | None = None
        self.current = Step.DETECT
        self.lock_token = secrets.token_hex(8)
        self.locked = False  # we hold the host-side lock on the destination (hoststate)
        self.journal: dict[str, Any] | None = None  # an earlier run's, found under the lock
        self.reload_hung = False  # the reload of the new config ran out of time

    # -- event plumbing ---------------------------------------------------------------------

    def emit(self, event: DeployEvent) -> None:
        with contextlib.suppress(Exception):  # a broken sink must never break a deploy
            self.on_event(event)

    def notice(self, step: Step, text: str, level: Literal["warning", "info"] = "warning"
               ) -> None:
        if level == "warning":
            self.warnings.append(text)
        self.emit(Notice(self.host, step, level, text))

    @contextlib.contextmanager
    def step(self, step: Step, title: str) -> Iterator[_Running]:
        self.current = step
        self.emit(StepStarted(self.host, step, title))
        state = _Running()
        t0 = time.monotonic()
        try:
            yield state
        except _StepFailed as exc:
            self._finish(step, "failed", t0, state, exc.title, exc.output or state.output)
            raise
        except SockwizardError as exc:
            self._finish(step, "failed", t0, state, exc.title, exc.detail)
            raise
        except BaseException as exc:
            self._finish(step, "failed", t0, state, f"{type(exc).__name__}: {exc}", "")
            raise
        self._finish(step, state.status, t0, state, state.detail, state.output)

    def _finish(self, step: Step, status: StepStatus, t0: float, state: _Running, detail: str,
                output: str) -> None:
        seconds = state.seconds if state.seconds is not None else time.monotonic() - t0
        done = StepFinished(self.host, step, status, seconds, detail, output)
        self.steps.append(done)
        self.emit(done)

    def skip(self, step: Step, why: str) -> None:
        self.emit(StepStarted(self.host, step, why))
        done = StepFinished(self.host, step, "skipped", 0.0, why)
        self.steps.append(done)
        self.emit(done)

    def run(self, command: str) -> CommandResult:
        return self.remote.run(command, sudo=self.options.sudo,
                               timeout=self.options.command_timeout)

    # -- the whole thing ------------------------------------------------------------------

    def execute(self) -> DeployResult:
        result: DeployResult | None = None
        try:
            result = self._execute()
        except _StepFailed as exc:  # a failure before anything changed
            result = self.result(Outcome.FAILED, ExitCode.FAILED, exc.title, detail=exc.output,
                                 failed_step=exc.step)
        except SockwizardError as exc:
            result = self._error_result(exc)
        except Exception as exc:  # a bug must not leave a half-done change behind
            result = self.unexpected(exc)
        finally:
            self.release(result)
        assert result is not None
        return result

    def unexpected(self, exc: Exception) -> DeployResult:
        what = f"{type(exc).__name__}: {exc}"
        if self.changed and self.target is not None:
            return self.failed_after_change(_StepFailed(
                self.current if self.current in (Step.RELOAD, Step.SETTLE, Step.PROBE)
                else Step.VALIDATE, f"sockwizard failed unexpectedly ({what})"))
        return self.result(Outcome.FAILED, ExitCode.FAILED,
                           f"sockwizard failed unexpectedly on {self.host} at "
                           f"{self.current.value} ({what}); the host's config was not changed.",
                           failed_step=self.current,
                           hint="Please report this with the command line that caused it.")

    def release(self, result: DeployResult | None) -> None:
        """Drop the host-side lock; forget the journal once the outcome is known."""
        if not self.locked:
            return
        known = result is not None and result.outcome in (
            Outcome.DEPLOYED, Outcome.ROLLED_BACK, Outcome.KEPT, Outcome.UNCHANGED)
        script = hoststate.release_script(self.options.backup_dir, self.tgt.real_dest,
                                          self.lock_token, clear_journal=known)
        with contextlib.suppress(Exception):  # a stale lock is taken over by the next run
            self.remote.run(script, sudo=self.options.sudo, timeout=15)
            self.locked = False

    def _execute(self) -> DeployResult:
        if self.options.probe:
            check_probe_url(self.probe_url())
        self.detect()
        self.read_and_diff()
        self.plan_commands()
        if self.options.dry_run:
            return self.result(Outcome.PLANNED, ExitCode.OK,
                               f"Dry run for {self.host}: nothing was changed."
                               + ("" if self.diff else " The host already has this config."))
        if self.interrupted_earlier():
            return self.finish_interrupted()
        if self.old == self.new:
            for step in (Step.BACKUP, Step.UPLOAD, Step.RENAME, Step.VALIDATE, Step.RELOAD):
                self.skip(step, "unchanged")
            return self.verify_unchanged()
        try:
            self.make_backup()
            self.prepare()
            tmp = self.upload()
            self.activate(tmp)
        except _StepFailed as exc:
            if exc.step is Step.VALIDATE:
                return self.validate_failed(exc)
            undone = self.undo_prepare()
            return self.result(Outcome.FAILED, ExitCode.FAILED, exc.title, detail=exc.output,
                               failed_step=exc.step,
                               hint="The config on the host was not changed"
                                    + (f" (and `{'; '.join(undone)}` undid the preparation)."
                                       if undone else "."))
        except ConnectionFailed as exc:
            return self.connection_lost(exc)
        except SockwizardError as exc:
            if not self.changed:
                raise
            # e.g. the checker hung past the command timeout: we cannot know what the script
            # did, so put the old file back from here.
            return self.failed_after_change(_StepFailed(Step.VALIDATE, exc.title, exc.detail))
        except Exception as exc:
            if not self.changed:
                raise
            return self.failed_after_change(_StepFailed(
                Step.VALIDATE, f"sockwizard failed unexpectedly ({type(exc).__name__}: {exc})"))
        except BaseException:  # Ctrl-C, SystemExit: put the old file back, then go
            if self.changed:
                self.rollback(Step.RENAME, interrupted=True)
            raise
        return self.go_live()

    def go_live(self) -> DeployResult:
        """Reload, settle and probe the new config; roll back when one of them fails."""
        try:
            self.warn_websocket_drop()
            self.reload()
            if self.options.probe:
                self.settle_and_probe()
            else:
                why = ("the file was removed: no route left to probe" if self.new is None
                       else "--no-probe")
                self.skip(Step.SETTLE, why)
                self.skip(Step.PROBE, why)
        except _StepFailed as exc:
            return self.failed_after_change(exc)
        except ConnectionFailed as exc:
            return self.connection_lost(exc)
        except SockwizardError as exc:  # e.g. the reload timed out: still roll back
            step = self.current if self.current in (Step.SETTLE, Step.PROBE) else Step.RELOAD
            return self.failed_after_change(_StepFailed(step, exc.title, exc.detail))
        except Exception as exc:  # a crashing probe is a failed probe, never a kept config
            step = self.current if self.current in (Step.SETTLE, Step.PROBE) else Step.RELOAD
            return self.failed_after_change(_StepFailed(
                step, f"sockwizard failed unexpectedly ({type(exc).__name__}: {exc})"))
        except BaseException:  # Ctrl-C, SystemExit: put the old config back, then go
            self.rollback(Step.RELOAD, interrupted=True)
            raise
        with self.step(Step.DONE, "done") as s:
            s.detail = f"{self.target_dest} serves config {self.config_id or '(unmarked)'}"
        return self.result(Outcome.DEPLOYED, ExitCode.OK,
                           f"Deployed to {self.host}: {self.target_dest} "
                           + ("is live and the probe passed over WebSocket."
                              if self.options.probe else "is live (not probed: --no-probe)."))

    # -- steps ----------------------------------------------------------------------------

    @property
    def tgt(self) -> HostTarget:
        assert self.target is not None
        return self.target

    @property
    def target_dest(self) -> str:
        return self.target.dest if self.target is not None else (self.options.dest or "?")

    def detect(self) -> None:
        if self.preset is not None:
            with self.step(Step.DETECT, "target from the backup index") as s:
                self.target = self.preset.target
                self.new = self.preset.content
                self.config_id = self.preset.config_id
                s.detail = f"{self.tgt.dest}; {self.tgt.summary()}{self.inspect_and_lock()}"
            return
        with self.step(Step.DETECT, "what the host has") as s:
            self.target = detect(self.remote, self.spec, self.options.overrides,
                                 sudo=self.options.sudo)
            self.rerender_for_host()
            s.detail = f"{self.tgt.dest}; {self.tgt.summary()}{self.inspect_and_lock()}"
        for note in self.tgt.notes:
            self.notice(Step.DETECT, note)

    def rerender_for_host(self) -> None:
        """Render for what the host has: an Apache older than 2.4.47 needs the wstunnel
        recipe instead of ``upgrade=websocket``."""
        spec = self.spec
        version = self.tgt.facts.version
        if spec.proxy is ProxyKind.APACHE and spec.apache_version is None and version:
            older = dataclasses.replace(spec, apache_version=version)
            if not older.apache_has_upgrade_param:
                self.spec = older
                self.notice(Step.DETECT, f"Apache {version} predates `upgrade=websocket` "
                                         "(2.4.47): rendering the mod_proxy_wstunnel recipe.",
                            "info")
        stamped = stamp(self.spec.proxy, render(self.spec).text)
        self.new = stamped.text.encode()
        self.config_id = stamped.config_id
        if stamped.config_id is None:
            self.notice(Step.DETECT, "Could not add the config marker: the settle step cannot "
                                     "tell the new config from the old one.")

    def plan_commands(self) -> None:
        """Every command the transaction runs, for --dry-run and the TUI's Plan tab."""
        t, sudo = self.tgt, self.options.sudo
        plan = self.plan

        def add(step: Step, command: str, privileged: bool = True) -> None:
            plan.append(PlanItem(step, command, sudo and privileged))

        facts = ("modules (-D DUMP_MODULES)" if self.spec.proxy is ProxyKind.APACHE
                 else "config dirs")
        add(Step.DETECT, f"read-only facts: id -u, /etc/os-release, command -v, version, "
                         f"{facts}", privileged=False)
        add(Step.DIFF, f"read {t.real_dest}", privileged=False)
        backups = self.options.backup_dir
        if self.old is None:
            add(Step.BACKUP, f"mkdir -p {backups} (no current file: only an index entry)")
        else:
            add(Step.BACKUP, f"mkdir -p {backups} && cp -p -- {t.real_dest} "
                             f"{backups}/<time>-{dest_key(t.real_dest)}")
        add(Step.BACKUP, f"copy to {self.local_backup_dir()}/", privileged=False)
        if t.make_dir:
            add(Step.PREPARE, t.make_dir)
        for path, _ in t.extra_files:
            add(Step.PREPARE, f"write {path}")
        for cmd in t.prepare_cmds:
            add(Step.PREPARE, cmd)
        if self.new is None:
            add(Step.RENAME, f"rm -f -- {t.real_dest}")
        else:
            name = f".{hoststate.state_key(t.real_dest)}.new.sockwizard-XXXXXXXX.tmp"
            temp = posixpath.join(hoststate.temp_dir(t.real_dest), name)
            add(Step.UPLOAD, f"write {len(self.new)} bytes to {temp}", privileged=False)
            add(Step.RENAME, f"mv -f -- {temp} {t.real_dest}")
        for cmd in t.enable_cmds:
            add(Step.VALIDATE, cmd)
        add(Step.VALIDATE, f"{t.validate_cmd}   (refused: old file put back at once)")
        add(Step.RELOAD, t.reload_cmd)
        if self.options.probe:
            url = self.probe_url()
            add(Step.SETTLE, f"GET {url}{self.spec.path} until {HEADER}: {self.config_id}",
                privileged=False)
            add(Step.PROBE, f"sockwizard probe {url} --path {self.spec.path}",
                privileged=False)
        add(Step.RESTORE, f"on failure: cp -p <backup> beside the target, mv over it, "
                          f"{t.validate_cmd}, {t.reload_cmd}")

    def probe_url(self) -> str:
        return self.options.probe_url or default_probe_url(self.spec, self.probe_host)

    def probe_connect_to(self) -> str | None:
        """Where the settle and probe connect when the URL names the site (server_name):
        the host this deploy changed. DNS may not point there yet, or may spread the name over
        several hosts (each host of a fleet must answer for itself). None: the URL's host."""
        if self.options.probe_url is not None:
            return None  # the user said where
        host = urlsplit(self.probe_url()).hostname
        return self.probe_host if host and host != self.probe_host else None

    def inspect_and_lock(self) -> str:
        """Part of the detect step: resolve and check the destination, then (unless this is
        a dry run) take the lock. Returns words for the step's detail."""
        detail = self.inspect_dest()
        if not self.options.dry_run:
            detail += self.lock()
        return detail

    def inspect_dest(self) -> str:
        """Resolve the destination on the host and refuse what must not be written through:
        before anything reads it, so a secret elsewhere never reaches a backup (hoststate)."""
        t = self.tgt
        result = self.run(hoststate.inspect_script(t.dest))
        info = hoststate.parse_inspect(result.stdout)
        if not info.real and not info.is_link:  # its directory does not exist yet
            info = dataclasses.replace(info, real=t.real_dest, kind="absent")
        problem = hoststate.dest_problem(t.dest, info,
                                         follow_symlink=self.options.follow_symlink)
        if problem is not None:
            raise BadInput(
                f"Refusing to deploy to {self.host}: {problem}. Nothing was read or "
                "changed.",
                "Point --dest at the config file itself (a regular file in the proxy's "
                "config tree)"
                + ("" if info.kind not in ("file", "absent") else
                   ", or pass --follow-symlink if the link target is really the config to "
                   "replace") + ".")
        if info.real != t.real_dest:
            self.target = dataclasses.replace(t, real_dest=info.real)
        return f"; symlink to {info.real}" if info.is_link else ""

    def lock(self) -> str:
        """Take the host-side lock on the destination (one deploy per file at a time), sweep
        this destination's leftover temp files, and read an interrupted run's journal."""
        t, backups = self.tgt, self.options.backup_dir
        lock = hoststate.lock_path(backups, t.real_dest)
        result = self.run(hoststate.claim_script(backups, t.real_dest, self.lock_token,
                                                 f"{socket.gethostname()}:{os.getpid()}"))
        claim = hoststate.parse_claim(result.stdout)
        if not claim.locked:
            if not claim.holder:
                raise _StepFailed(Step.DETECT, f"Could not take the deploy lock {lock} on "
                                  f"{self.host}", _tail(result.output))
            who = hoststate.describe_owner(claim.holder)
            raise DeployFailed(
                f"Another deploy to {t.real_dest} on {self.host} is running ({who}). "
                "Nothing was changed.",
                "Wait for it to finish and deploy again. If no deploy is running, the lock "
                f"is left over: remove it with `sudo rm -rf {lock}` (it also counts as "
                "stale once that session is gone or after "
                f"{hoststate.LOCK_STALE_S // 60} minutes).", exit_code=ExitCode.FAILED)
        self.locked = True
        self.journal = claim.journal
        if claim.stale:
            self.notice(Step.DETECT, f"Took over a stale deploy lock ({lock}: "
                                     f"{hoststate.describe_owner(claim.holder)}).", "info")
        return "; locked"

    def interrupted_earlier(self) -> bool:
        """An earlier run put exactly these bytes in place and was never seen to finish
        (killed between validate and the probe): the config may be on disk but not live."""
        j = self.journal
        return (j is not None and self.old is not None and self.old == self.new
                and j.get("new_sha256") == _sha(self.old))

    def finish_interrupted(self) -> DeployResult:
        """Finish what the interrupted run started: reload, settle, probe — and on failure
        roll back to the config it had replaced (its backup)."""
        j = self.journal or {}
        backup = j.get("backup")
        old: bytes | None = None
        if isinstance(backup, str):
            old = self.remote.read_file(backup)
            if old is None or _sha(old) != j.get("old_sha256"):
                raise BadInput(
                    f"An earlier deploy to {self.tgt.real_dest} on {self.host} was interrupted "
                    f"after validation, and its backup {backup} is missing or damaged.",
                    f"Reload the proxy by hand (`{self.tgt.reload_cmd}`) and check it, or restore "
                    "the previous config from the local copy; then remove "
                    f"{hoststate.journal_path(self.options.backup_dir, self.tgt.real_dest)}.")
        elif backup is not None:
            raise BadInput("The journal of an interrupted deploy is damaged.",
                           "Remove " + hoststate.journal_path(self.options.backup_dir,
                                                              self.tgt.real_dest)
                           + " and deploy again.")
        self.notice(Step.DIFF, f"An earlier deploy put this config in place at {j.get('time')} "
                               "and was interrupted before it was seen live: finishing it "
                               "(reload, settle, probe; rollback to its backup on failure).")
        for step in (Step.BACKUP, Step.UPLOAD, Step.RENAME, Step.VALIDATE):
            self.skip(step, "done by the interrupted deploy")
        self.old, self.backup, self.changed = old, backup if isinstance(backup, str) else None, True
        self.diff = unified_diff(old, self.new, self.tgt.dest, self.host)
        return self.go_live()

    def read_and_diff(self) -> None:
        with self.step(Step.DIFF, "compare with the file on the host") as s:
            self.old = self.remote.read_file(self.tgt.real_dest)
            self.diff = unified_diff(self.old, self.new, self.tgt.dest, self.host)
            if self.old == self.new:
                s.detail = "no change: the host already has this config"
            elif self.new is None:
                s.detail = "the file will be removed (it did not exist before)"
            else:
                added = sum(1 for ln in self.diff.splitlines()
                            if ln.startswith("+") and not ln.startswith("+++"))
                removed = sum(1 for ln in self.diff.splitlines()
                              if ln.startswith("-") and not ln.startswith("---"))
                s.detail = ("new file" if self.old is None else "changed") + \
                    f": +{added} -{removed} lines"
            s.output = self.diff

    def local_backup_dir(self) -> Path:
        return state_dir(self.options.state_dir) / "backups" / host_key(self.host)

    def make_backup(self) -> None:
        t = self.tgt
        stamp_ = timestamp()
        backup_dir = self.options.backup_dir
        backup = (posixpath.join(backup_dir, f"{stamp_}-{dest_key(t.real_dest)}")
                  if self.old is not None else None)
        entry = {
            "time": stamp_, "host": self.host, "proxy": self.spec.proxy.value,
            "dest": t.real_dest, "backup": backup,
            "sha256": _sha(self.old) if self.old is not None else None,
            "new_sha256": _sha(self.new) if self.new is not None else None,
            "config_id": self.config_id, "kind": "deploy",
            "old_config_id": existing_id(self.old.decode("utf-8", "replace"))
            if self.old is not None else None,
            "validate_cmd": t.validate_cmd, "reload_cmd": t.reload_cmd,
            "disable_cmds": list(t.disable_cmds), "enable_cmds": list(t.enable_cmds),
            "probe_url": self.probe_url() if self.options.probe else None,
            "path": self.spec.path,
        }
        if self.preset is not None:
            entry.update(self.preset.entry)
        with self.step(Step.BACKUP, "back up the current config") as s:
            result = self.run(backup_script(t.real_dest, backup_dir, backup, entry))
            if not result.ok:
                raise _StepFailed(Step.BACKUP, f"Could not back up {t.real_dest} on {self.host}",
                                  result.output)
            if self.old is not None:
                got = result.stdout.split()[0] if result.stdout.split() else ""
                if got != _sha(self.old):
                    raise _StepFailed(Step.BACKUP, f"The backup of {t.real_dest} does not match "
                                                   "the file read a moment ago (changed "
                                                   "meanwhile?)", result.output)
            self.backup = backup
            self.local_backup = self.save_local(stamp_, entry)
            s.detail = (f"{backup} (+ local {self.local_backup})" if backup
                        else f"no current file; local note {self.local_backup}")

    def save_local(self, stamp_: str, entry: dict[str, Any]) -> str:
        directory = self.local_backup_dir()
        name = f"{stamp_}-{dest_key(self.tgt.real_dest)}"
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            if self.old is not None:
                (directory / name).write_bytes(self.old)
            (directory / f"{name}.json").write_text(json.dumps(entry, indent=2, sort_keys=True))
        except OSError as exc:
            # The host copy is the one a restore uses; a missing local copy is only a warning.
            self.notice(Step.BACKUP, f"Could not write the local backup copy in {directory}: "
                                     f"{exc.strerror or exc}")
        return str(directory / name)

    def prepare(self) -> None:
        t = self.tgt
        if not (t.make_dir or t.extra_files or t.prepare_cmds):
            return
        with self.step(Step.PREPARE, "prepare the host") as s:
            done = []
            if t.make_dir:
                self._check(Step.PREPARE, t.make_dir)
                done.append(t.make_dir)
            for path, data in t.extra_files:
                self.remote.write_file_atomic(path, data)
                done.append(f"wrote {path}")
            for cmd in t.prepare_cmds:
                self.prepared = True  # even a partial run is undone (best effort)
                self._check(Step.PREPARE, cmd)
                done.append(cmd)
            s.detail = "; ".join(done)

    def undo_prepare(self) -> tuple[str, ...]:
        """Best effort: run unprepare_cmds after the old config is back (a2dismod the modules
        this deploy enabled). The commands that ran, for the report (none: nothing undone)."""
        if not (self.prepared and self.tgt.unprepare_cmds):
            return ()
        self.prepared = False
        failed = []
        for cmd in self.tgt.unprepare_cmds:
            if not self.run(cmd).ok:
                failed.append(cmd)
        if failed:
            self.notice(Step.RESTORE, "Could not undo " + "; ".join(f"`{c}`" for c in failed)
                        + ": what it enabled stays enabled (harmless for the old config).")
            return ()
        return self.tgt.unprepare_cmds

    def _check(self, step: Step, cmd: str) -> str:
        result = self.run(cmd)
        if not result.ok:
            raise _StepFailed(step, f"`{cmd}` failed on {self.host} (exit {result.exit_status})",
                              _tail(result.output))
        return str(result.output)

    def upload(self) -> str | None:
        if self.new is None:
            return None
        with self.step(Step.UPLOAD, "upload to a temp file outside the config's directory"
                       ) as s:
            # In hoststate.temp_dir (made by the lock step), named after this destination so
            # that the next run's sweep finds it if this one is cut off.
            real = self.tgt.real_dest
            name = posixpath.join(hoststate.temp_dir(real), f"{hoststate.state_key(real)}.new")
            tmp = self.remote.upload_temp_beside(name, self.new)
            s.detail = f"{tmp} ({len(self.new)} bytes)"
        return tmp

    def activate(self, tmp: str | None) -> None:
        """Rename + validate in one host-side script (see the module docstring)."""
        t = self.tgt
        self.current = Step.RENAME
        self.emit(StepStarted(self.host, Step.RENAME, f"rename over {t.real_dest}"))
        t0 = time.monotonic()
        journal = hoststate.journal_path(self.options.backup_dir, t.real_dest)
        record = {"time": timestamp(), "dest": t.real_dest, "backup": self.backup,
                  "old_sha256": _sha(self.old) if self.old is not None else None,
                  "new_sha256": _sha(self.new) if self.new is not None else None,
                  "config_id": self.config_id}
        script = activation_script(tmp, t.real_dest, self.backup, t.validate_cmd,
                                   t.enable_cmds if self.old is None else (),
                                   t.disable_cmds, remove_cmds=t.disable_cmds,
                                   reenable_cmds=t.enable_cmds,
                                   expect_sha=_sha(self.old) if self.old is not None else None,
                                   expect_absent=self.old is None,
                                   journal=hoststate.journal_lines(self.options.backup_dir,
                                                                   t.real_dest, record),
                                   clear_journal=journal)
        self.changed = True  # from here on, assume the file may have changed
        try:
            result = self.run(script)
        except BaseException:
            self._record(Step.RENAME, "failed", time.monotonic() - t0, "connection lost", "")
            raise
        total = time.monotonic() - t0
        marks = dict(re.findall(r"^@@sw (renamed|validated)(?: \d+)? (\d{6,})$",
                                result.stdout, re.M))
        output = re.sub(r"^@@sw .*\n?", "", result.stdout, flags=re.M) + result.stderr
        if result.exit_status == CHANGED_MEANWHILE:
            self.changed = False
            self._record(Step.RENAME, "failed", total, "the file changed meanwhile", output)
            raise _StepFailed(Step.RENAME, f"{t.real_dest} changed on {self.host} after it was "
                              "backed up (another deploy, or an edit by hand); the new config "
                              "was not put in place", output)
        if result.exit_status == RENAME_FAILED:
            self.changed = False
            if tmp is not None:
                self.remote.remove(tmp)
            self._record(Step.RENAME, "failed", total, "mv failed", output)
            raise _StepFailed(Step.RENAME, f"Could not rename the new file over {t.real_dest}",
                              output)
        rename_s, validate_s = _split_time(marks, total)
        self._record(Step.RENAME, "ok", rename_s, t.real_dest, "")
        self.emit(StepStarted(self.host, Step.VALIDATE, t.validate_cmd))
        if result.exit_status == 0:
            self._record(Step.VALIDATE, "ok", validate_s, t.validate_cmd, _tail(output))
            return
        if result.exit_status in (VALIDATE_RESTORED, VALIDATE_RESTORE_FAILED):
            restored = result.exit_status == VALIDATE_RESTORED
            self._record(Step.VALIDATE, "failed", validate_s, "the checker refused the config",
                         _tail(output))
            raise _StepFailed(Step.VALIDATE, "restored" if restored else "restore failed",
                              _tail(output))
        # Anything else (sudo refused, the shell died) : we cannot tell what happened.
        self._record(Step.VALIDATE, "failed", validate_s, f"exit {result.exit_status}",
                     _tail(output))
        raise _StepFailed(Step.VALIDATE, "unknown", _tail(output))

    def _record(self, step: Step, status: StepStatus, seconds: float, detail: str,
                output: str) -> None:
        done = StepFinished(self.host, step, status, seconds, detail, output)
        self.steps.append(done)
        self.emit(done)

    def warn_websocket_drop(self) -> None:
        if profile(self.spec.proxy).reload_drops_websockets(self.spec):
            if self.spec.proxy is ProxyKind.CADDY:
                text = ("This reload closes every live WebSocket at once (Caddy without "
                        "stream_close_delay): clients will reconnect together. With Caddy "
                        "2.7+, set --stream-close-delay to keep them open across reloads.")
            else:
                text = ("This restart closes every live WebSocket at once (the node proxy "
                        "restarts): clients will reconnect together.")
            self.notice(Step.RELOAD, text)

    def reload(self) -> None:
        cmd = self.tgt.reload_cmd
        timeout = min(self.options.reload_timeout, self.options.command_timeout)
        with self.step(Step.RELOAD, cmd) as s:
            try:
                result = self.remote.run(cmd, sudo=self.options.sudo, timeout=timeout)
            except ConnectionFailed:
                raise
            except SockwizardError as exc:  # timed out (and killed), or could not run
                self.reload_hung = True
                raise _StepFailed(Step.RELOAD, f"`{cmd}` did not finish within {timeout:g} s "
                                  "and was stopped", exc.message()) from exc
            s.output = _tail(result.output)
            if not result.ok:
                raise _StepFailed(Step.RELOAD, f"`{cmd}` exited {result.exit_status}",
                                  _tail(result.output))
            s.detail = cmd

    def settle_and_probe(self, *, reloaded: bool = True) -> None:
        url = self.probe_url()
        # Without a reload there is no older generation of workers to wait out. nginx's old
        # workers answer for up to ~200 ms after a reload: rather than wait out a quiet period
        # before probing, accept only a probe whose handshake and upgrade both carry the new
        # config's marker, and probe again while an old worker answers.
        quiet = SETTLE_QUIET[self.spec.proxy] if reloaded else 0.0
        verify = quiet > 0 and self.config_id is not None
        with self.step(Step.SETTLE, f"wait until {url} serves config {self.config_id}") as s:
            settled = _guard(Step.SETTLE, lambda: self.checks.settle(
                url, self.spec.path, self.config_id, 0.0 if verify else quiet,
                self.options.settle_timeout, connect_to=self.probe_connect_to()))
            s.detail = f"{settled.detail} after {settled.answers} answer(s)"
            if not settled.ok:
                raise _StepFailed(Step.SETTLE, settled.detail)
        with self.step(Step.PROBE, f"probe {url} (path {self.spec.path})") as s:
            deadline = time.monotonic() + self.options.settle_timeout
            while True:
                report = _guard(Step.PROBE, lambda: self.checks.probe(
                    url, self.spec.path, self.options.probe_timeout,
                    connect_to=self.probe_connect_to()))
                seen = probe_markers(report)
                if not verify or seen is None or all(m == self.config_id for m in seen):
                    break
                if time.monotonic() > deadline:
                    raise _StepFailed(Step.SETTLE, "old workers kept answering the probe "
                                      f"(markers {seen}, want {self.config_id})")
                time.sleep(0.02)
            self.probe_report = report
            if not report.ok:
                reason, evidence, _ = _probe_summary(report)
                raise _StepFailed(Step.PROBE, reason, evidence)
            s.detail = f"Socket.IO connected on {report.transport}"

    def verify_unchanged(self) -> DeployResult:
        title = f"No change on {self.host}: {self.tgt.dest} already has this config."
        if not self.options.probe:
            self.skip(Step.SETTLE, "--no-probe")
            self.skip(Step.PROBE, "--no-probe")
            return self.result(Outcome.UNCHANGED, ExitCode.OK, title)
        try:
            self.settle_and_probe(reloaded=False)
        except _StepFailed as exc:
            return self.result(
                Outcome.UNCHANGED, ExitCode.FAILED,
                f"{title} But the probe through it fails: {exc.title}", detail=exc.output,
                failed_step=exc.step,
                hint="Nothing was changed. Is the proxy running and reloaded with this config? "
                     f"Run `sockwizard diagnose {self.probe_url()}` for the cause.")
        return self.result(Outcome.UNCHANGED, ExitCode.OK, title + " The probe passed.")

    # -- failures -------------------------------------------------------------------------

    def validate_failed(self, exc: _StepFailed) -> DeployResult:
        t = self.tgt
        if exc.title == "restored" and self.verify_restored():
            self.changed = False
            modules = (f" Apache lacks the module(s) {', '.join(t.missing_modules)}."
                       if t.missing_modules and not t.unprepare_cmds else "")
            undone = self.undo_prepare()
            return self.result(
                Outcome.ROLLED_BACK, ExitCode.VALIDATE_ROLLED_BACK,
                f"Validation failed on {self.host}: the checker refused the new config. The "
                f"previous {t.dest} was put back byte for byte at once"
                + (f" and what the deploy enabled was disabled again ({'; '.join(undone)})"
                   if undone else "") + "; nothing was reloaded.",
                detail=exc.output, failed_step=Step.VALIDATE,
                hint=f"Fix what the checker says above (run `{t.validate_cmd}` on the host to "
                     f"see it again), then deploy again.{modules}")
        if exc.title == "unknown":
            # The script did not finish normally: put the old file back from here.
            return self.failed_after_change(_StepFailed(Step.VALIDATE,
                                                        "the validation script failed",
                                                        exc.output))
        return self.rollback_failed(Step.VALIDATE, Step.RESTORE, exc.output,
                                    "restoring the previous file failed")

    def failed_after_change(self, exc: _StepFailed) -> DeployResult:
        codes = {Step.VALIDATE: ExitCode.VALIDATE_ROLLED_BACK,
                 Step.RELOAD: ExitCode.RELOAD_ROLLED_BACK,
                 Step.SETTLE: ExitCode.PROBE_ROLLED_BACK, Step.PROBE: ExitCode.PROBE_ROLLED_BACK}
        what = {Step.VALIDATE: "Validation failed", Step.RELOAD: "Reload failed",
                Step.SETTLE: "The proxy never served the new config",
                Step.PROBE: "The live probe through the new config failed"}[exc.step]
        t = self.tgt
        if not self.options.rollback:
            return self.result(
                Outcome.KEPT, ExitCode.FAILED,
                f"{what} on {self.host} ({exc.title}); the new config was KEPT (--no-rollback).",
                detail=exc.output, failed_step=exc.step,
                hint=f"The previous config is saved at {self.backup or '(none: new file)'} "
                     f"(local copy {self.local_backup}). Restore it with `sockwizard rollback "
                     f"--host {self.host}` if clients suffer.")
        problem = self.rollback(exc.step)
        if problem is not None:
            failed_at, output = problem
            return self.rollback_failed(exc.step, failed_at, exc.output + "\n" + output,
                                        f"{what.lower()} ({exc.title})")
        hints = {
            Step.RELOAD: f"Read the reload output above and the proxy's error log on the host; "
                         f"check that the proxy is running (`{t.reload_cmd}` needs a live "
                         "daemon). Then deploy again.",
            Step.SETTLE: "Check that the reload command reloads the proxy that listens on "
                         f"{self.probe_url()} (--reload-cmd), and that this machine can reach "
                         "it (--probe-url).",
            Step.PROBE: "",
        }
        hint = hints.get(exc.step, "")
        if exc.step is Step.PROBE and self.probe_report is not None:
            _, _, fix = _probe_summary(self.probe_report)
            hint = (fix + " " if fix else "") + "Then deploy again; `sockwizard diagnose " \
                f"{self.probe_url()}` explains the cause in detail."
        if exc.step in (Step.SETTLE, Step.PROBE) and t.shadowing_sites:
            # Detection warned about it before the change: by far the likeliest cause.
            hint = (f"Most likely {', '.join(t.shadowing_sites)} answered instead of the new "
                    f"config (see the warning above). {unshadow_advice(self.spec.proxy)} Then "
                    "deploy again.")
        how = ("put back byte for byte; nothing was reloaded" if exc.step is Step.VALIDATE
               else "restored byte for byte, validated and reloaded")
        if exc.step is Step.VALIDATE:
            hint = (f"Run `{t.validate_cmd}` on the host to see why it fails or hangs, then "
                    "deploy again.")
        return self.result(
            Outcome.ROLLED_BACK, codes[exc.step],
            f"{what} on {self.host} ({exc.title}). Rolled back: the previous {t.dest} was "
            f"{how}.", detail=exc.output, failed_step=exc.step, hint=hint)

    def rollback(self, failed: Step, *, interrupted: bool = False) -> tuple[Step, str] | None:
        """Restore, validate, reload (and settle on the old config). Returns (step, output)
        of the rollback step that failed, or None when the old config is back and live."""
        t = self.tgt
        try:
            with self.step(Step.RESTORE, f"put the previous {t.real_dest} back") as s:
                # A change that removed the file had also disabled it: enable it again.
                reenable = t.enable_cmds if self.new is None else ()
                script = "\n".join(restore_lines(t.real_dest, self.backup, t.disable_cmds,
                                                  reenable))
                result = self.run(script)
                if not result.ok:
                    raise _StepFailed(Step.RESTORE, "restore failed", _tail(result.output))
                if not self.verify_restored():
                    raise _StepFailed(Step.RESTORE, "the restored file differs from the backup")
                self.changed = False
                s.detail = (f"from {self.backup} (verified byte for byte)" if self.backup
                            else "removed the new file (there was none before)")
                s.detail += "".join(f"; {cmd}" for cmd in self.undo_prepare())
            if failed is Step.VALIDATE:
                # The bytes are verified identical and the proxy never loaded the refused
                # config: the host is exactly as before, nothing to check or reload.
                return None
            with self.step(Step.RECHECK, t.validate_cmd) as s:
                result = self.run(t.validate_cmd)
                s.output = _tail(result.output)
                if not result.ok:
                    raise _StepFailed(Step.RECHECK, "the restored config does not validate",
                                      _tail(result.output))
            with self.step(Step.RERELOAD, t.reload_cmd) as s:
                result = self.reload_restored()
                s.output = _tail(result.output)
                if not result.ok:
                    raise _StepFailed(Step.RERELOAD, "reloading the restored config failed",
                                      _tail(result.output))
            old_id = existing_id(self.old.decode("utf-8", "replace")) if self.old else None
            if old_id and self.options.probe and not interrupted:
                # Return only once the old config is what answers again.
                url = self.probe_url()
                with self.step(Step.SETTLE, f"wait until {url} serves config {old_id} again"
                               ) as s:
                    settled = self.checks.settle(url, self.spec.path, old_id,
                                                 SETTLE_QUIET[self.spec.proxy],
                                                 self.options.settle_timeout,
                                                 connect_to=self.probe_connect_to())
                    s.detail = settled.detail
                    if not settled.ok:
                        s.status = "failed"
                        self.notice(Step.SETTLE, "The restored config is in place and reloaded, "
                                                 "but its marker did not come back: "
                                                 + settled.detail)
        except _StepFailed as exc:
            return exc.step, exc.title + ("\n" + exc.output if exc.output else "")
        except SockwizardError as exc:
            return self.current, exc.message()
        except Exception as exc:  # a crashing settle must not hide the restore's outcome
            return self.current, f"sockwizard failed unexpectedly ({type(exc).__name__}: {exc})"
        return None

    def reload_restored(self) -> CommandResult:
        """The rollback's reload. After a reload that hung, the same daemon may hang again:
        say so, and give it one short try instead of the full timeout (item 8, issue #10)."""
        t = self.tgt
        if not self.reload_hung:
            return self.run(t.reload_cmd)
        short = min(RERELOAD_TIMEOUT, self.options.reload_timeout)
        self.notice(Step.RERELOAD, f"The reload of the new config hung; reloading the restored "
                                   f"config once more with a {short:g} s limit.")
        try:
            return self.remote.run(t.reload_cmd, sudo=self.options.sudo, timeout=short)
        except ConnectionFailed:
            raise
        except SockwizardError as exc:
            raise _StepFailed(Step.RERELOAD, f"reloading the restored config hung too (stopped "
                              f"after {short:g} s)", exc.message()) from exc

    def verify_restored(self) -> bool:
        try:
            now = self.remote.read_file(self.tgt.real_dest)
        except SockwizardError:
            return False
        return now == self.old

    def rollback_failed(self, failed: Step, at: Step, output: str, what: str) -> DeployResult:
        t = self.tgt
        backup = self.backup or "(none: the file was new)"
        return self.result(
            Outcome.ROLLBACK_FAILED, ExitCode.ROLLBACK_FAILED,
            f"{what.capitalize()} on {self.host}, and the rollback FAILED at {at.value}: "
            "the host needs attention.",
            detail=output, failed_step=failed,
            hint=f"The previous config is saved on the host at {backup} and locally at "
                 f"{self.local_backup}. Put it back by hand (`sudo cp -p {backup} "
                 f"{t.real_dest}`), run `{t.validate_cmd}` and `{t.reload_cmd}`, or run "
                 f"`sockwizard rollback --host {self.host}` once the cause is fixed.")

    def connection_lost(self, exc: ConnectionFailed) -> DeployResult:
        if not self.changed:
            hint = exc.hint or "Check the host and the network, then run the deploy again."
            if not isinstance(exc, SudoPasswordRequired) and self.current is Step.UPLOAD:
                hint += (f" A temp file may remain in {hoststate.temp_dir(self.tgt.real_dest)}"
                         " (outside every include glob); the next deploy removes it.")
            return self.result(
                Outcome.FAILED, ExitCode.CONNECTION,
                f"{exc.title.rstrip('.')}. The host's config was not changed.",
                detail=exc.detail, failed_step=self.current, hint=hint)
        if self.reconnect is not None and self.options.rollback:
            try:
                self.remote = self.reconnect()
            except SockwizardError:
                pass
            else:
                self.notice(Step.RESTORE, "Reconnected after the connection dropped; rolling "
                                          "back.", "info")
                if self.rollback(Step.RELOAD) is None:
                    return self.result(
                        Outcome.ROLLED_BACK, ExitCode.CONNECTION,
                        f"{exc.title}. Reconnected and rolled back: the previous config was "
                        "restored byte for byte, validated and reloaded.",
                        detail=exc.detail, hint="Check the network, then deploy again.")
        return self.result(
            Outcome.FAILED, ExitCode.CONNECTION,
            f"{exc.title}, after the new config was put in place (it passed the checker if "
            "the validate step finished).", detail=exc.detail,
            hint=f"Run `sockwizard rollback --host {self.host}` to restore the previous config "
                 f"(saved at {self.backup or '(none: new file)'}, local copy "
                 f"{self.local_backup}), or deploy again once the host is reachable.")

    # -- results --------------------------------------------------------------------------

    def _error_result(self, exc: SockwizardError) -> DeployResult:
        outcome = Outcome.FAILED
        if self.changed:
            outcome = Outcome.ROLLBACK_FAILED
        return self.result(outcome, exc.exit_code, exc.title, hint=exc.hint, detail=exc.detail,
                           failed_step=self.steps[-1].step if self.steps else None)

    def result(self, outcome: Outcome, code: ExitCode, title: str, *, hint: str = "",
               detail: str = "", failed_step: Step | None = None) -> DeployResult:
        return DeployResult(
            host=self.host, outcome=outcome, exit_code=code, title=title, hint=hint,
            detail=detail, failed_step=failed_step,
            dest=self.target.dest if self.target else self.options.dest,
            config_id=self.config_id, diff=self.diff, plan=tuple(self.plan),
            backup=self.backup, local_backup=self.local_backup, steps=tuple(self.steps),
            warnings=tuple(self.warnings), probe=self.probe_report,
            seconds=time.monotonic() - self.started)


def _guard(step: Step, check: Callable[[], _T]) -> _T:
    """Run a live check; any exception it raises (a probe tripping over a hostile answer) is a
    failed step, so the transaction rolls back instead of leaving the new config live."""
    try:
        return check()
    except (SockwizardError, _StepFailed):
        raise
    except Exception as exc:
        raise _StepFailed(step, f"the {step.value} crashed ({type(exc).__name__}: {exc})",
                          "sockwizard could not judge the new config, so it counts as failed."
                          ) from exc


def _split_time(marks: dict[str, str], total: float) -> tuple[float, float]:
    """(rename, validate) seconds from the script's nanosecond stamps, else all to validate."""
    try:
        renamed, validated = int(marks["renamed"]), int(marks["validated"])
    except (KeyError, ValueError):
        return 0.0, total
    validate = max(0.0, (validated - renamed) / 1e9)
    return max(0.0, total - validate), validate


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def apply(remote: Remote, spec: DeploySpec, options: DeployOptions, *,
          on_event: EventSink = _ignore, checks: LiveChecks = LIVE,
          probe_host: str = "127.0.0.1", reconnect: Callable[[], Remote] | None = None,
          host: str | None = None) -> DeployResult:
    """Run the transaction on an already open remote (the TUI, the sandbox, the tests)."""
    return Transaction(remote, spec.validated(), options, on_event=on_event, checks=checks,
                       probe_host=probe_host, reconnect=reconnect, host=host).execute()


def open_host(host: str, connect: ConnectOptions) -> Remote:
    from wizard.remote import open_remote

    return open_remote(
        host, known_hosts=connect.known_hosts, accept_host_key=connect.accept_host_key,
        identity=connect.identity, password=connect.password,
        sudo_password=connect.sudo_password, connect_timeout=connect.connect_timeout,
        passphrase_prompt=connect.passphrase_prompt, ssh_config=connect.ssh_config)


def probe_host_for(host: str, connect: ConnectOptions) -> str:
    """The address the probe uses to reach ``host`` (``local``: loopback)."""
    if host == "local":
        return "127.0.0.1"
    from wizard.ssh import parse_target

    return parse_target(host, ssh_config=connect.ssh_config).host


def deploy_host(host: str, spec: DeploySpec, options: DeployOptions, connect: ConnectOptions,
                *, on_event: EventSink = _ignore, checks: LiveChecks | None = None
                ) -> DeployResult:
    """Connect to ``host`` and run the transaction; never raises for a failed deploy."""
    started = time.monotonic()
    on_event(StepStarted(host, Step.CONNECT, f"connect to {host}"))
    try:
        spec = spec.validated()
        probe_host = probe_host_for(host, connect)
        remote = open_host(host, connect)
    except SockwizardError as exc:
        done = StepFinished(host, Step.CONNECT, "failed", time.monotonic() - started, exc.title,
                            exc.detail)
        on_event(done)
        return DeployResult(host=host, outcome=Outcome.FAILED, exit_code=exc.exit_code,
                            title=exc.title, hint=exc.hint, detail=exc.detail,
                            failed_step=Step.CONNECT, dest=options.dest, steps=(done,),
                            seconds=time.monotonic() - started)
    connected = StepFinished(host, Step.CONNECT, "ok", time.monotonic() - started, remote.name)
    on_event(connected)
    tx = Transaction(remote, spec, options, on_event=on_event,
                     checks=checks if checks is not None else LIVE, probe_host=probe_host,
                     reconnect=lambda: open_host(host, connect), host=host)
    tx.steps.append(connected)
    tx.started = started
    try:
        return tx.execute()
    finally:
        for opened in {id(tx.remote): tx.remote, id(remote): remote}.values():
            with contextlib.suppress(Exception):
                opened.close()


def deploy_many(hosts: Sequence[str], spec: DeploySpec, options: DeployOptions,
                connect: ConnectOptions, *, on_event: EventSink = _ignore,
                checks: LiveChecks | None = None) -> list[DeployResult]:
    """Deploy to every host at once, each its own transaction and backup (threads: the work
    is waiting on the network). Results come back in the order of ``hosts``."""
    if len(set(hosts)) != len(hosts):
        raise BadInput("The same --host is given twice.",
                       "Give each host once: two transactions on one file would race.")
    lock = threading.Lock()

    def sink(event: DeployEvent) -> None:
        with lock:  # one line at a time on stderr, one message at a time in the TUI
            on_event(event)

    if len(hosts) == 1:
        return [deploy_host(hosts[0], spec, options, connect, on_event=sink, checks=checks)]
    with ThreadPoolExecutor(max_workers=min(32, len(hosts)),
                            thread_name_prefix="sockwizard-deploy") as pool:
        futures = [pool.submit(deploy_host, h, spec, options, connect, on_event=sink,
                               checks=checks) for h in hosts]
        return [f.result() for f in futures]


@dataclass(frozen=True)
class RollbackOptions:
    """``sockwizard rollback`` flags: which file (default: the newest backup), and overrides."""

    dest: str | None = None
    validate_cmd: str | None = None
    reload_cmd: str | None = None
    probe_url: str | None = None
    probe: bool = True
    backup_dir: str = DEFAULT_BACKUP_DIR
    state_dir: Path | None = None
    probe_timeout: float = 5.0
    settle_timeout: float = 20.0
    command_timeout: float = 120.0


def parse_index(text: str) -> list[dict[str, Any]]:
    """The entries of index.jsonl that parse (a torn last line is skipped)."""
    entries = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and isinstance(entry.get("dest"), str):
                entries.append(entry)
    return entries


def pick_entry(entries: Sequence[dict[str, Any]], current: Callable[[str], bytes | None],
               dest: str | None) -> dict[str, Any] | None:
    """The newest deploy whose backup differs from what the file holds now and that no
    rollback has undone yet: successive rollbacks walk back through the history, and a deploy
    that was already rolled back automatically (its backup equals the file) is passed over."""
    undone = {e.get("undoes") for e in entries if e.get("kind") == "rollback"}
    entry: dict[str, Any]
    for entry in reversed(entries):
        if entry.get("kind", "deploy") != "deploy" or entry.get("time") in undone:
            continue
        if dest is not None and entry["dest"] != dest:
            continue
        now = current(entry["dest"])
        now_sha = _sha(now) if now is not None else None
        if now_sha != entry.get("sha256"):
            return entry
    return None


def local_entries(state: Path, host: str) -> list[dict[str, Any]]:
    """The local copies' metadata for ``host`` (oldest first), with ``local`` set."""
    directory = state / "backups" / host_key(host)
    entries = []
    for meta in sorted(directory.glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            entry = json.loads(meta.read_text())
            if isinstance(entry, dict) and isinstance(entry.get("dest"), str):
                entry["local"] = str(meta.with_suffix(""))
                entries.append(entry)
    return entries


def rollback_preset(remote: Remote, host: str, options: RollbackOptions, *,
                    backup: str | None = None) -> tuple[Preset, DeploySpec]:
    """Find the backup to restore (the newest one, or the entry of ``backup``) and build the
    guarded transaction that puts it back. Raises BadInput when there is nothing to restore."""
    cache: dict[str, bytes | None] = {}

    def current(path: str) -> bytes | None:
        if path not in cache:
            cache[path] = remote.read_file(path)
        return cache[path]

    def choose(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
        if backup is None:
            return pick_entry(entries, current, options.dest)
        return next((e for e in reversed(entries) if e.get("backup") == backup), None)

    index = remote.read_file(posixpath.join(options.backup_dir, INDEX_NAME))
    entry = choose(parse_index(index.decode("utf-8", "replace")) if index else [])
    source = "host"
    if entry is None:
        entry = choose(local_entries(state_dir(options.state_dir), host))
        source = "local"
    if entry is None:
        where = f" for {options.dest}" if options.dest else ""
        raise BadInput(
            f"Nothing to roll back on {host}{where}: no sockwizard backup differs from the "
            "config there now.",
            f"sockwizard keeps its backups in {options.backup_dir} on the host (index.jsonl) "
            f"and under {state_dir(options.state_dir) / 'backups'} here. Check --host/--dest.")
    content: bytes | None = None
    if entry.get("backup"):
        content = remote.read_file(str(entry["backup"])) if source == "host" else None
        if content is None or _sha(content) != entry.get("sha256"):
            # The host lost (or damaged) its copy: use ours of the same backup.
            local = entry if source == "local" else next(
                (e for e in local_entries(state_dir(options.state_dir), host)
                 if e.get("backup") == entry["backup"]), {})
            with contextlib.suppress(OSError, KeyError):
                content = Path(str(local["local"])).read_bytes()
        if content is None or _sha(content) != entry.get("sha256"):
            raise BadInput(
                f"The backup {entry['backup']} of {entry['dest']} is missing or damaged on "
                f"{host} and has no intact local copy.",
                "Restore the file by hand from another copy; nothing was changed.")
    kind = ProxyKind(str(entry.get("proxy", "nginx")))
    spec = DeploySpec(proxy=kind, path=str(entry.get("path") or "/socket.io/"))
    validate = options.validate_cmd or str(entry.get("validate_cmd") or "")
    reload_cmd = options.reload_cmd or str(entry.get("reload_cmd") or "")
    if not validate or not reload_cmd:
        raise BadInput("The backup index does not say how to validate and reload.",
                       "Pass --validate-cmd and --reload-cmd.")
    dest = str(entry["dest"])
    disable = tuple(str(c) for c in entry.get("disable_cmds") or ())
    enable = tuple(str(c) for c in entry.get("enable_cmds") or ())
    target = HostTarget(dest=dest, real_dest=dest, validate_cmd=validate,
                        reload_cmd=reload_cmd, enable_cmds=enable, disable_cmds=disable,
                        overridden=("backup index",))
    old_id = existing_id(content.decode("utf-8", "replace")) if content is not None else None
    preset = Preset(target=target, content=content, config_id=old_id,
                    entry={"kind": "rollback", "undoes": entry.get("time"),
                           "probe_url": entry.get("probe_url")})
    return preset, spec


def rollback_host(host: str, options: RollbackOptions, connect: ConnectOptions, *,
                  on_event: EventSink = _ignore, checks: LiveChecks | None = None
                  ) -> DeployResult:
    """``sockwizard rollback``: restore the newest backup sockwizard made on ``host``, as a
    guarded transaction of its own (the current file is backed up first)."""
    started = time.monotonic()
    on_event(StepStarted(host, Step.CONNECT, f"connect to {host}"))
    try:
        probe_host = probe_host_for(host, connect)
        remote = open_host(host, connect)
    except SockwizardError as exc:
        done = StepFinished(host, Step.CONNECT, "failed", time.monotonic() - started, exc.title)
        on_event(done)
        return DeployResult(host=host, outcome=Outcome.FAILED, exit_code=exc.exit_code,
                            title=exc.title, hint=exc.hint, detail=exc.detail,
                            failed_step=Step.CONNECT, steps=(done,),
                            seconds=time.monotonic() - started)
    connected = StepFinished(host, Step.CONNECT, "ok", time.monotonic() - started, remote.name)
    on_event(connected)
    try:
        return _restore(remote, host, options, None, on_event=on_event, checks=checks,
                        probe_host=probe_host, started=started, first=(connected,))
    finally:
        with contextlib.suppress(Exception):
            remote.close()


def rollback_result(remote: Remote, result: DeployResult, *, on_event: EventSink = _ignore,
                    checks: LiveChecks | None = None, probe_host: str = "127.0.0.1",
                    options: RollbackOptions | None = None) -> DeployResult:
    """Undo one finished deploy over an open remote (the TUI's Rollback button): restore the
    backup that deploy made, guarded like any deploy."""
    if result.backup is None:
        return DeployResult(host=result.host, outcome=Outcome.FAILED,
                            exit_code=ExitCode.BAD_INPUT,
                            title="This deploy made no backup (the file was new, or nothing "
                                  "changed): there is nothing to restore.")
    # The index lives beside the backups this deploy wrote.
    opts = options or RollbackOptions(backup_dir=posixpath.dirname(result.backup))
    return _restore(remote, result.host, opts, result.backup, on_event=on_event, checks=checks,
                    probe_host=probe_host, started=time.monotonic(), first=())


def _restore(remote: Remote, host: str, options: RollbackOptions, backup: str | None, *,
             on_event: EventSink, checks: LiveChecks | None, probe_host: str, started: float,
             first: tuple[StepFinished, ...]) -> DeployResult:
    try:
        preset, spec = rollback_preset(remote, host, options, backup=backup)
    except SockwizardError as exc:
        return DeployResult(host=host, outcome=Outcome.FAILED, exit_code=exc.exit_code,
                            title=exc.title, hint=exc.hint, detail=exc.detail,
                            failed_step=Step.DETECT, steps=first,
                            seconds=time.monotonic() - started)
    probe_url = options.probe_url or preset.entry.get("probe_url")
    # Going back to "no file" takes sockwizard's Socket.IO route away: nothing to probe (the
    # probe would fail and undo the rollback).
    removes = preset.content is None
    deploy_options = DeployOptions(
        probe_url=probe_url, probe=options.probe and bool(probe_url) and not removes,
        backup_dir=options.backup_dir, state_dir=options.state_dir,
        probe_timeout=options.probe_timeout, settle_timeout=options.settle_timeout,
        command_timeout=options.command_timeout)
    tx = Transaction(remote, spec, deploy_options, on_event=on_event,
                     checks=checks if checks is not None else LIVE, probe_host=probe_host,
                     host=host, preset=preset)
    tx.steps.extend(first)
    tx.started = started
    result = tx.execute()
    if result.outcome in (Outcome.DEPLOYED, Outcome.UNCHANGED):
        result = dataclasses.replace(
            result, title=(f"Rolled back {result.dest} on {host}: removed it, as it did not "
                           f"exist before the deploy of {preset.entry.get('undoes')}."
                           if removes else
                           f"Rolled back {result.dest} on {host} to the config it had before "
                           f"the deploy of {preset.entry.get('undoes')}"
                           + ("; the probe passed." if deploy_options.probe else ".")))
    return result


def combined_exit_code(results: Sequence[DeployResult]) -> ExitCode:
    """The process exit code for several hosts: the most serious one."""
    order = [ExitCode.ROLLBACK_FAILED, ExitCode.CONNECTION, ExitCode.PROBE_ROLLED_BACK,
             ExitCode.RELOAD_ROLLED_BACK, ExitCode.VALIDATE_ROLLED_BACK, ExitCode.FAILED,
             ExitCode.BAD_INPUT]
    codes = {r.exit_code for r in results}
    return next((c for c in order if c in codes), ExitCode.OK)


__all__ = [
    "LIVE",
    "ConnectOptions",
    "DeployEvent",
    "DeployOptions",
    "DeployResult",
    "LiveChecks",
    "Notice",
    "Outcome",
    "PlanItem",
    "SettleResult",
    "Step",
    "StepFinished",
    "StepStarted",
    "Transaction",
    "apply",
    "combined_exit_code",
    "deploy_host",
    "deploy_many",
    "rollback_host",
    "rollback_result",
    "settle_http",
]
