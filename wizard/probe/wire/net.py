"""Reaching the proxy: the probe URL, name resolution, TCP and TLS, each under a deadline.

Every other ``wizard.probe.wire`` module and the probe's stages call this. ``getaddrinfo`` has
no timeout of its own, so it runs in a daemon thread; connect, TLS and every send run under an
absolute deadline (``remaining``), so a server dripping a byte at a time still ends at it.
Failures raise ``WireError`` with a ``kind`` that the probe turns into findings.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from wizard.errors import ProbeFailed

WireErrorKind = Literal["resolve", "refused", "timeout", "tls", "closed", "reset", "protocol"]


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


def send_all(sock: socket.socket, data: bytes, timeout: float) -> None:
    sock.settimeout(timeout)
    try:
        sock.sendall(data)
    except TimeoutError:
        raise WireError("timeout", "sending timed out") from None
    except (BrokenPipeError, ConnectionResetError):
        raise WireError("reset", "connection closed while sending") from None
    except OSError as exc:
        raise WireError("reset", f"send failed: {exc}") from None

