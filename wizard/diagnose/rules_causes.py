"""Issue 12's config-side rules: the causes behind what browsers and real servers meet.

Called by ``wizard.diagnose.rules.diagnose_with_notes`` after its own rules, with the findings
so far: each rule here reads the facts the readers filled (``RouteFacts.host_seen``,
``body_limit``, ``affinity_kind``, ``mount``, ...) and the answers from the proxy host
(``RouteFacts.host_checks``, from ``wizard.diagnose.hostcheck``), and adds a cause finding or
sharpens one the probe made. Pure, and general: each is a rule over those facts, never a match
on one config. The per-proxy words come from ``wizard.proxies.<kind>`` (``causes``).

* origin: the Host (and X-Forwarded-Host/-Proto) the backend compares a browser's Origin
  with, as python-socketio/Flask-SocketIO do (same-origin by default);
* stickiness that is not: address hashing without the real client address; cookie affinity
  (the clients must send the cookie back);
* body limits below the handshake's maxPayload;
* a middleware mount that strips the path (blame the mount, not the server's path).

The host-side rules (several processes, ``localhost`` -> ::1, SELinux) are in
``wizard.diagnose.rules_host``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from wizard import findings as codes
from wizard.diagnose.facts import HeaderFact, RouteFacts
from wizard.diagnose.text import evidence, place, probe_evidence
from wizard.findings import Finding
from wizard.proxies import profile

if TYPE_CHECKING:
    from wizard.diagnose.rules_context import RuleContext

# Engine.IO's default maxPayload (1e6 bytes): what a handshake without the field means.
DEFAULT_MAX_PAYLOAD = 1_000_000


def _default_port(facts: RouteFacts) -> bool:
    return facts.url_port in (None, 443 if facts.server_tls else 80)


def _keeps_host(header: HeaderFact | None, facts: RouteFacts) -> bool:
    """Does this header carry the host[:port] a browser puts in its Origin?"""
    if header is None:
        return False
    return header.value in ("client", "other") or (
        header.value == "client-no-port" and _default_port(facts))


def _refused(found: list[Finding]) -> list[Finding]:
    return [f for f in found if f.code == codes.ORIGIN_REJECTED
            or ("origin" in f.code and f.code != codes.ORIGIN_HEADERS_CHANGED)]


def _wrong_proto(header: HeaderFact | None, facts: RouteFacts) -> bool:
    """An X-Forwarded-Proto that makes the server build another scheme than the page's
    (python-engineio's aiohttp driver takes it as the request's scheme)."""
    if header is None:
        return False
    return header.value == "ws-scheme" or header.value == (
        "http" if facts.server_tls else "https")


def origin_host(ctx: RuleContext, found: list[Finding]) -> list[Finding]:
    """The backend cannot match the browser's Origin: the proxy changed what it compares.

    python-engineio accepts ``scheme://Host`` and ``X-Forwarded-Proto://X-Forwarded-Host``
    (each falling back to the plain value; its aiohttp driver takes X-Forwarded-Proto as the
    scheme). A Host without the port of a non-default listen port, the upstream's own host,
    or an X-Forwarded-Proto of another scheme (http-proxy's ``ws`` on upgrades) match
    neither. (X-Forwarded-Proto missing behind TLS is the older rule's, in ``rules``.)"""
    facts = ctx.facts
    if facts is None or not facts.proxied or facts.host_seen is None:
        return found
    causes: list[HeaderFact] = []
    if not (_keeps_host(facts.host_seen, facts) or _keeps_host(facts.xfh_seen, facts)):
        causes += [facts.host_seen, *([facts.xfh_seen] if facts.xfh_seen else [])]
    if facts.xfp_seen is not None and _wrong_proto(facts.xfp_seen, facts):
        causes.append(facts.xfp_seen)
    if not causes:
        return found
    why = {"client-no-port": f"sends the host name without the port (:{facts.url_port} "
                             "is lost)",
           "upstream": "sends the upstream's own host instead of the client's",
           "ws-scheme": "sends X-Forwarded-Proto: ws on WebSocket upgrades, which the server "
                        "takes as the page's scheme (ws://… is no browser's Origin)",
           "http": "sends X-Forwarded-Proto: http although the page is https",
           "https": "sends X-Forwarded-Proto: https although the page is http"}
    said = "; ".join(f"{place(h.where) if h.where else f'`{h.what}`'} "
                     f"{why.get(h.value, 'replaces the Host')}" for h in causes)
    refused = _refused(found)
    if not refused:
        # Only servers that check the Origin (python-socketio's default) refuse: without a
        # refusal seen this is a note, not a finding (Node's socket.io never checks).
        ctx.notes.append(f"{said}: if browsers get \"… is not an accepted origin\" from a "
                         "python-socketio/Flask-SocketIO server, this is why")
        return found
    title = (f"{ctx.name} changes the headers the server compares the browser's Origin with: "
             "python-socketio/Flask-SocketIO refuse browsers (400 \"… is not an accepted "
             "origin\") while curl and Node clients work")
    writers = profile(facts.proxy).causes
    fixes = []
    if causes[0] is facts.host_seen:
        fixes.append(writers.keep_host(place(facts.host_seen.where or facts.route)))
    if facts.xfp_seen in causes:
        assert facts.xfp_seen is not None
        fixes.append(writers.keep_proto(place(facts.xfp_seen.where or facts.route)))
    out = [*found, Finding(codes.ORIGIN_HEADERS_CHANGED, "error", title,
                           evidence(said, facts.route and f"route: {facts.route}",
                                    probe_evidence(refused)), "\n".join(fixes))]
    # The refusal the probe saw now has its cause named; so has a "blocked" upgrade that was
    # in fact refused for its Origin.
    stage = ctx.probe.stage("websocket") if ctx.probe is not None else None
    by_origin = stage is not None and "accepted origin" in stage.detail
    return [replace(f, evidence=evidence(f.evidence, f"cause: {codes.ORIGIN_HEADERS_CHANGED}"),
                    fix=(f"The upgrade was refused for its Origin: see "
                         f"{codes.ORIGIN_HEADERS_CHANGED}.\n{f.fix}")
                    if f.code == codes.WEBSOCKET_UPGRADE_BLOCKED else f.fix)
            if f in refused or (by_origin and f.code == codes.WEBSOCKET_UPGRADE_BLOCKED) else f
            for f in out]


def address_affinity(ctx: RuleContext, found: list[Finding]) -> list[Finding]:
    """Address hashing pins a client by the address the proxy sees: behind a CDN or a load
    balancer with several egress addresses one client arrives from several."""
    facts = ctx.facts
    if facts is None or not facts.proxied or facts.affinity_kind != "address" or \
            len(facts.backends) < 2 or facts.real_ip is not None or facts.affinity_problem:
        return found
    lines = profile(facts.proxy).causes.real_ip
    return [*found, Finding(
        codes.AFFINITY_BY_ADDRESS, "warning",
        f"{ctx.name} keeps a client on one server by its address ({facts.affinity}); behind "
        "a CDN or load balancer with several egress addresses one client arrives from "
        "several, and lands on other servers (intermittent \"Session ID unknown\")",
        evidence(facts.affinity_where or facts.backends_where,
                 "no set_real_ip_from / real_ip_header / trusted proxies: the hash sees the "
                 "address of whatever connects to the proxy",
                 "a warning: the tier in front (if any) cannot be seen from here"),
        "If a CDN or load balancer is in front, restore the client's address before hashing:\n"
        f"{lines}\nor pin clients with a cookie instead of their address.")]


def cookie_affinity(ctx: RuleContext, found: list[Finding]) -> list[Finding]:
    """Cookie affinity only pins clients that send the cookie back."""
    facts = ctx.facts
    if facts is None or not facts.proxied or facts.affinity_kind != "cookie" or \
            len(facts.backends) < 2 or facts.affinity_problem:
        return found
    return [*found, Finding(
        codes.COOKIE_AFFINITY, "info",
        f"{ctx.name} pins clients with a cookie ({facts.affinity}): only clients that send "
        "it back stay on one server; the others get \"Session ID unknown\"",
        evidence(facts.affinity_where or facts.backends_where),
        "Browsers on the same origin send it by themselves. Otherwise, on the client:\n"
        "    // Node socket.io-client (keeps no cookies unless asked)\n"
        "    const socket = io(URL, { withCredentials: true });\n"
        "    // a browser page on another origin: the same option, and on the server\n"
        "    new Server(httpServer, { cors: { origin: 'https://app.example.com', "
        "credentials: true } });\n"
        "(cors.origin must be the page's exact origin: a credentialed request refuses '*')")]


def body_limit(ctx: RuleContext, found: list[Finding]) -> list[Finding]:
    """A request body limit below maxPayload: large long-polling POSTs get 413, the client
    reconnects, and sends the same batch again."""
    facts = ctx.facts
    limit = facts.body_limit if facts is not None else None
    if facts is None or not facts.proxied or limit is None or limit.bytes is None:
        return found
    hs = ctx.probe.handshake if ctx.probe is not None else None
    live = hs is not None and hs.max_payload is not None
    max_payload = hs.max_payload if hs is not None and hs.max_payload else DEFAULT_MAX_PAYLOAD
    if limit.bytes >= max_payload:
        return found
    writer = profile(facts.proxy).causes.body_limit
    where = place(limit.where) if limit.where else f"{limit.directive} in {place(facts.route)}"
    proxy_side = writer(max_payload, where) if writer else ""
    return [*found, Finding(
        codes.BODY_LIMIT_TOO_SMALL, "warning",
        f"{ctx.name} refuses request bodies over {limit.bytes} bytes, below the server's "
        f"maxPayload ({max_payload} bytes): large messages on long-polling get 413 (Caddy 2.6: "
        "502), and the client reconnects in a loop",
        evidence(limit.where or limit.default_note, f"{limit.directive} = {limit.bytes} bytes",
                 f"maxPayload {max_payload} bytes "
                 + ("(live handshake)" if live else "(Engine.IO's default; no live handshake)")),
        f"Either raise the proxy's limit — {proxy_side}\nor, if no message is ever that large, "
        f"lower the server's limit below {limit.bytes} bytes (Node: `new Server(httpServer, "
        "{ maxHttpBufferSize: … })`; python-socketio: `max_http_buffer_size=…`).")]


def mount_strips(ctx: RuleContext, found: list[Finding]) -> list[Finding]:
    """A middleware mount strips the path: the fault is the mount, not the server's path."""
    facts = ctx.facts
    if facts is None or facts.mount is None:
        return found
    mount = facts.mount
    out = []
    for f in found:
        if f.code != codes.PATH_MISMATCH:
            out.append(f)
            continue
        out.append(replace(
            f, title=(f"`{mount.text}` mounts the proxy at {ctx.path.rstrip('/')}: Express "
                      f"strips the mount path, so the server sees {facts.upstream_path or '/'}"
                      "?EIO=4… and answers 404"),
            evidence=evidence(mount, f.evidence),
            fix=(f"Mount the proxy at the root and let it match the path ({place(mount)}):\n"
                 "    app.use(createProxyMiddleware({ target: BACKEND, ws: true,\n"
                 f"                                    pathFilter: '{ctx.path.rstrip('/')}' }}));\n"
                 "(http-proxy-middleware 2.x: createProxyMiddleware("
                 f"'{ctx.path.rstrip('/')}', {{ target: BACKEND, ws: true }})). Leave the "
                 f"server's path at {ctx.path}: it is right.")))
    return out


RULES = (origin_host, address_affinity, cookie_affinity, body_limit, mount_strips)
