"""HAProxy: the config files plus ``haproxy -c`` -> RouteFacts.

``read`` reads the main config (``--config``, default /etc/haproxy/haproxy.cfg) and the conf
dir beside it (``conf.d/*.cfg``: sockwizard's site layout, loaded with a second ``-f``) through
:func:`cat_files` (regular files only, capped), then runs ``haproxy -v`` and ``haproxy -c`` on
the same files in a second round trip (with a kill timeout; the output capped). A config that
``-c`` refuses is still read, with the checker's complaint as a note.

Semantics, as measured on 2.6.12 (see the report of issue 16):

* the frontend (or ``listen``) whose ``bind`` has the URL's port; several on one port split
  the connections between them (SO_REUSEPORT), which is noted;
* ``http-request return|deny`` and then ``use_backend … if|unless`` in order, else
  ``default_backend`` — evaluated for a polling GET and for the WebSocket upgrade
  (:mod:`haproxy_match`): two different backends with different stickiness is the classic
  ``use_backend ws if is_websocket`` "Session ID unknown" on upgrade;
* idle limits: after the 101 ``timeout tunnel``; without it the smaller of ``timeout client``
  (frontend) and ``timeout server`` (backend) cut the WebSocket (measured: 3 s either side ->
  dropped at 3.0 s); a long-poll GET is held up to pingInterval under ``timeout server``.
  Each falls back to the proxy's ``defaults`` section;
* stickiness: ``cookie NAME insert`` with a ``cookie`` value on every server, ``balance
  source``, ``stick on``; ``cookie NAME prefix|rewrite`` needs the application to set NAME,
  which Socket.IO >= 3 does not (``io`` is off by default): not sticky.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import replace
from typing import TYPE_CHECKING

from wizard.diagnose.facts import Listen, RouteFacts, RouteQuery, TimeoutFact, Where
from wizard.diagnose.readers.base import (
    ConfigReadError,
    ReadBudget,
    capped,
    cat_files,
    new_marker,
    sudo_run,
    uncap,
)
from wizard.diagnose.readers.haproxy_match import Acls, Request
from wizard.diagnose.readers.haproxy_syntax import Line, Section, parse, seconds
from wizard.model import ProxyKind

if TYPE_CHECKING:
    from wizard.remote import Remote

DEFAULT_CONFIG = "/etc/haproxy/haproxy.cfg"
_PATH = "PATH=$PATH:/usr/sbin:/sbin:/usr/local/sbin"
_CHECK_SECONDS = 10
# Balancing algorithms that keep one client on one server by themselves.
STICKY_BALANCE = {"source", "first"}


# --------------------------------------------------------------------------- reading


def read(remote: Remote, query: RouteQuery, config_path: str | None,
         budget: ReadBudget | None = None) -> RouteFacts:
    budget = budget if budget is not None else ReadBudget()
    main = config_path or DEFAULT_CONFIG
    conf_dir = posixpath.join(posixpath.dirname(main), "conf.d")
    texts = cat_files(remote, [main, f"{conf_dir}/*.cfg"], budget)
    if main not in texts:
        raise ConfigReadError(f"Cannot read {main} on {remote.name}",
                              "Check --config and the deploy user's sudo rights.")
    marker, end = new_marker(), new_marker()
    files = f"-f {shlex.quote(main)}" + (f" -f {shlex.quote(conf_dir)}" if len(texts) > 1
                                          else "")
    check = capped(f"$T haproxy -c {files} 2>&1", 64 * 1024, end)
    result = sudo_run(remote, f"{_PATH}; haproxy -v 2>&1 | head -n 1; echo {marker}; T=; "
                              f"command -v timeout >/dev/null && "
                              f"T='timeout -s KILL {_CHECK_SECONDS}'; {check}", budget=budget)
    head, _, rest = result.stdout.partition(marker + "\n")
    if "haproxy: not found" in head or "command not found" in head:
        raise ConfigReadError(f"HAProxy is not installed on {remote.name}",
                              "Check --proxy, or give the host that runs HAProxy.")
    output, status = uncap(rest, end)
    facts = facts_from_files(texts, query, version=_version(head),
                             source=f"haproxy -c {files} on {remote.name}")
    if status != 0:
        alerts = [x for x in output.splitlines() if "ALERT" in x][-2:]
        why = " ".join(alerts)[-500:] or f"exit status {status}"
        facts = replace(facts, notes=(*facts.notes, f"haproxy -c refused the config: {why}"))
    return facts


def _version(text: str) -> str | None:
    m = re.search(r"version (\d+\.\d+(?:\.\d+)?)", text)
    return m.group(1) if m else None


# --------------------------------------------------------------------------- semantics


def facts_from_text(text: str, query: RouteQuery, *, file: str = "haproxy.cfg",
                    version: str | None = None) -> RouteFacts:
    return facts_from_files({file: text}, query, version=version, source=file)


def _binds(section: Section) -> list[Listen]:
    out = []
    for line in section.all("bind"):
        tls = "ssl" in line.words[2:]
        for addr in line.words[1].split(",") if len(line.words) > 1 else ():
            m = re.search(r"^(.*):(\d{1,5})$", addr)
            if m:
                out.append(Listen(int(m.group(2)), tls, line.where, m.group(1)))
    return out


def _setting(section: Section, *keyword: str) -> Line | None:
    """A directive of the section, else of its defaults section."""
    found = section.last(*keyword)
    if found is None and section.defaults is not None:
        found = section.defaults.last(*keyword)
    return found


def _timeout(section: Section | None, name: str) -> tuple[float | None, Where | None]:
    if section is None:
        return None, None
    line = _setting(section, "timeout", name)
    if line is None or len(line.words) < 3:
        return None, None
    return seconds(line.words[2]), line.where


def facts_from_files(files: dict[str, str], query: RouteQuery, *, version: str | None = None,
                     source: str = "haproxy") -> RouteFacts:
    sections = parse(files)
    proxies = [s for s in sections if s.kind in ("frontend", "listen")]
    listens = tuple(x for s in proxies for x in _binds(s))
    base = RouteFacts(proxy=ProxyKind.HAPROXY, source=source, files=tuple(files),
                      version=version, listens=listens)
    notes: list[str] = []
    on_port = [s for s in proxies if any(x.port == query.port for x in _binds(s))]
    if not on_port:
        notes.append(f"no frontend binds port {query.port}")
        return replace(base, notes=tuple(notes))
    front = on_port[0]
    if len(on_port) > 1:
        names = ", ".join(f"{s.name} ({s.where.file}:{s.where.line})" for s in on_port)
        notes.append(f"several frontends bind port {query.port} ({names}): HAProxy spreads "
                     "the connections between them; judged the first")
    server_tls = any(x.port == query.port and x.tls for x in _binds(front))
    facts = replace(base, server=front.where, server_tls=server_tls or query.tls)
    backends = {s.name: s for s in sections if s.kind in ("backend", "listen")}
    acls = Acls(front)
    poll = _route(front, backends, acls, Request(query.path, query.host, False))
    ws = _route(front, backends, acls, Request(query.path, query.host, True))
    if acls.unknown:
        notes.append("conditions not understood (taken as not matching): "
                     + ", ".join(sorted(acls.unknown))[:300])
    where, back = poll
    if back is None:
        desc = "no use_backend/default_backend" if where is None else where.text
        return replace(facts, route=where, route_desc=desc, proxied=False,
                       notes=tuple(notes))
    facts = _backend_facts(replace(facts, route=where, route_desc=where.text if where else
                                   "the frontend", proxied=True), front, back, query)
    ws_where, ws_back = ws
    if ws_back is not None and ws_back is not back:
        a, b = _affinity(back)[0], _affinity(ws_back)[0]
        many = len(facts.backends) > 1 or len(_servers(ws_back)) > 1
        if many and (_pinning(back) != _pinning(ws_back) or a is None):
            problem = (f"polling requests go to backend {back.name} and the WebSocket upgrade "
                       f"to backend {ws_back.name} ({ws_where}): their servers and stickiness "
                       f"({a or 'none'} / {b or 'none'}) differ, so the upgrade reaches a "
                       "server that never saw the session (\"Session ID unknown\")")
            facts = replace(facts, affinity_problem=problem,
                            backends=tuple(dict.fromkeys((*facts.backends,
                                                          *_servers(ws_back)))))
    elif ws_back is None:
        notes.append("the WebSocket upgrade of the path is not routed to any backend")
    return replace(facts, notes=tuple((*facts.notes, *notes)))


def _route(front: Section, backends: dict[str, Section], acls: Acls,
           req: Request) -> tuple[Where | None, Section | None]:
    if front.kind == "listen":
        return front.where, front
    for line in front.all("http-request"):
        action = line.words[1].lower() if len(line.words) > 1 else ""
        if action in ("return", "deny", "redirect", "tarpit", "reject"):
            cond = _cond(line.words)
            if not cond or acls.condition(cond, req) is True:
                return line.where, None
    for line in front.all("use_backend"):
        if len(line.words) >= 2 and acls.condition(_cond(line.words), req) is True:
            return line.where, backends.get(line.words[1])
    default = _setting(front, "default_backend")
    if default is not None and len(default.words) >= 2:
        return default.where, backends.get(default.words[1])
    return None, None


def _cond(words: tuple[str, ...]) -> list[str]:
    for i, w in enumerate(words):
        if w in ("if", "unless"):
            return list(words[i:])
    return []


def _servers(back: Section) -> list[str]:
    return [x.words[2] for x in back.all("server") if len(x.words) >= 3]


def _pinning(back: Section) -> tuple[object, ...]:
    """What decides a client's server: the stickiness and each server's address and cookie
    (two backends with the same pin the upgrade to the polling requests' server)."""
    cookies = tuple((x.words[2], x.words[x.words.index("cookie") + 1]
                     if "cookie" in x.words[3:-1] else None)
                    for x in back.all("server") if len(x.words) >= 3)
    return _affinity(back)[0], cookies


def _affinity(back: Section) -> tuple[str | None, str | None]:
    """(the stickiness there, why it does not stick) for one backend."""
    servers = back.all("server")
    cookie = _setting(back, "cookie")
    if cookie is not None and len(cookie.words) >= 2:
        name, modes = cookie.words[1], [w.lower() for w in cookie.words[2:]]
        text = " ".join(cookie.words)
        at = f"`{text}` ({cookie.where.file}:{cookie.where.line})"
        if "insert" not in modes:
            mode = "prefix" if "prefix" in modes else "rewrite"
            why = (f"{at} only {mode}es a cookie the application sets; Socket.IO >= 3 sets "
                   f"no `{name}` cookie (its `cookie` option is off by default), so there is "
                   "nothing to pin the client with") if name == "io" else (
                f"{at} needs the application to set the `{name}` cookie; a Socket.IO server "
                "sets none")
            return text, why
        bare = [s.words[1] for s in servers if "cookie" not in s.words[3:] and len(s.words) > 1]
        if bare:
            return text, (f"{at}: the server(s) {', '.join(bare)[:200]} have no `cookie` value, "
                          "so clients on them are not pinned")
        return text, None
    stick = _setting(back, "stick")
    if stick is not None:
        return " ".join(stick.words), None
    balance = _setting(back, "balance")
    algo = balance.words[1].lower() if balance is not None and len(balance.words) > 1 else None
    if algo in STICKY_BALANCE:
        return f"balance {algo}", None
    if algo in ("uri", "url_param"):
        return f"balance {algo}", (
            f"`balance {algo}`: the handshake has no sid yet, so it hashes differently from "
            "the requests that follow")
    return None, None


def _backend_facts(facts: RouteFacts, front: Section, back: Section,
                   query: RouteQuery) -> RouteFacts:
    servers = tuple(_servers(back))
    affinity, problem = _affinity(back)
    first = back.last("server") if len(servers) == 1 else None
    upstream_path = query.path
    rewrite = back.last("http-request", "replace-path") or back.last("http-request", "set-path")
    if rewrite is not None:
        upstream_path = _rewritten(rewrite, query.path)
    facts = replace(facts, upstream=first.where if first else back.where,
                    upstream_path=upstream_path, backends=servers,
                    backends_where=back.where, affinity=affinity, affinity_problem=problem)
    tunnel, tunnel_at = _timeout(back, "tunnel")
    client, client_at = _timeout(front, "client")
    server, server_at = _timeout(back, "server")
    if tunnel is not None:
        ws = TimeoutFact(tunnel, "timeout tunnel", "WebSocket connections",
                         (tunnel_at,) if tunnel_at else ())
    else:
        pairs = [(s, w, n) for s, w, n in ((client, client_at, "timeout client"),
                                           (server, server_at, "timeout server")) if s]
        if pairs:
            s, w, n = min(pairs, key=lambda p: p[0])
            ws = TimeoutFact(s, n, "WebSocket connections", (w,) if w else (),
                             "no `timeout tunnel`: after the upgrade the smaller of timeout "
                             "client and timeout server cuts the WebSocket")
        else:
            ws = TimeoutFact(None, "timeout tunnel", "WebSocket connections", (),
                             "HAProxy's default: no timeout at all (it warns)")
    poll = TimeoutFact(server, "timeout server", "long-polling requests",
                       (server_at,) if server_at else ()) if server is not None else None
    hints = {"backend": back.name, "frontend": front.name}
    proto = any(len(x.words) > 2 and x.words[1].lower() in ("set-header", "add-header")
                and x.words[2].lower() == "x-forwarded-proto"
                for s in (front, back) for x in s.all("http-request"))
    # HAProxy passes the client's Host header through unchanged.
    return replace(facts, ws_idle_timeout=ws, poll_timeout=poll, hints=hints,
                   forwarded_proto=proto, forwarded_host=True)


def _rewritten(line: Line, path: str) -> str:
    words = line.words
    if words[1].lower() == "set-path" and len(words) > 2:
        return words[2] if "%" not in words[2] else path
    if len(words) < 4:
        return path
    try:
        return re.sub(words[2], words[3], path, count=1)
    except (re.error, IndexError):
        return path


__all__ = ["DEFAULT_CONFIG", "STICKY_BALANCE", "facts_from_files", "facts_from_text", "read"]
