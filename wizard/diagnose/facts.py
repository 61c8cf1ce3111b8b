"""The facts a diagnosis reasons over, as plain frozen dataclasses.

The readers (``wizard.diagnose.readers``) turn a proxy's live config into one
:class:`RouteFacts`; the run (``wizard.diagnose.run``) adds :class:`BackendCheck` answers from
the proxy host; the rules (``wizard.diagnose.rules``) hold the facts against the probe, with the
heartbeat they judge timeouts against (:class:`Ping`, from the live handshake or the defaults).
Test case files build ``RouteFacts`` with :meth:`RouteFacts.from_dict`. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from wizard.heartbeat import Heartbeat
from wizard.model import DEFAULT_PING_INTERVAL_MS, DEFAULT_PING_TIMEOUT_MS, ProxyKind

if TYPE_CHECKING:
    from wizard.probe import ProbeReport

__all__ = [
    "BackendCheck",
    "Blocker",
    "BodyLimit",
    "Capacity",
    "HeaderFact",
    "HostCheck",
    "Listen",
    "Ping",
    "RouteFacts",
    "RouteQuery",
    "TimeoutFact",
    "Where",
    "ping_of",
]



@dataclass(frozen=True)
class Where:
    """A place in the config: file, line (None when the format has none) and the text there."""

    file: str
    line: int | None = None
    text: str = ""

    def __str__(self) -> str:
        place = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{place} `{self.text}`" if self.text else place


@dataclass(frozen=True)
class TimeoutFact:
    """One effective idle timeout of the route, with the proxy's default applied when absent.

    ``seconds`` None means "never times out". ``where`` is empty when the default applies.
    ``applies_to`` says which traffic it cuts ("WebSocket and long-polling", "long-polling").
    """

    seconds: float | None
    directive: str
    applies_to: str
    where: tuple[Where, ...] = ()
    default_note: str = ""  # e.g. "nginx's default is 60 s"

    @property
    def is_default(self) -> bool:
        return not self.where


@dataclass(frozen=True)
class Blocker:
    """Why the WebSocket upgrade cannot get through this route, and the lines that fix it."""

    reason: str
    where: tuple[Where, ...]
    fix: str
    # Only some clients meet it (e.g. "Firefox"): a probe upgrade that got through does not
    # disprove it.
    only: str = ""


@dataclass(frozen=True)
class Listen:
    """One address the proxy listens on, per its config."""

    port: int
    tls: bool
    where: Where
    address: str = ""


@dataclass(frozen=True)
class Capacity:
    """The most concurrent WebSocket clients the proxy's config lets through (a WebSocket holds
    its connection for its whole life): nginx ``worker_connections`` × workers / 2 (client and
    upstream side), Apache ``MaxRequestWorkers``. Printed next to a ``--clients`` result."""

    clients: int
    directive: str  # how it was computed, e.g. "worker_connections 768 × 2 workers / 2"
    where: Where | None = None  # None: the proxy's default applies
    per_worker: bool = False  # nginx `worker_processes auto`: the count is per worker


@dataclass(frozen=True)
class RouteQuery:
    """What to look for: the Socket.IO path and the URL the clients (and the probe) use."""

    path: str = "/socket.io/"
    host: str = "localhost"
    port: int = 80
    tls: bool = False


@dataclass(frozen=True)
class BackendCheck:
    """Whether a backend address accepts TCP connections *from the proxy host*."""

    address: str
    reachable: bool
    detail: str = ""
    checked: bool = True  # False: the address was refused as hostile or odd, never tried


@dataclass(frozen=True)
class HeaderFact:
    """How one request header the backend compares the browser's Origin with is built.

    ``value`` is symbolic, so rules never parse config text: for Host and X-Forwarded-Host
    ``client`` (the client's Host, port included), ``client-no-port`` (nginx ``$host``: the
    name only), ``upstream`` (the target's own host: ``changeOrigin``, nginx's default
    ``$proxy_host``); for X-Forwarded-Proto ``scheme`` (the real one), ``http``, ``https``,
    ``client`` (passed through from the client) or ``ws-scheme`` (``ws``/``wss`` on upgrades:
    http-proxy's ``xfwd``). ``where`` is empty for a default.
    """

    value: str
    what: str = ""  # e.g. "proxy_set_header Host $host", "changeOrigin: true"
    where: Where | None = None


@dataclass(frozen=True)
class BodyLimit:
    """The largest request body the route accepts (``bytes`` None: no limit)."""

    bytes: int | None
    directive: str
    where: Where | None = None
    default_note: str = ""  # e.g. "nginx's default client_max_body_size is 1m"


@dataclass(frozen=True)
class HostCheck:
    """An answer from the proxy host beyond the config (``wizard.diagnose.hostcheck``).

    ``kind``: ``processes`` (who listens on a backend port, and its worker processes),
    ``localhost`` (``localhost`` -> ::1 vs 127.0.0.1), ``selinux`` (httpd_can_network_connect).
    ``problem`` True: the check found the fault; None: it could not tell.
    """

    kind: str
    subject: str
    problem: bool | None
    detail: str = ""


@dataclass(frozen=True)
class RouteFacts:
    """Everything the diagnosis needs to know about the route that serves the Socket.IO path.

    ``route`` None means no block of the chosen server/vhost/site handles the path at all;
    ``proxied`` False means a block handles it but does not forward it (files, a redirect).
    """

    proxy: ProxyKind
    source: str  # how the config was read, e.g. "nginx -T -c /etc/nginx/nginx.conf"
    files: tuple[str, ...] = ()
    version: str | None = None
    server: Where | None = None  # the server block / vhost / site that answers the URL
    server_tls: bool = False
    listens: tuple[Listen, ...] = ()
    route: Where | None = None
    route_desc: str = ""  # "location /socket.io/", "ProxyPass /socket.io/", "handle /socket.io/*"
    proxied: bool = False
    upstream: Where | None = None  # proxy_pass / ProxyPass target / reverse_proxy / target:
    upstream_path: str | None = None  # the path the backend sees for a request to ``path``
    backends: tuple[str, ...] = ()
    backends_where: Where | None = None  # the upstream / balancer / BACKENDS block
    affinity: str | None = None  # "hash $remote_addr consistent", "lb_policy cookie", ...
    affinity_problem: str | None = None  # why the affinity that is there does not stick
    ws_idle_timeout: TimeoutFact | None = None
    poll_timeout: TimeoutFact | None = None
    upgrade_blockers: tuple[Blocker, ...] = ()
    forwarded_proto: bool | None = None  # X-Forwarded-Proto reaches the backend (None: unknown)
    forwarded_host: bool | None = None  # the client's Host (or X-Forwarded-Host) reaches it
    forward_fix: str = ""  # the lines that add the missing forwarded headers
    elsewhere: Where | None = None  # a Socket.IO route that exists in *another* server block
    error_handler: bool | None = None  # http-proxy: proxy.on('error') (None: not applicable)
    backend_checks: tuple[BackendCheck, ...] = ()
    capacity: Capacity | None = None  # the config's ceiling on concurrent WebSocket clients
    # ---- issue 12, config side (wizard.diagnose.rules_front/rules_limits read these)
    url_port: int | None = None  # the URL's port these facts were read for
    host_seen: HeaderFact | None = None  # the Host the backend sees
    xfh_seen: HeaderFact | None = None  # X-Forwarded-Host (None: not sent)
    xfp_seen: HeaderFact | None = None  # X-Forwarded-Proto (None: not sent)
    affinity_kind: str | None = None  # "address" | "cookie" | "header" | "other"
    affinity_where: Where | None = None
    real_ip: Where | None = None  # set_real_ip_from / real_ip_header / trusted_proxies
    body_limit: BodyLimit | None = None
    mount: Where | None = None  # a middleware mount that strips the path prefix
    host_checks: tuple[HostCheck, ...] = ()
    notes: tuple[str, ...] = ()
    # Per-proxy hints for writing fixes in the right place (e.g. the upstream block's name).
    hints: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["proxy"] = self.proxy.value
        out["hints"] = dict(self.hints)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RouteFacts:
        """The inverse of ``to_dict``; missing keys take their defaults (test case files)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown RouteFacts keys: {sorted(unknown)}")
        values: dict[str, Any] = dict(data)
        values["proxy"] = ProxyKind(values.get("proxy", "nginx"))
        for key in ("host_seen", "xfh_seen", "xfp_seen"):
            if values.get(key) is not None:
                raw = dict(values[key])
                raw["where"] = _where(raw["where"]) if raw.get("where") is not None else None
                values[key] = HeaderFact(**raw)
        if values.get("body_limit") is not None:
            raw = dict(values["body_limit"])
            raw["where"] = _where(raw["where"]) if raw.get("where") is not None else None
            values["body_limit"] = BodyLimit(**raw)
        if "host_checks" in values:
            values["host_checks"] = tuple(HostCheck(**x) for x in values["host_checks"])
        for key in ("server", "route", "upstream", "backends_where", "elsewhere",
                    "affinity_where", "real_ip", "mount"):
            if values.get(key) is not None:
                values[key] = _where(values[key])
        for key in ("ws_idle_timeout", "poll_timeout"):
            if values.get(key) is not None:
                raw = dict(values[key])
                raw["where"] = tuple(_where(w) for w in raw.get("where", ()))
                values[key] = TimeoutFact(**raw)
        if "upgrade_blockers" in values:
            values["upgrade_blockers"] = tuple(
                Blocker(b["reason"], tuple(_where(w) for w in b.get("where", ())),
                        b.get("fix", ""), b.get("only", ""))
                for b in values["upgrade_blockers"])
        if "listens" in values:
            values["listens"] = tuple(
                Listen(x["port"], x.get("tls", False), _where(x["where"]), x.get("address", ""))
                for x in values["listens"])
        if values.get("capacity") is not None:
            raw_cap = dict(values["capacity"])
            if raw_cap.get("where") is not None:
                raw_cap["where"] = _where(raw_cap["where"])
            values["capacity"] = Capacity(**raw_cap)
        if "backend_checks" in values:
            values["backend_checks"] = tuple(BackendCheck(**x) for x in values["backend_checks"])
        for key in ("files", "backends", "notes"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def _where(raw: Any) -> Where:
    if isinstance(raw, Where):
        return raw
    if isinstance(raw, str):
        return Where(raw)
    return Where(raw["file"], raw.get("line"), raw.get("text", ""))



# --------------------------------------------------------------------------- the heartbeat


@dataclass(frozen=True)
class Ping:
    """The heartbeat a route timeout is held against: live from the handshake, or defaults."""

    interval_ms: int
    timeout_ms: int
    live: bool

    @property
    def heartbeat(self) -> Heartbeat:
        return Heartbeat(self.interval_ms, self.timeout_ms)

    @property
    def interval_s(self) -> float:
        return self.interval_ms / 1000

    @property
    def sum_s(self) -> float:
        return self.heartbeat.sum_s

    def describe(self) -> str:
        if self.live:
            return (f"live handshake: pingInterval {self.interval_ms} ms, pingTimeout "
                    f"{self.timeout_ms} ms (sum {self.sum_s:g} s)")
        return (f"no live handshake: Socket.IO's defaults assumed (pingInterval "
                f"{self.interval_ms} ms, pingTimeout {self.timeout_ms} ms)")


def ping_of(probe: ProbeReport | None) -> Ping:
    if probe is not None and probe.handshake is not None:
        hs = probe.handshake
        return Ping(hs.ping_interval_ms, hs.ping_timeout_ms, True)
    return Ping(DEFAULT_PING_INTERVAL_MS, DEFAULT_PING_TIMEOUT_MS, False)
