"""The probe's core stages, 1 to 4: connect, the polling handshake, the upgrade, Socket.IO.

``wizard.probe.run`` calls these on its ``Run`` in order (``start_probe``: ``connect`` and
``polling``; ``Run.finish``: ``websocket``, ``browsers``, ``socketio``), each under
``Run.guarded``; ``wizard.probe.extras`` holds the stages run only when asked for. They are
apart from ``run`` so that module keeps one job: the run's record and the order of stages.

Stages 1-3 use raw sockets (``wizard.probe.wire``) because the evidence is the exact answer
a client library would hide. Each stage has one deadline of ``timeout`` (the python-socketio
child: ``sio_budget``). What an answer means is ``wizard.probe.classify``'s job; a stage here
only runs, records its ``Stage`` and findings on the run, and leaves what it learnt there
(the handshake, the kept connection, ``websocket_ok``) for the stages after it.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from wizard import findings as codes
from wizard.probe import browser, classify
from wizard.probe.report import Stage, response_data
from wizard.probe.sio import SioOutcome, SioRequest, raw_connect, sio_probe_bounded
from wizard.probe.wire import (
    OP_CLOSE,
    OP_TEXT,
    HttpResponse,
    WebSocket,
    WireError,
    eio_query,
    get_kept,
    http_request,
    open_socket,
    read_open,
    remaining,
    tcp_connect,
    tls_wrap,
    ws_connect,
)

if TYPE_CHECKING:
    import socket

    from wizard.probe.run import Run


def _marked(run: Run, data: dict[str, Any], response: HttpResponse) -> dict[str, Any]:
    if run.options.marker_header is not None:
        data["marker"] = response.header(run.options.marker_header)
    return data


# ---- stage 1
def connect(run: Run) -> socket.socket | None:
    options, target = run.options, run.target
    started = time.perf_counter()
    try:
        sock = tcp_connect(target, options.timeout)
    except WireError as exc:
        run.record("tcp", False, started, exc.message, {"error": exc.kind})
        run.findings.append(classify.unreachable(target, exc.message))
        return None
    peer = sock.getpeername()
    run.record("tcp", True, started, f"connected to {peer[0]}:{peer[1]}", {"peer": peer[0]})
    if not target.tls:
        return sock
    started = time.perf_counter()
    try:
        wrapped = tls_wrap(sock, target, options.insecure, options.timeout)
    except WireError as exc:
        run.record("tls", False, started, exc.message, {"error": exc.kind})
        run.findings.append(classify.tls_finding(target, exc.message))
        return None
    version = getattr(wrapped, "version", lambda: None)()
    run.record("tls", True, started, f"{version}" + (" (not verified: --insecure)"
                                                      if options.insecure else ""),
                {"version": version})
    return wrapped


# ---- stage 2
def polling(run: Run, sock: socket.socket) -> None:
    started = time.perf_counter()
    query = eio_query(run.path, 4, "polling")
    try:
        response, alive = get_kept(sock, run.target, query, run.headers,
                                   run.options.timeout)
    except WireError as exc:
        sock.close()
        run.record("polling", False, started, exc.message, {"error": exc.kind})
        run.findings.append(classify.polling_failure(run.target, run.options.timeout,
                                                      exc))
        return
    if alive and run.options.reuse_connection:
        run.kept = sock
    else:
        sock.close()
    run.answers.append(response)
    verdict = classify.classify_handshake(response, run.path, run.options.origin)
    run.record("polling", verdict.handshake is not None, started, verdict.detail,
                _marked(run, response_data(response), response))
    run.findings.extend(verdict.findings)
    run.handshake = verdict.handshake
    run.session_headers = response.with_cookies(run.headers)
    run.websocket_only = verdict.websocket_only
    if verdict.retry_eio3:
        _polling_eio3(run, response)


def _polling_eio3(run: Run, first: HttpResponse) -> None:
    started = time.perf_counter()
    query = eio_query(run.path, 3, "polling")
    try:
        response = http_request(run.target, "GET", query, run.headers,
                                run.options.timeout, run.options.insecure)
    except WireError as exc:
        run.record("polling-eio3", False, started, exc.message, {"error": exc.kind})
        return
    evidence = (f"GET {run.path}?EIO=4&transport=polling answered {first.summary(60)}; "
                f"GET {query} answered {response.summary(60)}")
    handshake, finding = classify.classify_eio3(response, run.path, evidence)
    run.record("polling-eio3", handshake is not None, started,
                f"EIO=3 answered {response.summary(80)}", response_data(response))
    run.findings.append(finding)
    if handshake is not None:
        run.handshake = handshake


# ---- stage 3
def websocket(run: Run) -> None:
    handshake = run.handshake
    started = time.perf_counter()
    if handshake is not None and "websocket" not in handshake.upgrades:
        run.record("websocket", False, started,
                    f"the server offers no upgrade (upgrades {list(handshake.upgrades)})")
        run.findings.append(classify.no_upgrade_offered(handshake))
        return
    sid = handshake.sid if handshake is not None else None
    # One deadline for connect, upgrade and 2probe/3probe (or the open packet).
    deadline = time.monotonic() + run.options.timeout
    kept, run.kept = run.kept, None
    try:
        query = eio_query(run.path, 4, "websocket", sid)
        if kept is not None and _websocket_on(run, kept, query, started, deadline, True):
            return
        # No kept connection, or the server closed it before answering: a new one.
        sock = open_socket(run.target, remaining(deadline), run.options.insecure)
    except WireError as exc:
        run.record("websocket", False, started, exc.message, {"error": exc.kind})
        return
    finally:
        if kept is not None:
            kept.close()
    try:
        _websocket_on(run, sock, query, started, deadline)
    finally:
        sock.close()


def _websocket_on(run: Run, sock: socket.socket, query: str, started: float,
                  deadline: float, reused: bool = False) -> bool:
    """The upgrade on ``sock``; False (nothing recorded) when ``reused`` and the server had
    closed that kept-alive connection before answering (a keep-alive timeout's race)."""
    try:
        response, ws = ws_connect(sock, run.target, query, run.session_headers,
                                  remaining(deadline))
    except WireError as exc:
        if reused and exc.kind in ("closed", "reset"):
            return False
        run.record("websocket", False, started, f"no upgrade answer: {exc.message}",
                    {"error": exc.kind})
        run.findings.append(classify.upgrade_unanswered(query, exc.message))
        return True
    run.answers.append(response)
    if ws is None:
        finding = classify.classify_upgrade(response, run.path, run.options.origin)
        run.record("websocket", False, started, f"not upgraded: {response.summary(80)}",
                    _marked(run, response_data(response), response))
        run.findings.append(finding)
        return True
    try:
        opener = _websocket_open if run.websocket_only else _websocket_probe
        seen = opener(run, ws, deadline)
    except WireError as exc:
        seen = f"101, then {exc.message}"
        run.record("websocket", False, started, seen,
                    _marked(run, {"status": 101, "error": exc.kind}, response))
        run.findings.append(classify.upgraded_then_failed(seen, exc))
        return True
    finally:
        ws.close()
    run.websocket_ok = True
    run.record("websocket", True, started, seen,
                _marked(run, {"status": 101, "reused": reused}, response))
    return True


def _websocket_probe(run: Run, ws: WebSocket, deadline: float) -> str:
    # 2probe, 5 (and a raw 40) in one write: Engine.IO servers read them in order, and
    # waiting for 3probe before sending what comes next anyway costs a round trip.
    raw = ["40"] if run.options.raw_connect else []
    ws.send_texts(["2probe", "5", *raw], remaining(deadline))
    frame = ws.recv(remaining(deadline))
    if frame.opcode == OP_CLOSE:
        raise WireError("closed", f"close frame {frame.close_code} instead of 3probe")
    if frame.text != "3probe":
        raise WireError("protocol", f"{frame.text[:40]!r} instead of 3probe")
    _connect_raw(run, ws, sent=bool(raw))
    return "101 Switching Protocols, 2probe -> 3probe, upgrade sent"


def _connect_raw(run: Run, ws: WebSocket, sent: bool = False) -> None:
    if run.options.raw_connect:
        run.raw_connected = raw_connect(ws, run.options.timeout, sent=sent)


def _websocket_open(run: Run, ws: WebSocket, deadline: float) -> str:
    """Websocket-only server: the open packet comes on the WebSocket itrun."""
    frame = ws.recv(remaining(deadline))
    handshake = read_open(frame.text, 4) if frame.opcode == OP_TEXT else None
    if isinstance(handshake, str):
        raise WireError("protocol", f"invalid open packet: {handshake}")
    if handshake is None:
        raise WireError("protocol", f"{frame.text[:40]!r} instead of an open packet")
    run.handshake = handshake
    polling = next((s for s in run.stages if s.name == "polling"), None)
    run.findings.append(classify.polling_disabled(
        polling.detail if polling is not None else "no polling stage"))
    _connect_raw(run, ws)
    return "101 Switching Protocols, open packet on the WebSocket (websocket-only server)"


# ---- stage 3b: as browsers do it (wizard.probe.browser)
def browsers(run: Run) -> None:
    handshake = run.handshake
    if handshake is None or handshake.eio_version != 4 or run.websocket_only:
        return
    for stage, finding, _tried in browser.browser_stages(
            run.target, run.path, run.headers, run.options.timeout,
            run.options.insecure, offers_websocket="websocket" in handshake.upgrades,
            plain_ok=run.websocket_ok,
            plain_unknown=any(f.code == codes.NO_STICKY_SESSIONS for f in run.findings)):
        run.publish(stage)
        if finding is not None:
            run.findings.append(finding)


# ---- stage 4
def socketio(run: Run) -> None:
    options = run.options
    if options.raw_connect:
        _socketio_raw(run)
        return
    started = time.perf_counter()
    outcome = sio_probe_bounded(SioRequest(
        run.target.base_url, run.path, run.headers, options.insecure, options.timeout,
        transports=["websocket"] if run.websocket_only else None,
        emit=options.emit,
        data=json.loads(options.data) if options.data is not None else None,
        has_data=options.data is not None,
        expect=options.expect,
    ))
    run.transport = outcome.transport
    if outcome.error is not None:
        run.record("socketio", False, started, f"connect failed: {outcome.error}",
                    {"error": outcome.error})
        if not run.findings:
            run.findings.append(classify.client_failed(outcome.error))
        return
    run.socketio_ok = True
    stage = Stage("socketio", True, outcome.connect_ms,
                  f"connected on {outcome.transport}", {"transport": outcome.transport,
                                                        "sid": outcome.sid})
    if outcome.transport != "websocket":
        stage = Stage("socketio", False, outcome.connect_ms,
                      f"connected, but stayed on {outcome.transport}: python-socketio "
                      "fell back to long-polling without an error", dict(stage.data))
        if run.handshake is None or "websocket" in run.handshake.upgrades:
            run.findings.append(classify.stayed_on_polling(outcome.transport))
    _emit_stage(run, stage, outcome)


def _socketio_raw(run: Run) -> None:
    if run.raw_connected is None:
        run.skip("socketio", "no WebSocket to connect on")
        return
    ms, sid = run.raw_connected
    run.transport = "websocket"
    run.socketio_ok = True
    run.publish(Stage("socketio", True, ms,
                       "connected on websocket (raw Socket.IO CONNECT)",
                       {"transport": "websocket", "sid": sid, "raw": True}))


def _emit_stage(run: Run, stage: Stage, outcome: SioOutcome) -> None:
    run.publish(stage)
    if run.options.emit is None:
        return
    run.emit_ok = outcome.emit_error is None
    reply = json.dumps(outcome.emit_reply, ensure_ascii=False)
    detail = (f"{run.options.emit} -> {reply}" if run.emit_ok
              else str(outcome.emit_error))
    run.publish(Stage("emit", run.emit_ok, outcome.emit_ms, detail,
                       {"reply": outcome.emit_reply}))
    if not run.emit_ok:
        run.findings.append(classify.round_trip_failed(
            run.options.emit, run.options.expect, outcome.emit_error))
