"""HTTP/1.1 on a raw socket: requests, bounded responses, cookies carried along.

The probe's stages and ``wizard.probe.wire.websocket`` call this. The probe has to quote the
exact status line, headers and body of an answer (a 404 page, a ``400 {"code":3}``, a polling
payload where a ``101`` was expected); ``http.client`` cannot show a non-101 answer to an upgrade
without fighting it. Every buffer has a cap: response heads (``MAX_HEAD``), bodies and chunked
bodies (``MAX_BODY``), chunk lines (``MAX_LINE``); nothing server-chosen reaches a request line
or header unchecked (the cookie filter, ``build_request``'s guard).
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

from wizard.probe.wire.net import Target, WireError, open_socket, remaining, send_all

Headers = tuple[tuple[str, str], ...]

USER_AGENT = "sockwizard-probe"
MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024  # an HTML error page is plenty; a Socket.IO payload is far smaller
MAX_LINE = 8 * 1024  # one chunk-size or trailer line
# What may appear in a request line or header value we send: printable Latin-1, no CTLs.
_UNSAFE_HEADER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


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


class Reader:
    """Buffered reads from a socket, each bounded by one overall deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buf = b""
        self.version = b""  # of the last response head read: b"HTTP/1.1" or b"HTTP/1.0"

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
        self.version = head[:8]
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
                raise too_large()
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
                raise too_large()  # refused before a byte of the chunk is buffered
            body += self.read_exact(size)
            self.read_line()


def too_large() -> WireError:
    return WireError("protocol", f"the answer's body is larger than {MAX_BODY >> 20} MiB "
                     "(no Engine.IO answer or error page is)")


def read_response(reader: Reader, method: str = "GET") -> HttpResponse:
    status, reason, headers = parse_head(reader.read_head())
    response = HttpResponse(status, reason, headers, b"")
    if method == "HEAD" or status in (101, 204, 304) or 100 <= status < 200:
        return response
    return HttpResponse(status, reason, headers, read_body(reader, response))


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
    send_all(sock, build_request(method, target, path_qs, headers, body), timeout)
    return read_response(Reader(sock, deadline), method)


def get_kept(sock: socket.socket, target: Target, path_qs: str,
             headers: Sequence[tuple[str, str]], timeout: float) -> tuple[HttpResponse, bool]:
    """``http_exchange`` of a GET, and whether the socket may carry the next request
    (``keeps_alive``): the probe's handshake, whose connection the upgrade may reuse."""
    deadline = time.monotonic() + timeout
    send_all(sock, build_request("GET", target, path_qs, headers), timeout)
    reader = Reader(sock, deadline)
    response = read_response(reader)
    return response, keeps_alive(response, reader)


def keeps_alive(response: HttpResponse, reader: Reader) -> bool:
    """HTTP/1.1 persistence (RFC 9112 9.3), strictly: an HTTP/1.1 answer whose body had a
    length (not read to the close), no ``Connection: close``, and not one byte past the answer
    (a server that sent more than it framed is not one to send a second request to)."""
    if reader.version != b"HTTP/1.1" or reader.buf:
        return False
    tokens = {t.strip().lower() for t in (response.header("connection") or "").split(",")}
    if "close" in tokens or response.status == 101:
        return False
    framed = (response.header("content-length") is not None
              or (response.header("transfer-encoding") or "").lower().endswith("chunked")
              or response.status in (204, 304))
    return framed


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



def read_body(reader: Reader, head: HttpResponse) -> bytes:
    length = head.header("content-length")
    if (head.header("transfer-encoding") or "").lower().endswith("chunked"):
        return reader.read_chunked()
    if length is not None and re.fullmatch(r"[0-9]{1,18}", length.strip()):
        if int(length) > MAX_BODY:
            raise too_large()
        return reader.read_exact(int(length))
    return reader.read_to_close()
