"""Caddy 2: ``caddy adapt`` JSON (what Caddy will run) + the Caddyfile text (where) -> RouteFacts.

``read`` first reads the Caddyfile and its ``import``-ed files (capped, regular files only:
``caddy adapt`` would read an imported /dev/zero without end), then runs ``caddy version`` and
``caddy adapt --config F --adapter caddyfile`` in a second round trip. The JSON is the
truth about semantics — Caddy itself expanded every shorthand — and carries no line numbers, so
each fact is located back in the Caddyfile text by the token that produced it.

Evaluated like Caddy's HTTP app: the server whose ``listen`` has the URL's port; its routes in
order with matcher sets (path globs, host, header, not), ``group`` (first match of a group
only: ``handle`` blocks), ``terminal``; ``subroute`` recursion; ``rewrite`` (``handle_path``
becomes ``strip_path_prefix``); the first responding handler. For a ``reverse_proxy`` handler:
upstreams, ``lb_policy`` (default ``random``), ``transport http { read_timeout }`` — measured on
2.6.2: it cuts idle WebSockets too (5 s -> dropped at 5.0 s); none by default, and the server's
own ``timeouts`` do not touch upgraded connections — and request header ops: measured,
``header_up -Upgrade`` or ``header_up Connection close`` keep every client on long-polling.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from wizard.diagnose.facts import (
    Blocker,
    BodyLimit,
    HeaderFact,
    Listen,
    RouteFacts,
    RouteQuery,
    TimeoutFact,
    Where,
)
from wizard.diagnose.readers.base import (
    MAX_INCLUDE_DEPTH,
    ConfigReadError,
    ReadBudget,
    read_tree,
    run_tool,
)
from wizard.diagnose.readers.caddy_match import Outcome, Request, duration_of, walk
from wizard.model import ProxyKind

if TYPE_CHECKING:
    from wizard.remote import Remote

DEFAULT_CONFIG = "/etc/caddy/Caddyfile"
# Policies that keep one client on one upstream. `first` does while the first one is up.
STICKY_POLICIES = {"cookie", "ip_hash", "client_ip_hash", "first", "header"}
_PATH = "PATH=$PATH:/usr/bin:/usr/local/bin"


# --------------------------------------------------------------------------- reading


def read(remote: Remote, query: RouteQuery, config_path: str | None,
         budget: ReadBudget | None = None) -> RouteFacts:
    budget = budget if budget is not None else ReadBudget()
    path = config_path or DEFAULT_CONFIG
    is_json = path.endswith(".json")
    # The files first, with caps: `caddy adapt` would read an imported /dev/zero or FIFO
    # without end, so it only runs on a tree of regular files of sane size.
    texts = _read_tree(remote, path, budget, follow=not is_json)
    if path not in texts:
        raise ConfigReadError(f"Cannot read {path} on {remote.name}",
                              "Check --config and the deploy user's sudo rights.")
    if budget.refused:
        raise ConfigReadError(
            f"The Caddy config on {remote.name} imports files that are not regular files of "
            f"at most {budget.max_file_bytes} bytes: {', '.join(budget.refused)[:300]}",
            "Fix the import directives (a device, FIFO or huge file is never a config).")
    q = shlex.quote(path)
    adapt = f"$T caddy adapt --config {q} --adapter caddyfile 2>&1"
    head, adapted, status, _ = run_tool(
        remote, budget, path=_PATH, version="caddy version 2>&1",
        check="true" if is_json else adapt, kill_s=_ADAPT_SECONDS, limit=budget.bytes_left,
        tool="caddy", name="Caddy")
    if is_json:
        adapted, status = texts[path], 0
    if status != 0:
        raise ConfigReadError(
            f"`caddy adapt` refused {path} on {remote.name}"
            + (" (its output was cut or it did not finish)" if status is None else ""),
            "Run `caddy validate --config FILE --adapter caddyfile` on the host; give the "
            "Caddyfile with --config.", detail=adapted.strip()[-2000:])
    version = _version(head)
    source = f"caddy adapt --config {path} on {remote.name}"
    return facts_from_json(_json_of(adapted), query, texts=texts, version=version,
                           source=source)


def _read_tree(remote: Remote, main: str, budget: ReadBudget, *,
               follow: bool) -> dict[str, str]:
    """The Caddyfile and, level by level, the files its ``import`` lines name (each once:
    :func:`read_tree`)."""

    def imports(text: str) -> list[str]:
        return [posixpath.normpath(_abs(m.group(1), main)) for m in _IMPORT.finditer(text)]

    return read_tree(remote, main, budget, depth=MAX_INCLUDE_DEPTH,
                     includes=imports if follow else lambda _: [])


# Linear: no `\s*` that can span lines at a line start.
_IMPORT = re.compile(r"^[ \t]*import[ \t]+(\S+)", re.M)
_ADAPT_SECONDS = 10


def _abs(pattern: str, main: str) -> str:
    return pattern if pattern.startswith("/") else posixpath.join(posixpath.dirname(main),
                                                                  pattern)


def _version(text: str) -> str | None:
    m = re.search(r"v?(\d+\.\d+\.\d+)", text)
    return m.group(1) if m else None


def _json_of(text: str) -> dict[str, Any]:
    start = text.find("{")
    if start < 0:
        raise ConfigReadError("`caddy adapt` printed no JSON", "Run it on the host to see why.",
                              detail=text[-2000:])
    try:
        data, _end = json.JSONDecoder().raw_decode(text[start:])
    except ValueError as exc:
        raise ConfigReadError(f"Cannot read the JSON from `caddy adapt`: {exc}",
                              "Run it on the host to see why.") from None
    if not isinstance(data, dict):
        raise ConfigReadError("`caddy adapt` printed no JSON object", "Run it on the host.")
    return data


def adapt_local(caddyfile: str) -> dict[str, Any]:
    """Adapt a Caddyfile text with the local caddy binary (tests, ``--config`` on this host)."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".Caddyfile", delete=True) as handle:
        handle.write(caddyfile)
        handle.flush()
        proc = subprocess.run(["caddy", "adapt", "--config", handle.name, "--adapter",
                               "caddyfile"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise ConfigReadError("`caddy adapt` refused the Caddyfile", "Fix it first.",
                              detail=proc.stderr[-2000:])
    return _json_of(proc.stdout)


# --------------------------------------------------------------------------- semantics


def facts_from_caddyfile(text: str, query: RouteQuery, *, file: str = "Caddyfile",
                         version: str | None = None) -> RouteFacts:
    return facts_from_json(adapt_local(text), query, texts={file: text}, version=version,
                           source=file)
class _Locator:
    """Finds the Caddyfile line that produced a JSON fact (best effort, first match)."""

    def __init__(self, texts: Mapping[str, str]) -> None:
        # Lines are searched only in their first 1000 characters: the patterns start with
        # `[^\s{]*`, which is quadratic on one huge line.
        self.lines = [(f, i + 1, line[:1000]) for f, t in texts.items()
                      for i, line in enumerate(t.splitlines())]

    def find(self, pattern: str, after: Where | None = None) -> Where | None:
        rx = re.compile(pattern)
        started = after is None
        for f, n, line in self.lines:
            if not started:
                started = f == after.file and n >= (after.line or 0) if after else True
                if not started:
                    continue
            code = line.split("#", 1)[0]
            if rx.search(code):
                return Where(f, n, line.strip())
        return self.find(pattern) if after is not None else None


def facts_from_json(config: Mapping[str, Any], query: RouteQuery, *,
                    texts: Mapping[str, str] | None = None, version: str | None = None,
                    source: str = "caddy") -> RouteFacts:
    texts = texts or {}
    locate = _Locator(texts)
    notes: list[str] = []
    servers: Mapping[str, Any] = (config.get("apps", {}).get("http", {}) or {}).get(
        "servers", {}) or {}
    listens = []
    for name, srv in servers.items():
        for addr in srv.get("listen", []) or []:
            port = _listen_port(addr)
            if port is not None:
                tls = port == 443 or bool(srv.get("tls_connection_policies"))
                where = locate.find(rf":{port}\b") or Where(f"server {name}", None, addr)
                listens.append(Listen(port, tls, where, addr))
    chosen = _pick_server(servers, query, notes)
    base = RouteFacts(proxy=ProxyKind.CADDY, source=source, files=tuple(texts),
                      version=version, listens=tuple(listens))
    if chosen is None:
        notes.append("the config has no HTTP server")
        return replace(base, notes=tuple(notes))
    name, srv = chosen
    server_tls = query.port == 443 or bool(srv.get("tls_connection_policies")) or (
        query.tls and 443 in [_listen_port(a) for a in srv.get("listen", [])])
    server_where = locate.find(rf"(https?://)?[^\s{{]*:{query.port}\b") or Where(
        f"server {name}", None, ", ".join(srv.get("listen", [])))
    facts = replace(base, server=server_where, server_tls=server_tls)
    routes = srv.get("routes", []) or []
    poll = walk(routes, Request(query.path, query.host, False, query.tls), notes, ())
    ws = walk(routes, Request(query.path, query.host, True, query.tls), notes, ())
    main = poll or ws
    if main is None:
        notes.append(f"no route of server {name} handles {query.path} (Caddy answers an empty "
                     "200)")
        return replace(facts, route=None, route_desc="no route", notes=tuple(notes))
    route_where = _route_where(locate, main, server_where)
    desc = " > ".join(main.matchers) or "the site's catch-all"
    if main.kind != "proxy":
        return replace(facts, route=route_where, route_desc=f"{desc} ({main.kind})",
                       proxied=False, notes=tuple(notes))
    handler = main.handler
    upstreams = tuple(str(u.get("dial", "")) for u in handler.get("upstreams", []) or [])
    rp_where = locate.find(r"\breverse_proxy\b", after=route_where) or route_where
    facts = replace(facts, route=route_where, route_desc=desc, proxied=True, upstream=rp_where,
                    upstream_path=main.path, backends=upstreams, backends_where=rp_where,
                    hints={"reverse_proxy": str(rp_where) if rp_where else ""})
    policy = ((handler.get("load_balancing") or {}).get("selection_policy") or {}).get(
        "policy")
    if len(upstreams) > 1:
        lb_where = locate.find(r"\blb_policy\b", after=rp_where)
        if policy is None:
            facts = replace(facts, affinity=None)
        elif policy in STICKY_POLICIES:
            facts = replace(facts, affinity=f"lb_policy {policy}")
        else:
            why = {"query": "the handshake has no sid yet, so it lands elsewhere than the "
                            "requests that follow",
                   "uri_hash": "the URI changes (the handshake has no sid), so requests of one "
                               "session hash differently"}.get(
                policy, "it spreads the requests of one session over several servers")
            facts = replace(facts, affinity=f"lb_policy {policy}",
                            affinity_problem=f"`lb_policy {policy}`"
                            + (f" ({lb_where.file}:{lb_where.line})" if lb_where else "")
                            + f": {why}")
    transport = handler.get("transport") or {}
    read_timeout = duration_of(transport.get("read_timeout"))
    if read_timeout is None:
        idle = TimeoutFact(None, "read_timeout", "WebSocket and long-polling connections", (),
                           "Caddy's default: no read_timeout, idle connections never time out")
    else:
        rt_where = locate.find(r"\bread_timeout\b", after=rp_where)
        idle = TimeoutFact(read_timeout, "transport http { read_timeout }",
                           "WebSocket and long-polling connections",
                           (rt_where,) if rt_where else ())
    facts = replace(facts, ws_idle_timeout=idle)
    blockers = _upgrade_blockers(handler, ws, locate, rp_where, main)
    facts = _more_facts(facts, handler, main, srv, locate, query.port, policy, rp_where)
    return replace(facts, upgrade_blockers=tuple(blockers), forwarded_proto=True,
                   notes=tuple(dict.fromkeys(notes)))


# Caddy's placeholders for the Host it sends (header_up Host …), classified for the rules.
_HOST_VALUES = {"{http.request.hostport}": "client", "{http.request.host}": "client-no-port",
                "{http.reverse_proxy.upstream.hostport}": "upstream",
                "{http.reverse_proxy.upstream.host}": "upstream"}
_AFFINITY = {"cookie": "cookie", "ip_hash": "address", "client_ip_hash": "address",
             "header": "header"}


def _more_facts(facts: RouteFacts, handler: Mapping[str, Any], main: Outcome,
                srv: Mapping[str, Any], locate: _Locator, port: int, policy: str | None,
                rp_where: Where | None) -> RouteFacts:
    """Issue 12's facts: Host/X-Forwarded-* (the client's by default), the request_body
    limit on the way to the handler, the kind of affinity and trusted proxies."""
    host = HeaderFact("client", "reverse_proxy's default: the client's Host")
    xfh: HeaderFact | None = HeaderFact("client", "X-Forwarded-Host (Caddy's default)")
    for op in [*main.header_ops, (handler.get("headers") or {}).get("request") or {}]:
        for name, values in (op.get("set") or {}).items():
            value = str(values[0]) if values else ""
            seen = _HOST_VALUES.get(value, "other")
            where = locate.find(rf"header_up\s+{re.escape(name)}\b", after=rp_where)
            if name.lower() == "host":
                host = HeaderFact(seen, f"header_up {name} {value}", where)
            elif name.lower() == "x-forwarded-host":
                xfh = HeaderFact(seen, f"header_up {name} {value}", where)
        if any(n.lower() == "x-forwarded-host" for n in op.get("delete", []) or []):
            xfh = None
    limit = None
    if main.body_max is not None:
        limit = BodyLimit(main.body_max, "request_body max_size", locate.find(r"\bmax_size\b"))
    kind = _AFFINITY.get(policy or "")
    lb_where = locate.find(r"\blb_policy\b", after=rp_where) if kind else None
    trusted = locate.find(r"\btrusted_proxies\b") if srv.get("trusted_proxies") else None
    return replace(facts, url_port=port, host_seen=host, xfh_seen=xfh,
                   xfp_seen=HeaderFact("scheme", "X-Forwarded-Proto (Caddy's default)"),
                   body_limit=limit, affinity_kind=kind, affinity_where=lb_where,
                   real_ip=trusted if policy == "client_ip_hash" else None)


def _route_where(locate: _Locator, outcome: Outcome, site: Where | None) -> Where | None:
    for pattern in reversed(outcome.matchers):
        where = locate.find(re.escape(pattern) + r"(\s|$|\{)")
        if where is not None:
            return where
    # A catch-all: the directive that handles it, in the site block that answers (Debian's
    # placeholder `:80 { file_server }` is not the reverse_proxy of an imported site).
    keyword = {"proxy": "reverse_proxy", "static_response": "respond"}.get(outcome.kind,
                                                                          outcome.kind)
    return locate.find(rf"\b{re.escape(keyword)}\b", after=site)


def _upgrade_blockers(handler: Mapping[str, Any], ws: Outcome | None, locate: _Locator,
                      rp_where: Where | None, main: Outcome) -> list[Blocker]:
    out: list[Blocker] = []
    where = (rp_where,) if rp_where else ()
    if ws is None or ws.kind != "proxy":
        out.append(Blocker("WebSocket requests for the path are not proxied (another route "
                           "catches them)", where,
                           "Make the reverse_proxy route match WebSocket requests too (remove "
                           "the header/not matcher that excludes them)."))
        return out
    versions = (handler.get("transport") or {}).get("versions")
    if versions and "1.1" not in versions:
        line = locate.find(r"\bversions\b", after=rp_where)
        out.append(Blocker(f"the transport speaks only HTTP {'/'.join(versions)} to the "
                           "backend; a WebSocket upgrade needs HTTP/1.1",
                           (line,) if line else where,
                           "In the reverse_proxy's `transport http` block use:\n"
                           "    versions 1.1 2   (or remove `versions`)"))

    def header_up(arg: str, reason: str, shown: str, *, where_and_why: bool = True) -> None:
        """A ``header_up ARG …`` line (``-Name`` deletes) that breaks the upgrade."""
        line = locate.find(rf"header_up\s+{re.escape(arg)}\b")
        fix = f"Delete the line `header_up {shown}`"
        fix += ((f" ({line.file}:{line.line})" if line else "")
                + ": reverse_proxy forwards upgrades by itself." if where_and_why else ".")
        out.append(Blocker(reason, (line,) if line else where, fix))

    ops = [*ws.header_ops, (handler.get("headers") or {}).get("request") or {}]
    for op in ops:
        for name in op.get("delete", []) or []:
            if name.lower() in ("upgrade", "connection"):
                header_up(f"-{name}", f"`header_up -{name}` removes the {name} header, so the "
                          "backend never sees the upgrade", f"-{name}")
        for name, values in (op.get("set") or {}).items():
            if name.lower() == "connection" and not any("upgrade" in str(v).lower()
                                                        for v in values):
                header_up(name, f"`header_up {name} {' '.join(values)}` replaces the "
                          "client's `Connection: upgrade`", f"{name} …")
            if name.lower() == "upgrade" and not any("websocket" in str(v).lower()
                                                     or "{http.request.header.upgrade}" in
                                                     str(v).lower() for v in values):
                header_up(name, f"`header_up {name} {' '.join(values)}` replaces the "
                          "client's Upgrade header", f"{name} …", where_and_why=False)
    return out


def _pick_server(servers: Mapping[str, Any], query: RouteQuery,
                 notes: list[str]) -> tuple[str, Mapping[str, Any]] | None:
    if not servers:
        return None
    for name, srv in servers.items():
        if query.port in [_listen_port(a) for a in srv.get("listen", []) or []]:
            return name, srv
    ports = sorted({p for s in servers.values() for a in s.get("listen", []) or []
                    if (p := _listen_port(a)) is not None})
    notes.append(f"no Caddy server listens on port {query.port} (it listens on "
                 f"{', '.join(map(str, ports))}); judged the first server")
    name = next(iter(servers))
    return name, servers[name]


def _listen_port(addr: str) -> int | None:
    m = re.search(r":(\d+)(?:-\d+)?$", str(addr))
    return int(m.group(1)) if m else None


__all__ = ["STICKY_POLICIES", "adapt_local", "facts_from_caddyfile", "facts_from_json", "read"]
