"""Engine.IO sessions and Socket.IO clients by the hundred: the ``sessions`` and ``clients`` stages.

``wizard.probe.extras`` calls ``run_sessions`` (N polling-only sessions, to catch missing sticky
sessions) and ``run_clients`` (N concurrent WebSocket clients, connect latency), and
``ensure_file_limit`` before any traffic. ``wizard.probe`` exports these lazily: this module
imports asyncio, which ``import wizard.probe`` must not pay.

``--clients`` does not use python-socketio: its threaded ``Client`` costs three OS threads per
client and needs 6-13 s for 1,000 (TESTBED.md), and its ``AsyncClient`` spends most of its CPU
on machinery a latency probe does not need. A WebSocket-only Socket.IO connect is four small
steps (upgrade request, ``101``, open packet, ``40`` -> ``40{sid}``), so each client here is one
asyncio coroutine on one socket, sharing the frame codec in ``wizard.probe.wire``. Clients
answer the server's pings while they wait for the others, so a slow ramp never drops the early
ones.
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
from dataclasses import dataclass

from wizard.errors import ProbeFailed
from wizard.probe.report import ClientsResult, SessionsResult
from wizard.probe.wire import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameDecoder,
    Target,
    WireError,
    build_request,
    decode_payload,
    eio_query,
    encode_frame,
    http_request,
    is_unknown_session,
    make_ssl_context,
    new_key,
    parse_head,
    parse_open,
    remaining,
    resolve,
    upgrade_headers,
)

MAX_SESSION_THREADS = 64


@dataclass(frozen=True)
class Endpoint:
    """What every session and client shares: the proxy, the Socket.IO path, the request
    headers, each one's deadline, and whether TLS is checked (``--insecure``)."""

    target: Target
    path: str
    headers: Sequence[tuple[str, str]]
    timeout: float
    insecure: bool

# --------------------------------------------------------------------------- sessions


def _session(at: Endpoint) -> tuple[bool, bool, str]:
    """One polling session: handshake, then POST ``40``, GET, POST ``1`` — each on a new
    connection, as a browser's pool may send them. Returns (ok, unknown_session, what).
    The four requests share one deadline of ``timeout`` (healthy ones take milliseconds)."""
    target, path, insecure = at.target, at.path, at.insecure
    deadline = time.monotonic() + at.timeout
    first = http_request(target, "GET", eio_query(path, 4, "polling"), at.headers, at.timeout,
                         insecure)
    packets = decode_payload(first.body, 4) if first.status == 200 else []
    opened = parse_open(packets[0], 4) if packets else None
    if opened is None:
        return False, False, f"handshake answered {first.summary(60)}"
    query = eio_query(path, 4, "polling", opened.sid)
    headers = first.with_cookies(at.headers)
    steps: list[tuple[str, bytes]] = [("POST", b"40"), ("GET", b""), ("POST", b"1")]
    for number, (method, body) in enumerate(steps, start=1):
        response = http_request(target, method, query, headers, remaining(deadline), insecure,
                                body)
        if response.status != 200:
            what = f"request {number + 1} ({method}) answered {response.summary(60)}"
            return False, is_unknown_session(response), what
    return True, False, "ok"


def run_sessions(at: Endpoint, count: int) -> SessionsResult:
    """``count`` sessions at once (threads: each is four short blocking requests)."""

    def one(_: int) -> tuple[bool, bool, str]:
        try:
            return _session(at)
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


async def _run_clients(at: Endpoint, count: int) -> tuple[list[float], Counter[str], int, float]:
    target, timeout = at.target, at.timeout
    context = make_ssl_context(at.insecure) if target.tls else None
    query = eio_query(at.path, 4, "websocket")
    # Resolve once: a thousand getaddrinfo calls would queue on the executor's few threads
    # and be measured as connect latency. TLS still sends the URL's host name (SNI).
    address = resolve(target.host, target.port, timeout)[0][1][0]
    clients = [_Client() for _ in range(count)]
    keepers: list[asyncio.Task[None]] = []
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def one(client: _Client) -> None:
        request = build_request("GET", target, query, at.headers,
                                extra=upgrade_headers(new_key()))
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


def run_clients(at: Endpoint, count: int) -> ClientsResult:
    """``count`` clients started at once, each within ``at.timeout``; latency to ``40{sid}``."""
    ensure_file_limit(count)
    before = resource.getrusage(resource.RUSAGE_SELF)
    latencies, errors, dropped, done_s = asyncio.run(_run_clients(at, count))
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
