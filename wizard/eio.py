"""Engine.IO (v3 and v4), HTTP/1.1 and WebSocket on the wire, with no client library.

``wizard.probe`` and ``wizard.loadprobe`` call this. The probe has to see what a Socket.IO
client library hides: the exact status line, headers and body of the polling handshake, whether
the upgrade answered ``101`` or a ``400 {"code":3}`` or a ``200`` polling payload, and every
server ping with its arrival time. ``http.client`` cannot show a non-101 answer to an upgrade
without fighting it, and websocket-client raises on non-101 and answers pings behind our back;
a few hundred lines of raw socket code give full control and a hard deadline on every read.

The pieces that do not touch a socket (URL parsing, request building, head parsing, Engine.IO
packet decoding, the WebSocket frame codec) are pure so the asyncio load mode reuses them.
Every socket operation here runs under a deadline; failures raise ``WireError`` with a ``kind``
that the probe turns into findings.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from wizard.errors import ProbeFailed

Headers = tuple[tuple[str, str], ...]
WireErrorKind = Literal["resolve", "refused", "timeout", "tls", "closed", "reset", "protocol"]

USER_AGENT = "sockwizard-probe"
MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024  # an HTML error page is plenty; a Socket.IO payload is far smaller
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WireError(Exception):
    """A network-level failure, classified so the probe can say what it means."""

    def __init__(self, kind: WireErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: WireErrorKind = kind
        self.message = message


# --------------------------------------------------------------------------- URL and path


@dataclass(frozen=True)
class Target:
    """Where the probe connects: the proxy's scheme, host and port (never a path)."""

    scheme: Literal["http", "https"]
    host: str
    port: int
    # Connect to this address instead of ``host`` (Host header and SNI stay ``host``), like
    # curl --connect-to: the deploy probes the host it changed, whatever DNS says the name is.
    connect_host: str | None = None

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``scheme://host[:port]`` for python-socketio, which wants a URL, not a socket."""
        return f"{self.scheme}://{self.host_header}"


def parse_url(url: str, path: str) -> Target:
    """Check the probe URL; a bad one raises ``ProbeFailed`` naming what is wrong.

    ``ws://`` and ``wss://`` are accepted as ``http://``/``https://`` (the handshake starts on
    HTTP either way). A URL path is only accepted when it repeats ``path``: in Socket.IO client
    URLs the path is a namespace, so guessing would probe the wrong thing.
    """
    hint = "Give a URL like https://example.com or http://127.0.0.1:3000 and the path with --path."
    text = url.strip()
    if not text or any(c.isspace() for c in text):
        raise ProbeFailed(f"Malformed URL {url!r}: it is empty or contains spaces.", hint)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ProbeFailed(f"Malformed URL {url!r}: {exc}.", hint) from None
    scheme = {"http": "http", "ws": "http", "https": "https", "wss": "https"}.get(
        parts.scheme.lower()
    )
    if scheme is None:
        what = f"scheme {parts.scheme!r} is not supported" if parts.scheme else "it has no scheme"
        raise ProbeFailed(f"Malformed URL {url!r}: {what} (use http:// or https://).", hint)
    if not parts.hostname:
        raise ProbeFailed(f"Malformed URL {url!r}: it has no host.", hint)
    if port == 0:
        raise ProbeFailed(f"Malformed URL {url!r}: port 0 cannot be connected to.", hint)
    if parts.username or parts.password:
        raise ProbeFailed(f"Malformed URL {url!r}: credentials in the URL are not supported.",
                          "Pass them with --header Authorization:… instead.")
    if parts.query or parts.fragment:
        raise ProbeFailed(f"Malformed URL {url!r}: a query or fragment is not supported.", hint)
    if parts.path not in ("", "/") and normalize_path(parts.path) != path:
        raise ProbeFailed(
            f"The URL {url!r} has the path {parts.path!r}, but the Socket.IO path is {path!r}.",
            f"Put the Socket.IO path in --path (e.g. --path {parts.path}) and give the URL "
            "without a path.",
        )
    final: Literal["http", "https"] = "https" if scheme == "https" else "http"
    return Target(final, parts.hostname, port or (443 if final == "https" else 80))


def normalize_path(path: str) -> str:
    """``socket.io`` / ``/socket.io`` -> ``/socket.io/``: servers match the trailing slash."""
    if not path or any(c in path for c in "?# \t\r\n"):
        raise ProbeFailed(
            f"Invalid Socket.IO path {path!r}.",
            "Give a plain path such as /socket.io/ (no query string, no spaces).",
        )
    return "/" + path.strip("/") + "/" if path.strip("/") else "/"


def eio_query(path: str, eio: int, transport: str, sid: str | None = None) -> str:
    """The request target of an Engine.IO request (``t`` only busts caches, like real clients)."""
    query = f"{path}?EIO={eio}&transport={transport}"
    if sid is not None:
        query += f"&sid={sid}"
    return query


# --------------------------------------------------------------------------- connecting


def resolve(host: str, port: int, timeout: float) -> list[tuple[int, tuple[str, int]]]:
    """getaddrinfo under a deadline (the libc call has none), in a daemon thread."""
    result: list[tuple[int, tuple[str, int]]] = []
    error: list[BaseException] = []

    def work() -> None:
        try:
            for family, _type, _proto, _name, addr in socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            ):
                result.append((int(family), (str(addr[0]), int(addr[1]))))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=work, name="sockwizard-resolve", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise WireError("timeout", f"resolving {host} took longer than {timeout:g} s")
    if error or not result:
        why = str(error[0]) if error else "no address"
        raise WireError("resolve", f"cannot resolve {host}: {why}")
    return result


def tcp_connect(target: Target, timeout: float) -> socket.socket:
    """Connect to the first address that answers; TCP_NODELAY (small frames must not wait)."""
    deadline = time.monotonic() + timeout
    last: WireError | None = None
    for family, addr in resolve(target.connect_host or target.host, target.port, timeout):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(remaining)
        try:
            sock.connect(addr)
        except TimeoutError:
            sock.close()
            last = WireError("timeout", f"connecting to {addr[0]}:{addr[1]} timed out")
            continue
        except ConnectionRefusedError:
            sock.close()
            last = WireError("refused", f"connection to {addr[0]}:{addr[1]} refused")
            continue
        except OSError as exc:
            sock.close()
            last = WireError("refused", f"cannot connect to {addr[0]}:{addr[1]}: {exc.strerror}")
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise last or WireError("timeout", f"connecting to {target.host}:{target.port} timed out")


def make_ssl_context(insecure: bool) -> ssl.SSLContext:
    """Default verification, or none at all for ``--insecure`` (self-signed test setups)."""
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    # A WebSocket upgrade is HTTP/1.1 only; never let a proxy pick h2 for us.
    context.set_alpn_protocols(["http/1.1"])
    return context


def tls_wrap(sock: socket.socket, target: Target, insecure: bool, timeout: float) -> socket.socket:
    """TLS handshake with SNI = the URL's host; errors become ``WireError('tls')``."""
    sock.settimeout(timeout)
    try:
        return make_ssl_context(insecure).wrap_socket(sock, server_hostname=target.host)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise WireError("tls", f"certificate not trusted: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        sock.close()
        raise WireError("tls", f"TLS handshake failed: {exc.reason or exc}") from None
    except TimeoutError:
        sock.close()
        raise WireError("timeout", f"TLS handshake timed out after {timeout:g} s") from None
    except OSError as exc:
        sock.close()
        raise WireError("tls", f"TLS handshake failed: {exc}") from None


def open_socket(target: Target, timeout: float, insecure: bool) -> socket.socket:
    sock = tcp_connect(target, timeout)
    return tls_wrap(sock, target, insecure, timeout) if target.tls else sock


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class HttpResponse:
    """One HTTP answer, verbatim enough to quote in a finding."""

    status: int
    reason: str
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def with_cookies(self, headers: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        """``headers`` plus a Cookie header carrying this answer's Set-Cookie values, as a
        browser would send on the session's next requests: cookie-based affinity (Apache's
        route cookie, Caddy's ``lb_policy cookie``) only works when they come back."""
        pairs = [value.split(";", 1)[0].strip() for key, value in self.headers
                 if key.lower() == "set-cookie"]
        pairs = [p for p in pairs if "=" in p]
        if not pairs:
            return tuple(headers)
        others = [(k, v) for k, v in headers if k.lower() != "cookie"]
        given = [v for k, v in headers if k.lower() == "cookie"]
        return (*others, ("Cookie", "; ".join([*given, *pairs])))

    def summary(self, limit: int = 100) -> str:
        """``404 Not Found (text/html) "<html>…"``: what a finding's evidence quotes."""
        kind = self.header("content-type")
        head = f"{self.status} {self.reason}".strip()
        if kind:
            head += f" ({kind.split(';')[0].strip()})"
        body = " ".join(self.text.split())
        if body:
            clipped = body[:limit] + ("…" if len(body) > limit else "")
            head += f" {json.dumps(clipped, ensure_ascii=False)}"
        return head


def build_request(
    method: str,
    target: Target,
    path_qs: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    extra: Sequence[tuple[str, str]] = (),
) -> bytes:
    """An HTTP/1.1 request. ``headers`` (the user's) override the defaults by name."""
    own = [("Host", target.host_header), ("User-Agent", USER_AGENT), ("Accept", "*/*"), *extra]
    if body or method == "POST":
        own.append(("Content-Type", "text/plain;charset=UTF-8"))
        own.append(("Content-Length", str(len(body))))
    overridden = {k.lower() for k, _ in headers}
    lines = [f"{method} {path_qs} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in own if k.lower() not in overridden]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_head(raw: bytes) -> tuple[int, str, Headers]:
    """Status line and headers of a response head (without the blank line)."""
    text = raw.decode("latin-1")
    lines = text.split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3})(?: (.*))?$", lines[0])
    if not match:
        raise WireError("protocol", f"not an HTTP response: {lines[0][:60]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers.append((key.strip(), value.strip()))
    return int(match.group(1)), (match.group(2) or "").strip(), tuple(headers)


class _Reader:
    """Buffered reads from a socket, each bounded by one overall deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buf = b""

    def fill(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise WireError("timeout", "no answer before the deadline")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise WireError("timeout", "no answer before the deadline") from None
        except ConnectionResetError:
            raise WireError("reset", "connection reset by peer") from None
        except ssl.SSLError as exc:
            raise WireError("tls", f"TLS error while reading: {exc.reason or exc}") from None
        except OSError as exc:
            raise WireError("reset", f"read failed: {exc}") from None
        if not data:
            raise WireError("closed", "connection closed by peer")
        self.buf += data

    def read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                raise WireError("protocol", "response head too large")
            try:
                self.fill()
            except WireError as exc:
                if exc.kind == "closed" and self.buf:
                    first = self.buf[:60]
                    raise WireError("protocol", f"not an HTTP response: {first!r}") from None
                raise
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head

    def read_exact(self, size: int) -> bytes:
        while len(self.buf) < size:
            self.fill()
        data, self.buf = self.buf[:size], self.buf[size:]
        return data

    def read_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_to_close(self) -> bytes:
        while len(self.buf) < MAX_BODY:
            try:
                self.fill()
            except WireError as exc:
                if exc.kind in ("closed", "reset"):
                    break
                raise
        data, self.buf = self.buf, b""
        return data

    def read_chunked(self) -> bytes:
        body = b""
        while True:
            line = self.read_line()
            try:
                size = int(line.split(b";")[0].strip() or b"0", 16)
            except ValueError:
                raise WireError("protocol", f"bad chunk size {line[:20]!r}") from None
            if size == 0:
                # trailers, up to the blank line
                while self.read_line():
                    pass
                return body
            body += self.read_exact(size)
            self.read_line()
            if len(body) > MAX_BODY:
                return body


def read_response(reader: _Reader, method: str = "GET") -> HttpResponse:
    status, reason, headers = parse_head(reader.read_head())
    response = HttpResponse(status, reason, headers, b"")
    if method == "HEAD" or status in (101, 204, 304) or 100 <= status < 200:
        return response
    return HttpResponse(status, reason, headers, _read_body(reader, response))


def http_exchange(
    sock: socket.socket,
    target: Target,
    method: str,
    path_qs: str,
    headers: Sequence[tuple[str, str]],
    timeout: float,
    body: bytes = b"",
) -> HttpResponse:
    """Send one request on an open socket and read the whole answer, within ``timeout``."""
    deadline = time.monotonic() + timeout
    _send_all(sock, build_request(method, target, path_qs, headers, body), timeout)
    return read_response(_Reader(sock, deadline), method)


def http_request(
    target: Target,
    method: str,
    path_qs: str,
    headers: Sequence[tuple[str, str]],
    timeout: float,
    insecure: bool,
    body: bytes = b"",
) -> HttpResponse:
    """One request on a fresh connection (as a browser might), closed afterwards."""
    sock = open_socket(target, timeout, insecure)
    try:
        return http_exchange(sock, target, method, path_qs, headers, timeout, body)
    finally:
        sock.close()


def _send_all(sock: socket.socket, data: bytes, timeout: float) -> None:
    sock.settimeout(timeout)
    try:
        sock.sendall(data)
    except TimeoutError:
        raise WireError("timeout", "sending timed out") from None
    except (BrokenPipeError, ConnectionResetError):
        raise WireError("reset", "connection closed while sending") from None
    except OSError as exc:
        raise WireError("reset", f"send failed: {exc}") from None


# --------------------------------------------------------------------------- Engine.IO


@dataclass(frozen=True)
class Handshake:
    """The fields of an Engine.IO open packet (v3 has no maxPayload)."""

    sid: str
    upgrades: tuple[str, ...]
    ping_interval_ms: int
    ping_timeout_ms: int
    max_payload: int | None
    eio_version: int

    @property
    def ping_sum_s(self) -> float:
        """pingInterval + pingTimeout in seconds: what a proxy timeout must exceed."""
        return (self.ping_interval_ms + self.ping_timeout_ms) / 1000

    def to_dict(self) -> dict[str, object]:
        return {
            "sid": self.sid,
            "upgrades": list(self.upgrades),
            "pingInterval": self.ping_interval_ms,
            "pingTimeout": self.ping_timeout_ms,
            "maxPayload": self.max_payload,
            "eio_version": self.eio_version,
        }


_V3_TEXT = re.compile(rb"^\d+:0\{")


def looks_like_v3(body: bytes) -> bool:
    """``97:0{…}2:40`` (text payload) or the binary ``\\x00…\\xff0{`` form of Engine.IO v3."""
    if _V3_TEXT.match(body):
        return True
    return body[:1] in (b"\x00", b"\x01") and b"\xff0{" in body[:16]


def decode_payload(body: bytes, eio: int) -> list[str]:
    """Split a polling payload into packets (v4: ``\\x1e``-separated; v3: length-prefixed)."""
    if eio >= 4:
        return body.decode("utf-8", "replace").split("\x1e")
    packets: list[str] = []
    if body[:1] in (b"\x00", b"\x01"):
        data = body
        while data:
            digits, _, data = data[1:].partition(b"\xff")
            # v3 binary lengths are one byte per decimal digit (0..9), ended by 0xff
            size = int("".join(str(d) for d in digits) or "0")
            packets.append(data[:size].decode("utf-8", "replace"))
            data = data[size:]
        return packets
    text = body.decode("utf-8", "replace")
    while text:
        length, sep, rest = text.partition(":")
        if not sep or not length.isdigit():
            break
        size = int(length)
        packets.append(rest[:size])
        text = rest[size:]
    return packets


def parse_open(packet: str, eio: int) -> Handshake | None:
    """An open packet (``0{…}``) or ``None`` when the text is not one."""
    if not packet.startswith("0{"):
        return None
    try:
        data = json.loads(packet[1:])
        upgrades = data.get("upgrades", [])
        return Handshake(
            sid=str(data["sid"]),
            upgrades=tuple(str(u) for u in upgrades) if isinstance(upgrades, list) else (),
            ping_interval_ms=int(data["pingInterval"]),
            ping_timeout_ms=int(data["pingTimeout"]),
            max_payload=int(data["maxPayload"]) if "maxPayload" in data else None,
            eio_version=eio,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def error_message(body: bytes) -> tuple[int | None, str | None]:
    """Engine.IO's error body: ``{"code":N,"message":…}`` (Node) or a JSON string (python)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None, None
    if isinstance(data, dict):
        code = data.get("code")
        message = data.get("message")
        return (code if isinstance(code, int) else None), (
            str(message) if message is not None else None
        )
    if isinstance(data, str):
        return None, data
    return None, None


# --------------------------------------------------------------------------- WebSocket

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
    """Incremental frame parser: feed bytes, get whole messages (fragments reassembled)."""

    def __init__(self) -> None:
        self.buf = b""
        self._parts: list[bytes] = []
        self._first_opcode = OP_TEXT

    def feed(self, data: bytes) -> list[Frame]:
        self.buf += data
        frames: list[Frame] = []
        while True:
            frame = self._next()
            if frame is None:
                return frames
            frames.append(frame)

    def _next(self) -> Frame | None:
        while True:
            buf = self.buf
            if len(buf) < 2:
                return None
            fin, opcode = buf[0] & 0x80, buf[0] & 0x0F
            masked, length = buf[1] & 0x80, buf[1] & 0x7F
            pos = 2
            if length == 126:
                if len(buf) < 4:
                    return None
                length, pos = struct.unpack("!H", buf[2:4])[0], 4
            elif length == 127:
                if len(buf) < 10:
                    return None
                length, pos = struct.unpack("!Q", buf[2:10])[0], 10
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
            self.buf = buf[pos + length :]
            if opcode >= 0x8:  # control frames are never fragmented
                return Frame(opcode, payload)
            if opcode != OP_CONT:
                self._first_opcode = opcode
                self._parts = []
            self._parts.append(payload)
            if fin:
                whole = b"".join(self._parts)
                self._parts = []
                return Frame(self._first_opcode, whole)


class WebSocket:
    """A client WebSocket over a connected socket; WebSocket-level pings are answered here."""

    def __init__(self, sock: socket.socket, leftover: bytes = b"") -> None:
        self.sock = sock
        self.decoder = FrameDecoder()
        self.pending: list[Frame] = self.decoder.feed(leftover) if leftover else []
        self.closed = False

    def send_text(self, text: str, timeout: float) -> None:
        _send_all(self.sock, encode_frame(OP_TEXT, text.encode("utf-8")), timeout)

    def recv(self, timeout: float) -> Frame:
        """The next data or close frame; ``WireError('timeout')`` if none within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            while self.pending:
                frame = self.pending.pop(0)
                if frame.opcode == OP_PING:
                    _send_all(self.sock, encode_frame(OP_PONG, frame.payload), timeout)
                    continue
                if frame.opcode == OP_PONG:
                    continue
                if frame.opcode == OP_CLOSE:
                    self.closed = True
                return frame
            reader = _Reader(self.sock, deadline)
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
    _send_all(sock, build_request("GET", target, path_qs, headers, extra=upgrade_headers(key)),
              timeout)
    reader = _Reader(sock, deadline)
    status, reason, resp_headers = parse_head(reader.read_head())
    if status != 101:
        # Not upgraded: read the body like any answer so the evidence can quote it.
        head = HttpResponse(status, reason, resp_headers, b"")
        try:
            rest = _read_body(reader, head)
        except WireError:
            rest = reader.buf
        return HttpResponse(status, reason, resp_headers, rest), None
    response = HttpResponse(status, reason, resp_headers, b"")
    accept = response.header("sec-websocket-accept")
    if accept != accept_for(key):
        raise WireError("protocol", f"101 with a wrong Sec-WebSocket-Accept ({accept!r})")
    return response, WebSocket(sock, reader.buf)


def _read_body(reader: _Reader, head: HttpResponse) -> bytes:
    length = head.header("content-length")
    if (head.header("transfer-encoding") or "").lower().endswith("chunked"):
        return reader.read_chunked()
    if length is not None and length.strip().isdigit():
        return reader.read_exact(min(int(length), MAX_BODY))
    return reader.read_to_close()
