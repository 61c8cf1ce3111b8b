"""The diagnosis rules: (live config facts, probe report) -> findings. Pure: no threads, no I/O.

:func:`diagnose` holds the proxy's live config facts (:class:`~wizard.diagnose.facts.RouteFacts`,
or None without SSH) against what the live probe saw (``wizard.probe.ProbeReport``, or None)
and gives findings most serious first, each with a stable code, a severity, a plain-language
title, the evidence (config file:line and/or probe stage) and the fix as the exact lines to
change — written by the proxy's own module (``wizard.proxies.<kind>``, ``fixes``), so no rule
here knows one proxy from another. ``wizard.diagnose.run`` calls it; the table-driven tests
feed it case files.

The context every rule reads is ``rules_context``; the timeout rule is ``rules_timeout``
(graded by ``wizard.heartbeat``); the issue-12 cause rules are ``rules_causes`` and
``rules_host``; the browser-side ones ``rules_browser``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from wizard import findings as codes
from wizard.diagnose import rules_causes, rules_host
from wizard.diagnose.facts import RouteFacts
from wizard.diagnose.rules_browser import browser_rules
from wizard.diagnose.rules_context import RuleContext
from wizard.diagnose.rules_timeout import timeout_rule
from wizard.diagnose.text import evidence as _evidence
from wizard.diagnose.text import place as _place
from wizard.diagnose.text import probe_evidence as _probe_evidence
from wizard.findings import Finding, Severity, merge, order
from wizard.proxies.fixes import edits_of

if TYPE_CHECKING:
    from wizard.probe import ProbeReport


def diagnose(facts: RouteFacts | None, probe: ProbeReport | None,
             path: str | None = None) -> list[Finding]:
    """Findings for these facts and this probe, most serious first (pure)."""
    return diagnose_with_notes(facts, probe, path)[0]


def diagnose_with_notes(facts: RouteFacts | None, probe: ProbeReport | None,
                        path: str | None = None) -> tuple[list[Finding], list[str]]:
    path = path or (probe.path if probe is not None else "/socket.io/")
    ctx = RuleContext(facts, probe, path)
    found: list[Finding] = []
    for rule in (_reachability, _backend, _path, _upgrade, _origin, _sticky, timeout_rule,
                 _error_handler, browser_rules):
        found.extend(rule(ctx))
    found.extend(ctx.pending)  # what only the probe can tell (EIO=3, TLS, round trip...)
    for post in (*rules_causes.RULES, *rules_host.RULES):  # issue 12: causes, over all found
        found = post(ctx, found)
    return order(merge(found)), ctx.notes




# ---- proxy-unreachable


def _reachability(ctx: RuleContext) -> list[Finding]:
    found = ctx.take(codes.PROXY_UNREACHABLE)
    facts = ctx.facts
    if not found or facts is None or ctx.probe is None:
        return found
    from wizard.probe.wire import parse_url

    target = parse_url(ctx.probe.url, ctx.probe.path)
    first = found[0]
    on_port = [x for x in facts.listens if x.port == target.port]
    if on_port:
        extra = (f"the config does listen on port {target.port} ({on_port[0].where}): "
                 f"{ctx.name} is not running there, or something (a firewall) blocks it")
        fix = (f"Start (or restart) {ctx.name} on the host and check its error log; then check "
               f"that port {target.port} is open between the clients and the host.")
    else:
        ports = ", ".join(f"{x.port}{' (TLS)' if x.tls else ''} ({x.where.file}:"
                          f"{x.where.line})" for x in facts.listens) or "no port"
        extra = f"the config listens on {ports}, not on port {target.port}"
        fix = (f"Probe the port {ctx.name} listens on, or make it listen on {target.port}"
               + (f": change `{facts.listens[0].where.text}` ({facts.listens[0].where.file}:"
                  f"{facts.listens[0].where.line})" if facts.listens else "") + ".")
    return [replace(first, evidence=_evidence(first.evidence, extra), fix=fix), *found[1:]]


# ---- backend-unreachable


def _backend(ctx: RuleContext) -> list[Finding]:
    found = ctx.take(codes.BACKEND_UNREACHABLE)
    facts = ctx.facts
    if facts is None:
        return found
    ctx.notes.extend(f"backend {c.address} (from the config) was {c.detail}"
                     for c in facts.backend_checks if not c.checked)
    down = [c for c in facts.backend_checks if c.checked and not c.reachable]
    if not found and down and ctx.handshake_ok:
        # Some backends answer, some do not: the proxy hides it until the next failover.
        names = ", ".join(c.address for c in down)
        return [Finding(
            codes.BACKEND_UNREACHABLE, "warning",
            f"{len(down)} of {len(facts.backends)} backends do not accept connections ({names})",
            _evidence(facts.backends_where, *(f"from the proxy host: {c.address} {c.detail}"
                                              for c in down)),
            f"Start the Socket.IO server on {names}, or remove it from "
            f"{_place(facts.backends_where)}.")]
    if not found:
        return []
    first = found[0]
    where = facts.backends_where or facts.upstream
    checks = [f"from the proxy host: {c.address} "
              f"{c.detail or ('accepts connections' if c.reachable else 'refused')}"
              for c in facts.backend_checks]
    backends = ", ".join(facts.backends) or "its upstream"
    fix = (f"Start the Socket.IO server on {backends}, or point the route at the address it "
           f"really listens on: {_place(where)}.")
    checked = [c for c in facts.backend_checks if c.checked]
    if checked and all(c.reachable for c in checked):
        fix = (f"The proxy host reaches {backends}, yet the proxy answered 502/504: check the "
               f"{ctx.name} error log (a TLS/HTTP mismatch to the backend, or a crashing "
               "server).")
    return [replace(first, evidence=_evidence(first.evidence, where, *checks), fix=fix)]

# ---- path-mismatch


def _path(ctx: RuleContext) -> list[Finding]:
    found = ctx.take(codes.PATH_MISMATCH)
    facts = ctx.facts
    path = ctx.path
    if facts is None:
        return found
    probe_fail = bool(found)
    if ctx.handshake_ok and not probe_fail:
        if facts.route is None or not facts.proxied:
            ctx.notes.append(f"the config read shows no proxied route for {path}, yet the probe "
                             "got a Socket.IO handshake: the URL may reach another proxy")
        return []
    if ctx.probe is not None and not probe_fail:
        return []  # the probe failed earlier or for another reason: nothing to add here
    evidence_probe = _probe_evidence(found)
    if facts.route is None or not facts.proxied:
        what = facts.route_desc or "no route"
        title = (f"No route of {ctx.name} forwards {path} to the Socket.IO server "
                 f"({'it is handled by ' + what if facts.route else what})")
        evidence = _evidence(facts.server and f"server: {facts.server}",
                             facts.route and f"route: {facts.route}",
                             facts.elsewhere and f"a Socket.IO route exists elsewhere: "
                                                 f"{facts.elsewhere}",
                             *facts.notes, evidence_probe)
        fix = ctx.fixes.route(ctx.site())
        edits = edits_of(fix)
        if facts.elsewhere is not None and facts.server is not None:
            edits = ()  # first choice: name the block that has the route (not an edit)
            # The route exists, in a block these requests do not reach: most often a default
            # site (Debian's nginx `default`, Apache's 000-default) catching them first.
            fix = (f"The Socket.IO route already exists at {_place(facts.elsewhere)}, in "
                   f"another server block than the one that answers ({_place(facts.server)}; "
                   "typically a default site). Give the block with the route the name "
                   "clients use (nginx `server_name`, Apache `ServerName`, a Caddy site "
                   "address), or disable the site that catches the requests. Or, to serve "
                   f"Socket.IO from the block that answers: {fix[0].lower()}{fix[1:]}")
        return [Finding(codes.PATH_MISMATCH, "error", title, evidence, fix, edits)]
    upstream_path = facts.upstream_path
    if upstream_path is not None and upstream_path != path:
        title = (f"{ctx.name} forwards {path} to the server as {upstream_path}, and nothing "
                 "answers Socket.IO there")
        severity: Severity = "error"
        if not probe_fail:
            if upstream_path not in ("/", ""):
                return []  # a deliberate rewrite; without a probe we cannot tell
            title = f"{ctx.name} strips {path} before forwarding: the server sees {upstream_path}"
            severity = "warning"
        rewrite = ctx.fixes.rewrite(ctx.site())
        return [Finding(codes.PATH_MISMATCH, severity, title,
                        _evidence(facts.route and f"route: {facts.route}",
                                  facts.upstream and f"upstream: {facts.upstream}",
                                  evidence_probe), rewrite, edits_of(rewrite))]
    if not probe_fail:
        return []
    first = found[0]
    title = (f"{ctx.name} forwards {path} unchanged to {', '.join(facts.backends) or 'the backend'}"
             f", but the Socket.IO server does not answer there: its `path` option differs")
    fix = (f"Set the Socket.IO server's path to {path} (Node: `new Server(httpServer, {{ path: "
           f"'{path}' }})`; python-socketio: `socketio_path='{path.strip('/')}'`), or make "
           f"{ctx.name} rewrite {path} to the server's path; clients must use the same path. "
           f"{first.fix}")
    return [Finding(codes.PATH_MISMATCH, "error", title,
                    _evidence(facts.route and f"route: {facts.route}",
                              facts.upstream and f"upstream: {facts.upstream}", evidence_probe),
                    fix)]



# ---- websocket-upgrade-blocked


def _upgrade(ctx: RuleContext) -> list[Finding]:
    found = ctx.take(codes.WEBSOCKET_UPGRADE_BLOCKED)
    facts = ctx.facts
    if facts is None:
        return found
    blockers = facts.upgrade_blockers
    if blockers and ctx.websocket_works and not all(b.only for b in blockers):
        ctx.notes.append("the config read suggests the upgrade is blocked ("
                         + blockers[0].reason + "), yet the probe got a WebSocket: the URL "
                         "may reach another proxy")
        return []
    if blockers and facts.proxied:
        reason = "; ".join(b.reason for b in blockers)
        title = f"The WebSocket upgrade is blocked by {ctx.name}: {reason}"
        # One fault, one finding: a client-specific blocker (Firefox's Connection form) is what
        # the probe's upgrade-header-form observed, so that observation becomes evidence here.
        seen = ctx.take(codes.UPGRADE_HEADER_FORM) if any(b.only for b in blockers) else []
        evidence = _evidence(*(b.where for b in blockers),
                             facts.elsewhere and f"the complete Socket.IO route is only in "
                                                 f"another server block: {facts.elsewhere}",
                             _probe_evidence([*found, *seen]))
        fix = "\n".join(dict.fromkeys(b.fix for b in blockers))
        return [Finding(codes.WEBSOCKET_UPGRADE_BLOCKED, "error", title, evidence, fix)]
    if not found:
        return []
    if _upgrade_lost_its_session(ctx) and facts.proxied:
        # The upgrade reached a backend that does not know the session: not a blocked upgrade
        # but the stickiness (or several-processes) finding, which the sticky rules make.
        ctx.notes.append("the WebSocket upgrade was answered \"Session ID unknown\": it "
                         "reached another backend than the handshake (see the stickiness "
                         "findings)")
        return []
    first = found[0]
    extra = (f"the config route {facts.route} looks right for upgrades: something in front "
             f"of {ctx.name} (a CDN, a load balancer, another proxy) may drop them"
             if facts.route and facts.proxied else "")
    return [replace(first, evidence=_evidence(first.evidence, extra))]


def _upgrade_lost_its_session(ctx: RuleContext) -> bool:
    """An upgrade answered "Session ID unknown": the raw one, or — when the raw one happened to
    reach the handshake's backend — a later one (origin, firefox) or a polling session's."""
    probe = ctx.probe
    if probe is None:
        return False

    def lost(name: str) -> bool:
        stage = probe.stage(name)
        return (stage is not None and not stage.ok
                and any(m in stage.detail.lower() for m in ("session id unknown",
                                                            "invalid session")))

    raw = probe.stage("websocket")
    if raw is not None and not raw.ok:
        return lost("websocket")
    return any(lost(name) for name in ("origin", "firefox", "sessions"))


# ---- origin-rejected


def _origin(ctx: RuleContext) -> list[Finding]:
    found = ctx.take(codes.ORIGIN_REJECTED)
    facts = ctx.facts
    if facts is None or not facts.proxied:
        return found
    missing: list[str] = []
    if facts.server_tls and facts.forwarded_proto is False:
        missing.append("TLS ends at the proxy but X-Forwarded-Proto is not forwarded")
    if facts.forwarded_host is False and facts.host_seen is None:  # else: rules_causes
        missing.append("the client's Host is not forwarded (no Host $host / X-Forwarded-Host)")
    if found:
        first = found[0]
        if not missing:
            return found
        fix = f"{facts.forward_fix}\n{first.fix}" if facts.forward_fix else first.fix
        title = f"The server rejected the request's Origin: {'; '.join(missing)}"
        return [replace(first, title=title, fix=fix,
                        evidence=_evidence(first.evidence,
                                           facts.route and f"route: {facts.route}", *missing))]
    if not missing:
        return []
    title = (f"{'; '.join(missing)[0].upper()}{'; '.join(missing)[1:]}: servers that check "
             "the Origin against the request (python-socketio's default) will refuse browsers")
    return [Finding(codes.ORIGIN_REJECTED, "warning", title,
                    _evidence(facts.route and f"route: {facts.route}"), facts.forward_fix)]


# ---- no-sticky-sessions


def _sticky(ctx: RuleContext) -> list[Finding]:
    found = ctx.take(codes.NO_STICKY_SESSIONS)
    facts = ctx.facts
    if facts is None or not facts.proxied:
        return found
    needed = len(facts.backends) > 1
    broken = needed and (facts.affinity is None or facts.affinity_problem is not None)
    if broken:
        why = facts.affinity_problem or (
            f"{len(facts.backends)} backends ({', '.join(facts.backends)}) and nothing keeps a "
            "client on one of them")
        title = (f"No sticky sessions: {ctx.name} spreads the requests of one Socket.IO "
                 "session over several servers (\"Session ID unknown\")")
        sticky = ctx.fixes.sticky(ctx.site())
        return [Finding(codes.NO_STICKY_SESSIONS, "error", title,
                        _evidence(facts.backends_where, why, _probe_evidence(found),
                                  _client_lost_sessions(ctx) if found else ""),
                        sticky, edits_of(sticky))]
    cookie = facts.affinity is not None and ("cookie" in facts.affinity
                                             or "stickysession" in facts.affinity)
    if found and cookie and ctx.probe is not None and ctx.probe.transport == "websocket":
        # The probe's raw requests send no cookies back, so a cookie policy cannot pin them;
        # python-socketio keeps cookies like a browser and got through: not a real finding.
        ctx.notes.append(f"the probe's raw requests carry no cookies, so {facts.affinity} "
                         "could not pin them (\"Session ID unknown\"); python-socketio, which "
                         "keeps cookies like a browser, connected fine")
        return []
    if found:
        first = found[0]
        extra = (f"the config has {facts.affinity} ({_place(facts.backends_where)}); if the "
                 "clients share one address (NAT, another proxy in front), an address hash "
                 "sends them all to one server but a cookie policy is safer") if \
            facts.affinity else ""
        return [replace(first, evidence=_evidence(first.evidence, extra,
                                                  _client_lost_sessions(ctx)))]
    return []


def _client_lost_sessions(ctx: RuleContext) -> str:
    """python-socketio's failure when sessions are spread over servers is this finding's
    symptom, not another fault: its evidence moves here."""
    lost = [f for f in ctx.pending
            if f.code == codes.UNEXPECTED_RESPONSE and f.evidence.startswith("socketio:")]
    ctx.pending = [f for f in ctx.pending if f not in lost]
    return _probe_evidence(lost) if lost else ""


# ---- http-proxy without an error listener


def _error_handler(ctx: RuleContext) -> list[Finding]:
    facts = ctx.facts
    if facts is None or facts.error_handler is not False:
        return []
    return [Finding(
        codes.ERROR_HANDLER_MISSING, "warning",
        "http-proxy has no 'error' listener: one reset backend connection crashes the whole "
        "proxy (every client drops)", _evidence(facts.upstream or facts.server),
        "After createProxyServer() add:\n"
        "    proxy.on('error', (err, req, res) => {\n"
        "      if (res && res.writeHead && !res.headersSent) { res.writeHead(502); res.end(); }\n"
        "      else if (res && res.destroy) res.destroy();\n"
        "    });")]

