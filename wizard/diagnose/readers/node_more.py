"""Node: the facts issue 12 added — http-proxy-middleware (Express) besides http-proxy
scripts, and the Host/X-Forwarded-* the backend sees.

``wizard.diagnose.readers.node.facts_from_script`` calls :func:`more_facts` last. What is read
for http-proxy-middleware (3.x, the current major; 2.x kept the mount path):

* ``app.use('/socket.io', createProxyMiddleware({...}))`` (or ``app.use('/socket.io', proxy)``
  with ``const proxy = createProxyMiddleware(...)``): Express strips the mount path from
  ``req.url``, so the server sees ``/?EIO=4…`` (404) — the route's ``mount``;
* ``pathFilter`` (3.x) or the context argument (2.x) routes without stripping;
* ``ws: true`` subscribes to the server's upgrades by itself (no ``server.on('upgrade')``
  needed), and errors are answered by the middleware (no crash without a listener).

Host: ``changeOrigin: true`` sends the target's host; ``xfwd: true`` adds X-Forwarded-Host
(the client's Host) to HTTP requests only — measured, and in http-proxy 1.18's ws-incoming pass:
a WebSocket upgrade gets X-Forwarded-For/Port/Proto (``ws``/``wss``) but no X-Forwarded-Host,
so with ``changeOrigin`` python-socketio refuses the browser's upgrade even with ``xfwd``; and
its aiohttp driver takes that ``ws`` as the page's scheme: measured, ``xfwd: true`` alone gets
the browser's upgrade refused.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

from wizard.diagnose.facts import HeaderFact, RouteFacts, RouteQuery, Where
from wizard.diagnose.readers.base import join_upstream_path

if TYPE_CHECKING:
    from wizard.diagnose.readers.node import _Script

HPM = re.compile(r"\bcreateProxyMiddleware\s*\(")


def more_facts(s: _Script, facts: RouteFacts, query: RouteQuery, options: str,
               create_where: Where | None, port: int) -> RouteFacts:
    def flag(name: str) -> bool:
        m = re.search(rf"\b{name}\s*:\s*(true|false)\b", options)
        return m is not None and m.group(1) == "true"

    change_origin, xfwd = flag("changeOrigin"), flag("xfwd")
    host = HeaderFact("upstream", "changeOrigin: true", create_where) if change_origin else \
        HeaderFact("client", "the client's Host (no changeOrigin)")
    # The WebSocket half decides (see above): no X-Forwarded-Host there, whatever xfwd says.
    facts = replace(
        facts, url_port=port, host_seen=host, xfh_seen=None,
        xfp_seen=HeaderFact("ws-scheme", "xfwd: true", create_where) if xfwd else None)
    call = HPM.search(s.code)
    if call is None:
        return facts
    return _middleware(s, facts, query, call, flag("ws"))


def _middleware(s: _Script, facts: RouteFacts, query: RouteQuery, call: re.Match[str],
                ws: bool) -> RouteFacts:
    code = s.code
    # It answers errors itself; with ws: true it takes the server's upgrades itself.
    blockers = () if ws else facts.upgrade_blockers
    facts = replace(facts, error_handler=None, upgrade_blockers=tuple(
        replace(b, reason=b.reason.replace("createProxyServer()", "createProxyMiddleware()"),
                fix=b.fix.replace("createProxyServer", "createProxyMiddleware"))
        for b in blockers))
    names = [m.group(1) for m in re.finditer(
        r"\b(?:const|let|var)\s+([A-Za-z_$][\w$]{0,64})\s*=\s*createProxyMiddleware\s*\(", code)]
    mount = None
    for m in re.finditer(r"\.use\(\s*(['\"`])(/[^'\"`\n]{0,200})\1\s*,\s*([A-Za-z_$][\w$]{0,64})",
                         code):
        if m.group(3) == "createProxyMiddleware" or m.group(3) in names:
            mount = (m.group(2), m.start())
            break
    context = re.match(r"\s*(['\"`])(/[^'\"`\n]{0,200})\1\s*,", code[call.end():])
    filt = re.search(r"\bpathFilter\s*:\s*(['\"`])(/[^'\"`\n]{0,200})\1", code)
    path = query.path
    if mount is not None and mount[0].rstrip("/"):
        prefix, at = mount[0].rstrip("/"), mount[1]
        where = s.where(at)
        if not (path.startswith(prefix + "/") or path.rstrip("/") == prefix):
            return replace(facts, route=None, route_desc=f"app.use('{prefix}', …)",
                           proxied=False, elsewhere=where)
        seen = join_upstream_path("/", path[len(prefix):])
        return replace(facts, route=where, route_desc=f"app.use('{prefix}', "
                       "createProxyMiddleware(…)): Express strips the mount path",
                       proxied=True, upstream_path=seen, mount=where)
    wanted = context.group(2) if context else (filt.group(2) if filt else None)
    if wanted is not None:
        where = s.where(call.start())
        covered = path.startswith(wanted.rstrip("/") + "/") or path.rstrip("/") == \
            wanted.rstrip("/") or wanted == "/"
        return replace(facts, route=where if covered else None,
                       route_desc=f"createProxyMiddleware for {wanted}", proxied=covered,
                       upstream_path=path if covered else None,
                       elsewhere=None if covered else where)
    return facts
