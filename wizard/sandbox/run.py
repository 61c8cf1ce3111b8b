"""Start a sandbox, deploy into it, wait for Ctrl-C, stop it: ``start_sandbox`` and ``Sandbox``.

Called by ``sockwizard sandbox`` (``wizard.commands.sandbox``: ``start_sandbox`` then
``wait_until_interrupted``) and by the TUI's Deploy step (``start_sandbox`` / ``Sandbox.stop``
from a worker thread). The order: the binary is found (or ``MissingTool`` before anything
starts), the demo backend and the proxy are spawned in a temp prefix, and the real transaction
(``wizard.deploy.apply`` over ``LocalRemote``, ``sudo`` off) replaces the placeholder site.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from wizard.deploy import (
    DeployEvent,
    DeployOptions,
    DeployResult,
    EventSink,
    apply,
    settle_http,
)
from wizard.errors import MissingTool
from wizard.model import Backend, DeploySpec, Layout, ProxyKind, Scope
from wizard.proxies import profile
from wizard.remote import LocalRemote
from wizard.sandbox.procs import LOOPBACK, Proc, find_binary, free_port, spawn, wait_port
from wizard.sandbox.setups import SETUPS


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


def required_binary(kind: ProxyKind, dirs: Sequence[str] | None = None) -> str:
    """The binary for ``kind`` (looked for in ``dirs``, by default PATH and the sbin
    directories), or MissingTool naming the install command."""
    prof = profile(kind)
    names = prof.daemon_binaries
    for name in names:
        found = find_binary(name, dirs)
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
                  timeout: float = 30.0, binary_dirs: Sequence[str] | None = None) -> Sandbox:
    """Start the backend and the proxy, deploy the rendered config into it, and probe.

    Returns a running Sandbox (check ``.ok`` / ``.result``); the caller must ``stop()`` it.
    Raises MissingTool before starting anything when the proxy (or node) is not installed;
    ``binary_dirs`` is where the binaries are looked for (by default PATH and the sbin dirs).
    """
    binary = required_binary(kind, binary_dirs)
    prefix = Path(tempfile.mkdtemp(prefix=f"sockwizard-sandbox-{kind.value}-"))
    # nginx and Apache started as root run their workers as another user, who must reach
    # the temp paths and logs inside.
    prefix.chmod(0o755)
    proxy_port, backend_port = free_port(), free_port()
    spec = sandbox_spec(kind, base, proxy_port, backend_port)
    box = Sandbox(kind, prefix, f"http://{LOOPBACK}:{proxy_port}", spec.path, spec,
                  backend_port, keep=keep)
    try:
        backend = spawn("backend", [sys.executable, "-m", "wizard.sandbox", "backend",
                                    "--port", str(backend_port),
                                    "--path", spec.effective_server_path,
                                    "--ping-interval", str(spec.ping_interval_ms),
                                    "--ping-timeout", str(spec.ping_timeout_ms)], prefix,
                        env=_python_env())
        box.procs.append(backend)
        setup = SETUPS[kind](prefix, proxy_port, binary, spec)
        proxy = spawn(kind.value, setup.run, prefix, setup.env, setup.stop_signal)
        box.procs.append(proxy)
        wait_port(backend, backend_port, timeout)
        wait_port(proxy, proxy_port, timeout)
        if setup.extra_port is not None:
            wait_port(proxy, setup.extra_port, timeout)
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
    root = str(Path(__file__).resolve().parents[2])  # wizard/sandbox/run.py -> the root
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
