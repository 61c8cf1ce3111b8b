"""Read a proxy's *live* config into the facts about the one route that serves Socket.IO.

``wizard.diagnose`` calls :func:`read_route` with a :class:`~wizard.remote.Remote` (SSH, this
machine, or an in-memory fake) and gets one :class:`RouteFacts`: which block serves the
Socket.IO path, where it is (file:line), the effective idle timeouts in seconds with the proxy's
defaults applied, whether the WebSocket upgrade can get through, balancing and affinity, the
path the backend sees, and the forwarded headers. The diagnosis rules hold these facts against
what the live probe saw; they never parse config text themselves.

One module per proxy turns its own config language into the same facts:

* ``nginx``  — ``nginx -T`` (the whole tree as nginx itself loaded it) parsed with crossplane;
* ``apache`` — ``-t -D DUMP_INCLUDES`` (the file list), ``-M``, ``-v``, then the files;
* ``caddy``  — ``caddy adapt`` to JSON (semantics) plus the Caddyfile text (line numbers);
* ``node``   — the http-proxy script, read with regular expressions.

Each module has a pure ``facts_from_*`` function (text in, facts out: the table-driven tests
and ``sockwizard diagnose --config`` on a local file use it) and a ``read`` function that fetches
the text over the Remote in as few round trips as possible (each SSH exec costs ~15 ms).
"""

from __future__ import annotations

import re
import secrets
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from wizard.errors import (
    ConnectionFailed,
    RemoteCommandFailed,
    SockwizardError,
    SudoPasswordRequired,
)
from wizard.model import ProxyKind

if TYPE_CHECKING:
    from wizard.remote import CommandResult, Remote

__all__ = [
    "Blocker",
    "ConfigReadError",
    "Listen",
    "RouteFacts",
    "RouteQuery",
    "TimeoutFact",
    "Where",
    "read_route",
]


class ConfigReadError(SockwizardError):
    """The proxy's config could not be read or understood (the diagnosis goes on without it)."""


# --------------------------------------------------------------------------- the facts


@dataclass(frozen=True)
class Where:
    """A place in the config: file, line (None when the format has none) and the text there."""

    file: str
    line: int | None = None
    text: str = ""

    def __str__(self) -> str:
        place = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{place} `{self.text}`" if self.text else place


@dataclass(frozen=True)
class TimeoutFact:
    """One effective idle timeout of the route, with the proxy's default applied when absent.

    ``seconds`` None means "never times out". ``where`` is empty when the default applies.
    ``applies_to`` says which traffic it cuts ("WebSocket and long-polling", "long-polling").
    """

    seconds: float | None
    directive: str
    applies_to: str
    where: tuple[Where, ...] = ()
    default_note: str = ""  # e.g. "nginx's default is 60 s"

    @property
    def is_default(self) -> bool:
        return not self.where


@dataclass(frozen=True)
class Blocker:
    """Why the WebSocket upgrade cannot get through this route, and the lines that fix it."""

    reason: str
    where: tuple[Where, ...]
    fix: str


@dataclass(frozen=True)
class Listen:
    """One address the proxy listens on, per its config."""

    port: int
    tls: bool
    where: Where
    address: str = ""


@dataclass(frozen=True)
class RouteQuery:
    """What to look for: the Socket.IO path and the URL the clients (and the probe) use."""

    path: str = "/socket.io/"
    host: str = "localhost"
    port: int = 80
    tls: bool = False


@dataclass(frozen=True)
class BackendCheck:
    """Whether a backend address accepts TCP connections *from the proxy host*."""

    address: str
    reachable: bool
    detail: str = ""
    checked: bool = True  # False: the address was refused as hostile or odd, never tried


@dataclass(frozen=True)
class RouteFacts:
    """Everything the diagnosis needs to know about the route that serves the Socket.IO path.

    ``route`` None means no block of the chosen server/vhost/site handles the path at all;
    ``proxied`` False means a block handles it but does not forward it (files, a redirect).
    """

    proxy: ProxyKind
    source: str  # how the config was read, e.g. "nginx -T -c /etc/nginx/nginx.conf"
    files: tuple[str, ...] = ()
    version: str | None = None
    server: Where | None = None  # the server block / vhost / site that answers the URL
    server_tls: bool = False
    listens: tuple[Listen, ...] = ()
    route: Where | None = None
    route_desc: str = ""  # "location /socket.io/", "ProxyPass /socket.io/", "handle /socket.io/*"
    proxied: bool = False
    upstream: Where | None = None  # proxy_pass / ProxyPass target / reverse_proxy / target:
    upstream_path: str | None = None  # the path the backend sees for a request to ``path``
    backends: tuple[str, ...] = ()
    backends_where: Where | None = None  # the upstream / balancer / BACKENDS block
    affinity: str | None = None  # "hash $remote_addr consistent", "lb_policy cookie", ...
    affinity_problem: str | None = None  # why the affinity that is there does not stick
    ws_idle_timeout: TimeoutFact | None = None
    poll_timeout: TimeoutFact | None = None
    upgrade_blockers: tuple[Blocker, ...] = ()
    forwarded_proto: bool | None = None  # X-Forwarded-Proto reaches the backend (None: unknown)
    forwarded_host: bool | None = None  # the client's Host (or X-Forwarded-Host) reaches it
    forward_fix: str = ""  # the lines that add the missing forwarded headers
    elsewhere: Where | None = None  # a Socket.IO route that exists in *another* server block
    error_handler: bool | None = None  # http-proxy: proxy.on('error') (None: not applicable)
    backend_checks: tuple[BackendCheck, ...] = ()
    notes: tuple[str, ...] = ()
    # Per-proxy hints for writing fixes in the right place (e.g. the upstream block's name).
    hints: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["proxy"] = self.proxy.value
        out["hints"] = dict(self.hints)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RouteFacts:
        """The inverse of ``to_dict``; missing keys take their defaults (test case files)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown RouteFacts keys: {sorted(unknown)}")
        values: dict[str, Any] = dict(data)
        values["proxy"] = ProxyKind(values.get("proxy", "nginx"))
        for key in ("server", "route", "upstream", "backends_where", "elsewhere"):
            if values.get(key) is not None:
                values[key] = _where(values[key])
        for key in ("ws_idle_timeout", "poll_timeout"):
            if values.get(key) is not None:
                raw = dict(values[key])
                raw["where"] = tuple(_where(w) for w in raw.get("where", ()))
                values[key] = TimeoutFact(**raw)
        if "upgrade_blockers" in values:
            values["upgrade_blockers"] = tuple(
                Blocker(b["reason"], tuple(_where(w) for w in b.get("where", ())),
                        b.get("fix", ""))
                for b in values["upgrade_blockers"])
        if "listens" in values:
            values["listens"] = tuple(
                Listen(x["port"], x.get("tls", False), _where(x["where"]), x.get("address", ""))
                for x in values["listens"])
        if "backend_checks" in values:
            values["backend_checks"] = tuple(BackendCheck(**x) for x in values["backend_checks"])
        for key in ("files", "backends", "notes"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def _where(raw: Any) -> Where:
    if isinstance(raw, Where):
        return raw
    if isinstance(raw, str):
        return Where(raw)
    return Where(raw["file"], raw.get("line"), raw.get("text", ""))


# --------------------------------------------------------------------------- helpers


def line_of(text: str, offset: int) -> int:
    """1-based line number of a character offset."""
    return text.count("\n", 0, offset) + 1


def expand_groups(template: str, match: re.Match[str]) -> str:
    """``$1``..``$9`` in a rewrite target -> the regex groups of ``match``."""
    return re.sub(r"\$(\d)", lambda g: match.group(int(g.group(1))) or "", template)


def join_upstream_path(base: str, rest: str) -> str:
    """A proxy target's path plus what is left of the request path after the route prefix."""
    if not base:
        base = "/"
    if base.endswith("/") and rest.startswith("/"):
        return base + rest[1:]
    return base + rest


# Caps for reading a config tree from a host whose files may be hostile (an include loop, a
# symlink to /dev/zero, a FIFO, a 64 GB sparse file, a 50 MB "script"): every file is stat'ed
# first, only regular files are read, each through `head -c`, and the whole read has a file
# count, a byte total and a deadline. Real configs are far below these.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_TOTAL_BYTES = 16 * 1024 * 1024
MAX_FILES = 256
MAX_PATH_CHARS = 4096
CONFIG_DEADLINE_S = 30.0
COMMAND_TIMEOUT_S = 30.0


class ReadBudget:
    """What one config read may still spend: wall time, files and bytes (shared by all of a
    reader's round trips). Files refused on the way are remembered as notes."""

    def __init__(self, deadline_s: float = CONFIG_DEADLINE_S, *,
                 max_file_bytes: int = MAX_FILE_BYTES, max_total_bytes: int = MAX_TOTAL_BYTES,
                 max_files: int = MAX_FILES) -> None:
        self.seconds = deadline_s
        self.deadline = time.monotonic() + deadline_s
        self.max_file_bytes = max_file_bytes
        self.bytes_left = max_total_bytes
        self.files_left = max_files
        self.notes: list[str] = []
        self.refused: list[str] = []  # files skipped as not regular or too large

    def timeout(self, cap: float = COMMAND_TIMEOUT_S) -> float:
        """The timeout for the next remote command; ConfigReadError when time is up."""
        left = self.deadline - time.monotonic()
        if left <= 0.05:
            raise ConfigReadError(
                f"Reading the config took longer than {self.seconds:g} s",
                "The host or its proxy binary is slow or hangs (a FIFO or device in the config "
                "tree?); run the proxy's config test on the host.")
        return min(cap, left)

    def spend(self, files: int, size: int) -> None:
        self.files_left -= files
        self.bytes_left -= size


def path_problem(path: str) -> str | None:
    """Why a path taken from a config or from the host must not go into a command, or None.
    (It is still shell-quoted; this refuses what quoting cannot make sensible.)"""
    if not path:
        return "an empty path"
    if len(path) > MAX_PATH_CHARS:
        return f"a path of {len(path)} characters (at most {MAX_PATH_CHARS})"
    if any(c in path for c in "\0\n\r"):
        return f"a path with a NUL or line break ({path[:60]!r})"
    if not path.startswith("/"):
        return f"a relative path ({path[:60]!r})"
    return None


def sudo_run(remote: Remote, command: str, *, timeout: float = COMMAND_TIMEOUT_S,
             budget: ReadBudget | None = None) -> CommandResult:
    """Run with sudo; fall back to the login user when sudo wants a password nobody gave
    (reading world-readable configs still works, and the error says what was missing)."""
    if budget is not None:
        timeout = budget.timeout(timeout)
    try:
        return remote.run(command, sudo=True, timeout=timeout)
    except SudoPasswordRequired:
        return remote.run(command, sudo=False, timeout=timeout)


def capped(command: str, limit: int, marker: str) -> str:
    """``command`` with its stdout cut at ``limit`` bytes and ``MARKER STATUS`` appended, so a
    cut output (no marker at the end) is told apart from a whole one."""
    return f"{{ {command}; echo \"{marker} $?\"; }} | head -c {int(limit)}"


def uncap(stdout: str, marker: str) -> tuple[str, int | None]:
    """Split what :func:`capped` printed: (output, status), status None when it was cut."""
    body, sep, tail = stdout.rpartition(marker + " ")
    status = tail.strip()
    if not sep or not status.lstrip("-").isdigit():
        return stdout, None
    return body, int(status)


def new_marker() -> str:
    return f"==sockwizard-{secrets.token_hex(6)}=="


def cat_files(remote: Remote, paths: Sequence[str],
              budget: ReadBudget | None = None) -> dict[str, str]:
    """Read several files (globs allowed) in one round trip; absent files are left out.

    Globs are expanded by the remote shell with IFS empty and without re-parsing, so a path
    from a config cannot inject a command (parameter expansion never runs ``$(...)``); paths
    are validated first (:func:`path_problem`). Only regular files are read (``[ -f ]`` does
    not open a FIFO or a device), each at most ``budget.max_file_bytes`` through ``head -c``,
    and no more files or bytes than the budget has left; what is skipped is noted in the
    budget.
    """
    budget = budget if budget is not None else ReadBudget()
    wanted = []
    for p in paths:
        problem = path_problem(p)
        if problem is not None:
            budget.notes.append(f"not read: {problem}")
        else:
            wanted.append(p)
    if not wanted or budget.files_left <= 0 or budget.bytes_left <= 0:
        if wanted:
            budget.notes.append(f"not read (file or size budget spent): {', '.join(wanted)[:300]}")
        return {}
    marker = new_marker()
    per_file = budget.max_file_bytes
    m = shlex.quote(marker)
    nl = shlex.quote("\n")
    # n: files left, t: bytes left. A file that is not regular, too big or over budget gets a
    # `MARKER! reason path` line instead of its content.
    script = (f"IFS=; n={budget.files_left}; t={budget.bytes_left}; "
              f"skip() {{ printf '%s! %s %s\\n' {m} \"$1\" \"$2\"; }}; " + " ".join(
        f"p={shlex.quote(p)}; for f in $p; do "
        f"case $f in *{nl}*) continue;; esac; "
        "[ -e \"$f\" ] || continue; "
        "[ -f \"$f\" ] || { skip not-a-regular-file \"$f\"; continue; }; "
        "[ $n -gt 0 ] || { skip over-file-budget \"$f\"; continue; }; "
        "s=$(stat -L -c %s -- \"$f\" 2>/dev/null) || s=0; "
        f"[ \"$s\" -le {per_file} ] 2>/dev/null || {{ skip too-large:$s \"$f\"; continue; }}; "
        # Size 0 may be a pseudo file (/proc) whose reads never end: read at most 64 KiB.
        "c=$s; [ \"$c\" -gt 0 ] || c=65536; "
        "[ \"$c\" -le $t ] || { skip over-size-budget \"$f\"; continue; }; "
        "n=$((n-1)); t=$((t-c)); "
        f"printf '%s %s\\n' {m} \"$f\"; "
        f"r=$(readlink -f -- \"$f\") && printf '%s= %s\\n' {m} \"$r\"; "
        "head -c \"$c\" -- \"$f\"; echo; done;"
        for p in wanted
    ))
    result = sudo_run(remote, f"sh -c {shlex.quote(script)}", budget=budget)
    out: dict[str, str] = {}
    real: set[str] = set()
    chunks = re.split(rf"^{re.escape(marker)}([!=]?) (.*)\n", result.stdout, flags=re.M)
    path = ""
    for i in range(1, len(chunks) - 2, 3):
        kind, name, body = chunks[i], chunks[i + 1], chunks[i + 2]
        if kind == "!":
            why, _, skipped = name.partition(" ")
            budget.notes.append(f"not read: {skipped} ({why.replace('-', ' ')})")
            if not why.startswith("over-"):
                budget.refused.append(skipped)
            continue
        text = body[:-1] if body.endswith("\n") else body  # the echo we added
        if kind == "":
            path = name
            out[path] = text
        elif name in real:  # the same file under another name (a symlink): read once
            out.pop(path, None)
            budget.notes.append(f"not read twice: {path} (the same file as {name})")
        else:
            real.add(name)
            out[path] = text
    budget.spend(len(out), sum(len(t) for t in out.values()))
    return out


def read_route(
    remote: Remote, kind: ProxyKind, query: RouteQuery, config_path: str | None = None,
    *, deadline_s: float = CONFIG_DEADLINE_S,
) -> RouteFacts:
    """Fetch the live config of ``kind`` over ``remote`` and return the facts for ``query``.

    The whole read has ``deadline_s`` and the caps of :class:`ReadBudget`. Raises
    ConfigReadError when the config cannot be read or parsed, or a remote command failed or
    timed out; a lost connection (ConnectionFailed, ...) passes through unchanged.
    """
    if config_path is not None:
        problem = path_problem(config_path)
        if problem is not None:
            raise ConfigReadError(f"--config: {problem}", "Give the config file's absolute path.")
    budget = ReadBudget(deadline_s)
    try:
        facts = _read(remote, kind, query, config_path, budget)
    except ConnectionFailed:
        raise
    except RemoteCommandFailed as exc:  # a timeout, a refused sudo: the probe's findings stand
        raise ConfigReadError(exc.title, exc.hint, detail=exc.detail) from None
    if budget.notes:
        from dataclasses import replace

        facts = replace(facts, notes=(*facts.notes, *dict.fromkeys(budget.notes)))
    return facts


def _read(remote: Remote, kind: ProxyKind, query: RouteQuery, config_path: str | None,
          budget: ReadBudget) -> RouteFacts:
    if kind is ProxyKind.NGINX:
        from wizard.configread import nginx

        return nginx.read(remote, query, config_path, budget)
    if kind is ProxyKind.APACHE:
        from wizard.configread import apache

        return apache.read(remote, query, config_path, budget)
    if kind is ProxyKind.CADDY:
        from wizard.configread import caddy

        return caddy.read(remote, query, config_path, budget)
    from wizard.configread import node

    return node.read(remote, query, config_path, budget)
