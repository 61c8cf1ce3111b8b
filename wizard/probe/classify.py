"""What the probe's answers mean: the classification rules and every finding a stage can produce.

``wizard.probe.run`` hands each stage's evidence here and records what comes back; the tests
drive the rules from tables. Pure: no I/O, no clock. The timeout figures come from
``wizard.heartbeat`` (the one "transport close" rule), so the ``--hold`` finding's advice agrees
with the model's check, the Backends gauge and ``diagnose``.
"""

from __future__ import annotations

from dataclasses import dataclass

from wizard import findings as codes
from wizard.findings import Finding
from wizard.probe.lifetime import lifetime_finding
from wizard.probe.report import ClientsResult, HoldResult, HoldVerdict, SessionsResult
from wizard.probe.wire import (
    Handshake,
    HttpResponse,
    Target,
    WireError,
    decode_payload,
    error_message,
    is_unknown_session,
    looks_like_v3,
    read_open,
)

# An observed drop is timed from our side: the idle clock starts at our last read, so it runs
# a little apart from the proxy's. This slack keeps a drop right at pingInterval (or at the
# sum) in the grade the proxy's timeout really has.
DROP_SLACK = 0.05


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


def is_origin_refusal(response: HttpResponse, origin: str | None) -> bool:
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
    if is_origin_refusal(response, origin):
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
    if is_unknown_session(response):
        return Finding(codes.NO_STICKY_SESSIONS, "error",
                       "The WebSocket upgrade reached another server than the handshake "
                       "(\"Session ID unknown\")", where, FIX_STICKY)
    if is_origin_refusal(response, origin):
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



# --------------------------------------------------------------------------- the hold


def hold_verdict(
    handshake: Handshake, idle_s: float, server_closed: bool
) -> HoldVerdict:
    """Grade a drop by the idle time before it (``wizard.heartbeat``: the rule behind
    'transport close'), with ``DROP_SLACK`` for timing a drop from our side.

    Below pingInterval no ping can keep the connection alive: certain. Between pingInterval and
    pingInterval + pingTimeout it survives only while pings are on time: at risk.
    """
    beat = handshake.heartbeat
    if server_closed:
        return "server-closed"
    if idle_s < beat.interval_ms / 1000 * (1 - DROP_SLACK):
        return "certain"
    if idle_s <= beat.sum_s * (1 + DROP_SLACK):
        return "at-risk"
    return "late"


def hold_finding(handshake: Handshake, hold: HoldResult) -> Finding | None:
    if not hold.dropped or hold.idle_before_drop_s is None:
        return None
    capped = lifetime_finding(hold)
    if capped is not None:
        return capped
    beat = handshake.heartbeat
    idle = hold.idle_before_drop_s
    interval = beat.interval_ms / 1000
    total = beat.sum_s
    evidence = (
        f"hold over {hold.transport}: dropped after {hold.drop_after_s:.1f} s idle "
        f"({hold.how}), {idle:.1f} s after the server last sent anything; {hold.pings} "
        f"ping(s) seen; server pingInterval {interval:g} s, pingTimeout "
        f"{beat.timeout_ms / 1000:g} s"
    )
    if hold.busy is not None and not hold.busy.dropped:
        evidence += (f"; a twin kept busy meanwhile was not cut ({hold.busy.detail()}): the "
                     "idle time is what is cut")
    fix = (
        f"Raise the read/idle timeout of the proxy (and any load balancer in front) on the "
        f"Socket.IO route above pingInterval + pingTimeout = {total:g} s, e.g. to "
        f"{beat.suggest_s()} s: nginx proxy_read_timeout, Apache ProxyTimeout and "
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


# --------------------------------------------------------------------------- stage failures


def internal_error(name: str, what: str) -> Finding:
    """A stage met an answer nothing here anticipated (``Run.guarded``)."""
    return Finding(
        codes.UNEXPECTED_RESPONSE, "error",
        f"The {name} stage got an answer the probe cannot interpret",
        f"{name}: {what}",
        "The server (or something in front of it) does not speak Engine.IO/Socket.IO "
        "as expected here. Check what answers at this URL and path; report this with "
        "the --json output if it is a real Socket.IO server.")


def unreachable(target: Target, message: str) -> Finding:
    title = f"Cannot reach {target.host}:{target.port}: {message}"
    fix = (f"Check that the proxy runs and listens on {target.host}:{target.port}, "
           "that nothing (firewall, security group) blocks the port, and that the URL's "
           "scheme and port are right.")
    return Finding(codes.PROXY_UNREACHABLE, "error", title, f"tcp: {message}", fix)


def tls_finding(target: Target, message: str) -> Finding:
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


def polling_failure(target: Target, timeout: float, exc: WireError) -> Finding:
    """The handshake request itself failed on the wire."""
    if exc.kind == "tls":
        return tls_finding(target, exc.message)
    if exc.kind == "protocol":
        title = f"{target.host}:{target.port} did not answer proper HTTP ({exc.message})"
        fix = ("Check the URL's port and scheme: the port answered something that is not "
               "valid HTTP (another protocol such as SSH, a TLS-only port probed with "
               "http://, or a broken server).")
        return Finding(codes.UNEXPECTED_RESPONSE, "error", title,
                       f"polling: {exc.message}", fix)
    if exc.kind == "timeout":
        title = f"The Engine.IO handshake got no answer within {timeout:g} s"
        fix = ("Something accepts TCP on this port but does not answer HTTP: check that "
               "the proxy (and the server behind it) is not hung, and that this port is "
               "the proxy's HTTP port. Raise --timeout for a very slow server.")
    else:
        title = "The connection was closed before a complete answer to the handshake"
        fix = ("Check the proxy's error log: it accepted the connection and dropped it "
               "(a crashing server, a TLS-only port, or a filter that refuses the request).")
    return Finding(codes.PROXY_UNREACHABLE, "error", title, f"polling: {exc.message}", fix)


def classify_eio3(response: HttpResponse, path: str, evidence: str
                  ) -> tuple[Handshake | None, Finding]:
    """The EIO=3 retry's answer: the v3 handshake (if any) and what it means."""
    packets = decode_payload(response.body, 3) if response.status == 200 else []
    handshake = read_open(packets[0], 3) if packets else None
    if isinstance(handshake, str):
        return None, _bad_open(handshake, evidence)
    if handshake is None:
        return None, Finding(
            codes.UNEXPECTED_RESPONSE, "error",
            "The server speaks neither Engine.IO v4 nor v3 at this path", evidence,
            _fix_path(path))
    return handshake, Finding(
        codes.EIO_VERSION_MISMATCH, "error",
        "The server speaks only Engine.IO v3 (Socket.IO 2.x): Socket.IO 3+/4 clients and "
        "python-socketio 5 cannot connect",
        evidence,
        "Upgrade the server to Socket.IO 4 (keep old clients working during the move with "
        "`allowEIO3: true`), or pin every client to Socket.IO 2.x.",
    )


def no_upgrade_offered(handshake: Handshake) -> Finding:
    """``upgrades: []``: no proxy can help, the server itself cannot (or will not) do it."""
    return Finding(
        codes.BACKEND_WITHOUT_WEBSOCKET, "error",
        "The Socket.IO server itself offers no WebSocket upgrade: every client stays on "
        "long-polling (websocket-only clients fail)",
        f"open packet upgrades: {list(handshake.upgrades)}",
        "Fix it on the server, not the proxy. python-socketio/Flask-SocketIO log \"The "
        "WebSocket transport is not available\" when their server cannot do WebSocket: the "
        "Werkzeug dev server and threading mode need `pip install simple-websocket`; gunicorn "
        "needs a worker that can (`gunicorn -k eventlet -w 1 app:app`, or `-k gevent` with "
        "gevent-websocket, or `--threads 100` with simple-websocket), never the plain sync "
        "worker; uWSGI needs `--http-websockets`. Node socket.io and python-socketio: keep "
        "'websocket' in the server's `transports` and `allowUpgrades`/`allow_upgrades` on.")


def upgrade_unanswered(query: str, message: str) -> Finding:
    return Finding(codes.WEBSOCKET_UPGRADE_BLOCKED, "error",
                   f"The WebSocket upgrade got no answer ({message})",
                   f"GET {query}: {message}", FIX_UPGRADE)


def upgraded_then_failed(seen: str, exc: WireError) -> Finding:
    """The ``101`` came, then Engine.IO on the WebSocket broke or stayed silent."""
    if exc.kind == "protocol":
        return Finding(
            codes.UNEXPECTED_RESPONSE, "error",
            f"The upgraded connection broke the protocol: {exc.message}",
            f"websocket: {seen}",
            "What answers at this path is not a working Socket.IO server (or "
            "something on the way corrupts WebSocket frames): check the server and "
            "the proxy's route.")
    return Finding(codes.WEBSOCKET_UPGRADE_BLOCKED, "error",
                   "The WebSocket opened but Engine.IO did not answer on it",
                   f"websocket: {seen}", FIX_UPGRADE)


def polling_disabled(polling_detail: str) -> Finding:
    return Finding(
        codes.POLLING_DISABLED, "warning",
        "The server refuses long-polling: only websocket-only clients can connect",
        f"polling: {polling_detail}; websocket: the open packet came on the WebSocket",
        "Create every client with transports: ['websocket'], or enable polling on the "
        "server (clients behind proxies that block upgrades need it).")


def client_failed(error: str) -> Finding:
    return Finding(
        codes.UNEXPECTED_RESPONSE, "error",
        "python-socketio could not connect although the raw handshake worked",
        f"socketio: {error}",
        "Check the server's connection middleware/auth (a namespace that refuses "
        "the connection) and the proxy's logs.")


def stayed_on_polling(transport: str | None) -> Finding:
    return Finding(
        codes.WEBSOCKET_UPGRADE_BLOCKED, "error",
        "Clients silently stay on long-polling: the WebSocket upgrade fails",
        f"socketio: python-socketio connected on {transport}", FIX_UPGRADE)


def round_trip_failed(event: str, expect: str | None, error: str | None) -> Finding:
    wanted = f"emits {expect!r}" if expect else "calls the acknowledgement callback"
    return Finding(
        codes.ROUND_TRIP_FAILED, "error",
        f"No answer to the event {event!r}",
        f"emit: {error}",
        f"Check that the server has a handler for {event!r} that {wanted}.")


def sessions_finding(result: SessionsResult) -> Finding | None:
    if not result.unknown_session:
        return None
    return Finding(
        codes.NO_STICKY_SESSIONS, "error",
        "Requests of one session reach different servers (no sticky sessions)",
        f"sessions: {result.unknown_session} of {result.requested} polling sessions "
        "got \"Session ID unknown\" on a follow-up request",
        FIX_STICKY)


def clients_finding(result: ClientsResult) -> Finding | None:
    if not result.failed:
        return None
    return Finding(
        codes.LOAD_FAILURES, "warning",
        f"{result.failed} of {result.requested} concurrent WebSocket clients failed",
        "clients: " + ", ".join(f"{k} ×{v}" for k, v in result.errors.items()),
        "Raise the limits on the way: the server's listen backlog, the proxy's "
        "worker_connections (nginx needs 2 per client) and open-file limits.")
