"""Apache: the facts issue 12 added — Firefox's upgrade, the WebSocket balancer's stickiness,
Host/X-Forwarded-* as the backend sees them, the kind of affinity.

``wizard.diagnose.readers.apache_analysis._Analysis.facts`` calls :func:`more_facts` once the
route is known. Pure.

* Firefox sends ``Connection: keep-alive, Upgrade`` (Chrome, curl and the probe send
  ``Upgrade``): the rewrite recipe's ``RewriteCond %{HTTP:Connection}`` is evaluated for both,
  and a route that tunnels Chrome's upgrade but not Firefox's is a blocker for Firefox only.
* The rewrite recipe can send upgrades to another balancer than the long-polls
  (``balancer://…_ws``): without ``stickysession`` there, an upgrade lands on any member.
* Host: ``ProxyPreserveHost On`` sends the client's (port included), else the target's;
  ``ProxyAddHeaders`` (on by default) adds X-Forwarded-Host, the client's Host.
* no body limit: measured on 2.4.71, ``LimitRequestBody 10000`` (vhost, ``<Location>`` or
  ``<Proxy>``) does not refuse a 60 KB or 900 KB proxied polling POST, so it is not reported.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from wizard.diagnose.facts import Blocker, HeaderFact, RouteFacts
from wizard.diagnose.readers.apache_route import FIREFOX_CONNECTION, Handler, is_on

if TYPE_CHECKING:
    from wizard.diagnose.readers.apache_analysis import _Analysis
    from wizard.diagnose.readers.apache_syntax import ANode



def more_facts(a: _Analysis, facts: RouteFacts, vhost: ANode | None, poll: Handler,
               ws: Handler) -> RouteFacts:
    facts = replace(facts, url_port=a.query.port)
    facts = _headers(a, facts, vhost)
    facts = _ws_balancer(a, facts, vhost, poll, ws)
    if facts.affinity and "stickysession" in facts.affinity:
        facts = replace(facts, affinity_kind="cookie")
    ff = firefox_blocker(a, facts, vhost, poll, ws)
    if ff is not None:
        facts = replace(facts, upgrade_blockers=(*facts.upgrade_blockers, ff))
    return facts


def firefox_blocker(a: _Analysis, facts: RouteFacts, vhost: ANode | None, poll: Handler,
                    ws: Handler) -> Blocker | None:
    """A blocker when Chrome's upgrade is tunnelled and Firefox's is not."""
    if facts.upgrade_blockers or ws.kind != "proxy":
        return None
    ff = a.handle(vhost, websocket=True, connection=FIREFOX_CONNECTION)
    if ff.node is ws.node and ff.target == ws.target:
        return None
    if ff.kind == "proxy" and not a.upgrade_blockers(vhost, ff, poll):
        return None
    scope = vhost if vhost is not None else a.root
    conds = [c for c in scope.children("RewriteCond")
             if c.args and c.args[0].lower() == "%{http:connection}"]
    cond = conds[0] if conds else None
    what = f"`{cond.raw}` ({cond.file}:{cond.line})" if cond else "the rewrite conditions"
    reason = (f"Firefox sends `Connection: {FIREFOX_CONNECTION}`, which {what} does not match "
              "(Chrome's `Upgrade` does): Firefox's upgrade goes to "
              + (f"`{ff.node.raw}`" if ff.node else "no proxy") + " as plain HTTP (400; "
              "Firefox users stay on long-polling)")
    fix = (f"Replace {what} with:\n    RewriteCond %{{HTTP:Connection}} upgrade [NC]\n"
           "(an unanchored, case-insensitive match: it finds Upgrade in both forms)")
    where = tuple(x.where for x in (cond, ws.node) if x is not None)
    return Blocker(reason, where, fix, only="Firefox")


def _headers(a: _Analysis, facts: RouteFacts, vhost: ANode | None) -> RouteFacts:
    preserve = a.get(vhost, "ProxyPreserveHost")
    if preserve is not None and is_on(preserve):
        host = HeaderFact("client", preserve.raw, preserve.where)
    elif preserve is not None:
        host = HeaderFact("upstream", preserve.raw, preserve.where)
    else:
        host = HeaderFact("upstream", "no ProxyPreserveHost: Apache sends the target's host")
    add = a.get(vhost, "ProxyAddHeaders")
    xfh = None if add is not None and not is_on(add) else \
        HeaderFact("client", "ProxyAddHeaders (on by default): X-Forwarded-Host")
    headers = [h for s in (a.root, vhost) if s is not None for h in s.children("RequestHeader")]
    for h in headers:
        if len(h.args) < 2:
            continue
        op, name = h.args[0].lower(), h.args[1].lower()
        value = h.args[2] if len(h.args) > 2 else ""
        if name == "x-forwarded-host":
            xfh = None if op == "unset" else HeaderFact(
                "client" if "%{http_host}" in value.lower() else "other", h.raw, h.where)
    proto = None
    for h in headers:
        if len(h.args) >= 3 and h.args[1].lower() == "x-forwarded-proto" and \
                h.args[0].lower() in ("set", "add", "append", "setifempty"):
            v = h.args[2].lower()
            proto = HeaderFact(v if v in ("http", "https") else "scheme" if "%{" in v
                               else "client", h.raw, h.where)
    return replace(facts, host_seen=host, xfh_seen=xfh, xfp_seen=proto)


def _ws_balancer(a: _Analysis, facts: RouteFacts, vhost: ANode | None, poll: Handler,
                 ws: Handler) -> RouteFacts:
    """Upgrades through another balancer than long-polls: it must pin clients too."""
    if ws.kind != "proxy" or poll.kind != "proxy" or ws.target == poll.target:
        return facts
    members, sect = a.members(vhost, ws)
    if sect is None or len(members) < 2:
        return facts
    backends = tuple(dict.fromkeys((*facts.backends, *(
        h for h in (_host_port(mb.args[0]) for mb in members if mb.args) if h))))
    sticky, problem = a.stickiness(vhost, ws, members, sect)
    if sticky is None:
        problem = (f"WebSocket upgrades go through `{sect.raw}` ({sect.file}:{sect.line}), "
                   "another balancer than the long-polling requests, and it has no "
                   "stickysession/route: an upgrade lands on any member, often not the one "
                   "that holds the session (\"Session ID unknown\", \"transport close\")")
    if problem is None:
        return replace(facts, backends=backends)
    return replace(facts, backends=backends, affinity_problem=facts.affinity_problem or problem,
                   backends_where=sect.where if facts.affinity_problem is None else
                   facts.backends_where,
                   hints={**facts.hints, "balancer": sect.args[0] if sect.args else ""})


def _host_port(url: str) -> str:
    from wizard.diagnose.readers.apache_route import host_port

    return host_port(url)
