"""Engine.IO sessions kept open or opened by the hundred: the probe's optional stages.

``wizard.probe.run_probe`` calls ``hold_connection`` (one idle session kept open, ``--hold``),
``run_sessions`` (N polling-only sessions, to catch missing sticky sessions) and
``run_clients`` (N concurrent WebSocket clients, connect latency).

The hold answers the server's pings itself on a raw WebSocket (or long-polling when the
upgrade is blocked), so it knows the exact arrival time of every ping and of the drop: the
idle time before a drop is what tells a proxy read timeout (certain, or at risk) from
anything else. A client library would hide both.

``--clients`` does not use python-socketio: its threaded ``Client`` costs three OS threads per
client and needs 6-13 s for 1,000 (TESTBED.md), and its ``AsyncClient`` spends most of its CPU
on machinery a latency probe does not need. A WebSocket-only Socket.IO connect is four small
steps (upgrade request, ``101``, open packet, ``40`` -> ``40{sid}``), so each client here is one
asyncio coroutine on one socket, sharing the frame codec in ``wizard.eio``. Clients answer the
server's pings while they wait for the others, so a slow ramp never drops the early ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import ssl
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from wizard.eio import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameDecoder,
    Handshake,
    HttpResponse,
    Target,
    WireError,
    build_request,
    decode_payload,
    eio_query,
    encode_frame,
    error_message,
    http_request,
    make_ssl_context,
    new_key,
    open_socket,
    parse_head,
    parse_open,
    remaining,
    resolve,
    upgrade_headers,
    ws_connect,
)
from wizard.errors import ProbeFailed

MAX_SESSION_THREADS = 64

# --------------------------------------------------------------------------- hold

HoldVerdict = Literal["no-drop", "dropped", "certain", "at-risk", "late", "server-closed"]


@dataclass(frozen=True)
class HoldResult:
    """An idle connection kept open: the pings it saw and when (if) it dropped.

    ``verdict`` is ``no-drop``, ``server-closed`` (an Engine.IO/Socket.IO close packet), or
    ``dropped`` here; ``wizard.probe`` grades a plain drop against the handshake's ping
    settings into ``certain`` / ``at-risk`` / ``late``.
    """

    transport: str
    requested_s: float
    held_s: float
    pings: int
    ping_times_s: tuple[float, ...]
    dropped: bool
    drop_after_s: float | None  # since the session went idle (after the namespace connect)
    idle_before_drop_s: float | None  # since the server last sent anything
    how: str
    verdict: HoldVerdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "transport": self.transport,
            "requested_s": self.requested_s,
            "held_s": self.held_s,
            "pings": self.pings,
            "ping_times_s": list(self.ping_times_s),
            "dropped": self.dropped,
            "drop_after_s": self.drop_after_s,
            "idle_before_drop_s": self.idle_before_drop_s,
            "how": self.how,
            "verdict": self.verdict,
        }


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

    def ping(self, now: float) -> None:
        self.pings.append(round(now - self.start, 3))
        self.last_rx = now

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
        opened = _open_session(target, path, headers, timeout, insecure)
        if isinstance(opened, str):
            return opened
        handshake, headers = opened
        if websocket:
            return _hold_websocket(target, path, headers, timeout, insecure, seconds,
                                   handshake.sid)
        return _hold_polling(target, path, headers, timeout, insecure, seconds, handshake)
    except WireError as exc:
        return f"{exc.kind}: {exc.message}"


def _open_session(
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


def _hold_websocket(
    target: Target, path: str, headers: Sequence[tuple[str, str]], timeout: float,
    insecure: bool, seconds: float, sid: str,
) -> HoldResult | str:
    setup = time.monotonic() + timeout  # connect, upgrade and 2probe share one deadline
    query = eio_query(path, 4, "websocket", sid)
    sock = open_socket(target, timeout, insecure)
    try:
        response, ws = ws_connect(sock, target, query, headers, remaining(setup))
        if ws is None:
            return f"the upgrade answered {response.summary(60)}"
        ws.send_text("2probe", timeout)
        if ws.recv(remaining(setup)).text != "3probe":
            return "the upgraded connection did not answer 2probe"
        ws.send_text("5", timeout)
        ws.send_text("40", timeout)
        log = _HoldLog("websocket", seconds)
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
                log.last_rx = now
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

# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class SessionsResult:
    """N polling sessions: how many completed, and why the others failed (message -> count)."""

    requested: int
    ok: int
    unknown_session: int
    errors: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "requested": self.requested,
            "ok": self.ok,
            "failed": self.requested - self.ok,
            "unknown_session": self.unknown_session,
            "errors": dict(self.errors),
        }


def is_unknown_session(response: HttpResponse) -> bool:
    """Node: 400 ``{"code":1,"message":"Session ID unknown"}``; python: ``"Invalid session …"``."""
    if response.status != 400:
        return False
    code, message = error_message(response.body)
    text = (message or response.text).lower()
    return code == 1 or "session id unknown" in text or "invalid session" in text


def _session(
    target: Target, path: str, headers: Sequence[tuple[str, str]], timeout: float, insecure: bool
) -> tuple[bool, bool, str]:
    """One polling session: handshake, then POST ``40``, GET, POST ``1`` — each on a new
    connection, as a browser's pool may send them. Returns (ok, unknown_session, what).
    The four requests share one deadline of ``timeout`` (healthy ones take milliseconds)."""
    deadline = time.monotonic() + timeout
    first = http_request(target, "GET", eio_query(path, 4, "polling"), headers, timeout, insecure)
    packets = decode_payload(first.body, 4) if first.status == 200 else []
    opened = parse_open(packets[0], 4) if packets else None
    if opened is None:
        return False, False, f"handshake answered {first.summary(60)}"
    query = eio_query(path, 4, "polling", opened.sid)
    headers = first.with_cookies(headers)
    steps: list[tuple[str, bytes]] = [("POST", b"40"), ("GET", b""), ("POST", b"1")]
    for number, (method, body) in enumerate(steps, start=1):
        response = http_request(target, method, query, headers, remaining(deadline), insecure,
                                body)
        if response.status != 200:
            what = f"request {number + 1} ({method}) answered {response.summary(60)}"
            return False, is_unknown_session(response), what
    return True, False, "ok"


def run_sessions(
    target: Target,
    path: str,
    headers: Sequence[tuple[str, str]],
    timeout: float,
    insecure: bool,
    count: int,
) -> SessionsResult:
    """``count`` sessions at once (threads: each is four short blocking requests)."""

    def one(_: int) -> tuple[bool, bool, str]:
        try:
            return _session(target, path, headers, timeout, insecure)
        except WireError as exc:
            return False, False, f"{exc.kind}: {exc.message}"

    with ThreadPoolExecutor(max_workers=min(count, MAX_SESSION_THREADS)) as pool:
        outcomes = list(pool.map(one, range(count)))
    errors = Counter(what for ok, _unknown, what in outcomes if not ok)
    return SessionsResult(
        requested=count,
        ok=sum(1 for ok, _u, _w in outcomes if ok),
        unknown_session=sum(1 for _o, unknown, _w in outcomes if unknown),
        errors=dict(errors.most_common()),
    )


# --------------------------------------------------------------------------- clients


@dataclass(frozen=True)
class ClientsResult:
    """N concurrent WebSocket-only Socket.IO clients through the URL."""

    requested: int
    connected: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    all_done_s: float  # wall time from the first connect to the last outcome
    dropped_while_waiting: int
    errors: dict[str, int]
    cpu_s: float  # user + system CPU of this process during the stage
    max_rss_mb: float  # peak resident size of this process (whole run so far)

    @property
    def failed(self) -> int:
        return self.requested - self.connected

    def to_dict(self) -> dict[str, object]:
        return {
            "requested": self.requested,
            "connected": self.connected,
            "failed": self.failed,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "all_done_s": self.all_done_s,
            "dropped_while_waiting": self.dropped_while_waiting,
            "errors": dict(self.errors),
            "cpu_s": self.cpu_s,
            "max_rss_mb": self.max_rss_mb,
        }


def percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (no interpolation: every value reported was measured)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * pct // 100))  # ceil without floats drifting
    return sorted_values[int(rank) - 1]


def ensure_file_limit(count: int) -> None:
    """Each client holds one socket; raise the soft limit if we may, else refuse clearly."""
    needed = count + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        ceiling = hard if hard == resource.RLIM_INFINITY else min(hard, max(needed, soft))
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise ProbeFailed(
            f"--clients {count} needs about {needed} open files; this process may open {soft}.",
            f"Use at most --clients {max(1, soft - 64)}, or raise the limit (ulimit -n) first.",
        )


class _ClientFailed(Exception):
    pass


class _Client:
    """One WebSocket-only Socket.IO client on an asyncio stream pair."""

    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.decoder = FrameDecoder()
        self.frames: list[tuple[int, bytes]] = []
        self.dropped = False

    async def connect(
        self, target: Target, address: str, request: bytes, context: ssl.SSLContext | None
    ) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            address,
            target.port,
            ssl=context,
            server_hostname=target.host if context else None,
            limit=1 << 20,
        )
        raw = self.writer.get_extra_info("socket")
        if raw is not None:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, reason, _headers = parse_head(head[:-4])
        if status != 101:
            raise _ClientFailed(f"HTTP {status} {reason}".strip())
        opened = await self.next_text()
        if parse_open(opened, 4) is None:
            raise _ClientFailed(f"no open packet (got {opened[:30]!r})")
        self.send("40")
        while True:
            text = await self.next_text()
            if text.startswith("40"):
                return
            if text.startswith("44"):
                raise _ClientFailed(f"connect_error {text[2:80]}")

    def send(self, text: str) -> None:
        assert self.writer is not None
        self.writer.write(encode_frame(OP_TEXT, text.encode()))

    async def next_text(self) -> str:
        """The next Engine.IO packet that is not a ping (pings are answered on the way)."""
        assert self.reader is not None and self.writer is not None
        while True:
            while self.frames:
                opcode, payload = self.frames.pop(0)
                if opcode == OP_PING:
                    self.writer.write(encode_frame(OP_PONG, payload))
                elif opcode == OP_CLOSE:
                    raise _ClientFailed("closed by server")
                elif opcode == OP_TEXT:
                    text = payload.decode("utf-8", "replace")
                    if text == "2":
                        self.send("3")
                        continue
                    return text
            data = await self.reader.read(65536)
            if not data:
                raise _ClientFailed("connection closed")
            self.frames.extend((f.opcode, f.payload) for f in self.decoder.feed(data))

    async def keep_alive(self) -> None:
        """Answer pings until cancelled; a close before that counts as a drop."""
        try:
            while True:
                await self.next_text()
        except (_ClientFailed, OSError, asyncio.IncompleteReadError, WireError):
            self.dropped = True

    def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self.writer.write(encode_frame(OP_CLOSE, b"\x03\xe8"))
            self.writer.close()


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, _ClientFailed):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, asyncio.IncompleteReadError | ConnectionResetError):
        return "connection closed"
    if isinstance(exc, WireError):
        return f"{exc.kind}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


async def _run_clients(
    target: Target,
    path: str,
    headers: Sequence[tuple[str, str]],
    timeout: float,
    insecure: bool,
    count: int,
) -> tuple[list[float], Counter[str], int, float]:
    context = make_ssl_context(insecure) if target.tls else None
    query = eio_query(path, 4, "websocket")
    # Resolve once: a thousand getaddrinfo calls would queue on the executor's few threads
    # and be measured as connect latency. TLS still sends the URL's host name (SNI).
    address = resolve(target.host, target.port, timeout)[0][1][0]
    clients = [_Client() for _ in range(count)]
    keepers: list[asyncio.Task[None]] = []
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def one(client: _Client) -> None:
        request = build_request("GET", target, query, headers, extra=upgrade_headers(new_key()))
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                await client.connect(target, address, request, context)
        except (OSError, TimeoutError, _ClientFailed, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, WireError) as exc:
            errors[_failure_kind(exc)] += 1
            return
        latencies.append((time.perf_counter() - started) * 1000)
        keepers.append(asyncio.create_task(client.keep_alive()))

    began = time.perf_counter()
    try:
        await asyncio.gather(*(one(c) for c in clients))
        done_s = time.perf_counter() - began
    finally:
        for task in keepers:
            task.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)
        for client in clients:
            client.close()
        closing = [c.writer.wait_closed() for c in clients if c.writer is not None]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):  # a polite close, but never a hang
                await asyncio.gather(*closing, return_exceptions=True)
    dropped = sum(1 for c in clients if c.dropped)
    return latencies, errors, dropped, done_s


def run_clients(
    target: Target,
    path: str,
    headers: Sequence[tuple[str, str]],
    timeout: float,
    insecure: bool,
    count: int,
) -> ClientsResult:
    """``count`` clients started at once, each within ``timeout``; latency to ``40{sid}``."""
    ensure_file_limit(count)
    before = resource.getrusage(resource.RUSAGE_SELF)
    latencies, errors, dropped, done_s = asyncio.run(
        _run_clients(target, path, headers, timeout, insecure, count)
    )
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ordered = sorted(latencies)

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return ClientsResult(
        requested=count,
        connected=len(ordered),
        p50_ms=rounded(percentile(ordered, 50)),
        p95_ms=rounded(percentile(ordered, 95)),
        p99_ms=rounded(percentile(ordered, 99)),
        max_ms=rounded(ordered[-1] if ordered else None),
        all_done_s=round(done_s, 3),
        dropped_while_waiting=dropped,
        errors=dict(errors.most_common()),
        cpu_s=round(cpu, 3),
        max_rss_mb=round(after.ru_maxrss / 1024, 1),  # Linux reports KiB
    )
