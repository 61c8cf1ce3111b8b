"""A user-space TCP relay that counts connections and round trips, and can add latency.

Used by the tests that assert a deploy's connection budget (``tests/test_deploy_http_budget.py``)
and by ``bench/bench_rtt.py``, which puts one relay in front of sshd and one in front of nginx.
This kernel has no ``sch_netem``, so latency is made here: every chunk read from one side is
written to the other ``delay`` seconds later (one way), which gives an RTT of ``2 * delay``
through the relay, whatever the protocol.

What it counts, per relay:

- ``connections``: TCP connections accepted from clients;
- ``turns``: direction changes on each connection, summed. A client that sends, waits for the
  answer, then sends again makes a turn each time the direction flips: a request/answer pair
  is two turns, so ``round_trips`` is ``turns / 2`` rounded up per connection. A protocol that
  pipelines (sends again before the answer) makes fewer turns: exactly what the budget counts.

asyncio on a thread of its own: one event loop serves every connection, and the delay is a
timer per chunk, not a sleeping thread. Buffers are capped (``MAX_PENDING`` bytes in flight per
direction; reading pauses above it), every connection to the target has a connect deadline, and
``close()`` stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from dataclasses import dataclass, field

MAX_PENDING = 4 * 1024 * 1024  # bytes read but not yet written, per direction
CONNECT_TIMEOUT = 5.0


@dataclass
class Flow:
    """One relayed connection's counters."""

    turns: int = 0
    last: str = ""  # "up" (client -> target) or "down", the direction of the last chunk
    bytes_up: int = 0
    bytes_down: int = 0

    def saw(self, direction: str, size: int) -> None:
        if direction != self.last:
            self.turns += 1
            self.last = direction
        if direction == "up":
            self.bytes_up += size
        else:
            self.bytes_down += size

    @property
    def round_trips(self) -> int:
        """Request/answer exchanges: a turn up then a turn down is one."""
        return (self.turns + 1) // 2


@dataclass
class Counts:
    connections: int = 0
    flows: list[Flow] = field(default_factory=list)

    @property
    def round_trips(self) -> int:
        return sum(f.round_trips for f in self.flows)

    @property
    def turns(self) -> int:
        return sum(f.turns for f in self.flows)


class Relay:
    """Listen on ``listen_host`` (a free port), forward to ``target``; start with ``start()``.

    ``delay``: seconds added to every chunk, each way. Thread-safe to read ``counts`` and to
    ``reset()`` between measurements.
    """

    def __init__(self, target: tuple[str, int], *, delay: float = 0.0,
                 listen_host: str = "127.0.0.1") -> None:
        self.target = target
        self.delay = delay
        self.listen_host = listen_host
        self.port = 0
        self._lock = threading.Lock()
        self._counts = Counts()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"relay->{target[0]}:{target[1]}")
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> Relay:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = future.result(timeout=10)
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> tuple[str, int]:
        return self.listen_host, self.port

    @property
    def counts(self) -> Counts:
        with self._lock:
            return Counts(self._counts.connections, list(self._counts.flows))

    def reset(self) -> None:
        with self._lock:
            self._counts = Counts()

    # -- the relay -------------------------------------------------------------------------------

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.listen_host, 0)
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        flow = Flow()
        with self._lock:
            self._counts.connections += 1
            self._counts.flows.append(flow)
        _nodelay(writer)
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection(*self.target),
                                                CONNECT_TIMEOUT)
        except (OSError, TimeoutError):
            writer.close()
            self._tasks.discard(task)
            return
        _nodelay(up_w)
        try:
            await asyncio.gather(self._pump(reader, up_w, flow, "up"),
                                 self._pump(up_r, writer, flow, "down"))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (writer, up_w):
                w.close()
            self._tasks.discard(task)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, flow: Flow,
                    direction: str) -> None:
        """Copy ``src`` to ``dst``, each chunk ``delay`` seconds late, in order."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        pending = 0
        room = asyncio.Event()
        room.set()

        async def writer() -> None:
            nonlocal pending
            while True:
                due, chunk = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not chunk:
                    with contextlib.suppress(OSError):
                        if dst.can_write_eof():
                            dst.write_eof()
                    return
                dst.write(chunk)
                await dst.drain()
                pending -= len(chunk)
                if pending <= MAX_PENDING:
                    room.set()

        sender = asyncio.ensure_future(writer())
        try:
            while True:
                await room.wait()
                chunk = await src.read(65536)
                if chunk:
                    with self._lock:
                        flow.saw(direction, len(chunk))
                    pending += len(chunk)
                    if pending > MAX_PENDING:
                        room.clear()
                queue.put_nowait((loop.time() + self.delay, chunk))
                if not chunk:
                    break
            await sender
        finally:
            sender.cancel()


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
