"""After a reload: wait until the proxy serves the new config, then probe through it.

Called by the transaction's settle and probe steps (``wizard.deploy.steps``) and its rollback
(``wizard.deploy.recovery``), through ``LiveChecks`` so that unit tests pass fakes; the sandbox
calls ``settle_http`` once more before handing its URL out. Settling polls for the config
marker (``wizard.deploy.marker``) instead of sleeping: how long every answer must carry it is
each proxy's ``settle_quiet``.

The deploy settles on the probe's own handshake (``settle_on_probe``): the Engine.IO polling
handshake's answer carries the marker too, so one HTTP/1.1 connection serves the settle, the
handshake, the WebSocket upgrade and the Socket.IO CONNECT, all from one worker of one config.
A new connection is opened only when an older config answered (nginx's old workers, for
~0.2 s after a reload) or the connection could not be kept. ``settle_http`` (fresh
connections, a quiet period) remains for a config without a marker, the rollback and the
sandbox.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from wizard.deploy.marker import HEADER

if TYPE_CHECKING:
    from wizard.probe import ProbeReport, Stage
    from wizard.probe.wire import HttpResponse


@dataclass(frozen=True)
class SettleResult:
    ok: bool
    seconds: float
    answers: int
    detail: str


class SettleFn(Protocol):
    def __call__(self, url: str, path: str, config_id: str | None, quiet: float,
                 timeout: float, *, connect_to: str | None = None) -> SettleResult: ...


class ProbeFn(Protocol):
    def __call__(self, url: str, path: str, timeout: float, *,
                 connect_to: str | None = None) -> ProbeReport: ...


class PendingProbe(Protocol):
    """A probe past its handshake (``wizard.probe.Run``): what settling needs of it."""

    stages: list[Stage]

    def first_answer(self) -> HttpResponse | None: ...
    def finish(self) -> ProbeReport: ...
    def close(self) -> None: ...


class OpenProbeFn(Protocol):
    def __call__(self, url: str, path: str, timeout: float, *, connect_to: str | None,
                 expect_marker: str | None) -> PendingProbe: ...


@dataclass(frozen=True)
class LiveChecks:
    """How the deploy talks to the proxy after a reload; unit tests pass fakes.

    ``open_probe`` (the probe's connect + handshake, ``Run.finish`` for the rest) lets the
    deploy settle on the probe's own connection; without it (fakes) it settles, then probes."""

    settle: SettleFn
    probe: ProbeFn
    open_probe: OpenProbeFn | None = None


@dataclass
class Settled:
    """``settle_on_probe``'s answer: the settle's result, and the probe to finish on that
    connection (None when it did not settle)."""

    result: SettleResult
    run: PendingProbe | None


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
            return SettleResult(False, now - started, answers, _not_served(timeout, last))
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
                                        _served(status, config_id, got))
                time.sleep(0.01)
                continue
            matched_since = None
            last = _stale(status, got)
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 1.5, 0.2)


def settle_on_probe(open_probe: OpenProbeFn, url: str, path: str, config_id: str | None,
                    timeout: float, probe_timeout: float, *,
                    connect_to: str | None = None) -> Settled:
    """Open probes (connect + polling handshake) until one's handshake answer carries
    ``config_id`` (any answer when None), within ``timeout``; return it open, to finish.

    The settle of ``settle_http`` with quiet 0, minus its own connections: the first answer
    from the new config is the handshake the probe goes on with. Each attempt may take up to
    ``probe_timeout`` (a stage's deadline) past ``timeout``, as a request of ``settle_http``."""
    started = time.monotonic()
    deadline = started + timeout
    answers = 0
    last = "no answer yet"
    pause = 0.01
    while True:
        run = open_probe(url, path, probe_timeout, connect_to=connect_to,
                         expect_marker=config_id)
        answer = run.first_answer()
        if answer is not None:
            answers += 1
            got = answer.header(HEADER)
            if config_id is None or got == config_id:
                return Settled(SettleResult(True, time.monotonic() - started, answers,
                                            _served(answer.status, config_id, got)), run)
            last = _stale(answer.status, got)
        else:
            failed = [st for st in run.stages if not st.ok]
            last = failed[-1].detail if failed else last
        run.close()
        now = time.monotonic()
        if now >= deadline:
            return Settled(SettleResult(False, now - started, answers,
                                        _not_served(timeout, last)), None)
        time.sleep(min(pause, max(0.0, deadline - now)))
        pause = min(pause * 1.5, 0.2)


def _served(status: int, config_id: str | None, got: str | None) -> str:
    return f"HTTP {status} with {HEADER}: {got}" if config_id else f"HTTP {status}"


def _stale(status: int, got: str | None) -> str:
    return (f"HTTP {status} from an older config ({got})" if got
            else f"HTTP {status} from a config without the {HEADER} marker")


def _not_served(timeout: float, last: str) -> str:
    return (f"the proxy did not serve the new config within {timeout:g} s "
            f"(last answer: {last})")


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
    # One deadline for the whole request: ``timeout`` alone bounds each socket operation, and
    # a proxy dripping a byte per operation would never end. At the deadline the socket is
    # shut down under http.client, whose next read then fails like a lost connection.
    watchdog = threading.Timer(timeout, _cut, (conn,))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("GET", path, headers={"User-Agent": "sockwizard-settle"})
        response = conn.getresponse()
        # The marker is a header: the body is never read (an answer may be endless, or
        # announce 10^18 bytes), the connection is closed instead.
        return response.status, response.getheader(HEADER)
    finally:
        watchdog.cancel()
        conn.close()


def _cut(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            # the plain socket's shutdown, also under TLS: SSLSocket's own drops its state
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


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
        # held in self.sock during the TLS handshake too, so the request's deadline can cut it
        self.sock = socket.create_connection((self.connect_to, self.port), self.timeout)
        self.sock = self.tls_context.wrap_socket(self.sock, server_hostname=self.host)


def probe_live(url: str, path: str, timeout: float, *,
               connect_to: str | None = None) -> ProbeReport:
    return open_probe_live(url, path, timeout, connect_to=connect_to,
                           expect_marker=None).finish()


def open_probe_live(url: str, path: str, timeout: float, *, connect_to: str | None,
                    expect_marker: str | None) -> PendingProbe:
    from wizard.probe import ProbeOptions, start_probe

    # The raw CONNECT proves the same as python-socketio here, ~200 ms of imports sooner. The
    # marker tells which config answered the handshake and the upgrade (see steps.settle_and_probe).
    # No browser stages: their fresh sessions carry no marker check, so right after a reload an
    # old worker generation could answer them, and the configs sockwizard renders pass them by
    # construction (diagnose and `probe` run them). The upgrade reuses the handshake's
    # connection: one worker, one config, no extra connection.
    return start_probe(url, ProbeOptions(path=path, timeout=timeout, raw_connect=True,
                                         marker_header=HEADER, connect_to=connect_to,
                                         browsers=False, expect_marker=expect_marker,
                                         reuse_connection=True))


def probe_markers(report: ProbeReport) -> list[str | None] | None:
    """The config ids that answered the probe's handshake and upgrade (as far as the probe
    got), or None when the report does not say (no connection, or no marker_header)."""
    seen = [stage.data["marker"] for stage in map(report.stage, ("polling", "websocket"))
            if stage is not None and "marker" in stage.data]
    return seen or None


def probe_summary(report: ProbeReport) -> tuple[str, str, str]:
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


LIVE = LiveChecks(settle=settle_http, probe=probe_live, open_probe=open_probe_live)
