"""Start a sandbox, deploy into it, wait for Ctrl-C, stop it: ``start_sandbox`` and ``Sandbox``.

Called by ``sockwizard sandbox`` (``wizard.commands.sandbox``: ``start_sandbox`` then
``wait_until_interrupted``) and by the TUI's Deploy step (``start_sandbox`` / ``Sandbox.stop``
from a worker thread). The order: the binary is found (or ``MissingTool`` before anything
starts), one demo backend per backend of the spec (each answering with its own id) and the
proxy are spawned in a temp prefix, the real transaction (``wizard.deploy.apply`` over
``LocalRemote``, ``sudo`` off) replaces the placeholder site, and with several backends N
polling sessions prove the rendered stickiness holds. ``stop_all`` is for signal handlers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from wizard.deploy import (
    DeployEvent,
    DeployOptions,
    DeployResult,
    EventSink,
    Outcome,
    apply,
    settle_http,
)
from wizard.errors import BadInput, MissingTool
from wizard.model import DeploySpec, ProxyKind
from wizard.proxies import profile
from wizard.remote import LocalRemote
from wizard.sandbox.fault_kinds import Fault
from wizard.sandbox.faults import FaultPlan, backends_needed, plan_fault
from wizard.sandbox.procs import (
    LOOPBACK,
    Proc,
    SandboxError,
    find_binary,
    free_port,
    spawn,
    wait_drained,
    wait_port,
    workers,
)
from wizard.sandbox.setups import SETUPS, ProxySetup
from wizard.sandbox.spec import Substitution, backend_ids, sandbox_spec

if TYPE_CHECKING:
    from wizard.probe import SessionsResult


AFFINITY_SESSIONS = 12  # polling sessions that must all stay on their backend

# Every sandbox started and not yet stopped, so a signal handler (the TUI on SIGHUP/SIGTERM)
# can stop them all, including one still starting in a worker thread.
_LIVE: list[Sandbox] = []
_LIVE_LOCK = threading.Lock()


@dataclass
class Sandbox:
    """A running sandbox: the proxy's URL, the deploy's result, and everything to stop."""

    kind: ProxyKind
    prefix: Path
    url: str
    path: str
    spec: DeploySpec
    backend_ports: list[int]
    procs: list[Proc] = field(default_factory=list)
    result: DeployResult | None = None
    keep: bool = False
    substitutions: list[Substitution] = field(default_factory=list)
    # With several backends: N polling sessions through the proxy, each of whose four
    # requests must reach the backend that opened it (0 "Session ID unknown").
    affinity: SessionsResult | None = None
    fault: FaultPlan | None = None  # --break: the fault deployed on purpose
    setup: ProxySetup | None = None
    stopped: bool = False

    @property
    def backend_ids(self) -> list[str]:
        return backend_ids(len(self.backend_ports))

    @property
    def affinity_ok(self) -> bool:
        return self.affinity is None or self.affinity.ok == self.affinity.requested

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.ok and self.affinity_ok

    def affinity_line(self) -> str | None:
        """One line on the affinity check, when there was one (CLI and TUI)."""
        a = self.affinity
        if a is None:
            return None
        return (f"affinity: {a.ok}/{a.requested} polling sessions stayed on their backend, "
                f"{a.unknown_session} \"Session ID unknown\"")

    def summary_lines(self) -> list[str]:
        """What the sandbox runs in place of the spec's values, and the affinity check: what
        the CLI prints and the TUI's Deploy step shows under the log."""
        lines = [f"{len(self.backend_ports)} demo server(s): {', '.join(self.backend_ids)}",
                 *(str(sub) for sub in self.substitutions)]
        line = self.affinity_line()
        return [*lines, line] if line else lines

    def stop(self) -> None:
        """Stop every process (proxy first, then the backends) and remove the prefix."""
        self.stopped = True
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()
        self.procs.clear()
        if not self.keep:
            shutil.rmtree(self.prefix, ignore_errors=True)
        with _LIVE_LOCK:
            _LIVE[:] = [b for b in _LIVE if b is not self]  # by identity: fields compare equal

    def deploy(self, spec: DeploySpec, on_event: EventSink | None = None,
               timeout: float = 30.0) -> DeployResult:
        """The real transaction (backup, upload, validate, reload, settle, probe) of
        ``spec``'s rendered config into this sandbox; then, with several backends, the
        affinity check. Also how ``--break … --fix`` deploys the fix."""
        assert self.setup is not None
        setup = self.setup
        options = DeployOptions(
            dest=str(setup.site), validate_cmd=setup.validate_cmd, reload_cmd=setup.reload_cmd,
            probe_url=self.url, backup_dir=str(self.prefix / "backups"),
            state_dir=self.prefix / "state", sudo=False)
        # A proxy whose old workers answer after a reload (settle_quiet): note who they are.
        proxy = next((p for p in self.procs if p.name == self.kind.value), None)
        old = workers(proxy) if proxy and profile(self.kind).settle_quiet > 0 else {}
        self.result = apply(LocalRemote(name="sandbox"), spec, options, host="sandbox",
                            on_event=on_event if on_event is not None else _quiet)
        self.spec, self.affinity = spec, None
        if self.result.outcome is Outcome.DEPLOYED and old:
            # The deploy trusted only probes that carried the new marker; the checks below
            # and the user's own clients check nothing: no old worker may accept them.
            wait_drained(old, urlsplit(self.url).port or 80, timeout)
        if self.result.ok and self.result.config_id:
            # The deploy trusts a probe that went through the new config even while nginx's
            # old workers still answer; someone connecting right now must not meet them.
            settle_http(self.url, spec.path, self.result.config_id,
                        profile(spec.proxy).settle_quiet, timeout)
        if self.result.ok and spec.sticky:
            self.affinity = check_affinity(self.url, spec.path)
        return self.result

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def stop_all() -> int:
    """Stop every sandbox this process started (a signal handler's cleanup); how many."""
    with _LIVE_LOCK:
        boxes = list(_LIVE)
    for box in boxes:
        box.stop()
    return len(boxes)


def check_affinity(url: str, path: str, count: int = AFFINITY_SESSIONS,
                   timeout: float = 5.0) -> SessionsResult:
    """``count`` polling sessions at once through the proxy (the probe's sessions stage):
    each must find its session on every request, as a browser's would."""
    from wizard.probe.load import Endpoint, run_sessions
    from wizard.probe.wire import normalize_path, parse_url

    norm = normalize_path(path)
    return run_sessions(Endpoint(parse_url(url, norm), norm, (), timeout, False), count)


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


def start_sandbox(kind: ProxyKind, base: DeploySpec | None = None, *,
                  on_event: EventSink | None = None, keep: bool = False,
                  timeout: float = 30.0, binary_dirs: Sequence[str] | None = None,
                  fault: Fault | None = None) -> Sandbox:
    """Start one demo backend per backend of the spec and the proxy, deploy the rendered
    config into it, probe, and with several backends check affinity.

    With ``fault`` (``--break``) the broken variation of the config is what the proxy starts
    with (no transaction: it would roll the fault back) and the backends run as the fault
    says; ``wizard.sandbox.breaks`` shows the symptom.

    Returns a running Sandbox (check ``.ok`` / ``.result``); the caller must ``stop()`` it.
    Raises MissingTool before starting anything when the proxy (or node) is not installed;
    ``binary_dirs`` is where the binaries are looked for (by default PATH and the sbin dirs).
    """
    base = base or DeploySpec()
    if fault is not None and kind is ProxyKind.NODE:
        raise BadInput("--break runs nginx, Apache or Caddy.",
                       "Pick one of them with --proxy; the node sandbox installs http-proxy "
                       "with npm first.")
    binary = required_binary(kind, binary_dirs)
    prefix = Path(tempfile.mkdtemp(prefix=f"sockwizard-sandbox-{kind.value}-"))
    # nginx and Apache started as root run their workers as another user, who must reach
    # the temp paths and logs inside.
    prefix.chmod(0o755)
    proxy_port = free_port()
    backend_ports = [free_port() for _ in range(backends_needed(fault, base))]
    spec, subs = sandbox_spec(kind, base, proxy_port, backend_ports)
    plan = plan_fault(fault, spec) if fault is not None else None
    box = Sandbox(kind, prefix, f"http://{LOOPBACK}:{proxy_port}", spec.path, spec,
                  backend_ports, keep=keep, substitutions=subs, fault=plan)
    with _LIVE_LOCK:
        _LIVE.append(box)
    try:
        server_path = plan.backend_path if plan else spec.effective_server_path
        ping = plan.backend_ping_ms if plan else (spec.ping_interval_ms, spec.ping_timeout_ms)
        backends = []
        for port, ident in zip(backend_ports, box.backend_ids, strict=True):
            backends.append(_spawn(box, ident, [
                sys.executable, "-m", "wizard.sandbox", "backend", "--port", str(port),
                "--path", server_path, "--ping-interval", str(ping[0]),
                "--ping-timeout", str(ping[1]), "--id", ident], env=_python_env()))
        box.setup = setup = SETUPS[kind](prefix, proxy_port, binary, plan.spec if plan else spec)
        if plan is not None:
            setup.site.write_text(plan.text)
            box.spec = plan.spec
        proxy = _spawn(box, kind.value, setup.run, env=setup.env, stop_signal=setup.stop_signal)
        for backend, port in zip(backends, backend_ports, strict=True):
            wait_port(backend, port, timeout)
        wait_port(proxy, proxy_port, timeout)
        if setup.extra_port is not None:
            wait_port(proxy, setup.extra_port, timeout)
        if plan is None:
            box.deploy(spec, on_event, timeout)
    except BaseException:
        box.stop()
        raise
    return box


def _spawn(box: Sandbox, name: str, argv: list[str], **kw: Any) -> Proc:
    """spawn() into the box; a box stopped meanwhile (a signal) stops it at once."""
    proc = spawn(name, argv, box.prefix, **kw)
    box.procs.append(proc)
    if box.stopped:
        raise SandboxError("The sandbox was stopped while it started.", "")
    return proc


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
