"""The deploy spec: one frozen value that every front end builds and every later step reads.

``DeploySpec`` holds everything needed to render, deploy and probe one proxy config, plus the
derived values the templates and the deploy read. ``problems()`` lists every semantic problem
by the value rules of ``wizard.model.checks``; ``validated()`` raises ``InvalidSpec`` with all
of them. Built from raw values by ``wizard.model.build``; read by every layer above. No I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wizard.errors import InvalidSpec
from wizard.model.checks import (
    file_path_problems,
    host_problems,
    path_problems,
    port_problems,
    server_name_problems,
    timeout_problems,
)
from wizard.model.values import (
    DEFAULT_PATH,
    DEFAULT_PING_INTERVAL_MS,
    DEFAULT_PING_TIMEOUT_MS,
    Backend,
    Layout,
    Problem,
    ProxyKind,
    Scope,
)


@dataclass(frozen=True)
class DeploySpec:
    """Everything needed to render, deploy and probe one proxy config."""

    proxy: ProxyKind = ProxyKind.NGINX
    path: str = DEFAULT_PATH
    # The path the Socket.IO *server* listens on, when the proxy rewrites (e.g. Caddy's
    # handle_path recipe keeps the server on /socket.io/). None: same as ``path``.
    server_path: str | None = None
    scope: Scope = Scope.ALL
    backends: tuple[Backend, ...] = (Backend("localhost", 3000),)
    listen_address: str | None = None  # None: every address
    listen_port: int = 80
    server_name: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_port: int = 443
    read_timeout: int = 60  # seconds; must exceed pingInterval + pingTimeout
    send_timeout: int = 60
    ping_interval_ms: int = DEFAULT_PING_INTERVAL_MS
    ping_timeout_ms: int = DEFAULT_PING_TIMEOUT_MS
    proxy_buffering: bool = True  # nginx; "off" is common advice for long-polling
    stream_close_delay: int | None = None  # Caddy 2.7+: keep WebSockets open across reloads
    apache_version: str | None = None  # None: assume >= 2.4.47 (ProxyPass upgrade=websocket)
    static_root: str = "/var/www/html"  # scope "socketio": what the proxy serves itself
    layout: Layout = Layout.SITE

    # -- derived values the templates and the deploy read -------------------------------
    @property
    def effective_server_path(self) -> str:
        return self.server_path or self.path

    @property
    def path_is_custom(self) -> bool:
        return self.path != DEFAULT_PATH or self.effective_server_path != DEFAULT_PATH

    @property
    def rewrites_path(self) -> bool:
        return self.effective_server_path != self.path

    @property
    def sticky(self) -> bool:
        return len(self.backends) > 1

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def server_host(self) -> str:
        """``server_name`` as a URL/Host literal: an IPv6 address in brackets (``[::1]``)."""
        name = self.server_name or ""
        return f"[{name}]" if ":" in name else name

    @property
    def ping_sum_s(self) -> float:
        return (self.ping_interval_ms + self.ping_timeout_ms) / 1000

    @property
    def apache_has_upgrade_param(self) -> bool:
        """``ProxyPass … upgrade=websocket`` exists from Apache 2.4.47 on."""
        if self.apache_version is None:
            return True
        return _version_tuple(self.apache_version) >= (2, 4, 47)

    def problems(self) -> list[Problem]:
        """Every semantic problem of this spec (types are already right)."""
        out: list[Problem] = []
        out += path_problems("path", self.path)
        if self.server_path is not None:
            out += path_problems("server_path", self.server_path)
        if not self.backends:
            out.append(Problem("backends", "at least one backend (HOST:PORT) is needed"))
        for i, b in enumerate(self.backends):
            out += host_problems(f"backends[{i}]", b.host)
            out += port_problems(f"backends[{i}]", b.port)
        if len(set(self.backends)) != len(self.backends):
            out.append(Problem("backends", "the same backend is listed twice"))
        if self.listen_address is not None:
            out += host_problems("listen", self.listen_address)
        out += port_problems("listen", self.listen_port)
        if self.server_name is not None:
            out += server_name_problems(self.server_name, self.proxy)
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            out.append(Problem(missing, "TLS needs both a certificate and a key file"))
        for name in ("tls_cert", "tls_key", "static_root"):
            value = getattr(self, name)
            if value is not None:
                out += file_path_problems(name, value)
        if self.tls and self.proxy is ProxyKind.HAPROXY and self.tls_key not in (
                self.tls_cert, f"{self.tls_cert}.key"):
            # HAProxy 2.6 has no key directive: `crt F` reads the key from F or from F.key.
            out.append(Problem("tls_key", "HAProxy reads the key from the certificate's PEM "
                               "or from CERT.key beside it: combine them (`cat cert.pem key.pem "
                               "> site.pem`, then give site.pem as both --tls-cert and "
                               "--tls-key), or name the key CERT.key"))
        if self.tls:
            out += port_problems("tls_port", self.tls_port)
            if self.tls_port == self.listen_port:
                out.append(Problem("tls_port", "the TLS port must differ from the plain HTTP port"))
        for name in ("ping_interval_ms", "ping_timeout_ms"):
            value = getattr(self, name)
            if not 1 <= value <= 2**31 - 1:
                out.append(Problem(name, f"must be between 1 and {2**31 - 1} ms, got {value}"))
        for name in ("read_timeout", "send_timeout"):
            out += timeout_problems(name, getattr(self, name), self.ping_interval_ms,
                                    self.ping_timeout_ms)
        if self.stream_close_delay is not None and not 0 <= self.stream_close_delay <= 86_400:
            out.append(Problem("stream_close_delay", "must be 0..86400 seconds"))
        if self.apache_version is not None and not re.fullmatch(r"2\.[0-9]{1,4}(\.[0-9]{1,4})?",
                                                                 self.apache_version):
            out.append(Problem("apache_version", "expected a 2.x version such as 2.4.62"))
        return out

    def validated(self) -> DeploySpec:
        """Return self, or raise InvalidSpec with every problem."""
        problems = self.problems()
        if problems:
            raise InvalidSpec(list(problems))
        return self


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())
