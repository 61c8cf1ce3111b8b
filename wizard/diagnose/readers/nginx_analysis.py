"""nginx: the facts about the route that serves the Socket.IO path, from the stitched tree.

Inheritance is nginx's: the innermost level wins; ``proxy_set_header`` is an *array* directive,
so a level that sets any header inherits none from outer levels. Defaults: ``proxy_read_timeout``
60 s, ``proxy_http_version`` 1.0 before nginx 1.29.7, ``Host $proxy_host`` and ``Connection
close`` when no header is set. Pure; called by ``wizard.diagnose.readers.nginx``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from wizard.diagnose.facts import (
    Blocker,
    Capacity,
    Listen,
    RouteFacts,
    RouteQuery,
    TimeoutFact,
    Where,
)
from wizard.diagnose.readers.base import (
    ConfigReadError,
    join_upstream_path,
)
from wizard.diagnose.readers.nginx_more import more_facts
from wizard.diagnose.readers.nginx_syntax import (
    Node,
    apply_rewrites,
    loc_arg,
    loc_mod,
    location_chain,
    parse_time,
    server_name_matches,
    split_listen,
    upstream_affinity,
    vtuple,
)
from wizard.model import ProxyKind

# proxy_http_version defaults to 1.1 from nginx 1.29.7 on (REFERENCE.md).
HTTP11_DEFAULT_FROM = (1, 29, 7)
_PATH = "PATH=$PATH:/usr/sbin:/sbin:/usr/local/sbin"
MAP_LINES = ("map $http_upgrade $connection_upgrade {\n    default upgrade;\n    ''      close;\n}")

DEFAULT_READ_TIMEOUT = 60.0



@dataclass(frozen=True)
class _Listen:
    port: int
    tls: bool
    default: bool
    node: Node | None
    address: str


class _Analysis:
    def __init__(self, tree: tuple[Node, ...], query: RouteQuery, version: str | None,
                 source: str, files: tuple[str, ...]) -> None:
        self.query = query
        self.version = version
        self.source = source
        self.files = files
        self.notes: list[str] = []
        http = [n for n in tree if n.name == "http" and n.block is not None]
        if not http:
            raise ConfigReadError("The nginx config has no http {} block",
                                  "Check that --config names the main nginx.conf.")
        self.http = http[0]
        self.servers = self.http.children("server")
        self.capacity = capacity(tree)

    # ---- selection
    def listens(self, server: Node) -> list[_Listen]:
        out = []
        ssl_on = any(n.args[:1] == ("on",) for n in server.children("ssl"))
        for node in server.children("listen"):
            if not node.args or node.args[0].startswith("unix:"):
                continue
            addr, port = split_listen(node.args[0])
            out.append(_Listen(port, "ssl" in node.args[1:] or ssl_on,
                               "default_server" in node.args[1:] or "default" in node.args[1:],
                               node, addr))
        if not out and not server.children("listen"):
            out.append(_Listen(80, ssl_on, False, None, "*"))
        return out

    def pick_server(self) -> Node | None:
        q = self.query
        if not self.servers:
            return None
        on_port = [s for s in self.servers if any(x.port == q.port for x in self.listens(s))]
        if not on_port:
            ports = sorted({x.port for s in self.servers for x in self.listens(s)})
            self.notes.append(f"no server block listens on port {q.port} (the config listens on "
                              f"{', '.join(map(str, ports)) or 'nothing'}); judged the block "
                              "that would serve the same scheme")
            same = [s for s in self.servers if any(x.tls == q.tls for x in self.listens(s))]
            on_port = same or self.servers
        for server in on_port:
            if server_name_matches(server, q.host):
                return server
        for server in on_port:
            if any(x.default and x.port == q.port for x in self.listens(server)):
                return server
        return on_port[0]

    # ---- facts
    def facts(self) -> RouteFacts:
        q = self.query
        listens = tuple(
            Listen(x.port, x.tls, x.node.where if x.node else Where("(no listen: port 80)"),
                   x.address)
            for s in self.servers for x in self.listens(s))
        server = self.pick_server()
        base = RouteFacts(proxy=ProxyKind.NGINX, source=self.source, files=self.files,
                          version=self.version, listens=listens, capacity=self.capacity)
        if server is None:
            self.notes.append("the http block has no server block")
            return _replace(base, notes=tuple(self.notes))
        server_tls = any(x.tls for x in self.listens(server) if x.port == q.port) or (
            q.tls and any(x.tls for x in self.listens(server)))
        chain = location_chain(server, q.path)
        levels = [self.http, server, *chain]
        loc = chain[-1] if chain else None
        facts = _replace(base, server=server.where, server_tls=server_tls)
        hints = {"level": f"location {loc_arg(loc)}" if loc else "server"}
        if loc is None:
            facts = _replace(facts, route=None, route_desc="no location",
                             elsewhere=self.elsewhere(server), hints=hints)
            return _replace(facts, notes=tuple(self.notes))
        facts = _replace(facts, route=loc.where, route_desc=f"location {loc_arg(loc)}",
                         hints=hints)
        proxy_pass = loc.first("proxy_pass")
        if proxy_pass is None or not proxy_pass.args:
            other = next((loc.first(n) for n in ("grpc_pass", "fastcgi_pass", "uwsgi_pass",
                                                   "return", "try_files", "root", "alias")
                          if loc.first(n) is not None), None)
            if other is not None:
                self.notes.append(f"location {loc_arg(loc)} answers with `{other.text}` "
                                  f"({other.file}:{other.line}) instead of proxying")
            return _replace(facts, proxied=False, elsewhere=self.elsewhere(server),
                            notes=tuple(self.notes))
        facts = _replace(facts, proxied=True, upstream=proxy_pass.where)
        facts = self.upstream_facts(facts, loc, proxy_pass)
        facts = self.timeout_facts(facts, levels)
        blockers = self.upgrade_blockers(levels, loc)
        facts = _replace(facts, upgrade_blockers=tuple(blockers))
        if blockers:
            facts = _replace(facts, elsewhere=self.elsewhere(server))
        facts = self.forward_facts(facts, levels, loc, server_tls)
        facts = more_facts(facts, self.http, levels, self.header_level(levels)[1], q.port)
        return _replace(facts, notes=tuple(self.notes))

    def elsewhere(self, chosen: Node) -> Where | None:
        """A proxied location for the path in another server block (e.g. only in :80)."""
        for server in self.servers:
            if server is chosen:
                continue
            chain = location_chain(server, self.query.path)
            if chain and chain[-1].first("proxy_pass") is not None and loc_arg(chain[-1]) != "/":
                ports = ", ".join(str(x.port) + (" ssl" if x.tls else "")
                                  for x in self.listens(server))
                where = chain[-1].where
                return Where(where.file, where.line, f"{where.text}  (server listening on {ports})")
        return None

    def upstream_facts(self, facts: RouteFacts, loc: Node, proxy_pass: Node) -> RouteFacts:
        target = proxy_pass.args[0]
        m = re.match(r"(?i)(https?)://([^/]+)(/.*)?$", target)
        if not m or "$" in target:
            self.notes.append(f"proxy_pass {target} uses variables or an unusual form; the "
                              "upstream path and backends were not resolved")
            return facts
        scheme, hostport, uri = m.group(1).lower(), m.group(2), m.group(3)
        path = self.query.path
        rewritten = apply_rewrites(loc, path)
        if rewritten is not None:
            upstream_path = rewritten
        elif uri is not None:
            prefix = loc_arg(loc) if loc_mod(loc) in ("", "^~", "=") else ""
            rest = path[len(prefix):] if prefix and path.startswith(prefix) else path
            upstream_path = join_upstream_path(uri, rest) if prefix else uri
        else:
            upstream_path = path
        facts = _replace(facts, upstream_path=upstream_path)
        upstream = next((u for u in self.http.children("upstream") if u.args[:1] == (hostport,)),
                        None)
        if upstream is None:
            host = hostport if ":" in hostport.rsplit("]", 1)[-1] else (
                f"{hostport}:{443 if scheme == 'https' else 80}")
            return _replace(facts, backends=(host,), backends_where=proxy_pass.where)
        servers = [s for s in upstream.children("server")
                   if s.args and not ({"backup", "down"} & set(s.args[1:]))]
        backends = tuple(s.args[0] for s in servers)
        affinity, problem = upstream_affinity(upstream)
        hints = {**facts.hints, "upstream": hostport}
        return _replace(facts, backends=backends, backends_where=upstream.where,
                        affinity=affinity, affinity_problem=problem, hints=hints)

    def timeout_facts(self, facts: RouteFacts, levels: Sequence[Node]) -> RouteFacts:
        node = _innermost(levels, "proxy_read_timeout")
        if node is None:
            fact = TimeoutFact(DEFAULT_READ_TIMEOUT, "proxy_read_timeout",
                               "WebSocket and long-polling connections", (),
                               "nginx's default: no proxy_read_timeout in the location, server "
                               "or http block")
        else:
            seconds = parse_time(node.args[0]) if node.args else None
            if seconds is None:
                self.notes.append(f"cannot read {node.text} ({node.file}:{node.line})")
                seconds = DEFAULT_READ_TIMEOUT
            fact = TimeoutFact(seconds, "proxy_read_timeout",
                               "WebSocket and long-polling connections", (node.where,))
        return _replace(facts, ws_idle_timeout=fact)

    def header_level(self, levels: Sequence[Node]) -> tuple[Node | None, list[Node]]:
        """The level whose proxy_set_header set is in effect, and that set."""
        for level in reversed(levels):
            found = level.children("proxy_set_header")
            if found:
                return level, found
        return None, []

    def upgrade_blockers(self, levels: Sequence[Node], loc: Node) -> list[Blocker]:
        blockers: list[Blocker] = []
        where_loc = loc.where
        level, headers = self.header_level(levels)
        by_name = {h.args[0].lower(): h for h in headers if len(h.args) >= 2}
        lines: list[str] = []
        why: list[str] = []
        places: list[Where] = [where_loc]
        version_node = _innermost(levels, "proxy_http_version")
        if version_node is None:
            default = "1.1" if self.version and vtuple(self.version) >= HTTP11_DEFAULT_FROM \
                else "1.0"
            if default != "1.1":
                why.append(f"no proxy_http_version, so nginx {self.version or ''} talks HTTP/1.0 "
                           "to the backend (an upgrade needs HTTP/1.1)".replace("  ", " "))
                lines.append("proxy_http_version 1.1;")
        elif version_node.args[:1] != ("1.1",):
            why.append(f"`{version_node.text}`: an upgrade needs HTTP/1.1")
            places.append(version_node.where)
            lines.append("proxy_http_version 1.1;")
        upgrade = by_name.get("upgrade")
        connection = by_name.get("connection")
        upgrade_ok = upgrade is not None and self.header_value_ok(upgrade.args[1], "websocket")
        connection_ok = connection is not None and self.header_value_ok(connection.args[1],
                                                                        "upgrade")
        lost = self.lost_by_inheritance(levels, level)
        outer = {h.args[0].lower(): h for h in (
            lost_level(levels, lost).children("proxy_set_header") if lost is not None else ())
            if len(h.args) >= 2}
        wanted = (("upgrade", upgrade_ok, "proxy_set_header Upgrade $http_upgrade;"),
                  ("connection", connection_ok, "proxy_set_header Connection $connection_upgrade;"))
        for name, ok, default in wanted:
            if ok:
                continue
            # Repeat the outer line when it was right; it was only lost by inheritance.
            shadowed = outer.get(name)
            want = "websocket" if name == "upgrade" else "upgrade"
            if shadowed is not None and self.header_value_ok(shadowed.args[1], want):
                lines.append(shadowed.text)
            else:
                lines.append(default)
        if not (upgrade_ok and connection_ok):
            missing = " and ".join(n for n, ok in (("Upgrade", upgrade_ok),
                                                   ("Connection", connection_ok)) if not ok)
            plural = " and " in missing
            if lost is not None:
                why.append(f"the {missing} header{'s are' if plural else ' is'} set at "
                           f"{lost.file}:{lost.line}, but this location sets its own "
                           "proxy_set_header, so nginx inherits none of the outer ones")
                places.append(lost.where)
                # Repeat the whole outer set: the location's own set replaces all of it.
                present = {h.args[0].lower() for h in headers if h.args}
                for h in lost_level(levels, lost).children("proxy_set_header"):
                    name = h.args[0].lower() if h.args else ""
                    if name not in present and name not in ("upgrade", "connection"):
                        lines.append(h.text)
            elif connection is not None and not connection_ok:
                why.append(f"`{connection.text}` does not send `Connection: upgrade`")
                places.append(connection.where)
            elif upgrade is not None and not upgrade_ok:
                why.append(f"`{upgrade.text}` does not pass the client's Upgrade header")
                places.append(upgrade.where)
            else:
                why.append(f"the {missing} header{'s are' if plural else ' is'} not forwarded "
                           "(nginx drops hop-by-hop headers and sends `Connection: close`)")
        if why:
            fix = _fix_in_location(loc, lines)
            if any("$connection_upgrade" in x for x in lines) and not self.has_map():
                fix += f"\nand once in the http {{}} block:\n{_indent(MAP_LINES)}"
            blockers.append(Blocker("; ".join(why), tuple(dict.fromkeys(places)), fix))
        return blockers

    def lost_by_inheritance(self, levels: Sequence[Node], level: Node | None) -> Node | None:
        """An outer proxy_set_header Upgrade/Connection shadowed by an inner level's set."""
        if level is None:
            return None
        index = list(levels).index(level)
        for outer in reversed(levels[:index]):
            for h in outer.children("proxy_set_header"):
                if h.args and h.args[0].lower() in ("upgrade", "connection"):
                    return h
        return None

    def has_map(self) -> bool:
        return any(m.args[1:2] == ("$connection_upgrade",) for m in self.http.children("map"))

    def header_value_ok(self, value: str, want: str) -> bool:
        """Does this header value carry ``want`` for a WebSocket request?"""
        low = value.lower()
        if want == "websocket" and ("$http_upgrade" in low or "websocket" in low):
            return True
        if want == "upgrade" and ("$http_connection" in low or re.fullmatch(r"upgrade", low)):
            return True
        for var in re.findall(r"\$(\w+)", value):
            mapped = self.map_value(var, {"http_upgrade": "websocket",
                                          "http_connection": "Upgrade"})
            if mapped is not None and want in mapped.lower():
                return True
        return False

    def map_value(self, var: str, inputs: dict[str, str]) -> str | None:
        for m in self.http.children("map"):
            if len(m.args) < 2 or m.args[1] != f"${var}":
                continue
            source = m.args[0].lstrip("$")
            given = inputs.get(source, "")
            default: str | None = ""
            for entry in m.block or ():
                if not entry.args:
                    continue
                key, value = entry.name, entry.args[0]
                if key == "default":
                    default = value
                elif key.startswith("~"):
                    flags = re.I if key.startswith("~*") else 0
                    if re.search(key.lstrip("~*"), given, flags):
                        return value
                elif key == given:
                    return value
            return default
        return None

    def forward_facts(self, facts: RouteFacts, levels: Sequence[Node], loc: Node,
                      server_tls: bool) -> RouteFacts:
        _level, headers = self.header_level(levels)
        by_name = {h.args[0].lower(): h for h in headers if len(h.args) >= 2}
        proto = by_name.get("x-forwarded-proto")
        proto_ok = proto is not None and (not server_tls or proto.args[1] in ("$scheme", "https"))
        host = by_name.get("host")
        fwd_host = by_name.get("x-forwarded-host")
        host_ok = (host is not None and host.args[1] in ("$host", "$http_host", "$server_name")) \
            or fwd_host is not None
        lines = []
        if not proto_ok:
            lines.append("proxy_set_header X-Forwarded-Proto $scheme;")
        if not host_ok:
            lines.append("proxy_set_header Host $host;")
            lines.append("proxy_set_header X-Forwarded-Host $host;")
        fix = _fix_in_location(loc, lines) if lines else ""
        return _replace(facts, forwarded_proto=proto_ok, forwarded_host=host_ok, forward_fix=fix)


DEFAULT_WORKER_CONNECTIONS = 512  # nginx's compiled-in default (Debian's nginx.conf sets 768)


def capacity(tree: Sequence[Node]) -> Capacity | None:
    """``worker_connections`` × ``worker_processes`` / 2: each WebSocket client holds a client
    and an upstream connection. None without an ``events`` block (a site fragment)."""
    events = next((n for n in tree if n.name == "events" and n.block is not None), None)
    if events is None:
        return None
    node = events.first("worker_connections")
    per = DEFAULT_WORKER_CONNECTIONS
    if node is not None and node.args and node.args[0].isdigit() and len(node.args[0]) < 9:
        per = int(node.args[0])
    procs_node = next((n for n in tree if n.name == "worker_processes"), None)
    procs_arg = procs_node.args[0] if procs_node is not None and procs_node.args else "1"
    workers = int(procs_arg) if procs_arg.isdigit() and len(procs_arg) < 5 else None
    how = f"worker_connections {per}" + ("" if node is not None else " (nginx's default)")
    if workers is None:
        return Capacity(per // 2, f"{how} / 2 per worker process (worker_processes "
                        f"{procs_arg[:10]})", node.where if node else None, per_worker=True)
    return Capacity(per * workers // 2, f"{how} × {workers} worker(s) / 2",
                    node.where if node else None)


def lost_level(levels: Sequence[Node], header: Node) -> Node:
    for level in levels:
        if header in level.children("proxy_set_header"):
            return level
    return levels[0]


def _replace(facts: RouteFacts, **changes: object) -> RouteFacts:
    from dataclasses import replace

    return replace(facts, **changes)  # type: ignore[arg-type]


def _innermost(levels: Sequence[Node], name: str) -> Node | None:
    for level in reversed(levels):
        node = level.first(name)
        if node is not None:
            return node
    return None


def _fix_in_location(loc: Node, lines: Sequence[str]) -> str:
    body = "\n".join(f"    {line}" for line in lines)
    return f"In `{loc.text}` ({loc.file}:{loc.line}) add:\n{body}"


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
