"""tests/relay.py itself: it forwards bytes unchanged, delays each way, and counts connections
and exchanges the way the HTTP budget test and bench/bench_rtt.py read them."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.relay import Relay

pytestmark = pytest.mark.timeout(60)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address
    finally:
        server.shutdown()
        server.server_close()


def exchange(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        assert chunk, "closed early"
        got += chunk
    return got


def test_forwards_and_counts_exchanges(echo: tuple[str, int]) -> None:
    with Relay(echo) as relay, socket.create_connection(relay.address, timeout=5) as sock:
        assert exchange(sock, b"one") == b"one"
        assert exchange(sock, b"two") == b"two"
        # Two messages sent before reading: one exchange, not two.
        assert exchange(sock, b"a" + b"b") == b"ab"
        sock.close()
        time.sleep(0.2)
        counts = relay.counts
        assert counts.connections == 1
        assert counts.round_trips == 3, counts


def test_a_large_transfer_arrives_whole(echo: tuple[str, int]) -> None:
    payload = bytes(range(256)) * 40_000  # 10 MB: more than MAX_PENDING in flight
    with Relay(echo) as relay, socket.create_connection(relay.address, timeout=20) as sock:
        received = bytearray()

        def read() -> None:
            while len(received) < len(payload):
                chunk = sock.recv(1 << 20)
                if not chunk:
                    return
                received.extend(chunk)

        reader = threading.Thread(target=read)
        reader.start()
        sock.sendall(payload)
        reader.join(20)
        assert bytes(received) == payload


def test_adds_the_delay_each_way(echo: tuple[str, int]) -> None:
    with Relay(echo, delay=0.05) as relay, socket.create_connection(relay.address,
                                                                    timeout=5) as sock:
        started = time.monotonic()
        exchange(sock, b"ping")
        assert time.monotonic() - started >= 0.1  # a lower bound: the delay was added


def test_counts_every_connection_and_resets(echo: tuple[str, int]) -> None:
    with Relay(echo) as relay:
        for _ in range(3):
            with socket.create_connection(relay.address, timeout=5) as sock:
                exchange(sock, b"x")
        time.sleep(0.1)
        assert relay.counts.connections == 3
        relay.reset()
        assert relay.counts.connections == 0 and relay.counts.round_trips == 0
