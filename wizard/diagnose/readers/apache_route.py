"""Apache: which handler answers one request kind (long-polling or WebSocket).

The vhost for the URL's port and host name (else the main server); mod_rewrite rules of that
vhost first (conditions on ``%{HTTP:Upgrade}``/``Connection`` evaluated per request kind),
then ``<Location>`` ProxyPass, then ``ProxyPass`` rules in order: the first match wins.
``wizard.diagnose.readers.apache`` builds the facts on top of this. Pure.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from wizard.diagnose.facts import RouteQuery, Where
from wizard.diagnose.readers.base import (
    expand_groups,
    join_upstream_path,
    search,
)

if TYPE_CHECKING:
    pass
from wizard.diagnose.readers.apache_syntax import ANode

# The Connection header of a WebSocket request, as browsers send it: Chrome (and curl, and
# the probe) `Upgrade`; Firefox `keep-alive, Upgrade` — recipes anchored on `^Upgrade$` or
# `=upgrade` pass the first and send the second to plain HTTP.
CHROME_CONNECTION = "Upgrade"
FIREFOX_CONNECTION = "keep-alive, Upgrade"


@dataclass(frozen=True)
class Handler:
    """How one request kind is handled: proxied to ``target`` by ``node`` (or not)."""

    kind: str  # "proxy" | "none" | "deny" | "redirect"
    node: ANode | None = None
    target: str = ""
    prefix: str = ""  # the ProxyPass path (or the rewritten path)
    params: dict[str, str] = field(default_factory=dict)
    path_after: str = ""  # the request path as the backend sees it
    via: str = ""  # "ProxyPass", "RewriteRule [P]", "<Location> ProxyPass"
    shadowed: ANode | None = None  # a later rule for the same path that never runs


class Routes:
    """The routing half of the analysis: vhost, rewrite, ProxyPass, Location."""

    def __init__(self, root: ANode, query: RouteQuery, version: str | None,
                 vt: tuple[int, ...] | None, modules: frozenset[str] | None, source: str,
                 files: tuple[str, ...], notes: list[str]) -> None:
        self.root = root
        self.query = query
        self.version = version
        self.vt = vt
        self.modules = modules
        self.source = source
        self.files = files
        self.notes = notes
        self.vhosts = root.children("VirtualHost")

    def has_module(self, name: str) -> bool | None:
        return None if self.modules is None else name in self.modules

    def at_least(self, wanted: tuple[int, ...]) -> bool:
        return self.vt is None or self.vt >= wanted

    # ---- selection
    def vhost_ports(self, vhost: ANode) -> list[int | None]:
        ports: list[int | None] = []
        for arg in vhost.args:
            m = re.search(r":(\d+)$", arg)
            ports.append(int(m.group(1)) if m else None)  # None: any port
        return ports

    def pick_vhost(self) -> ANode | None:
        q = self.query
        on_port = [v for v in self.vhosts if q.port in self.vhost_ports(v)
                   or None in self.vhost_ports(v)]
        if not on_port:
            if self.vhosts:
                ports = sorted({p for v in self.vhosts for p in self.vhost_ports(v) if p})
                self.notes.append(f"no <VirtualHost> for port {q.port} (vhosts on "
                                  f"{', '.join(map(str, ports))}); judged the main server")
            return None
        for vhost in on_port:
            names = [a.lower() for n in vhost.children("ServerName", "ServerAlias")
                     for a in n.args]
            hosts = [n.split(":")[0].split("//")[-1] for n in names]
            if any(fnmatch.fnmatchcase(q.host.lower(), h) for h in hosts):
                return vhost
        return on_port[0]

    def elsewhere(self, chosen: ANode | None) -> Where | None:
        """A route for the path in another <VirtualHost> of the same port: the request does
        not reach it (another vhost is first, or names the host)."""
        q = self.query
        notes = list(self.notes)  # judging another vhost must not add notes about it
        try:
            for vhost in self.vhosts:
                ports = self.vhost_ports(vhost)
                if vhost is chosen or not (q.port in ports or None in ports):
                    continue
                for websocket in (False, True):
                    handler = self.handle(vhost, websocket=websocket)
                    if handler.kind == "proxy" and handler.node is not None:
                        return replace(handler.node.where, text=f"{handler.node.raw}  (in "
                                       f"<VirtualHost {' '.join(vhost.args)}>)")
            return None
        finally:
            self.notes[:] = notes

    def get(self, vhost: ANode | None, name: str) -> ANode | None:
        if vhost is not None:
            found = vhost.last(name)
            if found is not None:
                return found
        return self.root.last(name)

    # ---- request evaluation
    def handle(self, vhost: ANode | None, websocket: bool,
               connection: str = CHROME_CONNECTION) -> Handler:
        """The handler for a polling or a WebSocket request; ``connection`` is the WebSocket
        request's Connection header (Chrome's ``Upgrade``, Firefox's ``keep-alive, Upgrade``)."""
        path = self.query.path
        scope = vhost if vhost is not None else self.root
        engine = scope.last("RewriteEngine")
        if engine is not None and engine.args[:1] and engine.args[0].lower() == "on":
            outcome = self.rewrite(scope, path, websocket, connection)
            if outcome is not None and isinstance(outcome, Handler):
                return outcome
            if isinstance(outcome, str):
                path = outcome
        for loc in self.locations(vhost, path):
            pp = loc.last("ProxyPass")
            if pp is not None and pp.args:
                if pp.args[0] == "!":
                    return Handler("none", pp)
                prefix = loc.args[0] if loc.args else "/"
                return self.proxy_handler(pp, pp.args[0], pp.args[1:], prefix, path,
                                          "<Location> ProxyPass")
        rules = self.root.children("ProxyPass", "ProxyPassMatch")
        if vhost is not None:
            rules += vhost.children("ProxyPass", "ProxyPassMatch")
        for i, rule in enumerate(rules):
            if len(rule.args) < 2:
                continue
            if rule.key == "proxypassmatch":
                m = search(rule.args[0], path)
                if not m:
                    continue
                if rule.args[1] == "!":
                    return Handler("none", rule)
                target = expand_groups(rule.args[1], m)
                return self.proxy_handler(rule, target, rule.args[2:], "", path,
                                          "ProxyPassMatch", exact_target=True)
            prefix = rule.args[0]
            if not prefix_match(path, prefix):
                continue
            if rule.args[1] == "!":
                return Handler("none", rule)
            handler = self.proxy_handler(rule, rule.args[1], rule.args[2:], prefix, path,
                                         "ProxyPass")
            later = next((r for r in rules[i + 1:] if r.key == "proxypass" and len(r.args) > 1
                          and prefix_match(path, r.args[0]) and len(r.args[0]) > len(prefix)),
                         None)
            return replace(handler, shadowed=later)
        return Handler("none")

    def locations(self, vhost: ANode | None, path: str) -> list[ANode]:
        found = [loc for loc in self.root.children("Location")
                 if loc.args and prefix_match(path, loc.args[0])]
        if vhost is not None:
            found += [loc for loc in vhost.children("Location")
                      if loc.args and prefix_match(path, loc.args[0])]
        # Later (and more specific) sections merge over earlier ones.
        return list(reversed(found))

    def proxy_handler(self, node: ANode, target: str, extra: Sequence[str], prefix: str,
                      path: str, via: str, exact_target: bool = False) -> Handler:
        params = dict(p.split("=", 1) for p in extra if "=" in p)
        if exact_target:
            after = re.sub(r"^[a-z]+://[^/]*", "", target) or "/"
        else:
            rest = path[len(prefix):] if path.startswith(prefix) else path[len(prefix) - 1:]
            base = re.sub(r"^[a-z]+://[^/]*", "", target, flags=re.I)
            after = join_upstream_path(base, rest) if base else "/" + rest.lstrip("/")
        return Handler("proxy", node, target, prefix, params, after, via)

    def rewrite(self, scope: ANode, path: str, websocket: bool,
                connection: str = "Upgrade") -> Handler | str | None:
        """Run the scope's RewriteRules; a handler, a rewritten path, or None."""
        conds: list[ANode] = []
        current = path
        changed = False
        for node in scope.children("RewriteCond", "RewriteRule"):
            if node.key == "rewritecond":
                conds.append(node)
                continue
            rule_conds, conds = conds, []
            if len(node.args) < 2:
                continue
            pattern, subst = node.args[0], node.args[1]
            flags = rewrite_flags(node.args[2:])
            negate = pattern.startswith("!")
            try:
                m = re.search(pattern.lstrip("!"), current, re.I if "nc" in flags else 0)
            except re.error:
                continue
            if bool(m) == negate or not self.conds_hold(rule_conds, current, websocket,
                                                        connection):
                continue
            target = subst
            if m is not None:
                target = expand_groups(subst, m)
            if "p" in flags:
                after = re.sub(r"^[a-z]+://[^/]*", "", target, flags=re.I).split("?")[0] or "/"
                return Handler("proxy", node, target, "", {}, after, "RewriteRule [P]")
            if "f" in flags or "g" in flags:
                return Handler("deny", node)
            if any(f.startswith("r") and f != "nc" for f in flags) or re.match(
                    r"https?://", target):
                return Handler("redirect", node)
            if target != "-":
                current, changed = target.split("?")[0], True
            if "l" in flags or "end" in flags:
                break
        return current if changed else None

    def conds_hold(self, conds: Sequence[ANode], path: str, websocket: bool,
                   connection: str = "Upgrade") -> bool:
        result = True
        pending_or = False
        for cond in conds:
            if len(cond.args) < 2:
                continue
            value = self.cond_value(cond.args[0], path, websocket, connection)
            flags = rewrite_flags(cond.args[2:])
            if value is None:
                ok = True
                self.notes.append(f"RewriteCond {cond.args[0]} ({cond.file}:{cond.line}) "
                                  "was assumed true")
            else:
                pattern = cond.args[1]
                negate = pattern.startswith("!")
                pattern = pattern.lstrip("!")
                if pattern.startswith("="):
                    # [NC] applies to lexical comparisons too (mod_rewrite's docs).
                    ok = value.lower() == pattern[1:].lower() if "nc" in flags else \
                        value == pattern[1:]
                elif pattern.startswith("-"):
                    ok = True
                else:
                    try:
                        ok = bool(re.search(pattern, value, re.I if "nc" in flags else 0))
                    except re.error:
                        ok = True
                ok = ok != negate
            result = (result or ok) if pending_or else (result and ok)
            pending_or = "or" in flags
        return result

    def cond_value(self, var: str, path: str, websocket: bool,
                   connection: str = "Upgrade") -> str | None:
        query = f"EIO=4&transport={'websocket' if websocket else 'polling'}"
        values = {
            "%{HTTP:Upgrade}": "websocket" if websocket else "",
            "%{HTTP:Connection}": connection if websocket else "keep-alive",
            "%{REQUEST_URI}": path,
            "%{QUERY_STRING}": query,
            "%{THE_REQUEST}": f"GET {path}?{query} HTTP/1.1",
            "%{REQUEST_METHOD}": "GET",
            "%{HTTPS}": "on" if self.query.tls else "off",
        }
        for key, value in values.items():
            if var.lower() == key.lower():
                return value
        return None

    # ---- facts


def prefix_match(path: str, prefix: str) -> bool:
    if prefix == "/":
        return True
    return path.startswith(prefix) or path.rstrip("/") == prefix.rstrip("/")


def rewrite_flags(args: Sequence[str]) -> set[str]:
    out: set[str] = set()
    for arg in args:
        if arg.startswith("[") and arg.endswith("]"):
            out |= {f.strip().lower().split("=")[0] for f in arg[1:-1].split(",")}
    return out


def is_on(node: ANode | None) -> bool:
    return node is not None and bool(node.args) and node.args[0].lower() == "on"


def seconds_arg(node: ANode | None) -> float | None:
    if node is None or not node.args:
        return None
    return seconds_of(node.args[0])


def seconds_of(text: str) -> float | None:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms)?", text.strip())
    if not m:
        return None
    value = float(m.group(1))
    return value / 1000 if m.group(2) else value


def host_port(url: str) -> str:
    m = re.match(r"(?i)(\w+)://([^/]+)", url)
    if not m:
        return ""
    scheme, host = m.group(1).lower(), m.group(2)
    if scheme == "balancer":
        return ""
    if ":" in host.rsplit("]", 1)[-1]:
        return host
    return f"{host}:{443 if scheme in ('https', 'wss') else 80}"
