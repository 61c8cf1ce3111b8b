"""WebSocket (RFC 6455) as a client: the upgrade request, the frame codec, a bounded decoder.

The probe's WebSocket stage, ``wizard.probe.hold`` and ``wizard.probe.load`` (whose asyncio
clients share the pure codec) call this. websocket-client raises on a non-101 answer and
answers pings behind our back; here a non-101 comes back whole, for the evidence, and every
frame's arrival is seen. A frame or fragmented message over ``MAX_MESSAGE`` is refused at its
header, before anything is buffered.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

from wizard.probe.wire.http import HttpResponse, Reader, build_request, parse_head, read_body
from wizard.probe.wire.net import Target, WireError, send_all

# One WebSocket message, fragments included: the probe only reads open packets, pings and
# CONNECT answers; Engine.IO's default maxPayload (1e6) fits with room to spare. A hostile
# server announcing a 2^62-byte frame is refused at the header, before anything is buffered.
MAX_MESSAGE = 2 * 1024 * 1024
MAX_FRAGMENTS = 4096  # zero-length fragments would otherwise grow a list without bound
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


@dataclass(frozen=True)
class Frame:
    opcode: int
    payload: bytes

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")

    @property
    def close_code(self) -> int | None:
        if self.opcode == OP_CLOSE and len(self.payload) >= 2:
            return int(struct.unpack("!H", self.payload[:2])[0])
        return None


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode("ascii")).digest()).decode()


def upgrade_headers(key: str) -> tuple[tuple[str, str], ...]:
    return (
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    )


def encode_frame(opcode: int, payload: bytes, mask: bool = True) -> bytes:
    """One final frame; clients must mask (RFC 6455 5.3)."""
    length = len(payload)
    head = bytes([0x80 | opcode])
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    # XOR through int arithmetic: fast enough for Engine.IO's tiny packets, no numpy needed.
    repeated = (key * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        length, "big"
    )
    return head + key + masked


class FrameDecoder:
    """Incremental frame parser: feed bytes, get whole messages (fragments reassembled).

    Bounded: a frame or a message (all its fragments) longer than ``max_message`` raises
    ``WireError('protocol')`` as soon as its header announces it, so at most one read beyond
    the cap is ever buffered; a control frame over 125 bytes (RFC 6455 5.5) is refused too.
    """

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.buf = b""
        self._pos = 0  # start of the unparsed bytes in buf
        self.max_message = max_message
        self._parts: list[bytes] = []
        self._parts_size = 0
        self._first_opcode = OP_TEXT

    def feed(self, data: bytes) -> list[Frame]:
        self.buf += data
        frames: list[Frame] = []
        try:
            while (frame := self._next()) is not None:
                frames.append(frame)
        finally:
            # One slice per feed, not per frame: a read full of tiny frames stays linear.
            self.buf, self._pos = self.buf[self._pos :], 0
        return frames

    def _next(self) -> Frame | None:
        while True:
            buf, start = self.buf, self._pos
            if len(buf) - start < 2:
                return None
            fin, opcode = buf[start] & 0x80, buf[start] & 0x0F
            masked, length = buf[start + 1] & 0x80, buf[start + 1] & 0x7F
            pos = start + 2
            if length == 126:
                if len(buf) < pos + 2:
                    return None
                length, pos = struct.unpack("!H", buf[pos : pos + 2])[0], pos + 2
            elif length == 127:
                if len(buf) < pos + 8:
                    return None
                length, pos = struct.unpack("!Q", buf[pos : pos + 8])[0], pos + 8
            if opcode >= 0x8 and length > 125:
                raise WireError("protocol", f"a control frame of {length} bytes (max 125)")
            if opcode < 0x8 and self._parts_size + length > self.max_message:
                raise WireError("protocol", f"a WebSocket message of more than "
                                f"{self._parts_size + length} bytes (cap {self.max_message})")
            if opcode < 0x8 and len(self._parts) >= MAX_FRAGMENTS:
                raise WireError("protocol", f"a WebSocket message in more than {MAX_FRAGMENTS} "
                                "fragments")
            key = b""
            if masked:
                key, pos = buf[pos : pos + 4], pos + 4
            if len(buf) < pos + length:
                return None
            payload = buf[pos : pos + length]
            if masked and length:
                repeated = (key * (length // 4 + 1))[:length]
                payload = (
                    int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
                ).to_bytes(length, "big")
            self._pos = pos + length
            if opcode >= 0x8:  # control frames are never fragmented
                return Frame(opcode, payload)
            if opcode != OP_CONT:
                self._first_opcode = opcode
                self._parts, self._parts_size = [], 0
            self._parts.append(payload)
            self._parts_size += length
            if fin:
                whole = b"".join(self._parts)
                self._parts, self._parts_size = [], 0
                return Frame(self._first_opcode, whole)


class WebSocket:
    """A client WebSocket over a connected socket; WebSocket-level pings are answered here."""

    def __init__(self, sock: socket.socket, leftover: bytes = b"") -> None:
        self.sock = sock
        self.decoder = FrameDecoder()
        self.pending: list[Frame] = self.decoder.feed(leftover) if leftover else []
        self.closed = False

    def send_text(self, text: str, timeout: float) -> None:
        self.send_texts([text], timeout)

    def send_texts(self, texts: Sequence[str], timeout: float) -> None:
        """Several text frames in one write: messages whose answers need not be awaited
        between them cost one round trip, not one each."""
        send_all(self.sock, b"".join(encode_frame(OP_TEXT, t.encode("utf-8")) for t in texts),
                 timeout)

    def send_ping(self, timeout: float) -> None:
        """A WebSocket-level ping: traffic both ways (the server's pong) without Engine.IO."""
        send_all(self.sock, encode_frame(OP_PING, b"sw"), timeout)

    def recv(self, timeout: float) -> Frame:
        """The next data or close frame; ``WireError('timeout')`` if none within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            while self.pending:
                frame = self.pending.pop(0)
                if frame.opcode == OP_PING:
                    send_all(self.sock, encode_frame(OP_PONG, frame.payload),
                              max(0.001, deadline - time.monotonic()))
                    continue
                if frame.opcode == OP_PONG:
                    continue
                if frame.opcode == OP_CLOSE:
                    self.closed = True
                return frame
            reader = Reader(self.sock, deadline)
            reader.fill()
            self.pending.extend(self.decoder.feed(reader.buf))

    def close(self) -> None:
        """Polite close frame (best effort), then the socket."""
        if not self.closed:
            try:
                self.sock.settimeout(0.5)
                self.sock.sendall(encode_frame(OP_CLOSE, struct.pack("!H", 1000)))
            except OSError:
                pass
            self.closed = True
        self.sock.close()


def ws_connect(
    sock: socket.socket,
    target: Target,
    path_qs: str,
    headers: Sequence[tuple[str, str]],
    timeout: float,
) -> tuple[HttpResponse, WebSocket | None]:
    """Send the upgrade request; a 101 gives a ``WebSocket``, anything else its full answer."""
    key = new_key()
    deadline = time.monotonic() + timeout
    send_all(sock, build_request("GET", target, path_qs, headers, extra=upgrade_headers(key)),
              timeout)
    reader = Reader(sock, deadline)
    status, reason, resp_headers = parse_head(reader.read_head())
    if status != 101:
        # Not upgraded: read the body like any answer so the evidence can quote it.
        head = HttpResponse(status, reason, resp_headers, b"")
        try:
            rest = read_body(reader, head)
        except WireError:
            rest = reader.buf
        return HttpResponse(status, reason, resp_headers, rest), None
    response = HttpResponse(status, reason, resp_headers, b"")
    accept = response.header("sec-websocket-accept")
    if accept != accept_for(key):
        raise WireError("protocol", f"101 with a wrong Sec-WebSocket-Accept ({accept!r})")
    return response, WebSocket(sock, reader.buf)

