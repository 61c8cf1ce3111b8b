"""The staged live probe behind ``sockwizard probe`` (and the probe half of ``diagnose``).

``wizard.cli`` calls ``run_probe`` and prints ``format_report`` or ``report.to_dict()``; the TUI
calls ``run_probe`` from a worker thread with ``on_stage`` to fill its table live; ``deploy``
uses ``report.ok`` to decide a rollback; ``wizard.diagnose`` reads the stages, the handshake and
the findings. Stages, each timed:

1. ``tcp`` (+ ``tls``) connect to the proxy;
2. ``polling``: the Engine.IO v4 handshake, read verbatim and classified (``polling-eio3``
   retries with EIO=3 when the answer says the server is Socket.IO 2.x);
3. ``websocket``: the upgrade with that sid, ``2probe``/``3probe``/``5``;
4. ``socketio`` (+ ``emit``): python-socketio's own connect, and the transport it ends up on;
5. ``hold``, ``sessions``, ``clients`` when asked for.

Stages 1-3 and the hold use raw sockets (``wizard.eio``) because the evidence is the exact
answer a client library would hide; stage 4 uses the real client because "does the client a
user runs get WebSocket" is the question. That client has no deadline and no buffer cap of its
own, so it runs in a child process with an address-space limit, killed at a hard deadline
(``sio_probe_bounded``). Each stage has one deadline of ``timeout`` (the python-socketio child:
``sio_budget``). A failed stage becomes a ``Finding``; an exception a stage did not anticipate
becomes a failed stage too (``_Run.guarded``), so a hostile server can fail the probe but never
make it raise: only a bad input (the URL, the options) raises, as ``ProbeFailed``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from wizard import findings as codes
from wizard.eio import (
    MAX_MESSAGE,
    OP_CLOSE,
    OP_TEXT,
    SID_RE,
    Handshake,
    HttpResponse,
    Target,
    WebSocket,
    WireError,
    decode_payload,
    eio_query,
    error_message,
    http_exchange,
    http_request,
    load_json,
    looks_like_v3,
    normalize_path,
    open_socket,
    parse_url,
    read_open,
    remaining,
    tcp_connect,
    tls_wrap,
    ws_connect,
)
from wizard.errors import BadInput, ProbeFailed, SockwizardError
from wizard.findings import Finding, merge_findings, sort_findings

if TYPE_CHECKING:
    import socket

    from wizard.loadprobe import ClientsResult, HoldResult, HoldVerdict, SessionsResult

__all__ = [
    "STAGE_NAMES",
    "Finding",
    "Handshake",
    "ProbeOptions",
    "ProbeReport",
    "Stage",
    "format_report",
    "parse_data",
    "parse_header",
    "run_probe",
]

# Every stage the probe can report, in order (the TUI pre-fills its table from this).
STAGE_NAMES = (
    "tcp", "tls", "polling", "polling-eio3", "websocket", "socketio", "emit", "hold",
    "sessions", "clients",
)
MAX_SESSIONS = 1000
_T = TypeVar("_T")
MAX_CLIENTS = 100_000


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class ProbeOptions:
    """What to probe and how; the CLI flags map one to one (see the module docstring)."""

    path: str = "/socket.io/"
    headers: tuple[tuple[str, str], ...] = ()
    origin: str | None = None
    insecure: bool = False
    timeout: float = 5.0  # seconds, per stage (per request inside a stage)
    emit: str | None = None
    data: str | None = None  # JSON text sent with --emit (parsed here: "null" is a value)
    expect: str | None = None  # wait for this event instead of an acknowledgement
    hold: float = 0.0  # seconds to keep an idle connection open (0: no hold)
    sessions: int = 0
    clients: int = 0
    # Connect Socket.IO with a raw CONNECT packet on the upgraded WebSocket instead of the
    # python-socketio client: the same proof (a namespace answered over WebSocket) without
    # ~200 ms of imports. The deploy's post-reload probe uses it; --emit needs the client.
    raw_connect: bool = False
    # Record this response header of the handshake and of the upgrade in the stages' data
    # ("marker"): the deploy checks that both were answered by the config it just loaded.
    marker_header: str | None = None
    # Connect to this address, not the URL's host (which stays the Host header and SNI).
    connect_to: str | None = None

    def problems(self) -> list[str]:
        """Everything wrong with these options, one sentence each (empty: fine)."""
        out: list[str] = []
        if not (0 < self.timeout <= 600):
            out.append(f"--timeout must be between 0 and 600 seconds (got {self.timeout:g})")
        if self.hold < 0 or self.hold > 86_400:
            out.append(f"--hold must be between 0 and 86400 seconds (got {self.hold:g})")
        if not 0 <= self.sessions <= MAX_SESSIONS:
            out.append(f"--sessions must be between 0 and {MAX_SESSIONS} (got {self.sessions})")
        if not 0 <= self.clients <= MAX_CLIENTS:
            out.append(f"--clients must be between 0 and {MAX_CLIENTS} (got {self.clients})")
        if self.connect_to is not None:
            if not self.raw_connect:
                out.append("--connect-to cannot be combined with --emit (python-socketio "
                           "resolves the URL itself)")
            if self.clients:
                out.append("--connect-to does not apply to --clients")
            if not re.fullmatch(r"[A-Za-z0-9.:\-\[\]]{1,253}", self.connect_to):
                out.append(f"--connect-to {self.connect_to!r} is not a host name or address")
        if self.raw_connect and self.emit is not None:
            out.append("--emit needs the python-socketio client (not raw_connect)")
        if self.expect is not None and self.emit is None:
            out.append("--expect needs --emit (the event to send first)")
        if self.data is not None and self.emit is None:
            out.append("--data needs --emit (the event to send it with)")
        if self.data is not None:
            try:
                json.loads(self.data)
            except ValueError as exc:
                out.append(f"--data is not valid JSON ({exc})")
        for key, value in self.headers:
            if not key or any(c in key for c in " \t\r\n:") or not _header_safe(key + value):
                out.append(f"invalid header {key!r}: {value!r} (control characters or "
                           "characters outside Latin-1)")
        if self.origin is not None and not _header_safe(self.origin):
            out.append(f"invalid --origin {self.origin!r}")
        return out

    def request_headers(self) -> tuple[tuple[str, str], ...]:
        origin = (("Origin", self.origin),) if self.origin else ()
        return origin + self.headers


def _header_safe(text: str) -> bool:
    """Sendable in an HTTP header: Latin-1, no control characters (tab allowed)."""
    return all(c == "\t" or (0x20 <= ord(c) <= 0xFF and ord(c) != 0x7F) for c in text)


@dataclass(frozen=True)
class Stage:
    """One probe step: did it work, how long it took, what it saw (``data``: the raw facts)."""

    name: str
    ok: bool
    ms: float
    detail: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "ok": self.ok, "ms": self.ms, "detail": self.detail,
            "data": dict(self.data),
        }


@dataclass(frozen=True)
class ProbeReport:
    """Everything one probe saw. ``ok``: WebSocket works end to end and no error findings."""

    url: str
    path: str
    ok: bool
    transport: str | None  # what python-socketio ended up on: "websocket", "polling", None
    handshake: Handshake | None
    stages: tuple[Stage, ...]
    findings: tuple[Finding, ...]
    hold: HoldResult | None = None
    sessions: SessionsResult | None = None
    clients: ClientsResult | None = None

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "path": self.path,
            "ok": self.ok,
            "transport": self.transport,
            "handshake": self.handshake.to_dict() if self.handshake else None,
            "stages": [s.to_dict() for s in self.stages],
            "findings": [f.to_dict() for f in self.findings],
            "hold": self.hold.to_dict() if self.hold else None,
            "sessions": self.sessions.to_dict() if self.sessions else None,
            "clients": self.clients.to_dict() if self.clients else None,
        }


# --------------------------------------------------------------------------- CLI helpers


def parse_header(text: str) -> tuple[str, str]:
    """``--header 'K: V'`` -> ``("K", "V")``; ``BadInput`` when there is no name or colon."""
    key, sep, value = text.partition(":")
    if not sep or not key.strip() or any(c in key.strip() for c in " \t"):
        raise BadInput(f"Invalid --header {text!r}.", "Write it as Name:value, e.g. "
                       "--header 'Authorization: Bearer abc'.")
    return key.strip(), value.strip()


def parse_data(text: str) -> Any:
    """``--data JSON`` -> the JSON value; ``BadInput`` with the parser's position otherwise."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadInput(f"--data is not valid JSON: {exc}.",
                       "Quote it for the shell, e.g. --data '{\"x\": 1}' or --data '\"text\"'.")\
            from None


# --------------------------------------------------------------------------- classification


@dataclass(frozen=True)
class Verdict:
    """How one handshake answer reads: a handshake, findings, and what to try next."""

    handshake: Handshake | None
    detail: str
    findings: tuple[Finding, ...] = ()
    retry_eio3: bool = False
    websocket_only: bool = False


def _fix_path(path: str) -> str:
    return (
        "Make the three paths agree: the proxy's route for Socket.IO (nginx location, "
        "ProxyPass, Caddy handle/reverse_proxy matcher, http-proxy routing), the server's "
        f"`path` option and the client's `path`. If the server uses another path than {path}, "
        "probe with --path."
    )


FIX_UPGRADE = (
    "Forward the WebSocket upgrade on the Socket.IO route: the proxy must pass `Upgrade` and "
    "`Connection: upgrade` to the server over HTTP/1.1 (nginx: proxy_http_version 1.1 plus "
    "proxy_set_header Upgrade $http_upgrade and Connection $connection_upgrade in that "
    "location; Apache: ProxyPass … upgrade=websocket or the mod_proxy_wstunnel rewrite; "
    "http-proxy: ws: true and the server's 'upgrade' event wired to proxy.ws). Until then "
    "clients stay on long-polling and websocket-only clients fail."
)
FIX_BACKEND = (
    "Start the Socket.IO server, or point the proxy's upstream (proxy_pass, ProxyPass, "
    "reverse_proxy, the http-proxy target) at the host and port it really listens on."
)
FIX_ORIGIN = (
    "Allow the page's origin on the server (Node: `cors: { origin: [...] }`; python-socketio: "
    "`cors_allowed_origins`). When TLS ends at the proxy, also forward X-Forwarded-Proto and "
    "X-Forwarded-Host (python-engineio builds the allowed origin from them)."
)
FIX_STICKY = (
    "Turn on sticky sessions so every request of a session reaches the same server (nginx: "
    "`ip_hash` or `hash $remote_addr consistent` in the upstream; Apache: a balancer with "
    "route= and stickysession; Caddy: `lb_policy cookie` or `client_ip_hash`), or make all "
    "clients websocket-only (transports: ['websocket'])."
)


def _bad_open(problem: str, evidence: str) -> Finding:
    return Finding(
        codes.UNEXPECTED_RESPONSE, "error",
        f"The Engine.IO handshake is invalid: {problem}", evidence,
        "Check what answers at this path: a real Engine.IO server sends a session id of "
        "URL-safe characters and positive, finite pingInterval/pingTimeout in milliseconds "
        "(e.g. 25000/20000). A zero, negative or infinite value makes every proxy timeout "
        "look safe, so the probe refuses it.")


def _origin_rejected(evidence: str) -> Finding:
    return Finding(codes.ORIGIN_REJECTED, "error", "The server rejected the request's Origin",
                   evidence, FIX_ORIGIN)


def _is_origin_refusal(response: HttpResponse, origin: str | None) -> bool:
    code, message = error_message(response.body)
    text = (message or response.text).lower()
    if "origin" in text and ("not an accepted" in text or "not allowed" in text):
        return True
    if response.status in (400, 403) and code == 4:
        return True
    return response.status == 403 and bool(origin)


def classify_handshake(response: HttpResponse, path: str, origin: str | None) -> Verdict:
    """Read the answer to ``GET {path}?EIO=4&transport=polling`` (pure: tested from tables)."""
    summary = response.summary()
    where = f"GET {path}?EIO=4&transport=polling answered {summary}"
    if response.status == 200:
        packets = decode_payload(response.body, 4)
        handshake = read_open(packets[0], 4) if packets else None
        if isinstance(handshake, str):
            return Verdict(None, f"invalid open packet: {handshake}",
                           (_bad_open(handshake, where),))
        if handshake is not None:
            detail = (
                f"sid {handshake.sid}, upgrades {list(handshake.upgrades)}, "
                f"ping {handshake.ping_interval_ms}/{handshake.ping_timeout_ms} ms, "
                f"maxPayload {handshake.max_payload}"
            )
            return Verdict(handshake, detail)
        if looks_like_v3(response.body):
            return Verdict(None, f"Engine.IO v3 answer to an EIO=4 request: {summary}",
                           retry_eio3=True)
    if _is_origin_refusal(response, origin):
        return Verdict(None, summary, (_origin_rejected(where),))
    code, message = error_message(response.body)
    if response.status == 400 and code == 5:
        return Verdict(None, f"{summary}: the server does not speak EIO=4", retry_eio3=True)
    refused = code == 0 or (message or "").lower() == "invalid transport"  # Node / python
    if response.status == 400 and refused:
        return Verdict(None, f"{summary}: the server refuses long-polling", websocket_only=True)
    if response.status == 404:
        title = f"Nothing answers Socket.IO at {path} (404 Not Found)"
        return Verdict(None, summary, (
            Finding(codes.PATH_MISMATCH, "error", title, where, _fix_path(path)),))
    if response.status in (502, 503, 504):
        title = (f"The proxy cannot reach the Socket.IO server ({response.status} "
                 f"{response.reason})")
        return Verdict(None, summary, (
            Finding(codes.BACKEND_UNREACHABLE, "error", title, where, FIX_BACKEND),))
    if response.status == 426 or (response.header("upgrade") or "").lower() == "websocket":
        title = f"A plain WebSocket server answers at {path}, not Socket.IO"
        fix = ("Socket.IO clients need a Socket.IO server. Route the Socket.IO path to the "
               "Socket.IO server, or use a plain WebSocket client (e.g. wscat) for this one.")
        return Verdict(None, summary, (Finding(codes.PATH_MISMATCH, "error", title, where, fix),))
    if response.status == 200 or (code is None and message is None):
        kind = (response.header("content-type") or "no content type").split(";")[0]
        title = f"{path} is served by something that is not Socket.IO ({response.status}, {kind})"
        fix = _fix_path(path) + (" A catch-all route (an SPA fallback, a default site) may be "
                                  "answering first: put the Socket.IO route before it.")
        return Verdict(None, summary, (Finding(codes.PATH_MISMATCH, "error", title, where, fix),))
    title = f"Unexpected answer to the Engine.IO handshake: {response.status} {response.reason}"
    fix = "Read the body above: the server or the proxy refused the request for its own reason."
    return Verdict(None, summary, (
        Finding(codes.UNEXPECTED_RESPONSE, "error", title, where, fix),))


def classify_upgrade(response: HttpResponse, path: str, origin: str | None) -> Finding:
    """Why the WebSocket request with a valid sid did not give ``101`` (pure)."""
    summary = response.summary()
    where = f"GET {path}?EIO=4&transport=websocket&sid=… answered {summary}"
    code, _message = error_message(response.body)
    from wizard.loadprobe import is_unknown_session

    if is_unknown_session(response):
        return Finding(codes.NO_STICKY_SESSIONS, "error",
                       "The WebSocket upgrade reached another server than the handshake "
                       "(\"Session ID unknown\")", where, FIX_STICKY)
    if _is_origin_refusal(response, origin):
        return _origin_rejected(where)
    if response.status == 400 and code == 3:
        why = "the proxy does not forward the Upgrade/Connection headers"
    elif response.status == 200:
        why = ("it was answered as a long-polling request: the proxy dropped "
               "`Connection: upgrade`")
    elif response.status in (502, 503, 504):
        why = "the proxy's WebSocket route cannot reach the server"
    elif response.status == 404:
        why = "the proxy has no route for WebSocket requests at this path"
    else:
        why = f"the answer was {response.status} {response.reason}".strip()
    return Finding(codes.WEBSOCKET_UPGRADE_BLOCKED, "error",
                   f"The WebSocket upgrade is blocked: {why}", where, FIX_UPGRADE)


def hold_verdict(
    handshake: Handshake, idle_s: float, server_closed: bool
) -> HoldVerdict:
    """Grade a drop by the idle time before it (REFERENCE.md: the rule behind 'transport close').

    Below pingInterval no ping can keep the connection alive: certain. Between pingInterval and
    pingInterval + pingTimeout it survives only while pings are on time: at risk.
    """
    interval = handshake.ping_interval_ms / 1000
    if server_closed:
        return "server-closed"
    if idle_s < interval * 0.95:
        return "certain"
    if idle_s <= handshake.ping_sum_s * 1.05:
        return "at-risk"
    return "late"


def _suggested_timeout(handshake: Handshake) -> int:
    """A round figure comfortably above pingInterval + pingTimeout (45 s -> 60 s)."""
    return int(-(-(handshake.ping_sum_s * 1.25) // 5) * 5)


def hold_finding(handshake: Handshake, hold: HoldResult) -> Finding | None:
    if not hold.dropped or hold.idle_before_drop_s is None:
        return None
    idle = hold.idle_before_drop_s
    interval = handshake.ping_interval_ms / 1000
    total = handshake.ping_sum_s
    evidence = (
        f"hold over {hold.transport}: dropped after {hold.drop_after_s:.1f} s idle "
        f"({hold.how}), {idle:.1f} s after the server last sent anything; {hold.pings} "
        f"ping(s) seen; server pingInterval {interval:g} s, pingTimeout "
        f"{handshake.ping_timeout_ms / 1000:g} s"
    )
    fix = (
        f"Raise the read/idle timeout of the proxy (and any load balancer in front) on the "
        f"Socket.IO route above pingInterval + pingTimeout = {total:g} s, e.g. to "
        f"{_suggested_timeout(handshake)} s: nginx proxy_read_timeout, Apache ProxyTimeout and "
        "Timeout, Caddy transport read_timeout/stream_timeout, the cloud load balancer's idle "
        "timeout. Or lower the server's pingInterval below that timeout."
    )
    if hold.verdict == "certain":
        title = (f"Idle connections are cut after ~{idle:.0f} s, before the server's first "
                 f"ping ({interval:g} s): a proxy timeout of about {idle:.0f} s (certain)")
        return Finding(codes.READ_TIMEOUT_TOO_SHORT, "error", title, evidence, fix)
    if hold.verdict == "at-risk":
        title = (f"The idle connection dropped after ~{idle:.0f} s, between pingInterval and "
                 f"pingInterval + pingTimeout ({total:g} s): at risk whenever a ping runs late")
        return Finding(codes.READ_TIMEOUT_TOO_SHORT, "warning", title, evidence, fix)
    title = (f"The idle connection dropped after {hold.drop_after_s:.0f} s "
             f"({hold.how}), which no proxy read timeout explains")
    return Finding(codes.CONNECTION_DROPPED, "warning", title, evidence,
                   "Look for a connection lifetime limit on the way (load balancer, firewall, "
                   "NAT) or pongs that never reach the server (the server closes the session "
                   "pingTimeout after an unanswered ping).")


# --------------------------------------------------------------------------- the run


class _Run:
    """One probe in progress: stages and findings accumulate here, in order."""

    def __init__(self, url: str, target: Target, path: str, options: ProbeOptions,
                 on_stage: Callable[[Stage], None] | None) -> None:
        self.url = url
        self.target = target
        self.path = path
        self.options = options
        self.on_stage = on_stage
        self.headers = options.request_headers()
        # The handshake's cookies (sticky-session routes) ride along on the session's upgrade.
        self.session_headers: tuple[tuple[str, str], ...] = tuple(self.headers)
        self.stages: list[Stage] = []
        self.findings: list[Finding] = []
        self.handshake: Handshake | None = None
        self.websocket_only = False
        self.websocket_ok = False
        self.transport: str | None = None
        self.socketio_ok = False
        self.raw_connected: tuple[float, str] | None = None  # (ms, sid) of a raw CONNECT
        self.emit_ok = True
        self.hold: HoldResult | None = None
        self.sessions: SessionsResult | None = None
        self.clients: ClientsResult | None = None

    def record(self, name: str, ok: bool, started: float, detail: str,
               data: Mapping[str, Any] | None = None) -> Stage:
        stage = Stage(name, ok, round((time.perf_counter() - started) * 1000, 1), detail,
                      dict(data or {}))
        return self.publish(stage)

    def skip(self, name: str, why: str) -> None:
        """A requested stage that cannot run: shown as "skip", never as a finding."""
        self.publish(Stage(name, False, 0.0, f"skipped: {why}", {"skipped": True}))

    def publish(self, stage: Stage) -> Stage:
        self.stages.append(stage)
        if self.on_stage is not None:
            self.on_stage(stage)
        return stage

    def guarded(self, name: str, step: Callable[..., _T], *args: Any) -> _T | None:
        """Run one stage; an exception it did not expect (a server answer nothing here
        anticipated) becomes a failed stage and an error finding, never a traceback: the
        deploy rolls back on a failed probe, and a raising one would skip that."""
        started = time.perf_counter()
        try:
            return step(*args)
        except SockwizardError:
            raise  # bad input found late (e.g. --clients above the file limit)
        except Exception as exc:
            what = f"{type(exc).__name__}: {exc}"[:200]
            self.record(name, False, started, f"the probe could not handle the answer ({what})",
                        {"error": "internal"})
            self.findings.append(Finding(
                codes.UNEXPECTED_RESPONSE, "error",
                f"The {name} stage got an answer the probe cannot interpret",
                f"{name}: {what}",
                "The server (or something in front of it) does not speak Engine.IO/Socket.IO "
                "as expected here. Check what answers at this URL and path; report this with "
                "the --json output if it is a real Socket.IO server."))
            return None

    # ---- stage 1
    def connect(self) -> socket.socket | None:
        options, target = self.options, self.target
        started = time.perf_counter()
        try:
            sock = tcp_connect(target, options.timeout)
        except WireError as exc:
            self.record("tcp", False, started, exc.message, {"error": exc.kind})
            title = f"Cannot reach {target.host}:{target.port}: {exc.message}"
            fix = (f"Check that the proxy runs and listens on {target.host}:{target.port}, "
                   "that nothing (firewall, security group) blocks the port, and that the URL's "
                   "scheme and port are right.")
            self.findings.append(Finding(codes.PROXY_UNREACHABLE, "error", title,
                                         f"tcp: {exc.message}", fix))
            return None
        peer = sock.getpeername()
        self.record("tcp", True, started, f"connected to {peer[0]}:{peer[1]}", {"peer": peer[0]})
        if not target.tls:
            return sock
        started = time.perf_counter()
        try:
            wrapped = tls_wrap(sock, target, options.insecure, options.timeout)
        except WireError as exc:
            self.record("tls", False, started, exc.message, {"error": exc.kind})
            self.findings.append(_tls_finding(target, exc.message))
            return None
        version = getattr(wrapped, "version", lambda: None)()
        self.record("tls", True, started, f"{version}" + (" (not verified: --insecure)"
                                                          if options.insecure else ""),
                    {"version": version})
        return wrapped

    # ---- stage 2
    def polling(self, sock: socket.socket) -> None:
        started = time.perf_counter()
        query = eio_query(self.path, 4, "polling")
        try:
            response = http_exchange(sock, self.target, "GET", query, self.headers,
                                     self.options.timeout)
        except WireError as exc:
            self._polling_wire_error(started, exc)
            return
        finally:
            sock.close()
        verdict = classify_handshake(response, self.path, self.options.origin)
        self.record("polling", verdict.handshake is not None, started, verdict.detail,
                    self._marked(_response_data(response), response))
        self.findings.extend(verdict.findings)
        self.handshake = verdict.handshake
        self.session_headers = response.with_cookies(self.headers)
        self.websocket_only = verdict.websocket_only
        if verdict.retry_eio3:
            self.polling_eio3(response)

    def _polling_wire_error(self, started: float, exc: WireError) -> None:
        self.record("polling", False, started, exc.message, {"error": exc.kind})
        if exc.kind == "tls":
            self.findings.append(_tls_finding(self.target, exc.message))
            return
        if exc.kind == "protocol":
            title = (f"{self.target.host}:{self.target.port} did not answer proper HTTP "
                     f"({exc.message})")
            fix = ("Check the URL's port and scheme: the port answered something that is not "
                   "valid HTTP (another protocol such as SSH, a TLS-only port probed with "
                   "http://, or a broken server).")
            self.findings.append(Finding(codes.UNEXPECTED_RESPONSE, "error", title,
                                         f"polling: {exc.message}", fix))
            return
        if exc.kind == "timeout":
            title = f"The Engine.IO handshake got no answer within {self.options.timeout:g} s"
            fix = ("Something accepts TCP on this port but does not answer HTTP: check that "
                   "the proxy (and the server behind it) is not hung, and that this port is "
                   "the proxy's HTTP port. Raise --timeout for a very slow server.")
        else:
            title = "The connection was closed before a complete answer to the handshake"
            fix = ("Check the proxy's error log: it accepted the connection and dropped it "
                   "(a crashing server, a TLS-only port, or a filter that refuses the request).")
        self.findings.append(Finding(codes.PROXY_UNREACHABLE, "error", title,
                                     f"polling: {exc.message}", fix))

    def polling_eio3(self, first: HttpResponse) -> None:
        started = time.perf_counter()
        query = eio_query(self.path, 3, "polling")
        try:
            response = http_request(self.target, "GET", query, self.headers,
                                    self.options.timeout, self.options.insecure)
        except WireError as exc:
            self.record("polling-eio3", False, started, exc.message, {"error": exc.kind})
            return
        packets = decode_payload(response.body, 3) if response.status == 200 else []
        handshake = read_open(packets[0], 3) if packets else None
        self.record("polling-eio3", isinstance(handshake, Handshake), started,
                    f"EIO=3 answered {response.summary(80)}", _response_data(response))
        evidence = (f"GET {self.path}?EIO=4&transport=polling answered {first.summary(60)}; "
                    f"GET {query} answered {response.summary(60)}")
        if isinstance(handshake, str):
            self.findings.append(_bad_open(handshake, evidence))
            return
        if handshake is None:
            self.findings.append(Finding(
                codes.UNEXPECTED_RESPONSE, "error",
                "The server speaks neither Engine.IO v4 nor v3 at this path", evidence,
                _fix_path(self.path)))
            return
        self.handshake = handshake
        self.findings.append(Finding(
            codes.EIO_VERSION_MISMATCH, "error",
            "The server speaks only Engine.IO v3 (Socket.IO 2.x): Socket.IO 3+/4 clients and "
            "python-socketio 5 cannot connect",
            evidence,
            "Upgrade the server to Socket.IO 4 (keep old clients working during the move with "
            "`allowEIO3: true`), or pin every client to Socket.IO 2.x.",
        ))

    # ---- stage 3
    def websocket(self) -> None:
        handshake = self.handshake
        started = time.perf_counter()
        if handshake is not None and "websocket" not in handshake.upgrades:
            self.record("websocket", False, started,
                        f"the server offers no upgrade (upgrades {list(handshake.upgrades)})")
            self.findings.append(Finding(
                codes.WEBSOCKET_UPGRADE_BLOCKED, "error",
                "The server itself offers no WebSocket upgrade",
                f"open packet upgrades: {list(handshake.upgrades)}",
                "Enable the websocket transport on the Socket.IO server (its `transports` "
                "option), and make sure the proxy forwards upgrades."))
            return
        sid = handshake.sid if handshake is not None else None
        # One deadline for connect, upgrade and 2probe/3probe (or the open packet).
        deadline = time.monotonic() + self.options.timeout
        try:
            query = eio_query(self.path, 4, "websocket", sid)
            sock = open_socket(self.target, self.options.timeout, self.options.insecure)
        except WireError as exc:
            self.record("websocket", False, started, exc.message, {"error": exc.kind})
            return
        try:
            self._websocket_on(sock, query, started, deadline)
        finally:
            sock.close()

    def _websocket_on(self, sock: socket.socket, query: str, started: float,
                      deadline: float) -> None:
        try:
            response, ws = ws_connect(sock, self.target, query, self.session_headers,
                                      remaining(deadline))
        except WireError as exc:
            self.record("websocket", False, started, f"no upgrade answer: {exc.message}",
                        {"error": exc.kind})
            self.findings.append(Finding(
                codes.WEBSOCKET_UPGRADE_BLOCKED, "error",
                f"The WebSocket upgrade got no answer ({exc.message})",
                f"GET {query}: {exc.message}", FIX_UPGRADE))
            return
        if ws is None:
            finding = classify_upgrade(response, self.path, self.options.origin)
            self.record("websocket", False, started, f"not upgraded: {response.summary(80)}",
                        self._marked(_response_data(response), response))
            self.findings.append(finding)
            return
        try:
            opener = self._websocket_open if self.websocket_only else self._websocket_probe
            seen = opener(ws, deadline)
        except WireError as exc:
            seen = f"101, then {exc.message}"
            self.record("websocket", False, started, seen,
                        self._marked({"status": 101, "error": exc.kind}, response))
            if exc.kind == "protocol":
                self.findings.append(Finding(
                    codes.UNEXPECTED_RESPONSE, "error",
                    f"The upgraded connection broke the protocol: {exc.message}",
                    f"websocket: {seen}",
                    "What answers at this path is not a working Socket.IO server (or "
                    "something on the way corrupts WebSocket frames): check the server and "
                    "the proxy's route."))
            else:
                self.findings.append(Finding(
                    codes.WEBSOCKET_UPGRADE_BLOCKED, "error",
                    "The WebSocket opened but Engine.IO did not answer on it",
                    f"websocket: {seen}", FIX_UPGRADE))
            return
        finally:
            ws.close()
        self.websocket_ok = True
        self.record("websocket", True, started, seen, self._marked({"status": 101}, response))

    def _marked(self, data: dict[str, Any], response: HttpResponse) -> dict[str, Any]:
        if self.options.marker_header is not None:
            data["marker"] = response.header(self.options.marker_header)
        return data

    def _websocket_probe(self, ws: WebSocket, deadline: float) -> str:
        ws.send_text("2probe", remaining(deadline))
        frame = ws.recv(remaining(deadline))
        if frame.opcode == OP_CLOSE:
            raise WireError("closed", f"close frame {frame.close_code} instead of 3probe")
        if frame.text != "3probe":
            raise WireError("protocol", f"{frame.text[:40]!r} instead of 3probe")
        ws.send_text("5", remaining(deadline))
        self._raw_connect(ws)
        return "101 Switching Protocols, 2probe -> 3probe, upgrade sent"

    def _raw_connect(self, ws: WebSocket) -> None:
        """With ``raw_connect``: send a Socket.IO CONNECT (``40``) and wait for the namespace's
        answer, answering the server's pings meanwhile. A refusal (``44``) is recorded."""
        if not self.options.raw_connect:
            return
        started = time.perf_counter()
        deadline = time.monotonic() + self.options.timeout
        ws.send_text("40", self.options.timeout)
        while True:
            try:
                frame = ws.recv(remaining(deadline))
            except WireError as exc:
                if exc.kind == "timeout":
                    raise WireError("timeout", "no answer to the Socket.IO CONNECT packet "
                                    f"within {self.options.timeout:g} s") from None
                raise
            if frame.opcode == OP_CLOSE:
                raise WireError("closed", f"close frame {frame.close_code} instead of 40")
            text = frame.text
            if text == "2":
                ws.send_text("3", remaining(deadline))
            elif text.startswith("40"):
                sid = connect_answer_sid(text)
                self.raw_connected = ((time.perf_counter() - started) * 1000, sid)
                return
            elif text.startswith("44"):
                raise WireError("protocol", "the namespace refused the connection: "
                                f"{text[:80]!r}")

    def _websocket_open(self, ws: WebSocket, deadline: float) -> str:
        """Websocket-only server: the open packet comes on the WebSocket itself."""
        frame = ws.recv(remaining(deadline))
        handshake = read_open(frame.text, 4) if frame.opcode == OP_TEXT else None
        if isinstance(handshake, str):
            raise WireError("protocol", f"invalid open packet: {handshake}")
        if handshake is None:
            raise WireError("protocol", f"{frame.text[:40]!r} instead of an open packet")
        self.handshake = handshake
        self.findings.append(Finding(
            codes.POLLING_DISABLED, "warning",
            "The server refuses long-polling: only websocket-only clients can connect",
            f"polling: {self._polling_detail()}; websocket: the open packet came on the "
            "WebSocket",
            "Create every client with transports: ['websocket'], or enable polling on the "
            "server (clients behind proxies that block upgrades need it)."))
        self._raw_connect(ws)
        return "101 Switching Protocols, open packet on the WebSocket (websocket-only server)"

    def _polling_detail(self) -> str:
        polling = next((s for s in self.stages if s.name == "polling"), None)
        return polling.detail if polling is not None else "no polling stage"

    # ---- stage 4
    def socketio(self) -> None:
        options = self.options
        if options.raw_connect:
            self._socketio_raw()
            return
        started = time.perf_counter()
        outcome = sio_probe_bounded(
            self.target.base_url, self.path, self.headers, options.insecure, options.timeout,
            transports=["websocket"] if self.websocket_only else None,
            emit=options.emit,
            data=json.loads(options.data) if options.data is not None else None,
            has_data=options.data is not None,
            expect=options.expect,
        )
        self.transport = outcome.transport
        if outcome.error is not None:
            self.record("socketio", False, started, f"connect failed: {outcome.error}",
                        {"error": outcome.error})
            if not self.findings:
                self.findings.append(Finding(
                    codes.UNEXPECTED_RESPONSE, "error",
                    "python-socketio could not connect although the raw handshake worked",
                    f"socketio: {outcome.error}",
                    "Check the server's connection middleware/auth (a namespace that refuses "
                    "the connection) and the proxy's logs."))
            return
        self.socketio_ok = True
        stage = Stage("socketio", True, outcome.connect_ms,
                      f"connected on {outcome.transport}", {"transport": outcome.transport,
                                                            "sid": outcome.sid})
        if outcome.transport != "websocket":
            stage = Stage("socketio", False, outcome.connect_ms,
                          f"connected, but stayed on {outcome.transport}: python-socketio "
                          "fell back to long-polling without an error", dict(stage.data))
            self.findings.append(Finding(
                codes.WEBSOCKET_UPGRADE_BLOCKED, "error",
                "Clients silently stay on long-polling: the WebSocket upgrade fails",
                f"socketio: python-socketio connected on {outcome.transport}", FIX_UPGRADE))
        self._emit_stage(stage, outcome)

    def _socketio_raw(self) -> None:
        if self.raw_connected is None:
            self.publish(Stage("socketio", False, 0.0, "skipped: no WebSocket to connect on",
                               {"skipped": True}))
            return
        ms, sid = self.raw_connected
        self.transport = "websocket"
        self.socketio_ok = True
        self.publish(Stage("socketio", True, ms,
                           "connected on websocket (raw Socket.IO CONNECT)",
                           {"transport": "websocket", "sid": sid, "raw": True}))

    def _emit_stage(self, stage: Stage, outcome: SioOutcome) -> None:
        self.publish(stage)
        if self.options.emit is None:
            return
        self.emit_ok = outcome.emit_error is None
        reply = json.dumps(outcome.emit_reply, ensure_ascii=False)
        detail = (f"{self.options.emit} -> {reply}" if self.emit_ok
                  else str(outcome.emit_error))
        self.publish(Stage("emit", self.emit_ok, outcome.emit_ms, detail,
                           {"reply": outcome.emit_reply}))
        if not self.emit_ok:
            wanted = (f"emits {self.options.expect!r}" if self.options.expect
                      else "calls the acknowledgement callback")
            self.findings.append(Finding(
                codes.ROUND_TRIP_FAILED, "error",
                f"No answer to the event {self.options.emit!r}",
                f"emit: {outcome.emit_error}",
                f"Check that the server has a handler for {self.options.emit!r} that {wanted}."))

    # ---- stage 5
    def hold_stage(self) -> None:
        handshake = self.handshake
        started = time.perf_counter()
        if handshake is None or handshake.eio_version != 4 or self.websocket_only:
            self.skip("hold", "no Engine.IO v4 polling session")
            return
        from wizard.loadprobe import hold_connection

        result = hold_connection(self.target, self.path, self.headers, self.options.timeout,
                                 self.options.insecure, self.options.hold,
                                 websocket=self.websocket_ok)
        if isinstance(result, str):
            self.record("hold", False, started, f"could not open the session: {result}")
            return
        graded = result
        if result.dropped and result.idle_before_drop_s is not None:
            verdict = hold_verdict(handshake, result.idle_before_drop_s,
                                   result.verdict == "server-closed")
            graded = dataclasses.replace(result, verdict=verdict)
        self.hold = graded
        finding = hold_finding(handshake, graded)
        if finding is not None:
            self.findings.append(finding)
        if graded.dropped:
            detail = (f"dropped after {graded.drop_after_s:.1f} s ({graded.how}); "
                      f"{graded.pings} ping(s); verdict {graded.verdict}")
        else:
            detail = f"held {graded.held_s:.1f} s over {graded.transport}, {graded.pings} " \
                     "ping(s), no drop"
            if graded.held_s < handshake.ping_sum_s:
                detail += (f" (shorter than pingInterval + pingTimeout = "
                           f"{handshake.ping_sum_s:g} s: a longer timeout is not proven)")
        self.record("hold", not graded.dropped, started, detail, graded.to_dict())

    # ---- stage 6
    def sessions_stage(self) -> None:
        from wizard.loadprobe import run_sessions

        started = time.perf_counter()
        handshake = self.handshake
        if handshake is None or handshake.eio_version != 4 or self.websocket_only:
            self.skip("sessions", "no Engine.IO v4 polling session")
            return
        result = run_sessions(self.target, self.path, self.headers, self.options.timeout,
                              self.options.insecure, self.options.sessions)
        self.sessions = result
        ok = result.ok == result.requested
        detail = f"{result.ok}/{result.requested} sessions completed"
        if result.errors:
            first = next(iter(result.errors))
            detail += f"; {result.requested - result.ok} failed, e.g. {first}"
        self.record("sessions", ok, started, detail, result.to_dict())
        if result.unknown_session:
            self.findings.append(Finding(
                codes.NO_STICKY_SESSIONS, "error",
                "Requests of one session reach different servers (no sticky sessions)",
                f"sessions: {result.unknown_session} of {result.requested} polling sessions "
                "got \"Session ID unknown\" on a follow-up request",
                FIX_STICKY))

    # ---- stage 7
    def clients_stage(self) -> None:
        from wizard.loadprobe import run_clients

        started = time.perf_counter()
        if not self.websocket_ok:
            self.skip("clients", "the WebSocket stage failed")
            return
        try:
            result = run_clients(self.target, self.path, self.headers, self.options.timeout,
                                 self.options.insecure, self.options.clients)
        except WireError as exc:  # resolving the host again failed
            self.record("clients", False, started, exc.message, {"error": exc.kind})
            return
        self.clients = result
        detail = (f"{result.connected}/{result.requested} connected in {result.all_done_s:.2f} s;"
                  f" p50 {result.p50_ms} ms, p95 {result.p95_ms} ms, p99 {result.p99_ms} ms; "
                  f"CPU {result.cpu_s:.2f} s, peak RSS {result.max_rss_mb:.0f} MB")
        if result.errors:
            detail += "; failures: " + ", ".join(f"{k} ×{v}" for k, v in result.errors.items())
        self.record("clients", result.failed == 0, started, detail, result.to_dict())
        if result.failed:
            self.findings.append(Finding(
                codes.LOAD_FAILURES, "warning",
                f"{result.failed} of {result.requested} concurrent WebSocket clients failed",
                "clients: " + ", ".join(f"{k} ×{v}" for k, v in result.errors.items()),
                "Raise the limits on the way: the server's listen backlog, the proxy's "
                "worker_connections (nginx needs 2 per client) and open-file limits."))

    def report(self) -> ProbeReport:
        found = sort_findings(merge_findings(self.findings))
        ok = (self.websocket_ok and self.socketio_ok and self.transport == "websocket"
              and self.emit_ok and not any(f.severity == "error" for f in found))
        return ProbeReport(self.url, self.path, ok, self.transport, self.handshake,
                           tuple(self.stages), tuple(found), self.hold, self.sessions,
                           self.clients)


# --------------------------------------------------------------------------- python-socketio

# python-socketio (websocket-client, requests underneath) has neither a frame-size cap nor an
# absolute deadline: a server announcing a 2^62-byte frame grew a probe to 23.7 GB, and a
# handshake dripping a byte every 0.5 s never times out. Neither can be configured, so the
# client runs in a child process with an address-space cap (RLIMIT_AS) and is killed at a hard
# deadline; the parent never imports socketio at all.
SIO_CHILD_MEMORY = 1 << 30
SIO_CHILD_STARTUP_S = 1.5  # interpreter + socketio imports (~0.3 s here), with slack
MAX_REPLY_JSON = 64 * 1024  # an --emit reply larger than this is summarised, not carried


@dataclass(frozen=True)
class SioOutcome:
    """What python-socketio's own ``Client`` did: the transport it settled on, the round trip."""

    transport: str | None
    sid: str | None
    error: str | None
    connect_ms: float
    emit_reply: Any = None
    emit_error: str | None = None
    emit_ms: float = 0.0


def sio_probe(
    base_url: str,
    path: str,
    headers: Sequence[tuple[str, str]],
    insecure: bool,
    timeout: float,
    *,
    transports: list[str] | None = None,
    emit: str | None = None,
    data: Any = None,
    has_data: bool = False,
    expect: str | None = None,
) -> SioOutcome:
    """Connect like a user's python client would (polling first, then the upgrade).

    This is the one boundary where python-socketio's exceptions (ConnectionError, TimeoutError,
    and whatever requests/websocket-client raise underneath) become text in the report.
    """
    import engineio
    import socketio  # lazy: ~150 ms of imports that `sockwizard --help` must not pay

    class CheckedEngineIO(engineio.Client):  # type: ignore[misc]
        """websocket-client writes the server's sid into its request line unchecked."""

        def _connect_websocket(self, url: str, headers: Any, engineio_path: str) -> Any:
            sid = self.sid
            if sid is not None and not (isinstance(sid, str) and SID_RE.fullmatch(sid)):
                raise engineio.exceptions.ConnectionError(
                    f"refusing the server's sid {str(sid)[:40]!r}: not an Engine.IO session id")
            return super()._connect_websocket(url, headers, engineio_path)

    class CheckedClient(socketio.Client):  # type: ignore[misc]
        bad_connect: str | None = None

        def _engineio_client_class(self) -> type[Any]:
            return CheckedEngineIO

        def _handle_connect(self, namespace: str | None, data: Any) -> None:
            # python-socketio takes 40[] or 40null as connected (and 401 kills its reader
            # thread); the JavaScript client refuses all of them: so does the probe.
            try:
                check_connect_data(data)
            except WireError as exc:
                self.bad_connect = exc.message
                self._handle_error(namespace, exc.message)
                return
            super()._handle_connect(namespace, data)

    client = CheckedClient(
        reconnection=False, logger=False, engineio_logger=False, ssl_verify=not insecure,
        handle_sigint=False, request_timeout=timeout,
        http_session=_insecure_session() if insecure else None,
        websocket_extra_options=_websocket_options(headers),
    )
    got = threading.Event()
    replies: list[Any] = []
    if expect is not None:
        def on_expected(*args: Any) -> None:
            replies.append(_jsonable(args[0] if len(args) == 1 else list(args)))
            got.set()

        client.on(expect, on_expected)
    started = time.perf_counter()
    try:
        client.connect(base_url, headers=dict(headers), transports=transports,
                       socketio_path=path, wait_timeout=timeout)
    except Exception as exc:  # MemoryError included
        return SioOutcome(None, None, client.bad_connect or _child_error(exc), _ms(started))
    connect_ms = _ms(started)
    try:
        outcome = SioOutcome(client.transport(), client.get_sid(), None, connect_ms)
        if emit is None:
            return outcome
        started = time.perf_counter()
        try:
            if expect is not None:
                client.emit(emit, data if has_data else None)
                if not got.wait(timeout):
                    raise TimeoutError(f"no {expect!r} event within {timeout:g} s")
                reply: Any = replies[0]
            else:
                reply = client.call(emit, data if has_data else None, timeout=timeout)
        except Exception as exc:
            return dataclasses.replace(outcome, emit_error=_sio_error(exc), emit_ms=_ms(started))
        return dataclasses.replace(outcome, emit_reply=_jsonable(reply), emit_ms=_ms(started))
    finally:
        _disconnect(client, timeout)


def connect_answer_sid(text: str) -> str:
    """The sid in a Socket.IO CONNECT answer ``40{"sid":…}``; ``WireError('protocol')`` for
    anything else (``40[]``, ``40null``, ``401``, ``40"x"``, no sid): the Socket.IO 3+/4
    JavaScript client refuses those as "not a v3+ server", so the probe does too."""
    try:
        data = load_json(text[2:])
    except ValueError as exc:
        raise WireError("protocol", f"the CONNECT answer {text[:40]!r} is not JSON ({exc})") \
            from None
    return check_connect_data(data)


def check_connect_data(data: object) -> str:
    """The sid of a CONNECT answer's (parsed) payload, or ``WireError('protocol')``."""
    shown = json.dumps(data, ensure_ascii=True)[:40]
    if not isinstance(data, dict):
        raise WireError("protocol", f"the Socket.IO CONNECT answer carried {shown}, not an "
                        "object with a sid (not a Socket.IO 3+ server?)")
    sid = data.get("sid")
    if not isinstance(sid, str) or not SID_RE.fullmatch(sid):
        raise WireError("protocol", f"the Socket.IO CONNECT answer {shown} has no valid sid")
    return sid


def sio_budget(timeout: float, emit: bool) -> float:
    """The hard deadline of the python-socketio child: connect (+ emit) and its start-up."""
    return timeout * (2 if emit else 1) * 1.25 + SIO_CHILD_STARTUP_S


def sio_probe_bounded(
    base_url: str,
    path: str,
    headers: Sequence[tuple[str, str]],
    insecure: bool,
    timeout: float,
    *,
    transports: list[str] | None = None,
    emit: str | None = None,
    data: Any = None,
    has_data: bool = False,
    expect: str | None = None,
) -> SioOutcome:
    """``sio_probe`` in a child process: memory capped, killed at ``sio_budget``."""
    import os
    import subprocess
    import sys

    import wizard

    request = json.dumps({
        "base_url": base_url, "path": path, "headers": [list(h) for h in headers],
        "insecure": insecure, "timeout": timeout, "transports": transports, "emit": emit,
        "data": data, "has_data": has_data, "expect": expect,
    })
    root = os.path.dirname(os.path.dirname(os.path.abspath(wizard.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["MALLOC_ARENA_MAX"] = "2"  # glibc reserves 64 MB of address space per thread arena
    budget = sio_budget(timeout, emit is not None)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from wizard.probe import sio_child; sio_child()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        start_new_session=True)  # our Ctrl-C is handled here: the finally kills it
    try:
        out, _ = proc.communicate(request.encode(), timeout=budget)
    except subprocess.TimeoutExpired:
        return SioOutcome(None, None, f"python-socketio did not finish within {budget:g} s "
                          "(stopped: the server answers too slowly or never completes)",
                          _ms(started))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        result = json.loads(out.decode("utf-8"))
        return SioOutcome(**result) if isinstance(result, dict) else SioOutcome(**{})
    except (ValueError, TypeError):
        why = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"exit {proc.returncode}")
        return SioOutcome(None, None, f"the python-socketio client ended without a result "
                          f"({why}; memory cap {SIO_CHILD_MEMORY >> 20} MiB)", _ms(started))


_CHILD_PROBLEMS: list[str] = []  # caps the child's websocket-client hit, for the report


def _cap_websocket_client() -> None:
    """In the child only: give websocket-client the frame and message cap it lacks (reading
    a 2^62-byte frame, it appends 16 KiB reads until memory runs out; fragments it joins
    without limit). RLIMIT_AS stays the backstop for whatever else buffers."""
    from websocket import _abnf
    from websocket._exceptions import WebSocketProtocolException

    def refuse(what: str) -> None:
        _CHILD_PROBLEMS.append(f"the server sent {what} (cap {MAX_MESSAGE} bytes)")
        raise WebSocketProtocolException(_CHILD_PROBLEMS[-1])

    recv_length, add = _abnf.frame_buffer.recv_length, _abnf.continuous_frame.add

    def capped_length(self: Any) -> None:
        recv_length(self)
        if self.length > MAX_MESSAGE:
            refuse(f"a WebSocket frame announcing {self.length} bytes")

    def capped_add(self: Any, frame: Any) -> None:
        add(self, frame)
        if self.cont_data and len(self.cont_data[1]) > MAX_MESSAGE:
            refuse("a fragmented WebSocket message larger than the cap")

    _abnf.frame_buffer.recv_length = capped_length  # type: ignore[method-assign]
    _abnf.continuous_frame.add = capped_add  # type: ignore[method-assign]


def _child_error(exc: BaseException) -> str:
    if isinstance(exc, MemoryError) or "can't start new thread" in str(exc):
        return (f"the client ran out of its {SIO_CHILD_MEMORY >> 20} MiB memory cap "
                "(the server sent more than a Socket.IO client should buffer)")
    return _sio_error(exc)


def sio_child() -> None:
    """The child side of ``sio_probe_bounded``: the request as JSON on stdin, the
    ``SioOutcome`` as one JSON object on stdout, nothing else on it."""
    import os
    import resource
    import sys

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = SIO_CHILD_MEMORY if hard == resource.RLIM_INFINITY else min(SIO_CHILD_MEMORY, hard)
    if soft == resource.RLIM_INFINITY or soft > cap:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    out = os.fdopen(os.dup(1), "w")
    sys.stdout = sys.stderr  # a library's stray print must not corrupt the answer
    try:
        request = json.loads(sys.stdin.read(1 << 20))
        _cap_websocket_client()
        outcome = sio_probe(
            request["base_url"], request["path"],
            [(str(k), str(v)) for k, v in request["headers"]], request["insecure"],
            request["timeout"], transports=request["transports"], emit=request["emit"],
            data=request["data"], has_data=request["has_data"], expect=request["expect"])
        result = dataclasses.asdict(outcome)
        if len(json.dumps(result["emit_reply"])) > MAX_REPLY_JSON:
            result["emit_reply"] = f"<a reply of more than {MAX_REPLY_JSON} bytes of JSON>"
        if result["error"] is not None and _CHILD_PROBLEMS:
            result["error"] = f"{_CHILD_PROBLEMS[0]}; then: {result['error']}"
    except Exception as exc:  # MemoryError included
        result = {"transport": None, "sid": None, "connect_ms": 0.0,
                  "error": _child_error(exc)}
    out.write(json.dumps(result))
    out.flush()
    os._exit(0)  # the client's threads may be stuck on a socket: do not join them


def _jsonable(value: Any) -> Any:
    """A server's reply as JSON-safe data: binary attachments become a short description."""
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _websocket_options(headers: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Host and Origin for websocket-client as options, not headers.

    websocket-client always writes its own Host and Origin lines and then appends ours, so a
    --header Host:… or --origin would be sent twice (nginx answers a doubled Host with 400; Node
    joins two Origins into one that no CORS rule accepts) and the upgrade would fail for a
    reason of the probe's making. A ``None`` value drops the header-dict copy.
    """
    # Without --origin, send no Origin at all, like the raw stages (websocket-client would
    # invent "http://host:port", which a server with a CORS allow-list refuses).
    options: dict[str, Any] = {"suppress_origin": True}
    drop: dict[str, None] = {}
    for key, value in headers:
        if key.lower() in ("host", "origin"):
            options[key.lower()] = value
            drop[key] = None
            if key.lower() == "origin":
                options["suppress_origin"] = False
    if drop:
        options["header"] = drop
    return options


def _insecure_session() -> Any:
    """A requests session that really skips verification.

    python-engineio sets ``session.verify = False`` for ``ssl_verify=False``, but requests
    lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` from the environment override that (they are
    set on many machines, this one included), so --insecure would silently still verify.
    """
    import warnings

    import requests
    from urllib3.exceptions import InsecureRequestWarning

    warnings.filterwarnings("ignore", category=InsecureRequestWarning)  # the user asked

    class NoVerifySession(requests.Session):
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
            settings = super().merge_environment_settings(*args, **kwargs)
            settings["verify"] = False
            return settings

    return NoVerifySession()


def _disconnect(client: Any, timeout: float) -> None:
    """Disconnect without letting a stuck long-poll hold the probe (it joins its reader)."""
    worker = threading.Thread(target=client.disconnect, name="sockwizard-disconnect",
                              daemon=True)
    worker.start()
    worker.join(timeout)


def _sio_error(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc) or repr(exc)
    if name == "TimeoutError" and "socketio" in type(exc).__module__:
        return "no acknowledgement before the timeout"
    return text if name in ("ConnectionError", "TimeoutError") else f"{name}: {text}"


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _tls_finding(target: Target, message: str) -> Finding:
    if "WRONG_VERSION_NUMBER" in message.upper() or "wrong version" in message.lower():
        fix = (f"{target.host}:{target.port} speaks plain HTTP, not TLS: use http://, or "
               "probe the proxy's TLS port.")
    elif "not trusted" in message or "certificate" in message.lower():
        fix = ("Install the full certificate chain on the proxy (a certificate for this host "
               "name from a trusted CA), or pass --insecure to probe a self-signed setup.")
    else:
        fix = "Check the proxy's TLS configuration (certificate, protocols) for this host name."
    return Finding(codes.TLS_ERROR, "error",
                   f"TLS with {target.host}:{target.port} failed: {message}",
                   f"tls: {message}", fix)


def _response_data(response: HttpResponse) -> dict[str, Any]:
    keep = ("content-type", "server", "upgrade", "connection", "via")
    return {
        "status": response.status,
        "reason": response.reason,
        "headers": {k: v for k, v in response.headers if k.lower() in keep},
        "body": response.text[:300],
    }


def run_probe(
    url: str, options: ProbeOptions, on_stage: Callable[[Stage], None] | None = None
) -> ProbeReport:
    """Probe ``url`` stage by stage; a bad URL or option raises ``ProbeFailed`` up front.

    Every network failure after that becomes a failed stage and a finding in the report.
    """
    problems = options.problems()
    if problems:
        raise ProbeFailed("Invalid probe options: " + "; ".join(problems) + ".",
                          "Fix the options and run again.")
    path = normalize_path(options.path)
    target = parse_url(url, path)
    if options.connect_to is not None:
        target = dataclasses.replace(target, connect_host=options.connect_to.strip("[]"))
    if options.clients > 0:
        from wizard.loadprobe import ensure_file_limit

        ensure_file_limit(options.clients)  # refuse before any traffic, not after the stages
    run = _Run(url, target, path, options, on_stage)
    sock = run.guarded("tcp", run.connect)
    if sock is not None:
        run.guarded("polling", run.polling, sock)
    v4 = run.handshake is not None and run.handshake.eio_version == 4
    if v4 or run.websocket_only:
        run.guarded("websocket", run.websocket)
        run.guarded("socketio", run.socketio)
    if options.hold > 0:
        run.guarded("hold", run.hold_stage)
    if options.sessions > 0:
        run.guarded("sessions", run.sessions_stage)
    if options.clients > 0:
        run.guarded("clients", run.clients_stage)
    return run.report()


# --------------------------------------------------------------------------- output


def format_report(report: ProbeReport) -> str:
    """The human table: one line per stage, then the verdict and the findings."""
    lines = [f"sockwizard probe {report.url}  (path {report.path})", ""]
    width = max((len(s.name) for s in report.stages), default=5)
    lines.append(f"  {'stage':<{width}}  {'ok':<4}  {'ms':>8}  detail")
    for stage in report.stages:
        mark = "ok" if stage.ok else "skip" if stage.data.get("skipped") else "FAIL"
        lines.append(f"  {stage.name:<{width}}  {mark:<4}  {stage.ms:>8.1f}  {stage.detail}")
    lines.append("")
    if report.handshake is not None:
        hs = report.handshake
        lines.append(f"handshake: EIO={hs.eio_version} pingInterval {hs.ping_interval_ms} ms, "
                     f"pingTimeout {hs.ping_timeout_ms} ms, maxPayload {hs.max_payload}, "
                     f"upgrades {list(hs.upgrades)}")
    if report.ok:
        lines.append("result: OK — Socket.IO works end to end over WebSocket")
    else:
        lines.append(f"result: FAILED — transport {report.transport or 'none'}")
    if not report.findings:
        lines.append("findings: none")
    for finding in report.findings:
        lines.append("")
        lines.append(f"[{finding.severity.upper()}] {finding.code}: {finding.title}")
        lines.append(f"    evidence: {finding.evidence}")
        lines.append(f"    fix: {finding.fix}")
    return "\n".join(lines) + "\n"


