"""The staged live probe: the stages in order, each timed, each under one deadline and a guard.

``run_probe`` is what everyone calls (``wizard.commands.probe``, the TUI from a worker thread
with ``on_stage`` to fill its table live, ``deploy`` after a reload, ``diagnose``). Stages:

1. ``tcp`` (+ ``tls``) connect to the proxy;
2. ``polling``: the Engine.IO v4 handshake, read verbatim and classified (``polling-eio3``
   retries with EIO=3 when the answer says the server is Socket.IO 2.x);
3. ``websocket``: the upgrade with that sid, ``2probe``/``3probe``/``5``;
4. ``socketio`` (+ ``emit``): python-socketio's own connect (``wizard.probe.sio``), and the
   transport it ends up on; or, with ``raw_connect``, our own CONNECT on the stage-3 socket;
5. ``hold``, ``sessions``, ``clients`` when asked for (``wizard.probe.hold``, ``.load``).

Stages 1-3 and the hold use raw sockets (``wizard.probe.wire``) because the evidence is the
exact answer a client library would hide. Each stage has one deadline of ``timeout`` (the
python-socketio child: ``sio_budget``). What an answer means is ``wizard.probe.classify``'s
job; this module only runs, records and decides what runs next. A failed stage becomes a
``Finding``; an exception a stage did not anticipate becomes a failed stage too
(``Run.guarded``), so a hostile server can fail the probe but never make it raise: only a bad
input (the URL, the options) raises, as ``ProbeFailed``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from wizard.errors import ProbeFailed, SockwizardError
from wizard.findings import Finding, merge_findings, sort_findings
from wizard.probe import browser, classify, extras, fronts
from wizard.probe.options import ProbeOptions
from wizard.probe.report import (
    ClientsResult,
    HoldResult,
    ProbeReport,
    SessionsResult,
    Stage,
    response_data,
)
from wizard.probe.sio import SioOutcome, SioRequest, raw_connect, sio_probe_bounded
from wizard.probe.wire import (
    OP_CLOSE,
    OP_TEXT,
    Handshake,
    HttpResponse,
    Target,
    WebSocket,
    WireError,
    eio_query,
    get_kept,
    http_request,
    normalize_path,
    open_socket,
    parse_url,
    read_open,
    remaining,
    tcp_connect,
    tls_wrap,
    ws_connect,
)

if TYPE_CHECKING:
    import socket

_T = TypeVar("_T")


class Run:
    """One probe in progress: stages and findings accumulate here, in order."""

    def __init__(self, url: str, target: Target, path: str, options: ProbeOptions,
                 on_stage: Callable[[Stage], None] | None) -> None:
        self.url = url
        self.target = target
        self.path = path
        self.options = options
        self.on_stage = on_stage
        self.headers = options.request_headers()
        # The handshake's cookies (sticky-session routes) ride along on the session's upgrade.
        self.session_headers: tuple[tuple[str, str], ...] = tuple(self.headers)
        self.stages: list[Stage] = []
        self.findings: list[Finding] = []
        self.handshake: Handshake | None = None
        self.websocket_only = False
        self.websocket_ok = False
        self.transport: str | None = None
        self.socketio_ok = False
        self.raw_connected: tuple[float, str] | None = None  # (ms, sid) of a raw CONNECT
        self.emit_ok = True
        self.hold: HoldResult | None = None
        self.sessions: SessionsResult | None = None
        self.clients: ClientsResult | None = None
        self.answers: list[HttpResponse] = []  # their headers name a front tier (fronts)
        # The handshake's connection, kept for the upgrade (options.reuse_connection).
        self.kept: socket.socket | None = None

    def record(self, name: str, ok: bool, started: float, detail: str,
               data: Mapping[str, Any] | None = None) -> Stage:
        stage = Stage(name, ok, round((time.perf_counter() - started) * 1000, 1), detail,
                      dict(data or {}))
        return self.publish(stage)

    def skip(self, name: str, why: str) -> None:
        """A requested stage that cannot run: shown as "skip", never as a finding."""
        self.publish(Stage(name, False, 0.0, f"skipped: {why}", {"skipped": True}))

    def publish(self, stage: Stage) -> Stage:
        self.stages.append(stage)
        if self.on_stage is not None:
            self.on_stage(stage)
        return stage

    def guarded(self, name: str, step: Callable[..., _T], *args: Any) -> _T | None:
        """Run one stage; an exception it did not expect (a server answer nothing here
        anticipated) becomes a failed stage and an error finding, never a traceback: the
        deploy rolls back on a failed probe, and a raising one would skip that."""
        started = time.perf_counter()
        try:
            return step(*args)
        except SockwizardError:
            raise  # bad input found late (e.g. --clients above the file limit)
        except Exception as exc:
            what = f"{type(exc).__name__}: {exc}"[:200]
            self.record(name, False, started, f"the probe could not handle the answer ({what})",
                        {"error": "internal"})
            self.findings.append(classify.internal_error(name, what))
            return None

    def _marked(self, data: dict[str, Any], response: HttpResponse) -> dict[str, Any]:
        if self.options.marker_header is not None:
            data["marker"] = response.header(self.options.marker_header)
        return data

    # ---- stage 1
    def connect(self) -> socket.socket | None:
        options, target = self.options, self.target
        started = time.perf_counter()
        try:
            sock = tcp_connect(target, options.timeout)
        except WireError as exc:
            self.record("tcp", False, started, exc.message, {"error": exc.kind})
            self.findings.append(classify.unreachable(target, exc.message))
            return None
        peer = sock.getpeername()
        self.record("tcp", True, started, f"connected to {peer[0]}:{peer[1]}", {"peer": peer[0]})
        if not target.tls:
            return sock
        started = time.perf_counter()
        try:
            wrapped = tls_wrap(sock, target, options.insecure, options.timeout)
        except WireError as exc:
            self.record("tls", False, started, exc.message, {"error": exc.kind})
            self.findings.append(classify.tls_finding(target, exc.message))
            return None
        version = getattr(wrapped, "version", lambda: None)()
        self.record("tls", True, started, f"{version}" + (" (not verified: --insecure)"
                                                          if options.insecure else ""),
                    {"version": version})
        return wrapped

    # ---- stage 2
    def polling(self, sock: socket.socket) -> None:
        started = time.perf_counter()
        query = eio_query(self.path, 4, "polling")
        try:
            response, alive = get_kept(sock, self.target, query, self.headers,
                                       self.options.timeout)
        except WireError as exc:
            sock.close()
            self.record("polling", False, started, exc.message, {"error": exc.kind})
            self.findings.append(classify.polling_failure(self.target, self.options.timeout,
                                                          exc))
            return
        if alive and self.options.reuse_connection:
            self.kept = sock
        else:
            sock.close()
        self.answers.append(response)
        verdict = classify.classify_handshake(response, self.path, self.options.origin)
        self.record("polling", verdict.handshake is not None, started, verdict.detail,
                    self._marked(response_data(response), response))
        self.findings.extend(verdict.findings)
        self.handshake = verdict.handshake
        self.session_headers = response.with_cookies(self.headers)
        self.websocket_only = verdict.websocket_only
        if verdict.retry_eio3:
            self.polling_eio3(response)

    def polling_eio3(self, first: HttpResponse) -> None:
        started = time.perf_counter()
        query = eio_query(self.path, 3, "polling")
        try:
            response = http_request(self.target, "GET", query, self.headers,
                                    self.options.timeout, self.options.insecure)
        except WireError as exc:
            self.record("polling-eio3", False, started, exc.message, {"error": exc.kind})
            return
        evidence = (f"GET {self.path}?EIO=4&transport=polling answered {first.summary(60)}; "
                    f"GET {query} answered {response.summary(60)}")
        handshake, finding = classify.classify_eio3(response, self.path, evidence)
        self.record("polling-eio3", handshake is not None, started,
                    f"EIO=3 answered {response.summary(80)}", response_data(response))
        self.findings.append(finding)
        if handshake is not None:
            self.handshake = handshake

    # ---- stage 3
    def websocket(self) -> None:
        handshake = self.handshake
        started = time.perf_counter()
        if handshake is not None and "websocket" not in handshake.upgrades:
            self.record("websocket", False, started,
                        f"the server offers no upgrade (upgrades {list(handshake.upgrades)})")
            self.findings.append(classify.no_upgrade_offered(handshake))
            return
        sid = handshake.sid if handshake is not None else None
        # One deadline for connect, upgrade and 2probe/3probe (or the open packet).
        deadline = time.monotonic() + self.options.timeout
        kept, self.kept = self.kept, None
        try:
            query = eio_query(self.path, 4, "websocket", sid)
            if kept is not None and self._websocket_on(kept, query, started, deadline, True):
                return
            # No kept connection, or the server closed it before answering: a new one.
            sock = open_socket(self.target, remaining(deadline), self.options.insecure)
        except WireError as exc:
            self.record("websocket", False, started, exc.message, {"error": exc.kind})
            return
        finally:
            if kept is not None:
                kept.close()
        try:
            self._websocket_on(sock, query, started, deadline)
        finally:
            sock.close()

    def _websocket_on(self, sock: socket.socket, query: str, started: float,
                      deadline: float, reused: bool = False) -> bool:
        """The upgrade on ``sock``; False (nothing recorded) when ``reused`` and the server had
        closed that kept-alive connection before answering (a keep-alive timeout's race)."""
        try:
            response, ws = ws_connect(sock, self.target, query, self.session_headers,
                                      remaining(deadline))
        except WireError as exc:
            if reused and exc.kind in ("closed", "reset"):
                return False
            self.record("websocket", False, started, f"no upgrade answer: {exc.message}",
                        {"error": exc.kind})
            self.findings.append(classify.upgrade_unanswered(query, exc.message))
            return True
        self.answers.append(response)
        if ws is None:
            finding = classify.classify_upgrade(response, self.path, self.options.origin)
            self.record("websocket", False, started, f"not upgraded: {response.summary(80)}",
                        self._marked(response_data(response), response))
            self.findings.append(finding)
            return True
        try:
            opener = self._websocket_open if self.websocket_only else self._websocket_probe
            seen = opener(ws, deadline)
        except WireError as exc:
            seen = f"101, then {exc.message}"
            self.record("websocket", False, started, seen,
                        self._marked({"status": 101, "error": exc.kind}, response))
            self.findings.append(classify.upgraded_then_failed(seen, exc))
            return True
        finally:
            ws.close()
        self.websocket_ok = True
        self.record("websocket", True, started, seen,
                    self._marked({"status": 101, "reused": reused}, response))
        return True

    def _websocket_probe(self, ws: WebSocket, deadline: float) -> str:
        # 2probe, 5 (and a raw 40) in one write: Engine.IO servers read them in order, and
        # waiting for 3probe before sending what comes next anyway costs a round trip.
        raw = ["40"] if self.options.raw_connect else []
        ws.send_texts(["2probe", "5", *raw], remaining(deadline))
        frame = ws.recv(remaining(deadline))
        if frame.opcode == OP_CLOSE:
            raise WireError("closed", f"close frame {frame.close_code} instead of 3probe")
        if frame.text != "3probe":
            raise WireError("protocol", f"{frame.text[:40]!r} instead of 3probe")
        self._connect_raw(ws, sent=bool(raw))
        return "101 Switching Protocols, 2probe -> 3probe, upgrade sent"

    def _connect_raw(self, ws: WebSocket, sent: bool = False) -> None:
        if self.options.raw_connect:
            self.raw_connected = raw_connect(ws, self.options.timeout, sent=sent)

    def _websocket_open(self, ws: WebSocket, deadline: float) -> str:
        """Websocket-only server: the open packet comes on the WebSocket itself."""
        frame = ws.recv(remaining(deadline))
        handshake = read_open(frame.text, 4) if frame.opcode == OP_TEXT else None
        if isinstance(handshake, str):
            raise WireError("protocol", f"invalid open packet: {handshake}")
        if handshake is None:
            raise WireError("protocol", f"{frame.text[:40]!r} instead of an open packet")
        self.handshake = handshake
        polling = next((s for s in self.stages if s.name == "polling"), None)
        self.findings.append(classify.polling_disabled(
            polling.detail if polling is not None else "no polling stage"))
        self._connect_raw(ws)
        return "101 Switching Protocols, open packet on the WebSocket (websocket-only server)"

    # ---- stage 3b: as browsers do it (wizard.probe.browser)
    def browsers(self) -> None:
        handshake = self.handshake
        if handshake is None or handshake.eio_version != 4 or self.websocket_only:
            return
        for stage, finding, _tried in browser.browser_stages(
                self.target, self.path, self.headers, self.options.timeout,
                self.options.insecure, offers_websocket="websocket" in handshake.upgrades,
                plain_ok=self.websocket_ok):
            self.publish(stage)
            if finding is not None:
                self.findings.append(finding)

    # ---- stage 4
    def socketio(self) -> None:
        options = self.options
        if options.raw_connect:
            self._socketio_raw()
            return
        started = time.perf_counter()
        outcome = sio_probe_bounded(SioRequest(
            self.target.base_url, self.path, self.headers, options.insecure, options.timeout,
            transports=["websocket"] if self.websocket_only else None,
            emit=options.emit,
            data=json.loads(options.data) if options.data is not None else None,
            has_data=options.data is not None,
            expect=options.expect,
        ))
        self.transport = outcome.transport
        if outcome.error is not None:
            self.record("socketio", False, started, f"connect failed: {outcome.error}",
                        {"error": outcome.error})
            if not self.findings:
                self.findings.append(classify.client_failed(outcome.error))
            return
        self.socketio_ok = True
        stage = Stage("socketio", True, outcome.connect_ms,
                      f"connected on {outcome.transport}", {"transport": outcome.transport,
                                                            "sid": outcome.sid})
        if outcome.transport != "websocket":
            stage = Stage("socketio", False, outcome.connect_ms,
                          f"connected, but stayed on {outcome.transport}: python-socketio "
                          "fell back to long-polling without an error", dict(stage.data))
            if self.handshake is None or "websocket" in self.handshake.upgrades:
                self.findings.append(classify.stayed_on_polling(outcome.transport))
        self._emit_stage(stage, outcome)

    def _socketio_raw(self) -> None:
        if self.raw_connected is None:
            self.skip("socketio", "no WebSocket to connect on")
            return
        ms, sid = self.raw_connected
        self.transport = "websocket"
        self.socketio_ok = True
        self.publish(Stage("socketio", True, ms,
                           "connected on websocket (raw Socket.IO CONNECT)",
                           {"transport": "websocket", "sid": sid, "raw": True}))

    def _emit_stage(self, stage: Stage, outcome: SioOutcome) -> None:
        self.publish(stage)
        if self.options.emit is None:
            return
        self.emit_ok = outcome.emit_error is None
        reply = json.dumps(outcome.emit_reply, ensure_ascii=False)
        detail = (f"{self.options.emit} -> {reply}" if self.emit_ok
                  else str(outcome.emit_error))
        self.publish(Stage("emit", self.emit_ok, outcome.emit_ms, detail,
                           {"reply": outcome.emit_reply}))
        if not self.emit_ok:
            self.findings.append(classify.round_trip_failed(
                self.options.emit, self.options.expect, outcome.emit_error))

    def first_answer(self) -> HttpResponse | None:
        """The handshake's HTTP answer (whatever its status), None when none came."""
        return self.answers[0] if self.answers else None

    def stale(self) -> bool:
        """``options.expect_marker`` is set and the handshake was not answered with it."""
        expected, header = self.options.expect_marker, self.options.marker_header
        first = self.first_answer()
        return (expected is not None and header is not None
                and (first is None or first.header(header) != expected))

    def finish(self) -> ProbeReport:
        """Run the remaining stages and report; closes the kept connection."""
        return _finish(self)

    def close(self) -> None:
        if self.kept is not None:
            self.kept.close()
            self.kept = None

    def report(self) -> ProbeReport:
        front = fronts.front_finding(self.answers)
        found = sort_findings(merge_findings([*self.findings, *([front] if front else [])]))
        ok = (self.websocket_ok and self.socketio_ok and self.transport == "websocket"
              and self.emit_ok and not any(f.severity == "error" for f in found))
        return ProbeReport(self.url, self.path, ok, self.transport, self.handshake,
                           tuple(self.stages), tuple(found), self.hold, self.sessions,
                           self.clients)


def run_probe(
    url: str, options: ProbeOptions, on_stage: Callable[[Stage], None] | None = None
) -> ProbeReport:
    """Probe ``url`` stage by stage; a bad URL or option raises ``ProbeFailed`` up front.

    Every network failure after that becomes a failed stage and a finding in the report.
    """
    return start_probe(url, options, on_stage).finish()


def start_probe(
    url: str, options: ProbeOptions, on_stage: Callable[[Stage], None] | None = None
) -> Run:
    """The first half of ``run_probe``: check the options, connect, and the polling handshake.

    The deploy calls this to settle (the handshake's answer carries the config marker) and
    ``Run.finish`` to probe, on the same connection (``options.reuse_connection``). Whoever
    does not call ``finish`` calls ``close``."""
    problems = options.problems()
    if problems:
        raise ProbeFailed("Invalid probe options: " + "; ".join(problems) + ".",
                          "Fix the options and run again.")
    path = normalize_path(options.path)
    target = parse_url(url, path)
    if options.connect_to is not None:
        target = dataclasses.replace(target, connect_host=options.connect_to.strip("[]"))
    if options.clients > 0:
        from wizard.probe.load import ensure_file_limit

        ensure_file_limit(options.clients)  # refuse before any traffic, not after the stages
    run = Run(url, target, path, options, on_stage)
    sock = run.guarded("tcp", run.connect)
    if sock is not None:
        run.guarded("polling", run.polling, sock)
    return run


def _finish(run: Run) -> ProbeReport:
    """The stages after the handshake (``Run.finish``)."""
    options = run.options
    try:
        if run.stale():
            return run.report()  # an older config answered: its upgrade proves nothing
        v4 = run.handshake is not None and run.handshake.eio_version == 4
        if v4 or run.websocket_only:
            run.guarded("websocket", run.websocket)
            if options.browsers:
                run.guarded("origin", run.browsers)
            run.guarded("socketio", run.socketio)
        if options.hold > 0:
            run.guarded("hold", extras.hold_stage, run)
        if options.sessions > 0:
            run.guarded("sessions", extras.sessions_stage, run)
        if options.clients > 0:
            run.guarded("clients", extras.clients_stage, run)
        return run.report()
    finally:
        run.close()
