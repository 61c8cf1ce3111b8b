"""nginx: the live config tree (``nginx -T``) parsed with crossplane -> RouteFacts.

``read`` runs ``nginx -v`` and ``nginx -T [-c CONFIG]`` in one round trip (with sudo: -T opens
the log files), splits the dump back into its files, parses each with crossplane and stitches
``include`` directives back in from the dump, so every directive keeps its own file:line. When
``-T`` refuses (an invalid config on disk), the files are read directly instead.

The semantics are nginx's own, reduced to what a Socket.IO route needs:

* server selection by the URL's port (``listen``), then ``server_name``, then ``default_server``;
* location selection: ``=`` exact, longest prefix (``^~`` stops), then regexes in order, nested;
* directive inheritance: the innermost level wins; ``proxy_set_header`` is an *array*
  directive, so a level that sets any header inherits none from outer levels (the classic way
  Upgrade/Connection get lost);
* ``proxy_pass`` with a URI replaces the location prefix; ``rewrite … break`` changes the path;
* defaults: ``proxy_read_timeout`` 60 s, ``proxy_http_version`` 1.0 before nginx 1.29.7,
  ``Host $proxy_host`` and ``Connection close`` when no header is set.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import shlex
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wizard.diagnose.facts import Blocker, Listen, RouteFacts, RouteQuery, TimeoutFact, Where
from wizard.diagnose.readers.base import (
    ConfigReadError,
    ReadBudget,
    capped,
    cat_files,
    expand_groups,
    join_upstream_path,
    new_marker,
    sudo_run,
    uncap,
)
from wizard.model import ProxyKind

if TYPE_CHECKING:
    from wizard.remote import Remote

DEFAULT_CONFIG = "/etc/nginx/nginx.conf"
DEFAULT_READ_TIMEOUT = 60.0
MAX_INCLUDE_DEPTH = 16
# The stitched tree's size cap: `include` of the same files over and over (a loop, or a
# diamond chain a -> b b -> c c ...) would otherwise expand exponentially.
MAX_STITCHED_NODES = 200_000
# proxy_http_version defaults to 1.1 from nginx 1.29.7 on (REFERENCE.md).
HTTP11_DEFAULT_FROM = (1, 29, 7)
_PATH = "PATH=$PATH:/usr/sbin:/sbin:/usr/local/sbin"
_NGINX_T_SECONDS = 10

MAP_LINES = ("map $http_upgrade $connection_upgrade {\n    default upgrade;\n    ''      close;\n}")


# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class Node:
    """One directive with its place; ``block`` is None for simple directives."""

    name: str
    args: tuple[str, ...]
    file: str
    line: int
    block: tuple[Node, ...] | None = None

    @property
    def text(self) -> str:
        words = " ".join(_quote(a) for a in (self.name, *self.args))
        return words + (" {" if self.block is not None else ";")

    @property
    def where(self) -> Where:
        return Where(self.file, self.line, self.text)

    def children(self, name: str) -> list[Node]:
        return [n for n in self.block or () if n.name == name]

    def first(self, name: str) -> Node | None:
        found = self.children(name)
        return found[0] if found else None  # nginx refuses most duplicates; take the first


def _quote(word: str) -> str:
    if word == "" or re.search(r"[\s;{}'\"]", word):
        return "'" + word.replace("'", "\\'") + "'"
    return word


def split_dump(dump: str) -> list[tuple[str, str]]:
    """``nginx -T`` output -> [(path, content)] in the order nginx read the files."""
    parts = re.split(r"^# configuration file (.+):\n", dump, flags=re.M)
    files: list[tuple[str, str]] = []
    for i in range(1, len(parts) - 1, 2):
        files.append((parts[i], parts[i + 1]))
    return files


def parse_files(files: Sequence[tuple[str, str]]) -> dict[str, list[Node]]:
    """Parse each file on its own with crossplane (includes are stitched later)."""
    import crossplane  # lazy: only diagnose needs it

    out: dict[str, list[Node]] = {}
    with tempfile.TemporaryDirectory(prefix="sockwizard-nginx-") as tmp:
        for index, (path, content) in enumerate(files):
            local = os.path.join(tmp, f"{index}.conf")
            with open(local, "w", encoding="utf-8") as handle:
                handle.write(content)
            result = crossplane.parse(local, single=True, check_ctx=False, check_args=False,
                                      comments=False, catch_errors=True)
            config = result["config"][0]
            if config["errors"]:
                err = config["errors"][0]
                raise ConfigReadError(
                    f"Cannot parse the nginx config {path}:{err.get('line')}: {err.get('error')}",
                    "Run `nginx -t` on the host to see the same error.")
            out[path] = [_node(d, path) for d in config["parsed"]]
    return out


def _node(raw: dict[str, object], path: str) -> Node:
    block = raw.get("block")
    children = tuple(_node(b, path) for b in block) if isinstance(block, list) else None
    args = raw.get("args", [])
    assert isinstance(args, list)
    line = raw.get("line", 0)
    return Node(str(raw["directive"]), tuple(str(a) for a in args), path,
                int(line) if isinstance(line, int) else 0, children)


def stitch(parsed: dict[str, list[Node]], main: str) -> tuple[Node, ...]:
    """The main file's directives with every ``include`` replaced by the included ones.

    A file that (directly or not) includes itself is not expanded again (nginx itself crashes
    on such a loop), and the whole tree is capped at MAX_STITCHED_NODES directives
    (ConfigReadError beyond: a tree that large is an attack or a mistake)."""
    conf_dir = posixpath.dirname(main)
    count = 0

    def expand(nodes: Sequence[Node], depth: int, stack: tuple[str, ...]) -> tuple[Node, ...]:
        nonlocal count
        out: list[Node] = []
        for node in nodes:
            count += 1
            if count > MAX_STITCHED_NODES:
                raise ConfigReadError(
                    f"The nginx config expands to more than {MAX_STITCHED_NODES} directives "
                    "through its includes",
                    "Check the include directives for loops or files included many times.")
            if node.name == "include" and node.args and depth < MAX_INCLUDE_DEPTH:
                for path in _glob(node.args[0], conf_dir, parsed):
                    if path not in stack:
                        out.extend(expand(parsed[path], depth + 1, (*stack, path)))
                continue
            if node.block is not None:
                node = Node(node.name, node.args, node.file, node.line,
                            expand(node.block, depth, stack))
            out.append(node)
        return tuple(out)

    return expand(parsed.get(main, []), 0, (main,))


def _glob(pattern: str, conf_dir: str, parsed: dict[str, list[Node]]) -> list[str]:
    full = pattern if pattern.startswith("/") else posixpath.join(conf_dir, pattern)
    full = posixpath.normpath(full)
    if not re.search(r"[*?\[]", full):
        return [full] if full in parsed else []
    wanted = full.split("/")
    return sorted(p for p in parsed if _segments_match(p.split("/"), wanted))


def _segments_match(path: list[str], pattern: list[str]) -> bool:
    return len(path) == len(pattern) and all(
        fnmatch.fnmatchcase(a, b) for a, b in zip(path, pattern, strict=True))


# --------------------------------------------------------------------------- reading


def read(remote: Remote, query: RouteQuery, config_path: str | None,
         budget: ReadBudget | None = None) -> RouteFacts:
    budget = budget if budget is not None else ReadBudget()
    marker, end = new_marker(), new_marker()
    conf = f" -c {shlex.quote(config_path)}" if config_path else ""
    # -T prints every file of the tree: cut at the byte budget. `timeout` stops an nginx that
    # blocks opening a FIFO in the tree (the files are then read directly, with caps).
    limit = budget.bytes_left
    dump_cmd = capped(f"$T nginx -T{conf}", limit, end)
    result = sudo_run(remote, f"{_PATH}; nginx -v 2>&1; echo {marker}; T=; command -v timeout "
                              f">/dev/null && T='timeout -s KILL {_NGINX_T_SECONDS}'; {dump_cmd}",
                      budget=budget)
    head, _, dump = result.stdout.partition(marker + "\n")
    dump, status = uncap(dump, end)
    if status is None and len(dump) >= 0.9 * limit:  # head cut it: no status line
        raise ConfigReadError(
            f"The nginx config on {remote.name} is larger than {limit} bytes "
            "(nginx -T)", "Check the include directives for huge or repeated files.")
    version = _version(head)
    if "nginx: not found" in head or "command not found" in head:
        raise ConfigReadError(f"nginx is not installed on {remote.name} (nginx -v failed)",
                              "Check --proxy, or give the host that runs nginx.")
    source = f"nginx -T{conf} on {remote.name}"
    files = split_dump(dump) if status == 0 or (status is None and result.ok) else []
    if not files:
        # -T refuses an invalid config: read the files themselves so the diagnosis can still
        # point at the lines (the checker's own error is kept as a note).
        main = config_path or DEFAULT_CONFIG
        files = _read_tree(remote, main, budget)
        if not files:
            raise ConfigReadError(
                f"Cannot read the nginx config on {remote.name}",
                "Give the main config file with --config (e.g. /etc/nginx/nginx.conf).",
                detail=result.stderr.strip()[-2000:])
        source = f"{main} and its includes on {remote.name} (nginx -T failed)"
        facts = facts_from_files(files, query, version=version, source=source)
        why = " ".join(result.stderr.strip().splitlines()[-2:])[-500:] or (
            f"no answer within {_NGINX_T_SECONDS} s" if status in (124, 137) else
            f"exit status {status}")
        return _with_note(facts, "nginx -T failed: " + why)
    return facts_from_files(files, query, version=version, source=source)


def _with_note(facts: RouteFacts, note: str) -> RouteFacts:
    from dataclasses import replace

    return replace(facts, notes=(*facts.notes, note))


def _version(text: str) -> str | None:
    m = re.search(r"nginx/(\d+\.\d+(?:\.\d+)?)", text)
    return m.group(1) if m else None


def _read_tree(remote: Remote, main: str, budget: ReadBudget) -> list[tuple[str, str]]:
    """Read ``main`` and, level by level, the files its ``include`` directives name: each
    path once (a loop ends), within the budget's files, bytes and time."""
    files: dict[str, str] = {}
    asked: set[str] = set()
    pending = [main]
    conf_dir = posixpath.dirname(main)
    for _ in range(MAX_INCLUDE_DEPTH):
        pending = [p for p in dict.fromkeys(pending) if p not in asked]
        if not pending or budget.files_left <= 0:
            break
        asked.update(pending)
        got = cat_files(remote, pending, budget)
        new = {k: v for k, v in got.items() if k not in files}
        files.update(new)
        pending = []
        for text in new.values():
            for m in _INCLUDE.finditer(text):
                arg = m.group(1).strip().strip("'\"")
                path = arg if arg.startswith("/") else posixpath.join(conf_dir, arg)
                pending.append(posixpath.normpath(path))
    ordered = [main, *sorted(k for k in files if k != main)]
    return [(k, files[k]) for k in ordered if k in files]


# Linear: no `\s*` that can span lines at a line start, a bounded argument.
_INCLUDE = re.compile(r"^[ \t]*include[ \t]+([^;\n]{1,1024});", re.M)


# --------------------------------------------------------------------------- semantics


def facts_from_dump(dump: str, query: RouteQuery, *, version: str | None = None,
                    source: str = "nginx -T") -> RouteFacts:
    return facts_from_files(split_dump(dump), query, version=version, source=source)


def facts_from_text(text: str, query: RouteQuery, *, file: str = "nginx.conf",
                    version: str | None = None) -> RouteFacts:
    """One self-contained file: a full nginx.conf, or a conf.d file (http context)."""
    return facts_from_files([(file, text)], query, version=version, source=file)


def facts_from_files(files: Sequence[tuple[str, str]], query: RouteQuery, *,
                     version: str | None = None, source: str = "nginx") -> RouteFacts:
    if not files:
        raise ConfigReadError("The nginx config is empty", "Check --config.")
    parsed = parse_files(files)
    tree = stitch(parsed, files[0][0])
    if not any(n.name == "http" for n in tree) and any(n.name == "server" for n in tree):
        # A conf.d file read on its own: its context is http{}.
        tree = (Node("http", (), files[0][0], 0, tree),)
    return _Analysis(tree, query, version, source, tuple(p for p, _ in files)).facts()


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

    # ---- selection
    def listens(self, server: Node) -> list[_Listen]:
        out = []
        ssl_on = any(n.args[:1] == ("on",) for n in server.children("ssl"))
        for node in server.children("listen"):
            if not node.args or node.args[0].startswith("unix:"):
                continue
            addr, port = _split_listen(node.args[0])
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
            if _server_name_matches(server, q.host):
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
                          version=self.version, listens=listens)
        if server is None:
            self.notes.append("the http block has no server block")
            return _replace(base, notes=tuple(self.notes))
        server_tls = any(x.tls for x in self.listens(server) if x.port == q.port) or (
            q.tls and any(x.tls for x in self.listens(server)))
        chain = _location_chain(server, q.path)
        levels = [self.http, server, *chain]
        loc = chain[-1] if chain else None
        facts = _replace(base, server=server.where, server_tls=server_tls)
        hints = {"level": f"location {_loc_arg(loc)}" if loc else "server"}
        if loc is None:
            facts = _replace(facts, route=None, route_desc="no location",
                             elsewhere=self.elsewhere(server), hints=hints)
            return _replace(facts, notes=tuple(self.notes))
        facts = _replace(facts, route=loc.where, route_desc=f"location {_loc_arg(loc)}",
                         hints=hints)
        proxy_pass = loc.first("proxy_pass")
        if proxy_pass is None or not proxy_pass.args:
            other = next((loc.first(n) for n in ("grpc_pass", "fastcgi_pass", "uwsgi_pass",
                                                   "return", "try_files", "root", "alias")
                          if loc.first(n) is not None), None)
            if other is not None:
                self.notes.append(f"location {_loc_arg(loc)} answers with `{other.text}` "
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
        return _replace(facts, notes=tuple(self.notes))

    def elsewhere(self, chosen: Node) -> Where | None:
        """A proxied location for the path in another server block (e.g. only in :80)."""
        for server in self.servers:
            if server is chosen:
                continue
            chain = _location_chain(server, self.query.path)
            if chain and chain[-1].first("proxy_pass") is not None and _loc_arg(chain[-1]) != "/":
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
        rewritten = _apply_rewrites(loc, path)
        if rewritten is not None:
            upstream_path = rewritten
        elif uri is not None:
            prefix = _loc_arg(loc) if _loc_mod(loc) in ("", "^~", "=") else ""
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
        affinity, problem = _affinity(upstream)
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
            default = "1.1" if self.version and _vtuple(self.version) >= HTTP11_DEFAULT_FROM \
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


def _vtuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def _split_listen(arg: str) -> tuple[str, int]:
    m = re.fullmatch(r"(?:\[([^\]]+)\]|([^:]+)):(\d+)", arg)
    if m:
        return (m.group(1) or m.group(2)), int(m.group(3))
    if arg.isdigit():
        return "*", int(arg)
    return arg, 80  # "listen example.com;" or "listen 127.0.0.1;"


def _server_name_matches(server: Node, host: str) -> bool:
    host = host.lower().rstrip(".")
    for node in server.children("server_name"):
        for name in node.args:
            name = name.lower()
            if name.startswith("~"):
                try:
                    if re.search(name[1:], host):
                        return True
                except re.error:
                    continue
            elif _name_matches(name, host):
                return True
    return False


def _name_matches(name: str, host: str) -> bool:
    """A non-regex server_name: exact, ``*.example.com``, ``.example.com``, ``www.*``."""
    if name.startswith("*."):
        return host.endswith(name[1:])
    if name.startswith("."):
        return host == name[1:] or host.endswith(name)
    if name.endswith(".*"):
        return host.startswith(name[:-1])
    return name == host


def _loc_mod(loc: Node) -> str:
    return loc.args[0] if len(loc.args) >= 2 else ""


def _loc_arg(loc: Node | None) -> str:
    if loc is None:
        return ""
    return loc.args[-1] if loc.args else ""


def _location_chain(block: Node, uri: str) -> list[Node]:
    """nginx's location choice for ``uri`` inside ``block``, nested: outermost first."""
    locations = [n for n in block.children("location") if n.args and not n.args[-1].startswith("@")]
    if not locations:
        return []
    for loc in locations:
        if _loc_mod(loc) == "=" and loc.args[-1] == uri:
            return [loc]
    prefixes = [loc for loc in locations
                if _loc_mod(loc) in ("", "^~") and uri.startswith(loc.args[-1])]
    best = max(prefixes, key=lambda loc: len(loc.args[-1]), default=None)
    if best is not None and _loc_mod(best) == "^~":
        return [best, *_location_chain(best, uri)]
    if best is not None:
        nested = _location_chain(best, uri)
        if nested and _loc_mod(nested[-1]) in ("~", "~*"):
            return [best, *nested]
    for loc in locations:
        mod = _loc_mod(loc)
        if mod in ("~", "~*"):
            try:
                if re.search(loc.args[-1], uri, re.I if mod == "~*" else 0):
                    return [loc, *_location_chain(loc, uri)]
            except re.error:
                continue
    if best is not None:
        return [best, *_location_chain(best, uri)]
    return []


def _apply_rewrites(loc: Node, path: str) -> str | None:
    """The path after the location's ``rewrite`` directives (None: none applied)."""
    changed = None
    current = path
    for node in loc.children("rewrite"):
        if len(node.args) < 2:
            continue
        try:
            m = re.search(node.args[0], current)
        except re.error:
            continue
        if not m:
            continue
        replacement = node.args[1]
        if replacement.startswith(("http://", "https://", "$scheme")):
            return None  # a redirect, not a rewrite
        current = expand_groups(replacement, m)
        current = current.split("?", 1)[0]
        changed = current
        if {"break", "last"} & set(node.args[2:]):
            break
    return changed


def _affinity(upstream: Node) -> tuple[str | None, str | None]:
    """(what keeps a client on one server, why it does not work) for an upstream block."""
    if upstream.first("ip_hash") is not None:
        return "ip_hash", None
    sticky = upstream.first("sticky")
    if sticky is not None:
        return sticky.text.rstrip(";"), None
    hashed = upstream.first("hash")
    if hashed is not None and hashed.args:
        key = hashed.args[0]
        text = hashed.text.rstrip(";")
        if re.search(r"\$(binary_)?remote_addr|\$http_x_forwarded_for|\$http_x_real_ip|"
                     r"\$realip_remote_addr|\$cookie_|\$http_cookie", key):
            return text, None
        if re.search(r"\$arg_sid|\$args|\$query_string|\$request_uri|\$uri", key):
            return text, (f"`{text}` hashes the request URI: the handshake has no sid yet, so "
                          "it lands on another server than the requests that follow")
        return text, None
    return None, None


def parse_time(text: str) -> float | None:
    """nginx time: ``60``, ``60s``, ``1m30s``, ``500ms``, ``1h``."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000,
             "y": 31536000}
    if text.isdigit():
        return float(text)
    total = 0.0
    pos = 0
    for m in re.finditer(r"(\d+)(ms|s|m|h|d|w|M|y)", text):
        if m.start() != pos:
            return None
        total += int(m.group(1)) * units[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos else None
