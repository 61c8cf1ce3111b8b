"""The ``--hold`` stage's wire work: one idle Engine.IO session kept open, every ping timed.

``wizard.probe.run`` calls ``hold_connection``; ``wizard.probe.classify`` grades what it saw.
The hold answers the server's pings itself on a raw WebSocket (or long-polling when the
upgrade is blocked), so it knows the exact arrival time of every ping and of the drop: the
idle time before a drop is what tells a proxy read timeout (certain, or at risk) from
anything else. A client library would hide both.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from wizard.probe.report import HoldResult, HoldVerdict
from wizard.probe.wire import (
    OP_CLOSE,
    Handshake,
    Target,
    WebSocket,
    WireError,
    decode_payload,
    eio_query,
    http_request,
    open_socket,
    parse_open,
    remaining,
    ws_connect,
)


@dataclass
class _HoldLog:
    """Mutable bookkeeping while holding; frozen into a ``HoldResult`` at the end."""

    transport: str
    requested_s: float
    start: float = field(default_factory=time.monotonic)
    last_rx: float = field(default_factory=time.monotonic)
    pings: list[float] = field(default_factory=list)
    drop_at: float | None = None
    how: str = "held to the end"
    server_closed: bool = False
    opened: float | None = None  # the 101 (WebSocket): the connection's age counts from it
    longest_quiet: float = 0.0

    def received(self, now: float) -> None:
        self.longest_quiet = max(self.longest_quiet, now - self.last_rx)
        self.last_rx = now

    def ping(self, now: float) -> None:
        self.pings.append(round(now - self.start, 3))
        self.received(now)

    def drop(self, now: float, how: str, server_closed: bool = False) -> None:
        self.drop_at, self.how, self.server_closed = now, how, server_closed

    def result(self, end: float) -> HoldResult:
        dropped = self.drop_at is not None
        verdict: HoldVerdict = (
            "server-closed" if self.server_closed else "dropped" if dropped else "no-drop"
        )
        return HoldResult(
            transport=self.transport,
            requested_s=self.requested_s,
            held_s=round(end - self.start, 3),
            pings=len(self.pings),
            ping_times_s=tuple(self.pings),
            dropped=dropped,
            drop_after_s=round(end - self.start, 3) if dropped else None,
            idle_before_drop_s=round(end - self.last_rx, 3) if dropped else None,
            how=self.how,
            verdict=verdict,
            age_at_drop_s=round(end - (self.opened or self.start), 3) if dropped else None,
            longest_quiet_s=round(self.longest_quiet, 3),
        )


def hold_connection(
    target: Target,
    path: str,
    headers: Sequence[tuple[str, str]],
    timeout: float,
    insecure: bool,
    seconds: float,
    websocket: bool,
) -> HoldResult | str:
    """Open a fresh session, connect the default namespace, stay idle for ``seconds``.

    Returns the result, or a sentence saying why the session could not even be opened.
    """
    try:
        opened = open_session(target, path, headers, timeout, insecure)
        if isinstance(opened, str):
            return opened
        handshake, headers = opened
        if websocket:
            return _hold_websocket(target, path, headers, timeout, insecure, seconds,
                                   handshake.sid)
        return _hold_polling(target, path, headers, timeout, insecure, seconds, handshake)
    except WireError as exc:
        return f"{exc.kind}: {exc.message}"


def open_session(
    target: Target, path: str, headers: Sequence[tuple[str, str]], timeout: float,
    insecure: bool,
) -> tuple[Handshake, tuple[tuple[str, str], ...]] | str:
    """The open packet and the headers for the session's next requests (with its cookies)."""
    first = http_request(target, "GET", eio_query(path, 4, "polling"), headers, timeout, insecure)
    packets = decode_payload(first.body, 4) if first.status == 200 else []
    opened = parse_open(packets[0], 4) if packets else None
    if opened is None:
        return f"handshake answered {first.summary(60)}"
    return opened, first.with_cookies(headers)


def upgrade_session(
    sock: socket.socket, target: Target, path: str, headers: Sequence[tuple[str, str]],
    timeout: float, sid: str, setup: float,
) -> tuple[WebSocket, float] | str:
    """Upgrade Engine.IO session ``sid`` on ``sock`` and connect the Socket.IO namespace
    (``2probe``/``3probe``, ``5``, ``40``) before the ``setup`` deadline: the WebSocket and when
    the 101 came, or what went wrong. The hold and the busy stage (``wizard.probe.lifetime``)
    both hold a session opened this way."""
    response, ws = ws_connect(sock, target, eio_query(path, 4, "websocket", sid), headers,
                              remaining(setup))
    if ws is None:
        return f"the upgrade answered {response.summary(60)}"
    opened = time.monotonic()
    ws.send_text("2probe", timeout)
    if ws.recv(remaining(setup)).text != "3probe":
        return "the upgraded connection did not answer 2probe"
    ws.send_text("5", timeout)
    ws.send_text("40", timeout)
    return ws, opened


def _hold_websocket(
    target: Target, path: str, headers: Sequence[tuple[str, str]], timeout: float,
    insecure: bool, seconds: float, sid: str,
) -> HoldResult | str:
    setup = time.monotonic() + timeout  # connect, upgrade and 2probe share one deadline
    sock = open_socket(target, timeout, insecure)
    try:
        upgraded = upgrade_session(sock, target, path, headers, timeout, sid, setup)
        if isinstance(upgraded, str):
            return upgraded
        ws, opened = upgraded
        log = _HoldLog("websocket", seconds, opened=opened)
        deadline = log.start + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = ws.recv(left)
            except WireError as exc:
                if exc.kind != "timeout":
                    log.drop(time.monotonic(), exc.message)
                break
            now = time.monotonic()
            if frame.opcode == OP_CLOSE:
                log.drop(now, f"close frame {frame.close_code}")
                break
            text = frame.text
            if text == "2":
                ws.send_text("3", timeout)
                log.ping(now)
            elif text == "1" or text.startswith("41"):
                log.drop(now, f"the server closed the session ({text[:20]!r})", True)
                break
            else:
                log.received(now)
        return log.result(log.drop_at or time.monotonic())
    finally:
        sock.close()


def _hold_polling(
    target: Target, path: str, headers: Sequence[tuple[str, str]], timeout: float,
    insecure: bool, seconds: float, handshake: Handshake,
) -> HoldResult | str:
    """Long-polling hold (the upgrade is blocked): a GET that outlives the proxy's timeout
    comes back as a 504/502 or a closed connection, after exactly that timeout."""
    query = eio_query(path, 4, "polling", handshake.sid)
    posted = http_request(target, "POST", query, headers, timeout, insecure, b"40")
    if posted.status != 200:
        return f"POST 40 answered {posted.summary(60)}"
    log = _HoldLog("polling", seconds)
    deadline = log.start + seconds
    longest = handshake.ping_sum_s + timeout  # no healthy long-poll lasts longer
    while (left := deadline - time.monotonic()) > 0:
        asked = time.monotonic()
        log.last_rx = asked  # an outstanding GET is the idle period a proxy times
        try:
            answer = http_request(target, "GET", query, headers, min(left, longest),
                                  insecure)
        except WireError as exc:
            if exc.kind == "timeout" and time.monotonic() >= deadline - 0.05:
                break
            log.drop(time.monotonic(), f"long-poll GET: {exc.message}")
            break
        now = time.monotonic()
        if answer.status != 200:
            log.drop(now, f"long-poll GET answered {answer.summary(60)}")
            break
        packets = decode_payload(answer.body, 4)
        if "1" in packets or any(p.startswith("41") for p in packets):
            log.drop(now, "the server closed the session", True)
            break
        if "2" in packets:
            log.ping(now)
            http_request(target, "POST", query, headers, timeout, insecure, b"3")
    return log.result(log.drop_at or time.monotonic())

