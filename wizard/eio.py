"""Engine.IO (v3 and v4), HTTP/1.1 and WebSocket on the wire, with no client library.

``wizard.probe`` and ``wizard.loadprobe`` call this. The probe has to see what a Socket.IO
client library hides: the exact status line, headers and body of the polling handshake, whether
the upgrade answered ``101`` or a ``400 {"code":3}`` or a ``200`` polling payload, and every
server ping with its arrival time. ``http.client`` cannot show a non-101 answer to an upgrade
without fighting it, and websocket-client raises on non-101 and answers pings behind our back;
a few hundred lines of raw socket code give full control and a hard deadline on every read.

The pieces that do not touch a socket (URL parsing, request building, head parsing, Engine.IO
packet decoding, the WebSocket frame codec) are pure so the asyncio load mode reuses them.
Every socket operation here runs under an absolute deadline (a server dripping a byte at a
time still ends at it) and every buffer has a cap: response heads (``MAX_HEAD``), bodies and
chunked bodies (``MAX_BODY``), chunk lines, WebSocket frames and fragmented messages
(``MAX_MESSAGE``, refused at the frame header, before buffering). Every value read from the
wire is type-checked (``read_open``, ``load_json``), and nothing server-chosen reaches a
request line or header unchecked (``SID_RE``, the cookie filter, ``build_request``'s guard).
Failures raise ``WireError`` with a ``kind`` that the probe turns into findings.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
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
MAX_LINE = 8 * 1024  # one chunk-size or trailer line
# One WebSocket message, fragments included: the probe only reads open packets, pings and
# CONNECT answers; Engine.IO's default maxPayload (1e6) fits with room to spare. A hostile
# server announcing a 2^62-byte frame is refused at the header, before anything is buffered.
MAX_MESSAGE = 2 * 1024 * 1024
MAX_FRAGMENTS = 4096  # zero-length fragments would otherwise grow a list without bound
MAX_PING_MS = 86_400_000  # a pingInterval/pingTimeout above one day is not a real setting
# Engine.IO session ids are base64url-ish (Node: base64id, python-engineio: urlsafe b64);
# anything else would go unchecked into a request line (CRLF = header injection).
SID_RE = re.compile(r"[A-Za-z0-9_\-=.~]{1,128}")
# What may appear in a request line or header value we send: printable Latin-1, no CTLs.
_UNSAFE_HEADER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
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
    """The request target of an Engine.IO request (``t`` only busts caches, like real clients).

    A server-chosen ``sid`` that is not Engine.IO's charset raises ``WireError('protocol')``
    (``read_open`` refuses such a handshake first; this is the last line before the wire).
    """
    query = f"{path}?EIO={eio}&transport={transport}"
    if sid is not None:
        if not SID_RE.fullmatch(sid):
            raise WireError("protocol", f"refusing to send the server's sid {sid[:40]!r}: "
                            "not an Engine.IO session id")
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
    """TLS handshake with SNI = the URL's host; errors become ``WireError('tls')``.

    The timeout is absolute: CPython's handshake keeps one deadline across its reads, so a
    server dripping the handshake a byte at a time still ends at ``timeout`` (tested).
    """
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


def remaining(deadline: float) -> float:
    """Seconds left before ``deadline``; ``WireError('timeout')`` when none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise WireError("timeout", "no answer before the deadline")
    return left


def open_socket(target: Target, timeout: float, insecure: bool) -> socket.socket:
    """TCP (+ TLS) within one deadline of ``timeout``."""
    deadline = time.monotonic() + timeout
    sock = tcp_connect(target, timeout)
    if not target.tls:
        return sock
    try:
        left = remaining(deadline)
    except WireError:
        sock.close()
        raise
    return tls_wrap(sock, target, insecure, left)


# --------------------------------------------------------------------------- HTTP


_COOKIE_RE = re.compile(r"[!#-+\--:<-\[\]-~]{1,4096}")  # cookie-octet and '=', no ; , space
MAX_COOKIES = 16


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
        # Echoed into our next request: only RFC 6265 cookie text, never a control character.
        pairs = [p for p in pairs if "=" in p and _COOKIE_RE.fullmatch(p)][:MAX_COOKIES]
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
    # Last line of defence: nothing that reaches the request line or a header may split it.
    if " " in path_qs or "\t" in path_qs:
        raise WireError("protocol", f"refusing to send a request target with a space: "
                        f"{path_qs[:60]!r}")
    for line in lines:
        if _UNSAFE_HEADER.search(line):
            raise WireError("protocol", f"refusing to send a request line or header with a "
                            f"control character or space: {line[:60]!r}")
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    except UnicodeEncodeError:
        raise WireError("protocol", "refusing to send a request with characters outside "
                        "Latin-1 in its request line or headers") from None


def parse_head(raw: bytes) -> tuple[int, str, Headers]:
    """Status line and headers of a response head (without the blank line)."""
    text = raw.decode("latin-1")
    lines = text.split("\r\n")
    match = re.match(r"HTTP/1\.[01] ([0-9]{3})(?: (.*))?$", lines[0])
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
            if len(self.buf) > MAX_LINE:
                raise WireError("protocol", f"a chunked-body line longer than {MAX_LINE} bytes")
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_to_close(self) -> bytes:
        while True:
            if len(self.buf) > MAX_BODY:
                raise _too_large()
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
            digits = line.split(b";")[0].strip() or b"0"
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", digits):
                raise WireError("protocol", f"bad chunk size {line[:20]!r}")
            size = int(digits, 16)
            if size == 0:
                # trailers, up to the blank line (bounded: MAX_HEAD in all)
                trailers = 0
                while line := self.read_line():
                    trailers += len(line) + 2
                    if trailers > MAX_HEAD:
                        raise WireError("protocol", "chunked trailers too large")
                return body
            if len(body) + size > MAX_BODY:
                raise _too_large()  # refused before a byte of the chunk is buffered
            body += self.read_exact(size)
            self.read_line()


def _too_large() -> WireError:
    return WireError("protocol", f"the answer's body is larger than {MAX_BODY >> 20} MiB "
                     "(no Engine.IO answer or error page is)")


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
    """One request on a fresh connection (as a browser might), closed afterwards; connecting
    and the whole answer share one deadline of ``timeout``."""
    deadline = time.monotonic() + timeout
    sock = open_socket(target, timeout, insecure)
    try:
        return http_exchange(sock, target, method, path_qs, headers, remaining(deadline), body)
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
    """An open packet (``0{…}``) or ``None`` when the text is not a usable one."""
    opened = read_open(packet, eio)
    return opened if isinstance(opened, Handshake) else None


def load_json(text: str) -> object:
    """``json.loads`` for server text: ``ValueError`` for anything unparsable, including
    nesting deep enough to exhaust the parser's recursion (RecursionError) and ``NaN``."""
    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _ms_field(data: dict[str, object], name: str) -> int | str:
    """A positive, finite, sane number of milliseconds, or why not."""
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{name} is {json.dumps(value)[:40] if name in data else 'missing'}"
    if not math.isfinite(value) or not 0 < value <= MAX_PING_MS:
        return f"{name} {value!r} is not between 1 ms and one day"
    return int(value)


def read_open(packet: str, eio: int) -> Handshake | str | None:
    """An open packet: the ``Handshake``, a sentence saying why this ``0{…}`` is unusable
    (the wire is hostile: every field is type- and range-checked), or ``None`` when the text
    is not an open packet at all."""
    if not packet.startswith("0{"):
        return None
    try:
        data = load_json(packet[1:])
    except ValueError as exc:
        return f"the open packet is not valid JSON ({exc})"
    if not isinstance(data, dict):
        return "the open packet is not a JSON object"
    sid = data.get("sid")
    if not isinstance(sid, str) or not SID_RE.fullmatch(sid):
        shown = json.dumps(sid, ensure_ascii=True)[:60] if "sid" in data else "missing"
        return (f"sid {shown} is not an Engine.IO session id (1-128 characters of "
                "A-Z a-z 0-9 _ - = . ~)")
    upgrades = data.get("upgrades", [])
    if not isinstance(upgrades, list) or not all(isinstance(u, str) for u in upgrades):
        return "upgrades is not a list of strings"
    interval, ping_timeout = _ms_field(data, "pingInterval"), _ms_field(data, "pingTimeout")
    for problem in (interval, ping_timeout):
        if isinstance(problem, str):
            return problem
    max_payload = data.get("maxPayload")
    if max_payload is not None and (isinstance(max_payload, bool)
                                    or not isinstance(max_payload, int) or max_payload <= 0):
        return f"maxPayload {json.dumps(max_payload)[:40]} is not a positive integer"
    assert isinstance(interval, int) and isinstance(ping_timeout, int)
    return Handshake(sid=sid, upgrades=tuple(upgrades)[:16], ping_interval_ms=interval,
                     ping_timeout_ms=ping_timeout, max_payload=max_payload, eio_version=eio)


def error_message(body: bytes) -> tuple[int | None, str | None]:
    """Engine.IO's error body: ``{"code":N,"message":…}`` (Node) or a JSON string (python)."""
    try:
        data = load_json(body.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
        return None, None
    if isinstance(data, dict):
        code = data.get("code")
        message = data.get("message")
        return (code if isinstance(code, int) and not isinstance(code, bool) else None), (
            message if isinstance(message, str) else None
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
        _send_all(self.sock, encode_frame(OP_TEXT, text.encode("utf-8")), timeout)

    def recv(self, timeout: float) -> Frame:
        """The next data or close frame; ``WireError('timeout')`` if none within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            while self.pending:
                frame = self.pending.pop(0)
                if frame.opcode == OP_PING:
                    _send_all(self.sock, encode_frame(OP_PONG, frame.payload),
                              max(0.001, deadline - time.monotonic()))
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
    if length is not None and re.fullmatch(r"[0-9]{1,18}", length.strip()):
        if int(length) > MAX_BODY:
            raise _too_large()
        return reader.read_exact(int(length))
    return reader.read_to_close()
