"""A hostile Engine.IO/Socket.IO server for the probe's hardening tests (issue #10).

One threaded server on a free loopback port plays every attack at once: the attack is the
first segment of the request path (``/MODE+TAG/``: the tag only keeps runs apart), so
``--path /huge-frame/`` probes the server that answers
the WebSocket upgrade with a frame announcing 2^62 bytes, ``--path /ping-0/`` the one whose
handshake says ``pingInterval: 0``, and so on (``MODES``). Outside its attack every mode
behaves like a real Socket.IO 4 server: polling handshake, ``2probe``/``3probe`` upgrade,
``40`` -> ``40{"sid":…}``, polling sessions for ``--sessions``.

It runs as its own process (``HostileServer`` starts ``python -m tests.hostile_server PORT
LOG``): streaming gigabytes must not share a GIL with the test that measures the probe. Every
request head it receives is appended to LOG, so a test can prove what the probe never sent.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tests import rig

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SID = "hostileSid_0123456789"
STREAM_LIMIT_S = 60.0  # a streaming attack stops on its own after this (never runs forever)

# mode -> what it does (the tests' table of attacks)
MODES = {
    "healthy": "a well-behaved Socket.IO 4 server (the control)",
    "huge-frame": "101, then a frame announcing 2^62 bytes, then zeros as fast as possible",
    "endless-fragments": "101, then non-final 16 KiB fragments forever",
    "empty-fragments": "101, then zero-length non-final fragments forever",
    "drip-handshake": "the polling answer dripped one byte every 0.5 s",
    "drip-headers": "a status line, then one header line every 0.2 s, forever",
    "drip-late": "the first polling handshake answered, every later one dripped (the "
                 "python-socketio stage's)",
    "giant-head": "a response head that never ends, as fast as possible",
    "giant-chunked": "200 chunked, with 64 KiB chunks forever",
    "huge-chunk": "200 chunked, one chunk announcing 2^64-1 bytes, then zeros",
    "giant-length": "200 with Content-Length 10^18, then zeros",
    "connect-array": "CONNECT answered 40[]",
    "connect-null": "CONNECT answered 40null",
    "connect-number": "CONNECT answered 401",
    "connect-string": 'CONNECT answered 40"x"',
    "ping-0": "pingInterval 0",
    "ping-negative": "pingInterval -1",
    "ping-infinity": "pingInterval Infinity",
    "ping-1e400": "pingInterval 1e400",
    "ping-nan": "pingTimeout NaN",
    "ping-huge": "pingInterval of ten days",
    "sid-latin": "a sid with non-Latin-1 characters",
    "sid-crlf": "a sid containing CRLF and an injected header",
    "sid-object": "a sid that is a JSON object",
    "open-array": "an open packet whose sid is nested arrays 100000 deep",
    "cookie-lf": "a Set-Cookie with a bare LF and an injected header (echoed back?)",
    "tls-drip": "(any TLS connection) a ServerHello of 16 KiB announced, a byte every 0.5 s",
}

CONNECT_ANSWERS = {
    "connect-array": "40[]", "connect-null": "40null", "connect-number": "401",
    "connect-string": '40"x"',
}
OPEN_FIELDS: dict[str, str] = {
    "ping-0": '"pingInterval":0,"pingTimeout":20000',
    "ping-negative": '"pingInterval":-1,"pingTimeout":20000',
    "ping-infinity": '"pingInterval":Infinity,"pingTimeout":20000',
    "ping-1e400": '"pingInterval":1e400,"pingTimeout":20000',
    "ping-nan": '"pingInterval":25000,"pingTimeout":NaN',
    "ping-huge": '"pingInterval":864000000,"pingTimeout":20000',
}
SIDS = {
    "sid-latin": json.dumps("s\u0100\u4e2d"),
    "sid-crlf": json.dumps("abc\r\nX-Injected: 1"),
    "sid-object": '{"a":1}',
}


def open_packet(mode: str) -> str:
    if mode == "open-array":
        return '0{"sid":' + "[" * 100_000 + "]" * 100_000 + "}"
    sid = SIDS.get(mode, json.dumps(SID))
    pings = OPEN_FIELDS.get(mode, '"pingInterval":25000,"pingTimeout":20000')
    return f'0{{"sid":{sid},"upgrades":["websocket"],{pings},"maxPayload":1000000}}'


_HANDSHAKES_SEEN: set[str] = set()


class _Conn:
    def __init__(self, sock: socket.socket, log: Path, lock: threading.Lock) -> None:
        self.sock = sock
        self.log = log
        self.lock = lock
        self.buf = b""
        self.until = time.monotonic() + STREAM_LIMIT_S

    def first_handshake(self, segment: str) -> bool:
        with self.lock:
            first = segment not in _HANDSHAKES_SEEN
            _HANDSHAKES_SEEN.add(segment)
        return first

    def alive(self) -> bool:
        return time.monotonic() < self.until

    def read_head(self) -> bytes | None:
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data or len(self.buf) > 65536:
                return None
            self.buf += data
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        with self.lock, self.log.open("ab") as out:
            out.write(head + b"\r\n\r\n")
        return head

    def read_exact(self, size: int) -> bytes:
        while len(self.buf) < size:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buf += data
        data, self.buf = self.buf[:size], self.buf[size:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        """One client frame (masked, unfragmented: the probe sends nothing else)."""
        b0, b1 = self.read_exact(2)
        length = b1 & 0x7F
        if length == 126:
            length = struct.unpack("!H", self.read_exact(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self.read_exact(8))[0]
        key = self.read_exact(4) if b1 & 0x80 else b"\0\0\0\0"
        payload = bytes(c ^ key[i % 4] for i, c in enumerate(self.read_exact(length)))
        return b0 & 0x0F, payload

    def send_frame(self, text: str, opcode: int = 0x1) -> None:
        data = text.encode("utf-8")
        head = bytes([0x80 | opcode])
        head += bytes([len(data)]) if len(data) < 126 else bytes([126]) + struct.pack(
            "!H", len(data))
        self.sock.sendall(head + data)

    def answer(self, body: bytes, extra: str = "") -> None:
        self.sock.sendall(
            f"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\n{extra}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)

    def stream(self, chunk: bytes) -> None:
        while self.alive():
            self.sock.sendall(chunk)

    # ------------------------------------------------------------------ dispatch

    def handle(self) -> None:
        if self.sock.recv(1, socket.MSG_PEEK) == b"\x16":  # a TLS ClientHello
            # a handshake record of 16 KiB holding a ServerHello that never completes
            self.sock.sendall(b"\x16\x03\x03\x40\x00\x02\x00\x3f\xfc")
            while self.alive():
                self.sock.sendall(b"\x03")
                time.sleep(0.5)
            return
        head = self.read_head()
        if head is None:
            return
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, target = [*line.split(" "), ""][:2]
        # /MODE+TAG/: the tag only keeps runs apart (drip-late counts handshakes per path)
        segment = target.split("/")[1] if target.count("/") >= 2 else "healthy"
        mode = segment.split("+")[0]
        if "transport=websocket" in target:
            self.websocket(mode, head)
        elif method == "POST":
            self.read_exact(_content_length(head))
            self.answer(b"ok")
        elif "sid=" in target:
            self.answer(b"6")  # a long-poll answered at once with a noop
        else:
            self.polling(mode, segment)

    def polling(self, mode: str, segment: str) -> None:
        if mode == "drip-late" and self.first_handshake(segment):
            self.answer(open_packet(mode).encode())
        elif mode in ("drip-handshake", "drip-late"):
            body = open_packet("healthy").encode()
            whole = (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
            for byte in whole * 100:
                if not self.alive():
                    return
                self.sock.sendall(bytes([byte]))
                time.sleep(0.5)
        elif mode == "drip-headers":
            self.sock.sendall(b"HTTP/1.1 200 OK\r\n")
            number = 0
            while self.alive():
                self.sock.sendall(f"X-Drip-{number}: x\r\n".encode())
                number += 1
                time.sleep(0.2)
        elif mode == "giant-head":
            self.sock.sendall(b"HTTP/1.1 200 OK\r\n")
            self.stream(b"X-Giant: " + b"a" * 65536 + b"\r\n")
        elif mode == "giant-chunked":
            self.sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            self.stream(b"10000\r\n" + b"a" * 0x10000 + b"\r\n")
        elif mode == "huge-chunk":
            self.sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"ffffffffffffffff\r\n")
            self.stream(b"\0" * 65536)
        elif mode == "giant-length":
            self.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000\r\n\r\n")
            self.stream(b"\0" * 65536)
        elif mode == "cookie-lf":
            self.answer(open_packet(mode).encode(),
                        "Set-Cookie: io=abc\nX-Injected: 1; Path=/\r\n"
                        "Set-Cookie: route=r1; Path=/\r\n")
        else:
            self.answer(open_packet(mode).encode())

    def websocket(self, mode: str, head: bytes) -> None:
        key = ""
        for raw in head.split(b"\r\n")[1:]:
            name, _, value = raw.decode("latin-1").partition(":")
            if name.strip().lower() == "sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.sock.sendall(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode())
        if "sid=" not in head.split(b"\r\n", 1)[0].decode("latin-1"):
            self.send_frame(open_packet(mode))  # a websocket-only connect
        while True:
            opcode, payload = self.read_frame()
            if opcode == 0x8:
                return
            text = payload.decode("utf-8", "replace")
            if text == "2probe":
                if mode == "huge-frame":
                    self.sock.sendall(b"\x81\x7f" + struct.pack("!Q", 1 << 62))
                    self.stream(b"\0" * (1 << 20))
                    return
                if mode in ("endless-fragments", "empty-fragments"):
                    size = 16384 if mode == "endless-fragments" else 0
                    self.sock.sendall(b"\x01\x7e" + struct.pack("!H", size) + b"a" * size
                                      if size else b"\x01\x00")
                    frame = (b"\x00\x7e" + struct.pack("!H", size) + b"a" * size
                             if size else b"\x00\x00" * 4096)
                    self.stream(frame)
                    return
                self.send_frame("3probe")
            elif text.startswith("40"):
                self.send_frame(CONNECT_ANSWERS.get(mode, '40{"sid":"nsp_' + SID + '"}'))
            elif text == "1" or text.startswith("41"):
                return


def _content_length(head: bytes) -> int:
    for raw in head.split(b"\r\n")[1:]:
        name, _, value = raw.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            return min(int(value.strip()), 1 << 20)
    return 0


def serve(port: int, log: Path) -> None:
    lock = threading.Lock()
    listener = socket.create_server(("127.0.0.1", port), backlog=128)

    def one(sock: socket.socket) -> None:
        try:
            with sock:
                _Conn(sock, log, lock).handle()
        except (OSError, ConnectionError, ValueError):
            pass  # the probe hung up: exactly what it should do

    print("ready", flush=True)
    while True:
        sock, _addr = listener.accept()
        threading.Thread(target=one, args=(sock,), daemon=True).start()


class HostileServer:
    """The server as a child process (started, polled for readiness, stopped and waited)."""

    def __init__(self, log: Path) -> None:
        self.port = rig.free_port()
        self.log = log
        self.proc: subprocess.Popen[str] | None = None

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HostileServer:
        root = str(Path(__file__).resolve().parent.parent)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.hostile_server", str(self.port), str(self.log)],
            cwd=root, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.stop()
            raise rig.RigError("the hostile server did not start")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def requests(self) -> bytes:
        return self.log.read_bytes() if self.log.exists() else b""


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))


@contextlib.contextmanager
def running() -> Iterator[HostileServer]:
    """A started server with its request log in a temporary directory, stopped on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        hostile = HostileServer(Path(tmp) / "requests.log").start()
        try:
            yield hostile
        finally:
            hostile.stop()
