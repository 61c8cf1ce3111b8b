"""Node http-proxy: the proxy script, read with regular expressions -> RouteFacts.

An http-proxy "config" is a JavaScript program, so this reader is heuristic on purpose: it
looks for the shapes the Socket.IO docs and node-http-proxy's README use (and that sockwizard
renders) and says in ``notes`` what it could not resolve. What it reads:

* ``createProxyServer({...})`` options: ``ws``, ``xfwd``, ``proxyTimeout``, ``timeout``,
  ``target``, ``changeOrigin`` (constants like ``TIMEOUT_MS`` are resolved);
* who accepts upgrades: the proxy's own ``.listen()`` (needs ``ws: true``), or an
  ``http.createServer`` with ``server.on('upgrade', … proxy.ws(…))`` — measured: without the
  listener, or ``.listen()`` without ``ws: true``, every client stays on long-polling;
* ``proxy.on('error', …)`` (without it a reset backend crashes the proxy);
* routing by path (``req.url.startsWith(...)``), the server path it rewrites to, the backend
  URLs and whether several are chosen by a hash of the client address (sticky) or not.

Timeouts (node-http-proxy's source): ``proxyTimeout`` aborts the outgoing request and ``timeout``
the incoming socket of *HTTP* requests — long-polls — while WebSocket tunnels are set to never
time out (``socket.setTimeout(0)``).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import replace
from typing import TYPE_CHECKING

from wizard.diagnose.facts import Blocker, Listen, RouteFacts, RouteQuery, TimeoutFact, Where
from wizard.diagnose.readers.base import (
    ConfigReadError,
    ReadBudget,
    cat_files,
    join_upstream_path,
    sudo_run,
)
from wizard.diagnose.readers.node_more import more_facts
from wizard.diagnose.readers.node_syntax import arith, balanced, blank_comments
from wizard.model import ProxyKind
from wizard.remote import path_problem

if TYPE_CHECKING:
    from wizard.remote import Remote


def read(remote: Remote, query: RouteQuery, config_path: str | None,
         budget: ReadBudget | None = None) -> RouteFacts:
    budget = budget if budget is not None else ReadBudget()
    if not config_path:
        config_path = _discover(remote, query.port, budget)
    # Through the capped reader, not SFTP: a regular file only (a FIFO would block the read),
    # at most budget.max_file_bytes of it.
    texts = cat_files(remote, [config_path], budget)
    if config_path not in texts:
        if budget.refused or budget.notes:
            raise ConfigReadError(f"{config_path} on {remote.name} was not read",
                                  "Give the proxy script with --config.",
                                  detail="; ".join(budget.notes))
        raise ConfigReadError(f"{config_path} does not exist on {remote.name}",
                              "Give the proxy script with --config.")
    return facts_from_script(texts[config_path], query, file=config_path,
                             source=f"{config_path} on {remote.name}")


def _discover(remote: Remote, port: int, budget: ReadBudget) -> str:
    """The script of the node process listening on ``port`` (via ss and /proc)."""
    script = (
        f"pid=$(ss -ltnpH 'sport = :{int(port)}' 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 "
        "| cut -d= -f2); [ -n \"$pid\" ] || exit 3; "
        "cd /proc/$pid/cwd 2>/dev/null && pwd; tr '\\0' '\\n' < /proc/$pid/cmdline")
    result = sudo_run(remote, script, budget=budget)
    lines = [x for x in result.stdout.splitlines() if x]
    scripts = [x for x in lines[2:] if x.endswith((".js", ".cjs", ".mjs"))]
    if result.ok and len(lines) >= 2 and scripts:
        path = scripts[-1]
        path = path if path.startswith("/") else f"{lines[0].rstrip('/')}/{path}"
        problem = path_problem(path)  # from the host's /proc: checked like config values
        if problem is None:
            return path
        raise ConfigReadError(f"The node process on port {port} runs {problem}",
                              "Give the script with --config PATH.")
    raise ConfigReadError(
        f"Cannot find the http-proxy script listening on port {port} on {remote.name}",
        "Give the script with --config PATH (the file you run with `node`).")


# --------------------------------------------------------------------------- helpers


_MAX_EXPR = 200  # longer expressions are not what this reader resolves
_MAX_CONST_DEPTH = 8  # `const A = B; const B = A` must not recurse forever


class _Script:
    def __init__(self, text: str, file: str) -> None:
        self.raw = text
        self.code = blank_comments(text)
        self.file = file
        self.notes: list[str] = []
        # Line starts, once: where() is called per match (a per-call count was quadratic).
        self._starts = [0, *(m.end() for m in re.finditer("\n", self.code))]
        self._lines = text.splitlines()
        self._depth = 0

    def where(self, offset: int) -> Where:
        line = bisect.bisect_right(self._starts, offset)
        text = self._lines[line - 1].strip()[:200] if line <= len(self._lines) else ""
        return Where(self.file, line, text)

    def const(self, name: str) -> tuple[str, int] | None:
        m = re.search(rf"\b(?:const|let|var)\s+{re.escape(name)}\s*=\s*([^;\n]{{1,{_MAX_EXPR}}})",
                      self.code)
        return (m.group(1).strip(), m.start()) if m else None

    def number(self, expr: str) -> tuple[float | None, int | None]:
        """A numeric expression, a constant's value, or ``process.env.X || N``."""
        if len(expr) > _MAX_EXPR or self._depth >= _MAX_CONST_DEPTH:
            return None, None
        self._depth += 1
        try:
            return self._number(expr)
        finally:
            self._depth -= 1

    def _number(self, expr: str) -> tuple[float | None, int | None]:
        expr = expr.strip().rstrip(",")
        if "||" in expr:
            expr = expr.split("||")[-1].strip()
        value = arith(expr)
        if value is not None:
            return value, None
        if re.fullmatch(r"[A-Za-z_$][\w$]*", expr):
            found = self.const(expr)
            if found is not None:
                inner, offset = found
                value, _ = self.number(inner)
                return value, offset
        m = re.fullmatch(r"Number\((.+)\)|parseInt\((.+?)(?:,\s*10)?\)", expr)
        if m:
            return self.number(m.group(1) or m.group(2))
        return None, None

    def string(self, expr: str) -> str | None:
        if len(expr) > _MAX_EXPR or self._depth >= _MAX_CONST_DEPTH:
            return None
        self._depth += 1
        try:
            return self._string(expr)
        finally:
            self._depth -= 1

    def _string(self, expr: str) -> str | None:
        expr = expr.strip().rstrip(",")
        m = re.fullmatch(r"(['\"`])([^'\"`]*)\1", expr)
        if m:
            return m.group(2)
        if re.fullmatch(r"[A-Za-z_$][\w$]*", expr):
            found = self.const(expr)
            if found is not None:
                return self.string(found[0])
        return None


# --------------------------------------------------------------------------- semantics


def facts_from_script(text: str, query: RouteQuery, *, file: str = "proxy.js",
                      source: str | None = None) -> RouteFacts:
    s = _Script(text, file)
    code = s.code
    if "http-proxy" not in code and "createProxy" not in code:  # -middleware included
        raise ConfigReadError(f"{file} does not look like a node http-proxy script",
                              "Give the http-proxy(-middleware) script with --config.")
    facts = RouteFacts(proxy=ProxyKind.NODE, source=source or file, files=(file,))
    # --- createProxyServer options
    m = re.search(r"\b(?:createProxyServer|createProxyMiddleware|createProxy|"
                  r"httpProxy\.createServer)\s*\(", code)
    options, options_at = "", None
    if m:
        brace = code.find("{", m.end())
        paren = code.find(")", m.end())
        if brace >= 0 and (paren < 0 or brace < paren):
            options, options_at = balanced(code, brace), brace
    create_where = s.where(m.start()) if m else None

    def option(name: str) -> re.Match[str] | None:
        return re.search(rf"\b{name}\s*:\s*([^,}}\n]+)", options)

    def flag(name: str) -> bool:
        found = option(name)
        return found is not None and found.group(1).strip().startswith("true")

    ws_opt, xfwd, change_origin = flag("ws"), flag("xfwd"), flag("changeOrigin")
    # --- servers and upgrades
    own = [x for x in re.finditer(r"\b(https?)\s*\.createServer\s*\(", code)]
    server_tls = any(x.group(1) == "https" for x in own) or bool(option("ssl"))
    upgrade = re.search(r"\.on\(\s*['\"]upgrade['\"]", code)
    ws_call = re.search(r"\.ws\s*\(", code)
    listens = _listens(s)
    facts = replace(facts, listens=tuple(listens), server_tls=server_tls,
                    server=s.where(own[0].start()) if own else create_where,
                    error_handler=bool(re.search(r"\.on\(\s*['\"]error['\"]", code)))
    blockers: list[Blocker] = []
    if own:
        server_where = s.where(own[0].start())
        if upgrade is None:
            blockers.append(Blocker(
                "the http server has no 'upgrade' listener, so WebSocket requests are never "
                "handed to proxy.ws() (clients silently stay on long-polling)", (server_where,),
                f"After `{server_where.text}` ({file}:{server_where.line}) add:\n"
                "    server.on('upgrade', (req, socket, head) => proxy.ws(req, socket, head));"))
        elif ws_call is None:
            up = s.where(upgrade.start())
            blockers.append(Blocker(
                "the 'upgrade' listener never calls proxy.ws()", (up,),
                f"In the listener at {file}:{up.line} call:\n"
                "    proxy.ws(req, socket, head);"))
    elif not ws_opt and create_where is not None:
        blockers.append(Blocker(
            "createProxyServer() has no `ws: true`, so its own server does not tunnel "
            "WebSocket upgrades (clients silently stay on long-polling)", (create_where,),
            f"In `{create_where.text}` ({file}:{create_where.line}) add the option:\n"
            "    ws: true,"))
    facts = replace(facts, upgrade_blockers=tuple(blockers))
    # --- route and path
    facts = _route(s, facts, query)
    # --- backends and balancing
    facts = _backends(s, facts, options, options_at, create_where)
    # --- timeouts
    facts = _timeouts(s, facts, options, options_at, option)
    # --- forwarded headers
    host_ok = xfwd or not change_origin
    lines = []
    if not xfwd:
        lines.append("xfwd: true,")
    fix = (f"In the createProxyServer() options ({file}:{create_where.line}) add:\n"
           + "\n".join(f"    {x}" for x in lines)) if lines and create_where else ""
    facts = replace(facts, forwarded_proto=xfwd, forwarded_host=host_ok, forward_fix=fix)
    facts = more_facts(s, facts, query, options, create_where, query.port)
    return replace(facts, notes=tuple(dict.fromkeys(s.notes)))


def _listens(s: _Script) -> list[Listen]:
    tls_vars = set(re.findall(r"\b(?:const|let|var)\s+(\w+)\s*=\s*https\s*\.createServer",
                              s.code))
    out = []
    # `.listen(` found as a literal, the receiver read backwards: `(\w*)\s*\.listen\(` retried
    # its `\w*` from every start position (quadratic: 0.5 MB took minutes).
    for m in re.finditer(r"\.listen\(\s*([^,)]{1,200})", s.code):
        window = s.code[max(0, m.start() - 200):m.start()].rstrip()
        i = len(window)
        while i > 0 and (window[i - 1].isalnum() or window[i - 1] == "_"):
            i -= 1
        value, _ = s.number(m.group(1))
        if value is not None:
            at = max(0, m.start() - 200) + i
            out.append(Listen(int(value), window[i:] in tls_vars, s.where(at)))
    return out


def _route(s: _Script, facts: RouteFacts, query: RouteQuery) -> RouteFacts:
    code = s.code
    prefix = None
    at = None
    for m in re.finditer(r"\.startsWith\(\s*([^)]{1,200})\)", code):
        value = s.string(m.group(1))
        if value and value.startswith("/") and value != "/":
            prefix, at = value, m.start()
            break
    if prefix is None:
        m2 = re.search(r"\.(?:match|test)\(\s*/\^?((?:\\/|[^/\n]){1,200})/", code) or re.search(
            r"/\^((?:\\/|[^/\n]){1,200})/\.test\(", code)
        if m2:
            prefix = m2.group(1).replace("\\/", "/").replace("\\.", ".")
            at = m2.start()
    server_path = None
    for name in ("SERVER_PATH", "SOCKETIO_SERVER_PATH", "TARGET_PATH", "BACKEND_PATH"):
        found = s.const(name)
        if found is not None:
            server_path = s.string(found[0])
            break
    route_where = s.where(at) if at is not None else facts.server
    if prefix is None:
        return replace(facts, route=route_where, route_desc="every request (no path routing)",
                       proxied=True, upstream_path=query.path)
    if not query.path.startswith(prefix) and not prefix.startswith(query.path):
        # The path routing does not cover the Socket.IO path: those requests get whatever
        # the script does with other URLs (often a 404).
        everything = s.const("PROXY_EVERYTHING")
        proxied = bool(everything and everything[0].startswith("true"))
        return replace(facts, route=route_where if proxied else None,
                       route_desc=f"requests starting with {prefix}", proxied=proxied,
                       upstream_path=query.path if proxied else None,
                       elsewhere=route_where)
    upstream = query.path
    if server_path is not None:
        upstream = join_upstream_path(server_path, query.path[len(prefix):])
    return replace(facts, route=route_where, route_desc=f"requests starting with {prefix}",
                   proxied=True, upstream_path=upstream)


def _backends(s: _Script, facts: RouteFacts, options: str, options_at: int | None,
              create_where: Where | None) -> RouteFacts:
    code = s.code
    urls: list[tuple[str, int]] = []
    for m in re.finditer(r"(['\"`])((?:https?|wss?)://[^'\"`\s]{1,2048})\1", code):
        urls.append((m.group(2), m.start()))
    target = re.search(r"\btarget\s*:\s*([^,}\n]+)", options)
    if target is not None:
        value = s.string(target.group(1))
        if value and not any(u == value for u, _ in urls):
            urls.insert(0, (value, (options_at or 0) + target.start()))
    hosts: list[str] = []
    for url, _ in urls:
        parts = re.match(r"(?i)(\w+)://([^/]+)", url)
        if parts and "${" not in url:
            host = parts.group(2)
            if ":" not in host.rsplit("]", 1)[-1]:
                host += ":443" if parts.group(1).lower() in ("https", "wss") else ":80"
            if host not in hosts:
                hosts.append(host)
    where = s.where(urls[0][1]) if urls else create_where
    # The name is tested apart: `\w*(?:BACKEND|...)\w*` inside the pattern was quadratic.
    array = next((a for a in re.finditer(r"\b(?:const|let|var)\s+(\w+)\s*=\s*\[", code)
                  if re.search("BACKEND|TARGET|UPSTREAM|SERVER", a.group(1), flags=re.I)),
                 None)
    if array is not None:
        where = s.where(array.start())
    facts = replace(facts, backends=tuple(hosts), backends_where=where,
                    upstream=where)
    if len(hosts) <= 1:
        return facts
    sticky = re.search(r"remoteAddress|x-forwarded-for|cookie", code, flags=re.I)
    hashing = re.search(r"charCodeAt|createHash|hash|crc32|murmur", code, flags=re.I)
    if sticky and hashing:
        return replace(facts, affinity="a hash of the client address/cookie picks the backend")
    spread = re.search(r"Math\.random|\+\+|\+=\s*1", code)
    why = None
    if spread:
        at = s.where(spread.start())
        why = (f"`{at.text}` ({at.file}:{at.line}) spreads requests over the backends without "
               "looking at the client")
    return replace(facts, affinity=None, affinity_problem=why)


def _timeouts(s: _Script, facts: RouteFacts, options: str, options_at: int | None,
              option: object) -> RouteFacts:
    found: list[tuple[float, str, Where]] = []
    for name in ("proxyTimeout", "timeout"):
        m = re.search(rf"\b{name}\s*:\s*([^,}}\n]+)", options)
        if m is None:
            continue
        value, const_at = s.number(m.group(1))
        if value is None:
            s.notes.append(f"cannot resolve the {name} option `{m.group(0).strip()}`")
            continue
        where = s.where((options_at or 0) + m.start())
        found.append((value / 1000, name, where))
        if const_at is not None:
            found[-1] = (value / 1000, name, s.where(const_at))
    ws = TimeoutFact(None, "ws tunnel", "WebSocket", (),
                     "http-proxy never times out a WebSocket tunnel (socket.setTimeout(0))")
    if not found:
        poll = TimeoutFact(None, "proxyTimeout/timeout", "long-polling requests", (),
                           "no proxyTimeout or timeout option: long-polls never time out")
    else:
        seconds, name, where = min(found, key=lambda x: x[0])
        wheres = tuple(dict.fromkeys(w for _, _, w in found))
        poll = TimeoutFact(seconds, name, "long-polling requests", wheres)
    return replace(facts, ws_idle_timeout=ws, poll_timeout=poll)
