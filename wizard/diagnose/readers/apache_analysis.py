"""Apache httpd: the facts about the route that serves the Socket.IO path, from the expanded tree.

``Routes`` (``apache_route``) finds the handler each request kind reaches; this module turns it
into facts: backends and balancers, stickiness, timeouts (``Timeout``, ``ProxyTimeout``, a
worker's ``timeout=``, the tunnel's max of them from 2.4.53 on), whether the upgrade is
tunnelled, listens and the capacity hints; ``apache_more`` adds issue 12's facts. Pure; called by
``wizard.diagnose.readers.apache`` (``facts_from_files``), which reads and expands the files.
"""

from __future__ import annotations

import re
from dataclasses import replace

from wizard.diagnose.facts import (
    Blocker,
    Capacity,
    Listen,
    RouteFacts,
    TimeoutFact,
    Where,
)
from wizard.diagnose.readers.apache_more import more_facts
from wizard.diagnose.readers.apache_route import (
    Handler,
    Routes,
    host_port,
    is_on,
    seconds_arg,
    seconds_of,
)
from wizard.diagnose.readers.apache_syntax import (
    ANode,
)
from wizard.model import ProxyKind

DEFAULT_TIMEOUT = 60.0
UPGRADE_PARAM_FROM = (2, 4, 47)
TUNNEL_MAX_TIMEOUT_FROM = (2, 4, 53)


class _Analysis(Routes):
    """The facts about the route ``Routes`` found: backends, stickiness, timeouts, upgrade."""

    def capacity(self) -> Capacity | None:
        """``MaxRequestWorkers`` (``MaxClients`` before 2.4): one worker per proxied WebSocket
        for its whole life. None when the config does not set it (the MPM's default)."""
        node = self.root.last("MaxRequestWorkers") or self.root.last("MaxClients")
        if node is None or not node.args or not node.args[0].isdigit() or len(node.args[0]) > 8:
            return None
        return Capacity(int(node.args[0]), f"{node.name} {node.args[0]}", node.where)

    def facts(self) -> RouteFacts:
        q = self.query
        listens = tuple(self.listens())
        vhost = self.pick_vhost()
        scope = vhost if vhost is not None else self.root
        server_tls = is_on(self.get(vhost, "SSLEngine")) if vhost is not None else q.tls
        base = RouteFacts(proxy=ProxyKind.APACHE, source=self.source, files=self.files,
                          version=self.version, listens=listens, capacity=self.capacity(),
                          server=scope.where if vhost is not None else None,
                          server_tls=server_tls)
        hints = {"scope": f"<VirtualHost {' '.join(vhost.args)}>" if vhost else "the main "
                 "server config", "scope_where": str(scope.where) if vhost else ""}
        poll = self.handle(vhost, websocket=False)
        ws = self.handle(vhost, websocket=True)
        main = poll if poll.kind == "proxy" else ws
        facts = replace(base, hints=hints)
        if main.node is None or main.kind != "proxy":
            desc = "no ProxyPass or RewriteRule [P] for the path"
            if main.node is not None:
                desc = f"`{main.node.raw}` ({main.kind})"
            facts = replace(facts, route=main.node.where if main.node else None,
                            route_desc=desc, proxied=False,
                            elsewhere=self.elsewhere(vhost))
            facts = replace(facts, upgrade_blockers=tuple(self.upgrade_blockers(vhost, ws, poll)))
            return replace(facts, notes=tuple(dict.fromkeys(self.notes)))
        facts = replace(facts, route=main.node.where,
                        route_desc=f"{main.via} {main.prefix}".strip(), proxied=True,
                        upstream=main.node.where, upstream_path=main.path_after)
        facts = self.backend_facts(facts, vhost, poll if poll.kind == "proxy" else ws,
                                   ws if ws.kind == "proxy" else None)
        facts = self.timeout_facts(facts, vhost, ws if ws.kind == "proxy" else poll,
                                   poll if poll.kind == "proxy" else ws)
        facts = replace(facts, upgrade_blockers=tuple(self.upgrade_blockers(vhost, ws, poll)))
        facts = self.forward_facts(facts, vhost, scope, server_tls)
        facts = more_facts(self, facts, vhost, poll, ws)
        return replace(facts, notes=tuple(dict.fromkeys(self.notes)))

    def listens(self) -> list[Listen]:
        out = []
        for node in self.root.children("Listen"):
            if not node.args:
                continue
            m = re.fullmatch(r"(?:\[?([^\]]*)\]?:)?(\d+)", node.args[0])
            if not m:
                continue
            tls = len(node.args) > 1 and node.args[1].lower() == "https"
            out.append(Listen(int(m.group(2)), tls, node.where, m.group(1) or "*"))
        return out

    def balancer(self, vhost: ANode | None, name: str) -> ANode | None:
        wanted = name.rstrip("/").lower()
        scopes = [vhost, self.root] if vhost is not None else [self.root]
        for scope in scopes:
            assert scope is not None
            for sect in scope.children("Proxy"):
                if sect.args and sect.args[0].rstrip("/").lower() == wanted:
                    return sect
        return None

    def members(self, vhost: ANode | None, handler: Handler) -> tuple[list[ANode], ANode | None]:
        target = handler.target
        m = re.match(r"(?i)balancer://([^/]+)", target)
        if not m:
            return [], None
        sect = self.balancer(vhost, f"balancer://{m.group(1)}")
        if sect is None:
            return [], None
        return sect.children("BalancerMember"), sect

    def backend_facts(self, facts: RouteFacts, vhost: ANode | None, poll: Handler,
                      ws: Handler | None) -> RouteFacts:
        members, sect = self.members(vhost, poll)
        if sect is None:
            host = host_port(poll.target)
            return replace(facts, backends=(host,) if host else (),
                           backends_where=poll.node.where if poll.node else None)
        backends = tuple(h for h in (host_port(mb.args[0]) for mb in members if mb.args) if h)
        affinity, problem = self.stickiness(vhost, poll, members, sect)
        if problem is None and ws is not None and ws.target != poll.target:
            ws_members, ws_sect = self.members(vhost, ws)
            if ws_sect is not None and len(ws_members) > 1:
                _aff, ws_problem = self.stickiness(vhost, ws, ws_members, ws_sect)
                problem = ws_problem
        hints = {**facts.hints, "balancer": sect.args[0] if sect.args else ""}
        return replace(facts, backends=backends, backends_where=sect.where, affinity=affinity,
                       affinity_problem=problem, hints=hints)

    def stickiness(self, vhost: ANode | None, handler: Handler, members: list[ANode],
                   sect: ANode) -> tuple[str | None, str | None]:
        params: dict[str, str] = dict(handler.params)
        for node in sect.children("ProxySet"):
            params.update(dict(p.split("=", 1) for p in node.args if "=" in p))
        sticky = params.get("stickysession")
        if not sticky:
            return None, None
        cookie = sticky.split("|")[0]
        text = f"stickysession={sticky}"
        unrouted = [mb for mb in members if not any(p.startswith("route=") for p in mb.args[1:])]
        if unrouted:
            return text, (f"stickysession={sticky} is set, but `{unrouted[0].raw}` "
                          f"({unrouted[0].file}:{unrouted[0].line}) has no route=, so no "
                          "client is ever pinned to it")
        scopes = [s for s in (vhost, self.root) if s is not None]
        setters = [h for s in scopes for h in s.children("Header")
                   if any("set-cookie" in a.lower() for a in h.args)
                   and any(a.startswith(f"{cookie}=") and "BALANCER_WORKER_ROUTE" in a
                           for a in h.args)]
        if not setters:
            return text, (f"stickysession={sticky} is set, but nothing sets the {cookie} cookie "
                          f"(no `Header add Set-Cookie \"{cookie}=sticky.%{{BALANCER_WORKER_ROUTE}}"
                          "e; path=/\" env=BALANCER_ROUTE_CHANGED`), and a Socket.IO server "
                          "does not set it either")
        return text, None

    def timeout_facts(self, facts: RouteFacts, vhost: ANode | None, ws: Handler,
                      poll: Handler) -> RouteFacts:
        timeout = self.get(vhost, "Timeout")
        proxy_timeout = self.get(vhost, "ProxyTimeout")
        front = seconds_arg(timeout) if timeout else DEFAULT_TIMEOUT
        front = DEFAULT_TIMEOUT if front is None else front
        wheres_front = (timeout.where,) if timeout else ()

        def worker(handler: Handler) -> tuple[float, tuple[Where, ...], str]:
            members, sect = self.members(vhost, handler)
            param_nodes = [handler.node] if handler.node is not None else []
            params = dict(handler.params)
            if sect is not None:
                for node in sect.children("ProxySet"):
                    params.update(dict(p.split("=", 1) for p in node.args if "=" in p))
                    if any(p.startswith("timeout=") for p in node.args):
                        param_nodes = [node]
                for mb in members:
                    if any(p.startswith("timeout=") for p in mb.args[1:]):
                        params["timeout"] = next(p.split("=", 1)[1] for p in mb.args[1:]
                                                 if p.startswith("timeout="))
                        param_nodes = [mb]
            if "timeout" in params:
                seconds = seconds_of(params["timeout"])
                if seconds is not None:
                    return seconds, tuple(n.where for n in param_nodes), "timeout="
            if proxy_timeout is not None:
                seconds = seconds_arg(proxy_timeout)
                if seconds is not None:
                    return seconds, (proxy_timeout.where,), "ProxyTimeout"
            return front, wheres_front, "Timeout"

        w_seconds, w_where, w_name = worker(ws)
        p_seconds, p_where, p_name = worker(poll)
        default_note = "" if timeout or proxy_timeout else \
            "Apache's default: no Timeout or ProxyTimeout, so Timeout 60 applies"
        if self.at_least(TUNNEL_MAX_TIMEOUT_FROM):
            idle = max(front, w_seconds)
            wheres = tuple(dict.fromkeys(wheres_front + w_where))
            directive = "max(Timeout, ProxyTimeout)" if w_name != "timeout=" else \
                "max(Timeout, timeout=)"
        else:
            idle, wheres, directive = w_seconds, w_where, w_name
        ws_fact = TimeoutFact(idle, directive, "WebSocket connections",
                              wheres, default_note)
        poll_fact = TimeoutFact(p_seconds, p_name, "long-polling requests", p_where, default_note)
        return replace(facts, ws_idle_timeout=ws_fact, poll_timeout=poll_fact)

    def upgrade_blockers(self, vhost: ANode | None, ws: Handler,
                         poll: Handler) -> list[Blocker]:
        scope = vhost.where if vhost is not None else Where(self.root.file, None,
                                                            "(main server config)")
        modern = self.at_least(UPGRADE_PARAM_FROM)
        recipe = self.rewrite_recipe(poll)
        if ws.kind != "proxy":
            if poll.kind != "proxy":
                return []  # nothing is proxied at all: a path problem, reported as such
            return [Blocker("WebSocket requests for the path are not proxied", (scope,),
                            self.upgrade_fix(poll, modern, recipe))]
        scheme = ws.target.split("://", 1)[0].lower()
        members, sect = self.members(vhost, ws)
        if scheme == "balancer" and members:
            scheme = members[0].args[0].split("://", 1)[0].lower()
        params = dict(ws.params)
        if sect is not None:
            for node in sect.children("ProxySet"):
                params.update(dict(p.split("=", 1) for p in node.args if "=" in p))
            for mb in members:
                params.update(dict(p.split("=", 1) for p in mb.args[1:] if "=" in p))
        where = (ws.node.where,) if ws.node else (scope,)
        if scheme in ("ws", "wss"):
            if not modern and self.has_module("proxy_wstunnel_module") is False:
                return [Blocker(
                    f"`{ws.node.raw if ws.node else ws.target}` sends upgrades to {scheme}://, "
                    f"but mod_proxy_wstunnel is not loaded (Apache {self.version})", where,
                    "Load the module, then reload Apache:\n    a2enmod proxy_wstunnel   "
                    "(or: LoadModule proxy_wstunnel_module modules/mod_proxy_wstunnel.so)")]
            return []
        upgrade = params.get("upgrade", "").lower()
        if upgrade in ("websocket", "any", "*") and modern:
            return []
        reason = (f"`{ws.node.raw if ws.node else ws.target}` forwards the WebSocket request as "
                  "plain HTTP")
        if ws.via == "RewriteRule [P]":
            reason += " (a [P] rewrite to http:// cannot tunnel; it needs a ws:// target)"
        elif not modern:
            reason += f" (Apache {self.version} needs mod_proxy_wstunnel and the ws:// rewrite)"
        else:
            reason += " (no upgrade=websocket)"
        if ws.shadowed is not None:
            reason += (f"; the rule for {ws.shadowed.args[0]} at {ws.shadowed.file}:"
                       f"{ws.shadowed.line} comes after it, and the first match wins")
            fix = (f"Move `{ws.shadowed.raw}` (and its ProxyPassReverse) above "
                   f"`{ws.node.raw if ws.node else ''}` ({ws.node.file if ws.node else ''}:"
                   f"{ws.node.line if ws.node else ''})")
            if "upgrade=" not in ws.shadowed.raw and modern:
                fix += f", with upgrade=websocket:\n    {ws.shadowed.raw} upgrade=websocket"
            return [Blocker(reason, (*where, ws.shadowed.where), fix)]
        return [Blocker(reason + "; clients silently stay on long-polling", where,
                        self.upgrade_fix(ws, modern, recipe))]

    def rewrite_recipe(self, poll: Handler) -> str:
        backend = host_port(poll.target) or "127.0.0.1:3000"
        path = self.query.path
        server_path = poll.path_after if poll.kind == "proxy" else path
        pattern = re.sub(r"([.+*?()\[\]^$|])", r"\\\1", path)
        return ("    RewriteEngine On\n"
                "    RewriteCond %{HTTP:Upgrade} websocket [NC]\n"
                "    RewriteCond %{HTTP:Connection} upgrade [NC]\n"
                f"    RewriteRule ^{pattern}(.*) \"ws://{backend}{server_path}$1\" [P,L]")

    def upgrade_fix(self, handler: Handler, modern: bool, recipe: str) -> str:
        if modern and handler.node is not None and handler.node.key == "proxypass" and \
                handler.via == "ProxyPass" and not handler.target.lower().startswith("balancer"):
            raw = handler.node.raw
            return f"Replace `{raw}` ({handler.node.file}:{handler.node.line}) with:\n" \
                   f"    {raw} upgrade=websocket"
        where = f" ({handler.node.file}:{handler.node.line})" if handler.node else ""
        return (f"Before the ProxyPass for {self.query.path}{where} add the WebSocket rewrite "
                f"(needs mod_rewrite and mod_proxy_wstunnel: a2enmod rewrite proxy_wstunnel):\n"
                f"{recipe}")

    def forward_facts(self, facts: RouteFacts, vhost: ANode | None, scope: ANode,
                      server_tls: bool) -> RouteFacts:
        headers = [h for s in (self.root, vhost) if s is not None
                   for h in s.children("RequestHeader")]
        proto = [h for h in headers if len(h.args) >= 3 and h.args[0].lower() in
                 ("set", "add", "append", "setifempty")
                 and h.args[1].lower() == "x-forwarded-proto"]
        proto_ok = bool(proto) and (not server_tls or "https" in proto[-1].args[2].lower()
                                    or "%{" in proto[-1].args[2])
        add_headers = self.get(vhost, "ProxyAddHeaders")
        preserve = self.get(vhost, "ProxyPreserveHost")
        host_ok = is_on(preserve) or not (add_headers is not None and not is_on(add_headers))
        lines = []
        if not proto_ok:
            scheme = "https" if server_tls else "http"
            lines.append(f"RequestHeader set X-Forwarded-Proto \"{scheme}\"")
        if not host_ok:
            lines.append("ProxyPreserveHost On")
        where = f"{scope.file}:{scope.line}" if vhost is not None else scope.file
        label = f"<VirtualHost {' '.join(vhost.args)}>" if vhost is not None else \
            "the main server config"
        fix = (f"In {label} ({where}) add (mod_headers):\n" + "\n".join(
            f"    {x}" for x in lines)) if lines else ""
        return replace(facts, forwarded_proto=proto_ok, forwarded_host=host_ok, forward_fix=fix)

