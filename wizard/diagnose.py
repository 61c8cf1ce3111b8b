"""``sockwizard diagnose``: why Socket.IO clients see "transport close" (and its cousins).

Two halves. :func:`diagnose` is the pure part: rules over the proxy's live config facts
(``wizard.configread.RouteFacts``, or None without SSH) and what the live probe saw
(``wizard.probe.ProbeReport``, or None), giving findings most serious first, each with a stable
code, a severity, a plain-language title, the evidence (config file:line and/or probe stage)
and the fix as the exact lines to change. The table-driven tests feed it case files.

:func:`run_diagnosis` is the orchestration the CLI and the TUI call: it reads the config over a
:class:`~wizard.remote.Remote` while the probe runs (the two are independent), asks the proxy
host whether the backends accept connections when the probe saw a 502/504, and returns a
:class:`Diagnosis`.

The timeout rule is graded (REFERENCE.md, measured): a route idle timeout at or below the live
pingInterval cuts every idle client (certain: error); one above pingInterval but not above
pingInterval + pingTimeout survives only while every ping is on time (at risk: warning); above
the sum is fine. The live handshake's values are used, never the defaults, because raised ping
settings are exactly what turns nginx's default 60 s into a drop. Config facts decide this in
milliseconds, without waiting for the drop; a ``--hold`` drop, when there is one, only adds
evidence.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from wizard import findings as codes
from wizard.configread import (
    CONFIG_DEADLINE_S,
    BackendCheck,
    RouteFacts,
    RouteQuery,
    TimeoutFact,
    Where,
)
from wizard.errors import BadInput, RemoteCommandFailed, SockwizardError
from wizard.findings import Finding, Severity
from wizard.model import DEFAULT_PING_INTERVAL_MS, DEFAULT_PING_TIMEOUT_MS, ProxyKind

if TYPE_CHECKING:
    from wizard.probe import ProbeOptions, ProbeReport, Stage
    from wizard.remote import Remote

CONFIG_UNREADABLE = "config-unreadable"
ERROR_HANDLER_MISSING = "proxy-error-handler-missing"

# Equal severities are listed in this order: the first ones make the later ones moot.
CODE_ORDER = (
    codes.PROXY_UNREACHABLE, codes.TLS_ERROR, codes.BACKEND_UNREACHABLE, codes.PATH_MISMATCH,
    codes.EIO_VERSION_MISMATCH, codes.WEBSOCKET_UPGRADE_BLOCKED, codes.ORIGIN_REJECTED,
    codes.NO_STICKY_SESSIONS, codes.READ_TIMEOUT_TOO_SHORT, codes.UNEXPECTED_RESPONSE,
    codes.ROUND_TRIP_FAILED, codes.CONNECTION_DROPPED, codes.POLLING_DISABLED,
    codes.LOAD_FAILURES, ERROR_HANDLER_MISSING, CONFIG_UNREADABLE,
)
_SEVERITY = {"error": 0, "warning": 1, "info": 2}
_NAMES = {ProxyKind.NGINX: "nginx", ProxyKind.APACHE: "Apache", ProxyKind.CADDY: "Caddy",
          ProxyKind.NODE: "http-proxy"}


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Ping:
    """The heartbeat a route timeout is held against: live from the handshake, or defaults."""

    interval_ms: int
    timeout_ms: int
    live: bool

    @property
    def interval_s(self) -> float:
        return self.interval_ms / 1000

    @property
    def sum_s(self) -> float:
        return (self.interval_ms + self.timeout_ms) / 1000

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


def suggested_timeout(ping: Ping) -> int:
    """A round figure comfortably above pingInterval + pingTimeout, at least 60 s."""
    return max(60, int(math.ceil(ping.sum_s * 1.25 / 5) * 5))


def grade_timeout(seconds: float | None, ping: Ping) -> str | None:
    """``certain`` (<= pingInterval), ``at-risk`` (<= the sum) or None (fine / no timeout)."""
    if seconds is None:
        return None
    if seconds <= ping.interval_s:
        return "certain"
    if seconds <= ping.sum_s:
        return "at-risk"
    return None


# --------------------------------------------------------------------------- the rules


class _Ctx:
    """One run of the rules: the inputs and the probe findings not yet consumed."""

    def __init__(self, facts: RouteFacts | None, probe: ProbeReport | None, path: str) -> None:
        self.facts = facts
        self.probe = probe
        self.path = path
        self.ping = ping_of(probe)
        self.pending = list(probe.findings) if probe is not None else []
        self.notes: list[str] = []

    def take(self, code: str) -> list[Finding]:
        taken = [f for f in self.pending if f.code == code]
        self.pending = [f for f in self.pending if f.code != code]
        return taken

    def stage_ok(self, name: str) -> bool | None:
        if self.probe is None:
            return None
        stage = self.probe.stage(name)
        return None if stage is None else stage.ok

    @property
    def handshake_ok(self) -> bool:
        return self.probe is not None and self.probe.handshake is not None

    @property
    def websocket_works(self) -> bool:
        return self.probe is not None and bool(self.stage_ok("websocket")) and \
            self.probe.transport in ("websocket", None)

    @property
    def name(self) -> str:
        return _NAMES[self.facts.proxy] if self.facts else "the proxy"


def diagnose(facts: RouteFacts | None, probe: ProbeReport | None,
             path: str | None = None) -> list[Finding]:
    """Findings for these facts and this probe, most serious first (pure)."""
    return diagnose_with_notes(facts, probe, path)[0]


def diagnose_with_notes(facts: RouteFacts | None, probe: ProbeReport | None,
                        path: str | None = None) -> tuple[list[Finding], list[str]]:
    path = path or (probe.path if probe is not None else "/socket.io/")
    ctx = _Ctx(facts, probe, path)
    found: list[Finding] = []
    for rule in (_reachability, _backend, _path, _upgrade, _origin, _sticky, _timeouts,
                 _error_handler):
        found.extend(rule(ctx))
    found.extend(ctx.pending)  # what only the probe can tell (EIO=3, TLS, round trip...)
    return order(merge(found)), ctx.notes


def order(found: Iterable[Finding]) -> list[Finding]:
    rank = {code: i for i, code in enumerate(CODE_ORDER)}
    return sorted(found, key=lambda f: (_SEVERITY.get(f.severity, 3),
                                        rank.get(f.code, len(rank))))


def merge(found: Sequence[Finding]) -> list[Finding]:
    """One finding per code: the first keeps title and fix, evidence is appended, the worst
    severity wins (rules put their config-backed finding before the probe's)."""
    out: dict[str, Finding] = {}
    for f in found:
        first = out.get(f.code)
        if first is None:
            out[f.code] = f
            continue
        severity = first.severity if _SEVERITY[first.severity] <= _SEVERITY[f.severity] \
            else f.severity
        evidence = first.evidence if f.evidence in first.evidence else \
            f"{first.evidence}; {f.evidence}"
        out[f.code] = replace(first, severity=severity, evidence=evidence)
    return list(out.values())


def _evidence(*parts: str | Where | Iterable[Where] | None) -> str:
    out: list[str] = []
    for part in parts:
        if part is None or part == "":
            continue
        if isinstance(part, (str, Where)):
            out.append(str(part))
        else:
            out.extend(str(w) for w in part)
    return "; ".join(dict.fromkeys(out))


def _probe_evidence(found: Sequence[Finding]) -> str:
    return "; ".join(dict.fromkeys(f"probe {f.evidence}" if not f.evidence.startswith("probe")
                                   else f.evidence for f in found))


# ---- proxy-unreachable


def _reachability(ctx: _Ctx) -> list[Finding]:
    found = ctx.take(codes.PROXY_UNREACHABLE)
    facts = ctx.facts
    if not found or facts is None or ctx.probe is None:
        return found
    from wizard.eio import parse_url

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


def _backend(ctx: _Ctx) -> list[Finding]:
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


def _place(where: Where | None) -> str:
    if where is None:
        return "the proxy's upstream setting"
    place = where.file if where.line is None else f"{where.file}:{where.line}"
    return f"`{where.text}` ({place})" if where.text else place


# ---- path-mismatch


def _path(ctx: _Ctx) -> list[Finding]:
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
        fix = _fix_route(ctx)
        if facts.elsewhere is not None and facts.server is not None:
            # The route exists, in a block these requests do not reach: most often a default
            # site (Debian's nginx `default`, Apache's 000-default) catching them first.
            fix = (f"The Socket.IO route already exists at {_place(facts.elsewhere)}, in "
                   f"another server block than the one that answers ({_place(facts.server)}; "
                   "typically a default site). Give the block with the route the name "
                   "clients use (nginx `server_name`, Apache `ServerName`, a Caddy site "
                   "address), or disable the site that catches the requests. Or, to serve "
                   f"Socket.IO from the block that answers: {fix[0].lower()}{fix[1:]}")
        return [Finding(codes.PATH_MISMATCH, "error", title, evidence, fix)]
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
        return [Finding(codes.PATH_MISMATCH, severity, title,
                        _evidence(facts.route and f"route: {facts.route}",
                                  facts.upstream and f"upstream: {facts.upstream}",
                                  evidence_probe), _fix_rewrite(ctx))]
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


def _backend_hint(facts: RouteFacts) -> str:
    return facts.backends[0] if facts.backends else "127.0.0.1:3000"


def _fix_route(ctx: _Ctx) -> str:
    facts = ctx.facts
    assert facts is not None
    path, backend = ctx.path, _backend_hint(facts)
    server = _place(facts.server)
    if facts.proxy is ProxyKind.NGINX:
        return (f"In the server block {server} add (before any catch-all location):\n"
                f"    location {path} {{\n"
                f"        proxy_pass http://{backend};\n"
                "        proxy_http_version 1.1;\n"
                "        proxy_set_header Upgrade $http_upgrade;\n"
                "        proxy_set_header Connection $connection_upgrade;\n"
                "        proxy_set_header Host $host;\n"
                "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
                "        proxy_set_header X-Forwarded-Proto $scheme;\n"
                "        proxy_read_timeout 60s;\n"
                "    }")
    if facts.proxy is ProxyKind.APACHE:
        return (f"In {facts.hints.get('scope', 'the virtual host')} ({server}) add, above any "
                "`ProxyPass /`:\n"
                f"    ProxyPass \"{path}\" \"http://{backend}{path}\" upgrade=websocket\n"
                f"    ProxyPassReverse \"{path}\" \"http://{backend}{path}\"")
    if facts.proxy is ProxyKind.CADDY:
        return (f"In the site block {server} add, before any catch-all `handle`:\n"
                f"    handle {path}* {{\n"
                f"        reverse_proxy {backend}\n"
                "    }")
    return (f"Route requests whose URL starts with {path} to proxy.web() and their upgrades "
            f"to proxy.ws() in {facts.files[0] if facts.files else 'the proxy script'}.")


def _fix_rewrite(ctx: _Ctx) -> str:
    facts = ctx.facts
    assert facts is not None
    path, up = ctx.path, facts.upstream_path or "/"
    where = _place(facts.upstream)
    if facts.proxy is ProxyKind.NGINX:
        target = facts.upstream.text if facts.upstream else "proxy_pass …;"
        bare = target.split("://", 1)
        fixed = target
        if len(bare) == 2:
            host = bare[1].split("/", 1)[0].rstrip(";")
            fixed = f"{bare[0]}://{host};"
        return (f"Keep the path: replace {where} with `{fixed}` (proxy_pass without a URI "
                f"passes {path} unchanged), or set the server's path to {up}.")
    if facts.proxy is ProxyKind.CADDY:
        return (f"`handle_path` strips {path.rstrip('/')} before proxying. Use "
                f"`handle {path}*` instead (route at {_place(facts.route)}), or keep "
                f"handle_path and add inside it:\n    rewrite * {path.rstrip('/')}{{path}}\n"
                f"or set the server's path to {up}.")
    if facts.proxy is ProxyKind.APACHE:
        return (f"Make the target keep the path: {where} should forward {path} to "
                f"http://{_backend_hint(facts)}{path} (and the same for ProxyPassReverse), or "
                f"set the server's path to {up}.")
    return f"Forward {path} unchanged (do not rewrite req.url), or set the server's path to {up}."


# ---- websocket-upgrade-blocked


def _upgrade(ctx: _Ctx) -> list[Finding]:
    found = ctx.take(codes.WEBSOCKET_UPGRADE_BLOCKED)
    facts = ctx.facts
    if facts is None:
        return found
    blockers = facts.upgrade_blockers
    if blockers and ctx.websocket_works:
        ctx.notes.append("the config read suggests the upgrade is blocked ("
                         + blockers[0].reason + "), yet the probe got a WebSocket: the URL "
                         "may reach another proxy")
        return []
    if blockers and facts.proxied:
        reason = "; ".join(b.reason for b in blockers)
        title = f"The WebSocket upgrade is blocked by {ctx.name}: {reason}"
        evidence = _evidence(*(b.where for b in blockers),
                             facts.elsewhere and f"the complete Socket.IO route is only in "
                                                 f"another server block: {facts.elsewhere}",
                             _probe_evidence(found))
        fix = "\n".join(dict.fromkeys(b.fix for b in blockers))
        return [Finding(codes.WEBSOCKET_UPGRADE_BLOCKED, "error", title, evidence, fix)]
    if not found:
        return []
    first = found[0]
    extra = (f"the config route {facts.route} looks right for upgrades: something in front "
             f"of {ctx.name} (a CDN, a load balancer, another proxy) may drop them"
             if facts.route and facts.proxied else "")
    return [replace(first, evidence=_evidence(first.evidence, extra))]


# ---- origin-rejected


def _origin(ctx: _Ctx) -> list[Finding]:
    found = ctx.take(codes.ORIGIN_REJECTED)
    facts = ctx.facts
    if facts is None or not facts.proxied:
        return found
    missing: list[str] = []
    if facts.server_tls and facts.forwarded_proto is False:
        missing.append("TLS ends at the proxy but X-Forwarded-Proto is not forwarded")
    if facts.forwarded_host is False:
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


def _sticky(ctx: _Ctx) -> list[Finding]:
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
        return [Finding(codes.NO_STICKY_SESSIONS, "error", title,
                        _evidence(facts.backends_where, why, _probe_evidence(found)),
                        _fix_sticky(ctx))]
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
        return [replace(first, evidence=_evidence(first.evidence, extra))]
    return []


def _fix_sticky(ctx: _Ctx) -> str:
    facts = ctx.facts
    assert facts is not None
    where = _place(facts.backends_where)
    if facts.proxy is ProxyKind.NGINX:
        if facts.affinity:
            return (f"In {where} replace `{facts.affinity};` with:\n"
                    "    hash $remote_addr consistent;")
        return f"In {where} add:\n    hash $remote_addr consistent;"
    if facts.proxy is ProxyKind.APACHE:
        name = facts.hints.get("balancer", "balancer://…")
        return (f"In {where} give every member a route and pin clients with a cookie:\n"
                f"    <Proxy \"{name}\">\n"
                + "".join(f"        BalancerMember \"http://{b}\" route=node{i + 1}\n"
                          for i, b in enumerate(facts.backends))
                + "        ProxySet stickysession=SERVERID\n"
                "    </Proxy>\n"
                "    Header add Set-Cookie \"SERVERID=sticky.%{BALANCER_WORKER_ROUTE}e; path=/\" "
                "env=BALANCER_ROUTE_CHANGED\n"
                "(mod_headers; with the ws:// rewrite recipe, give its balancer the same routes)")
    if facts.proxy is ProxyKind.CADDY:
        verb = f"replace `{facts.affinity}` with" if facts.affinity else "add"
        return f"In the reverse_proxy block {where} {verb}:\n    lb_policy cookie"
    return ("Pick the backend from a hash of the client address instead of spreading requests "
            f"({where}):\n"
            "    function pickBackend(req) {\n"
            "      const addr = req.socket.remoteAddress || '';\n"
            "      let h = 2166136261;\n"
            "      for (let i = 0; i < addr.length; i++) h = Math.imul(h ^ addr.charCodeAt(i), "
            "16777619) >>> 0;\n"
            "      return BACKENDS[h % BACKENDS.length];\n"
            "    }\n"
            "and pass { target: pickBackend(req) } to both proxy.web() and proxy.ws().")


# ---- read-timeout-too-short


def _timeouts(ctx: _Ctx) -> list[Finding]:
    found = ctx.take(codes.READ_TIMEOUT_TOO_SHORT)
    facts = ctx.facts
    ping = ctx.ping
    graded: list[tuple[TimeoutFact, str]] = []
    if facts is not None and facts.proxied:
        seen: set[tuple[float | None, str]] = set()
        for fact in (facts.ws_idle_timeout, facts.poll_timeout):
            if fact is None or (fact.seconds, fact.directive) in seen:
                continue
            seen.add((fact.seconds, fact.directive))
            grade = grade_timeout(fact.seconds, ping)
            if grade is not None:
                graded.append((fact, grade))
    if not graded:
        return found
    # One finding: the worst timeout leads (title, fix); every timeout involved is evidence,
    # and a --hold drop (if any) adds to it.
    graded.sort(key=lambda x: (x[1] != "certain", x[0].seconds or 0))
    fact, grade = graded[0]
    finding = _timeout_finding(ctx, fact, grade)
    wheres: list[Where | str] = []
    for other, _ in graded:
        wheres.extend(other.where or [other.default_note])
        wheres.append(f"{other.directive} = {other.seconds:g} s ({other.applies_to})")
    evidence = _evidence(*wheres, ping.describe(), _probe_evidence(found))
    return [replace(finding, evidence=evidence)]


def _timeout_finding(ctx: _Ctx, fact: TimeoutFact, grade: str) -> Finding:
    facts = ctx.facts
    assert facts is not None and fact.seconds is not None
    ping = ctx.ping
    t = fact.seconds
    what = fact.applies_to
    polling_only = "long-polling" in what and "WebSocket" not in what
    if grade == "certain" and polling_only:
        title = (f"{ctx.name} aborts long-polling requests after {t:g} s, before the server "
                 f"answers them with its next ping ({ping.interval_s:g} s): clients on "
                 "long-polling fail and reconnect over and over — certain")
        severity: Severity = "error"
    elif grade == "certain":
        title = (f"{ctx.name} cuts idle {what} after {t:g} s, before the server's next ping "
                 f"({ping.interval_s:g} s): every idle client drops (\"transport close\") — "
                 "certain")
        severity = "error"
    else:
        title = (f"{ctx.name}'s idle timeout for {what} ({t:g} s) is not above pingInterval + "
                 f"pingTimeout ({ping.sum_s:g} s): idle clients drop whenever a ping runs late "
                 "(\"transport close\") — at risk")
        severity = "warning"
    evidence = _evidence(fact.where or fact.default_note, f"{fact.directive} = {t:g} s",
                         ping.describe())
    return Finding(codes.READ_TIMEOUT_TOO_SHORT, severity, title, evidence,
                   _fix_timeout(ctx, fact))


def _fix_timeout(ctx: _Ctx, fact: TimeoutFact) -> str:
    facts = ctx.facts
    assert facts is not None
    s = suggested_timeout(ctx.ping)
    alt = (f"\n(the rule: timeout > pingInterval + pingTimeout = {ctx.ping.sum_s:g} s"
           + (f"; or lower the server's pingInterval well below {fact.seconds:g} s)"
              if (fact.seconds or 0) >= 20 else ")"))
    existing = fact.where[0] if fact.where else None
    if facts.proxy is ProxyKind.NGINX:
        if existing is not None:
            # One directive for one: adding proxy_send_timeout here could duplicate an
            # existing one, which nginx -t refuses.
            return (f"Replace `{existing.text}` ({existing.file}:{existing.line}) with:\n"
                    f"    proxy_read_timeout {s}s;" + alt)
        return (f"In {_place(facts.route)} add:\n"
                f"    proxy_read_timeout {s}s;" + alt)
    if facts.proxy is ProxyKind.APACHE:
        scope = facts.hints.get("scope", "the virtual host")
        lines = f"    Timeout {s}\n    ProxyTimeout {s}"
        if fact.directive.endswith("timeout=)") or fact.directive == "timeout=":
            lines += f"\nand change timeout= on {_place(existing)} to timeout={s}"
        places = ", ".join(f"{w.file}:{w.line}" for w in fact.where) or "not set"
        return f"In {scope} set (now: {places}):\n{lines}" + alt
    if facts.proxy is ProxyKind.CADDY:
        if existing is not None:
            return (f"Replace `{existing.text}` ({existing.file}:{existing.line}) with:\n"
                    f"    read_timeout {s}s" + alt)
        return (f"In the reverse_proxy block {_place(facts.upstream)} set:\n"
                f"    transport http {{\n        read_timeout {s}s\n    }}" + alt)
    where = ", ".join(f"{w.file}:{w.line}" for w in fact.where) or "the createProxyServer options"
    return (f"Raise both options in createProxyServer() ({where}) to {s * 1000} ms:\n"
            f"    proxyTimeout: {s * 1000},\n    timeout: {s * 1000}," + alt)


# ---- http-proxy without an error listener


def _error_handler(ctx: _Ctx) -> list[Finding]:
    facts = ctx.facts
    if facts is None or facts.error_handler is not False:
        return []
    return [Finding(
        ERROR_HANDLER_MISSING, "warning",
        "http-proxy has no 'error' listener: one reset backend connection crashes the whole "
        "proxy (every client drops)", _evidence(facts.upstream or facts.server),
        "After createProxyServer() add:\n"
        "    proxy.on('error', (err, req, res) => {\n"
        "      if (res && res.writeHead && !res.headersSent) { res.writeHead(502); res.end(); }\n"
        "      else if (res && res.destroy) res.destroy();\n"
        "    });")]


# --------------------------------------------------------------------------- what passed


def passed_checks(facts: RouteFacts | None, probe: ProbeReport | None,
                  found: Sequence[Finding]) -> list[str]:
    """Plain-language list of what was verified and found fine (shown when all is well)."""
    bad = {f.code for f in found}
    ping = ping_of(probe)
    out: list[str] = []
    if probe is not None and probe.handshake is not None:
        out.append(f"Socket.IO answers at {probe.path} ({ping.describe()})")
    if probe is not None and probe.transport == "websocket" and codes.WEBSOCKET_UPGRADE_BLOCKED \
            not in bad:
        out.append("clients get a WebSocket (python-socketio connected on websocket)")
    if facts is None:
        return out
    if facts.route is not None and facts.proxied and codes.PATH_MISMATCH not in bad:
        out.append(f"route: {facts.route} forwards to {', '.join(facts.backends) or '?'}"
                   + (f" as {facts.upstream_path}" if facts.upstream_path else ""))
    for fact in (facts.ws_idle_timeout, facts.poll_timeout):
        if fact is not None and codes.READ_TIMEOUT_TOO_SHORT not in bad:
            value = "no timeout" if fact.seconds is None else f"{fact.seconds:g} s"
            out.append(f"idle timeout for {fact.applies_to}: {value} "
                       f"(> {ping.sum_s:g} s needed)")
    if facts.proxied and not facts.upgrade_blockers:
        out.append("the route passes WebSocket upgrades")
    if len(facts.backends) > 1 and codes.NO_STICKY_SESSIONS not in bad:
        out.append(f"{len(facts.backends)} backends with affinity: {facts.affinity}")
    return out


# --------------------------------------------------------------------------- orchestration


@dataclass(frozen=True)
class Diagnosis:
    """What ``sockwizard diagnose`` found; ``ok`` when no finding is an error."""

    url: str
    path: str
    findings: tuple[Finding, ...]
    probe: ProbeReport | None
    facts: RouteFacts | None
    checks: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "path": self.path,
            "ok": self.ok,
            "findings": [f.to_dict() for f in self.findings],
            "probe": self.probe.to_dict() if self.probe is not None else None,
            "config": self.facts.to_dict() if self.facts is not None else None,
            "checks": list(self.checks),
            "notes": list(self.notes),
            "timings": dict(self.timings),
        }


def run_diagnosis(
    url: str,
    probe_options: ProbeOptions,
    *,
    remote: Remote | None = None,
    proxy: ProxyKind | str | None = None,
    config_path: str | None = None,
    on_stage: Callable[[Stage], None] | None = None,
    config_deadline: float = CONFIG_DEADLINE_S,
) -> Diagnosis:
    """Probe ``url`` and, with ``remote`` and ``proxy``, read the live config at the same time.

    Raises ProbeFailed/BadInput for bad input and ConnectionFailed (and kin) when the host is
    lost; a config that cannot be read — refused, too large, a remote command that failed or
    timed out, or ``config_deadline`` seconds spent — becomes a ``config-unreadable`` finding
    instead, beside the probe's own findings.
    """
    from wizard.configread import ConfigReadError, read_route
    from wizard.eio import normalize_path, parse_url
    from wizard.probe import Stage, run_probe

    started = time.perf_counter()
    path = normalize_path(probe_options.path)
    target = parse_url(url, path)  # a bad URL fails here, before any traffic
    kind = _kind(proxy) if proxy is not None else None
    if remote is not None and kind is None:
        raise BadInput("--host needs --proxy to know which config to read.",
                       "Add --proxy nginx|apache|caddy|node.")
    if kind is not None and remote is None:
        raise BadInput("--proxy needs --host to read the proxy's config.",
                       "Add --host TARGET (or --host local on the proxy host itself).")
    query = RouteQuery(path, target.host, target.port, target.tls)
    facts: RouteFacts | None = None
    extra: list[Finding] = []
    timings: dict[str, float] = {}
    config_stage: Stage | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sockwizard-config") as pool:
        future = None
        if remote is not None and kind is not None:
            future = pool.submit(_timed, lambda: read_route(
                remote, kind, query, config_path, deadline_s=config_deadline))
        probe_started = time.perf_counter()
        probe = run_probe(url, probe_options, on_stage)
        timings["probe_ms"] = _ms(probe_started)
        if future is not None:
            try:
                facts, config_ms = future.result()
                timings["config_ms"] = config_ms
                config_stage = Stage("config", True, config_ms,
                                     f"{facts.source}: {facts.route_desc or 'no route'}"
                                     + (f" at {facts.route}" if facts.route else ""))
            except SockwizardError as exc:
                if not isinstance(exc, ConfigReadError):
                    raise  # lost connection, sudo refused...: the caller's exit code
                config_stage, finding = _unreadable(kind, exc.title, exc.detail, exc.hint,
                                                    _ms(probe_started))
                timings["config_ms"] = config_stage.ms
                extra.append(finding)
            except Exception as exc:  # a reader bug must not hide the probe's findings
                config_stage, finding = _unreadable(
                    kind, f"unexpected {type(exc).__name__}: {exc}", "", "Report this with "
                    "the config (or --json output); meanwhile the probe's findings stand.",
                    _ms(probe_started))
                timings["config_ms"] = config_stage.ms
                extra.append(finding)
    if config_stage is not None and on_stage is not None:
        on_stage(config_stage)
    # Ask the proxy host about the backends when the probe saw a 502/504, or when there are
    # several (one dead member hides behind the others until the next failover): one round
    # trip, ~15 ms over SSH.
    if facts is not None and remote is not None and facts.backends and (
            len(facts.backends) > 1
            or any(f.code == codes.BACKEND_UNREACHABLE for f in probe.findings)):
        with contextlib.suppress(RemoteCommandFailed):  # extra evidence only
            facts = replace(facts, backend_checks=tuple(check_backends(remote, facts.backends)))
    found, notes = diagnose_with_notes(facts, probe, path)
    found = order(merge([*found, *extra]))
    timings["total_ms"] = _ms(started)
    return Diagnosis(url, path, tuple(found), probe, facts,
                     tuple(passed_checks(facts, probe, found)), tuple(notes), timings)


def _unreadable(kind: ProxyKind | None, title: str, detail: str, hint: str,
                ms: float) -> tuple[Stage, Finding]:
    from wizard.probe import Stage

    stage = Stage("config", False, ms, title)
    finding = Finding(CONFIG_UNREADABLE, "warning", f"The {kind} config could not be read: {title}",
                      detail.strip()[-500:] or title,
                      hint or "Give the main config file with --config.")
    return stage, finding


def _timed(fn: Callable[[], RouteFacts]) -> tuple[RouteFacts, float]:
    started = time.perf_counter()
    return fn(), _ms(started)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _kind(proxy: ProxyKind | str) -> ProxyKind:
    try:
        return ProxyKind(str(proxy).lower())
    except ValueError:
        raise BadInput(f"Unknown proxy kind {proxy!r}.",
                       "Use --proxy nginx, apache, caddy or node.") from None


MAX_BACKEND_CHECKS = 16
BACKEND_CHECK_TIMEOUT_S = 3.0


def check_backends(remote: Remote, backends: Sequence[str]) -> list[BackendCheck]:
    """Ask the proxy host whether each backend accepts a TCP connection.

    The addresses come from the proxy's config, so they are hostile input: each must pass the
    model's own host and port rules (what ``--backend`` accepts) or it is reported as not
    checked; the check itself is :meth:`Remote.tcp_check` (a direct-tcpip channel over SSH, a
    plain connect locally), never a shell. The checks run side by side (3 s each at most).
    """
    out: list[BackendCheck | None] = []
    todo: list[tuple[int, str, str, int]] = []
    for item in list(dict.fromkeys(backends))[:MAX_BACKEND_CHECKS]:
        host_port = backend_address_problem(item)
        if isinstance(host_port, str):
            shown = "".join(c if c.isprintable() else "?" for c in item[:80])
            out.append(BackendCheck(shown, False, f"not checked: {host_port}", checked=False))
            continue
        todo.append((len(out), item, *host_port))
        out.append(None)
    if todo:
        with ThreadPoolExecutor(max_workers=min(8, len(todo)),
                                thread_name_prefix="sockwizard-tcp") as pool:
            answers = pool.map(lambda t: remote.tcp_check(t[2], t[3], BACKEND_CHECK_TIMEOUT_S),
                               todo)
            for (index, item, _host, _port), answer in zip(todo, answers, strict=True):
                up = answer is True
                out[index] = BackendCheck(item, up, "accepts connections" if up
                                          else str(answer) or "refused or timed out")
    return [c for c in out if c is not None]


def backend_address_problem(item: str) -> tuple[str, int] | str:
    """``HOST:PORT`` from a config -> (host, port) when the model would accept it as a
    backend, else why not (a string)."""
    from wizard import model

    if len(item) > 300:
        return f"an address of {len(item)} characters"
    shown = repr(item if len(item) <= 60 else item[:57] + "...")
    if ":" not in item:
        return f"{shown} has no port"
    try:
        backend = model.parse_backend(item)
    except ValueError as exc:
        return str(exc)
    problems = model._host_problems("backend", backend.host) + \
        model._port_problems("backend", backend.port)  # the model's own host rules
    return problems[0].message if problems else (backend.host, backend.port)


def format_diagnosis(d: Diagnosis) -> str:
    """The human report: what was read and probed, then the findings (or what passed)."""
    lines = [f"sockwizard diagnose {d.url}  (path {d.path})", ""]
    if d.facts is not None:
        f = d.facts
        lines.append(f"config: {f.source}")
        lines.append(f"  route: {f.route_desc or 'none'}" + (f" at {f.route}" if f.route else ""))
    if d.probe is not None:
        for stage in d.probe.stages:
            mark = "ok" if stage.ok else "FAIL"
            lines.append(f"  {stage.name:<12} {mark:<4} {stage.ms:>8.1f} ms  {stage.detail}")
        if d.probe.handshake is not None:
            hs = d.probe.handshake
            lines.append(f"  handshake: EIO={hs.eio_version}, pingInterval {hs.ping_interval_ms} "
                         f"ms, pingTimeout {hs.ping_timeout_ms} ms")
    lines.append("")
    if not d.findings:
        lines.append("No problems found: Socket.IO works through this proxy.")
        lines.extend(f"  ✓ {c}" for c in d.checks)
    for finding in d.findings:
        lines.append(f"[{finding.severity.upper()}] {finding.code}: {finding.title}")
        lines.append(f"    evidence: {finding.evidence}")
        fix = finding.fix.replace("\n", "\n        ")
        lines.append(f"    fix: {fix}")
        lines.append("")
    for note in d.notes:
        lines.append(f"note: {note}")
    timing = ", ".join(f"{k.removesuffix('_ms')} {v:.0f} ms" for k, v in d.timings.items())
    if timing:
        lines.append(f"({timing})")
    return "\n".join(lines).rstrip("\n") + "\n"
