"""A throwaway proxy + Socket.IO server on loopback, so anyone can try the whole deploy flow.

Called by ``sockwizard sandbox --proxy KIND`` (``wizard.commands.sandbox``) and by the TUI
(``start_sandbox`` / ``Sandbox.stop`` from a worker thread). Everything lives in one temp prefix
and on free loopback ports, and nothing needs root:

1. a demo Socket.IO server: python-socketio on aiohttp, run as ``python -m wizard.sandbox
   backend`` (answers ``echo`` with an acknowledgement, like the test rig's Node server);
2. the chosen proxy, started from a main config written into the prefix whose site file is a
   placeholder answering 503;
3. the real transaction (``wizard.deploy.apply`` over ``LocalRemote``, ``sudo`` off) replaces
   that site file with the rendered config: backup, upload, rename, validate, reload, settle,
   probe — the same code path as a deploy over SSH;
4. ``Sandbox.stop()`` terminates every process it started (they are Popen children, waited
   for) and removes the prefix.

A missing proxy binary raises ``MissingTool`` with the install command before anything starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from wizard.deploy import (
    DeployEvent,
    DeployOptions,
    DeployResult,
    EventSink,
    apply,
    settle_http,
)
from wizard.errors import MissingTool, SockwizardError
from wizard.model import Backend, DeploySpec, Layout, ProxyKind, Scope
from wizard.proxies import profile
from wizard.remote import LocalRemote

LOOPBACK = "127.0.0.1"
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
APACHE_MODULE_DIRS = ("/usr/lib/apache2/modules", "/usr/lib64/httpd/modules",
                      "/usr/lib/httpd/modules", "/usr/local/apache2/modules")
NGINX_TEMPS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class SandboxError(SockwizardError):
    """A sandbox process would not start; the detail carries its log."""


def find_binary(name: str) -> str | None:
    """``name`` in PATH or the sbin directories (a non-root PATH often lacks /usr/sbin)."""
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(SBIN)
    return shutil.which(name, path=path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.2):
        return True
    return False


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


@dataclass
class Proc:
    """One process the sandbox started, logging to a file in the prefix."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    stop_signal: int = signal.SIGTERM

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 5.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, self.stop_signal)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        else:
            self.popen.wait()
        # Children that outlived their leader (nginx/apache workers) go with the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)


def _spawn(name: str, argv: list[str], prefix: Path, env: dict[str, str] | None = None,
           stop_signal: int = signal.SIGTERM) -> Proc:
    log = prefix / "logs" / f"{name}.log"
    log.parent.mkdir(exist_ok=True)
    handle: IO[bytes] = log.open("ab")
    try:
        popen = subprocess.Popen(argv, cwd=prefix, env=env, stdin=subprocess.DEVNULL,
                                 stdout=handle, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    finally:
        handle.close()
    return Proc(name, popen, log, stop_signal)


def _wait_port(proc: Proc, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pause = 0.01
    while time.monotonic() < deadline:
        if not proc.alive():
            raise SandboxError(f"The sandbox's {proc.name} exited at start.",
                               "Its log is below; fix what it says, or try another proxy.",
                               detail=proc.log_tail())
        if _port_open(port):
            return
        time.sleep(pause)
        pause = min(pause * 1.5, 0.1)
    raise SandboxError(f"The sandbox's {proc.name} did not listen on {LOOPBACK}:{port} within "
                       f"{timeout:g} s.", "Its log is below.", detail=proc.log_tail())


# --------------------------------------------------------------------------------------------
# Per-proxy main configs (the placeholder site is replaced by the deploy)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxySetup:
    """How to run, check and reload one proxy living in the prefix."""

    site: Path
    run: list[str]
    validate_cmd: str
    reload_cmd: str
    env: dict[str, str] | None = None
    stop_signal: int = signal.SIGTERM
    extra_port: int | None = None  # Caddy's admin API must be up too


def _nginx(prefix: Path, port: int, binary: str, spec: DeploySpec) -> ProxySetup:
    for name in NGINX_TEMPS:
        (prefix / "temp" / name).mkdir(parents=True, exist_ok=True)
    (prefix / "logs").mkdir(exist_ok=True)
    (prefix / "sites").mkdir(exist_ok=True)
    temps = "\n".join(f"    {n}_temp_path {prefix / 'temp' / n};" for n in NGINX_TEMPS)
    (prefix / "nginx.conf").write_text(f"""# sockwizard sandbox: nginx under {prefix}
worker_processes 1;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'logs' / 'error.log'} notice;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix / 'logs' / 'access.log'};
{temps}
    include {prefix / 'sites'}/*.conf;
}}
""")
    site = prefix / "sites" / "sockwizard.conf"
    site.write_text(f"server {{ listen {LOOPBACK}:{port}; return 503 \"sandbox starting\\n\"; }}\n")
    base = [binary, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-e", "stderr"]
    return ProxySetup(site, [*base, "-g", "daemon off;"], shlex.join([*base, "-t"]),
                      shlex.join([*base, "-s", "reload"]))


def _apache(prefix: Path, port: int, binary: str, spec: DeploySpec) -> ProxySetup:
    module_dir = next((d for d in APACHE_MODULE_DIRS if Path(d, "mod_proxy.so").is_file()), None)
    if module_dir is None:
        raise MissingTool("Apache's modules (mod_proxy.so) were not found.",
                          profile(spec.proxy).install_hint)
    for sub in ("logs", "run", "sites"):
        (prefix / sub).mkdir(exist_ok=True)
    loads = "\n".join(f"LoadModule {m}_module {module_dir}/mod_{m}.so"
                      for m in ["mpm_event", "authz_core", *profile(spec.proxy).modules(spec)]
                      if Path(module_dir, f"mod_{m}.so").is_file())
    (prefix / "httpd.conf").write_text(f"""# sockwizard sandbox: Apache under {prefix}
ServerRoot "{prefix}"
PidFile "{prefix / 'httpd.pid'}"
DefaultRuntimeDir "{prefix / 'run'}"
Mutex file:{prefix / 'run'} default
ServerName {LOOPBACK}
{loads}
Listen {LOOPBACK}:{port}
ErrorLog "{prefix / 'logs' / 'error.log'}"
LogLevel warn
StartServers 1
GracefulShutdownTimeout 3
IncludeOptional "{prefix / 'sites'}/*.conf"
""")
    site = prefix / "sites" / "sockwizard.conf"
    site.write_text("# placeholder: the sandbox deploy replaces this file\n")
    base = [binary, "-d", str(prefix), "-f", str(prefix / "httpd.conf")]
    env = dict(os.environ, APACHE_RUN_DIR=str(prefix / "run"))
    prefix_env = f"env APACHE_RUN_DIR={shlex.quote(str(prefix / 'run'))} "
    return ProxySetup(site, [*base, "-DFOREGROUND"], prefix_env + shlex.join([*base, "-t"]),
                      prefix_env + shlex.join([*base, "-k", "graceful"]), env=env,
                      stop_signal=signal.SIGTERM)


def _caddy(prefix: Path, port: int, binary: str, spec: DeploySpec) -> ProxySetup:
    for sub in ("config", "data", "sites"):
        (prefix / sub).mkdir(exist_ok=True)
    admin = free_port()
    (prefix / "Caddyfile").write_text(f"""# sockwizard sandbox: Caddy under {prefix}
{{
	admin {LOOPBACK}:{admin}
	auto_https off
}}

import {prefix / 'sites'}/*
""")
    site = prefix / "sites" / "sockwizard.caddy"
    site.write_text(f"http://{LOOPBACK}:{port} {{\n\tbind {LOOPBACK}\n\trespond \"sandbox "
                    "starting\" 503\n}\n")
    env_vars = {"XDG_CONFIG_HOME": str(prefix / "config"), "XDG_DATA_HOME": str(prefix / "data"),
                "HOME": str(prefix)}
    cfg = ["--config", str(prefix / "Caddyfile"), "--adapter", "caddyfile"]
    env_prefix = "env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env_vars.items()) + " "
    return ProxySetup(
        site, [binary, "run", *cfg], env_prefix + shlex.join([binary, "validate", *cfg]),
        env_prefix + shlex.join([binary, "reload", *cfg, "--address", f"{LOOPBACK}:{admin}",
                                 "--force"]),
        env=dict(os.environ, **env_vars), extra_port=admin)


# Restarts proxy.js on SIGHUP ("reload" for a node proxy), stops it on SIGTERM.
SUPERVISOR_JS = r"""'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const [script, pidfile] = process.argv.slice(2);
let child = null;
function start() {
  child = spawn(process.execPath, [script], { stdio: 'inherit' });
}
function stop(then) {
  const c = child;
  if (!c || c.exitCode !== null) { then(); return; }
  const killer = setTimeout(() => c.kill('SIGKILL'), 2000);
  c.once('exit', () => { clearTimeout(killer); then(); });
  c.kill('SIGTERM');
}
process.on('SIGHUP', () => stop(start));
process.on('SIGTERM', () => stop(() => process.exit(0)));
process.on('SIGINT', () => stop(() => process.exit(0)));
fs.writeFileSync(pidfile, String(process.pid) + '\n');
start();
"""


def _node(prefix: Path, port: int, binary: str, spec: DeploySpec) -> ProxySetup:
    (prefix / "supervise.js").write_text(SUPERVISOR_JS)
    site = prefix / "proxy.js"
    site.write_text(
        "'use strict';\nrequire('http').createServer((req, res) => { res.writeHead(503); "
        f"res.end('sandbox starting\\n'); }}).listen({port}, '{LOOPBACK}');\n"
        "process.on('SIGTERM', () => process.exit(0));\n")
    pidfile = prefix / "supervise.pid"
    return ProxySetup(site, [binary, str(prefix / "supervise.js"), str(site), str(pidfile)],
                      shlex.join([binary, "--check", str(site)]),
                      f"kill -HUP \"$(cat {shlex.quote(str(pidfile))})\"")


# Every kind has its own main config (tests/test_deploy_registry.py checks that none is
# missing): no kind falls through to another's.
SETUPS: dict[ProxyKind, Callable[[Path, int, str, DeploySpec], ProxySetup]] = {
    ProxyKind.NGINX: _nginx,
    ProxyKind.APACHE: _apache,
    ProxyKind.CADDY: _caddy,
    ProxyKind.NODE: _node,
}


# --------------------------------------------------------------------------------------------
# The sandbox
# --------------------------------------------------------------------------------------------


@dataclass
class Sandbox:
    """A running sandbox: the proxy's URL, the deploy's result, and everything to stop."""

    kind: ProxyKind
    prefix: Path
    url: str
    path: str
    spec: DeploySpec
    backend_port: int
    procs: list[Proc] = field(default_factory=list)
    result: DeployResult | None = None
    keep: bool = False

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.ok

    def stop(self) -> None:
        """Stop every process (proxy first, then the backend) and remove the prefix."""
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()
        self.procs.clear()
        if not self.keep:
            shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def required_binary(kind: ProxyKind) -> str:
    """The binary for ``kind``, or MissingTool naming the install command."""
    prof = profile(kind)
    names = prof.daemon_binaries
    for name in names:
        found = find_binary(name)
        if found:
            return found
    raise MissingTool(f"The sandbox needs {prof.title}, and `{names[0]}` is not installed here.",
                      f"Install it: {prof.install_hint}. Or try another --proxy.")


def sandbox_spec(kind: ProxyKind, base: DeploySpec | None, proxy_port: int,
                 backend_port: int) -> DeploySpec:
    """The user's spec (paths, timeouts, scope...) pointed at the sandbox's own ports. TLS and
    a whole-config layout make no sense here and are dropped."""
    spec = base or DeploySpec()
    return dataclasses.replace(
        spec, proxy=kind, backends=(Backend(LOOPBACK, backend_port),),
        listen_address=LOOPBACK, listen_port=proxy_port, tls_cert=None, tls_key=None,
        layout=Layout.SITE, server_name=None,
        scope=spec.scope if spec.scope is Scope.ALL else Scope.SOCKETIO,
    ).validated()


def start_sandbox(kind: ProxyKind, base: DeploySpec | None = None, *,
                  on_event: EventSink | None = None, keep: bool = False,
                  timeout: float = 30.0) -> Sandbox:
    """Start the backend and the proxy, deploy the rendered config into it, and probe.

    Returns a running Sandbox (check ``.ok`` / ``.result``); the caller must ``stop()`` it.
    Raises MissingTool before starting anything when the proxy (or node) is not installed.
    """
    binary = required_binary(kind)
    prefix = Path(tempfile.mkdtemp(prefix=f"sockwizard-sandbox-{kind.value}-"))
    # nginx and Apache started as root run their workers as another user, who must reach
    # the temp paths and logs inside.
    prefix.chmod(0o755)
    proxy_port, backend_port = free_port(), free_port()
    spec = sandbox_spec(kind, base, proxy_port, backend_port)
    box = Sandbox(kind, prefix, f"http://{LOOPBACK}:{proxy_port}", spec.path, spec,
                  backend_port, keep=keep)
    try:
        backend = _spawn("backend", [sys.executable, "-m", "wizard.sandbox", "backend",
                                     "--port", str(backend_port),
                                     "--path", spec.effective_server_path,
                                     "--ping-interval", str(spec.ping_interval_ms),
                                     "--ping-timeout", str(spec.ping_timeout_ms)], prefix,
                         env=_python_env())
        box.procs.append(backend)
        setup = SETUPS[kind](prefix, proxy_port, binary, spec)
        proxy = _spawn(kind.value, setup.run, prefix, setup.env, setup.stop_signal)
        box.procs.append(proxy)
        _wait_port(backend, backend_port, timeout)
        _wait_port(proxy, proxy_port, timeout)
        if setup.extra_port is not None:
            _wait_port(proxy, setup.extra_port, timeout)
        options = DeployOptions(
            dest=str(setup.site), validate_cmd=setup.validate_cmd, reload_cmd=setup.reload_cmd,
            probe_url=box.url, backup_dir=str(prefix / "backups"), state_dir=prefix / "state",
            sudo=False)
        box.result = apply(LocalRemote(name="sandbox"), spec, options, host="sandbox",
                           on_event=on_event if on_event is not None else _quiet)
        if box.result.ok and box.result.config_id:
            # The deploy trusts a probe that went through the new config even while nginx's
            # old workers still answer; someone connecting right now must not meet them.
            settle_http(box.url, spec.path, box.result.config_id,
                        profile(spec.proxy).settle_quiet, timeout)
    except BaseException:
        box.stop()
        raise
    return box


def _quiet(event: DeployEvent) -> None:
    """No progress wanted."""


def _python_env() -> dict[str, str]:
    """The backend runs ``-m wizard.sandbox`` from this very package, installed or not."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def wait_until_interrupted(box: Sandbox, *, poll: Callable[[], None] | None = None) -> str:
    """Block until Ctrl-C/SIGTERM, or until a sandbox process dies (returns why)."""
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        while not stop:
            dead = [p for p in box.procs if not p.alive()]
            if dead:
                return f"the sandbox's {dead[0].name} exited:\n{dead[0].log_tail()}"
            if poll is not None:
                poll()
            time.sleep(0.5)
    except KeyboardInterrupt:
        return "interrupted"
    finally:
        signal.signal(signal.SIGTERM, previous)
    return "terminated"


# --------------------------------------------------------------------------------------------
# The demo backend (python -m wizard.sandbox backend --port P --path /socket.io/)
# --------------------------------------------------------------------------------------------


def serve_backend(port: int, path: str, ping_interval_ms: int, ping_timeout_ms: int) -> None:
    """A Socket.IO server on python-socketio + aiohttp: "hello" on connect, "echo" acked."""
    import asyncio

    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*",
                               ping_interval=ping_interval_ms / 1000,
                               ping_timeout=ping_timeout_ms / 1000)
    app = web.Application()
    sio.attach(app, socketio_path=path.strip("/"))

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, object]) -> None:
        await sio.emit("hello", {"id": "sandbox"}, to=sid)

    @sio.event  # type: ignore[untyped-decorator]
    async def echo(sid: str, data: object) -> object:
        if isinstance(data, dict):
            return {**data, "server": "sandbox"}
        return {"data": data, "server": "sandbox"}

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, LOOPBACK, port).start()
        print(f"READY {port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


def _backend_main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m wizard.sandbox backend")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/socket.io/")
    p.add_argument("--ping-interval", type=int, default=25000)
    p.add_argument("--ping-timeout", type=int, default=20000)
    args = p.parse_args(argv)
    serve_backend(args.port, args.path, args.ping_interval, args.ping_timeout)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["backend"]:
        raise SystemExit("usage: python -m wizard.sandbox backend --port P [--path P]")
    raise SystemExit(_backend_main(sys.argv[2:]))
