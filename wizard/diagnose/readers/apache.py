"""Apache httpd: config files + ``-M`` + ``-v`` -> RouteFacts for the Socket.IO path.

``read`` asks the host's own control script (``apache2ctl``/``apachectl``, which loads Debian's
envvars) three things in one round trip: ``-v`` (the version decides ``upgrade=websocket`` and the
tunnel timeout), ``-M`` (loaded modules decide ``<IfModule>`` and whether ws:// works) and
``-t -D DUMP_INCLUDES`` (every file Apache reads, in order). A second round trip reads those
files. Parsing is ours (Apache has no parser library worth the name): sections, quoting, line
continuations; ``Include`` is stitched from the dumped file list, ``<IfModule>``/``<IfVersion>``
are evaluated, ``<If>`` is skipped with a note.

What is evaluated, for a long-polling request and for a WebSocket request separately (they
can take different routes — the rewrite recipe sends only upgrades to ws://):

* the virtual host for the URL's port and host name (else the main server);
* mod_rewrite rules of that vhost first (conditions on ``%{HTTP:Upgrade}``/``Connection`` are
  evaluated for each request kind), then ``<Location>`` ProxyPass, then ``ProxyPass`` rules in
  order — the first match wins (measured: ``ProxyPass /`` above the Socket.IO rule shadows it);
* whether the WebSocket request is tunnelled: ``upgrade=websocket`` (>= 2.4.47) or a ws://
  target (``proxy_wstunnel``, or ``proxy_http`` itself from 2.4.47 on — measured on 2.4.71);
* timeouts: ``Timeout`` (default 60), ``ProxyTimeout`` (default ``Timeout``), a worker's
  ``timeout=``; the tunnel idles out after max(Timeout, worker timeout) from 2.4.53 on
  (measured: ``ProxyTimeout 5`` alone does not drop an idle socket);
* balancers: members, ``stickysession``, ``route=`` and the ``Header … Set-Cookie`` that sets
  the route cookie.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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

DEFAULT_TIMEOUT = 60.0
DEFAULT_SERVER_ROOTS = ("/etc/apache2", "/etc/httpd", "/usr/local/apache2")
UPGRADE_PARAM_FROM = (2, 4, 47)
TUNNEL_MAX_TIMEOUT_FROM = (2, 4, 53)
MAX_INCLUDE_DEPTH = 16
# The expanded tree's size cap: the same files Included over and over (a loop, or a diamond
# chain) would otherwise expand exponentially.
MAX_EXPANDED_NODES = 200_000
_CTL = ("CTL=$(command -v apache2ctl || command -v apachectl || command -v httpd || "
        "command -v apache2)")
_PATH = "PATH=$PATH:/usr/sbin:/sbin:/usr/local/sbin:/usr/local/apache2/bin"


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class ANode:
    """A directive or a section (``block`` not None) with its place in the files."""

    name: str
    args: tuple[str, ...]
    file: str
    line: int
    block: tuple[ANode, ...] | None = None
    raw: str = ""

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def where(self) -> Where:
        return Where(self.file, self.line, self.raw)

    def children(self, *names: str) -> list[ANode]:
        wanted = {n.lower() for n in names}
        return [n for n in self.block or () if n.key in wanted]

    def last(self, name: str) -> ANode | None:
        found = self.children(name)
        return found[-1] if found else None


def tokenize(text: str) -> list[str]:
    """Apache's ap_getword_conf: words, "double" or 'single' quoted, backslash escapes."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        quote = text[i] if text[i] in "\"'" else None
        if quote:
            i += 1
            buf = []
            while i < n and text[i] != quote:
                if text[i] == "\\" and i + 1 < n and text[i + 1] in (quote, "\\"):
                    i += 1
                buf.append(text[i])
                i += 1
            i += 1
            words.append("".join(buf))
        else:
            start = i
            while i < n and not text[i].isspace():
                i += 1
            words.append(text[start:i])
    return words


def parse_text(text: str, file: str) -> tuple[ANode, ...]:
    """One file -> nodes; raises ConfigReadError on unbalanced sections."""
    root: list[ANode] = []
    stack: list[tuple[str, tuple[str, ...], int, str, list[ANode]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start = i
        parts = [lines[i].rstrip()]
        # Continuation lines joined once at the end (repeated + was quadratic).
        while parts[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            parts[-1] = parts[-1][:-1]
            parts.append(lines[i].strip())
        line = " ".join(parts)
        i += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        target = stack[-1][4] if stack else root
        if stripped.startswith("</"):
            name = stripped[2:].rstrip(">").strip()
            if not stack or stack[-1][0].lower() != name.lower():
                raise ConfigReadError(f"Unbalanced </{name}> in {file}:{start + 1}",
                                      "Run `apachectl configtest` on the host.")
            tag, args, at, raw, children = stack.pop()
            node = ANode(tag, args, file, at, tuple(children), raw)
            (stack[-1][4] if stack else root).append(node)
            continue
        if stripped.startswith("<") and stripped.endswith(">"):
            words = tokenize(stripped[1:-1])
            if words:
                stack.append((words[0], tuple(words[1:]), start + 1, stripped, []))
            continue
        words = tokenize(stripped)
        target.append(ANode(words[0], tuple(words[1:]), file, start + 1, None, stripped))
    if stack:
        tag, _args, at, _raw, _children = stack[-1]
        raise ConfigReadError(f"<{tag}> at {file}:{at} is never closed",
                              "Run `apachectl configtest` on the host.")
    return tuple(root)


@dataclass
class _Env:
    files: dict[str, tuple[ANode, ...]]
    roots: list[str]
    modules: frozenset[str] | None
    version: tuple[int, ...] | None
    notes: list[str] = field(default_factory=list)
    count: int = 0  # directives expanded so far (the MAX_EXPANDED_NODES cap)


def module_name(arg: str) -> str:
    """``mod_proxy.c`` / ``proxy_module`` / ``mod_proxy`` -> ``proxy_module``."""
    name = arg.strip()
    if name.endswith(".c"):
        name = name[:-2]
    if name.startswith("mod_"):
        name = name[4:]
    return name if name.endswith("_module") else name + "_module"


def expand(nodes: Sequence[ANode], env: _Env, depth: int = 0,
           stack: tuple[str, ...] = ()) -> tuple[ANode, ...]:
    """Stitch Includes and evaluate conditional sections. A file is not Included into itself
    again (a loop), and the tree is capped at MAX_EXPANDED_NODES directives."""
    out: list[ANode] = []
    for node in nodes:
        env.count += 1
        if env.count > MAX_EXPANDED_NODES:
            raise ConfigReadError(
                f"The Apache config expands to more than {MAX_EXPANDED_NODES} directives "
                "through its Includes",
                "Check the Include directives for loops or files included many times.")
        key = node.key
        if key == "serverroot" and node.args and node.args[0] not in env.roots:
            env.roots.insert(0, node.args[0])
        if key in ("include", "includeoptional") and node.args:
            if depth >= MAX_INCLUDE_DEPTH:
                continue
            for path in _include(node.args[0], env):
                if path not in stack and path != node.file:
                    out.extend(expand(env.files[path], env, depth + 1, (*stack, node.file)))
            continue
        if node.block is None:
            out.append(node)
            continue
        if key == "ifmodule":
            arg = node.args[0] if node.args else ""
            negate = arg.startswith("!")
            if env.modules is None:
                keep = not negate
            else:
                keep = (module_name(arg.lstrip("!")) in env.modules) != negate
            if keep:
                out.extend(expand(node.block, env, depth, stack))
            continue
        if key == "ifdefine":
            arg = node.args[0] if node.args else ""
            if arg.startswith("!"):
                out.extend(expand(node.block, env, depth, stack))
            continue
        if key == "ifversion":
            if _if_version(node.args, env.version):
                out.extend(expand(node.block, env, depth, stack))
            continue
        if key in ("iffile", "ifdirective", "ifsection"):
            out.extend(expand(node.block, env, depth, stack))
            continue
        if key in ("if", "elseif", "else"):
            env.notes.append(f"<{node.name}> at {node.file}:{node.line} was not evaluated")
            continue
        out.append(replace(node, block=expand(node.block, env, depth, stack)))
    return tuple(out)


def _if_version(args: Sequence[str], version: tuple[int, ...] | None) -> bool:
    if version is None or not args:
        return True
    op, want = ("=", args[0]) if len(args) == 1 else (args[0], args[1])
    if want.startswith("/") or op in ("~", "=~"):
        return True
    target = tuple(int(p) for p in want.split(".") if p.isdigit())
    have = version[: len(target)]
    return {"=": have == target, "==": have == target, ">": have > target,
            ">=": have >= target, "<": have < target, "<=": have <= target}.get(op, True)


def _include(pattern: str, env: _Env) -> list[str]:
    candidates = [pattern] if pattern.startswith("/") else [
        posixpath.join(root, pattern) for root in env.roots]
    for full in candidates:
        full = posixpath.normpath(full)
        if full in env.files:
            return [full]
        if re.search(r"[*?\[]", full):
            wanted = full.split("/")
            found = sorted(p for p in env.files if len(p.split("/")) == len(wanted) and all(
                fnmatch.fnmatchcase(a, b) for a, b in zip(p.split("/"), wanted, strict=True)))
        else:
            found = sorted(p for p in env.files if p.startswith(full.rstrip("/") + "/"))
        if found:
            return found
    return []


# --------------------------------------------------------------------------- reading


def read(remote: Remote, query: RouteQuery, config_path: str | None,
         budget: ReadBudget | None = None) -> RouteFacts:
    budget = budget if budget is not None else ReadBudget()
    marker, end = new_marker(), new_marker()
    conf = f" -f {shlex.quote(config_path)}" if config_path else ""
    # The three outputs are cut at 1 MiB: they list modules and file names, nothing more.
    # `timeout` stops an httpd that blocks opening a FIFO named by an Include.
    listing = capped(f"$T \"$CTL\"{conf} -v 2>&1; echo {marker}; $T \"$CTL\"{conf} -M 2>&1; "
                     f"echo {marker}; $T \"$CTL\"{conf} -t -D DUMP_INCLUDES 2>&1", 1 << 20, end)
    cmd = (f"{_PATH}; {_CTL}; [ -n \"$CTL\" ] || {{ echo 'apache: not found'; exit 127; }}; "
           "T=; command -v timeout >/dev/null && T='timeout -s KILL 10'; " + listing)
    result = sudo_run(remote, cmd, budget=budget)
    result = replace(result, stdout=uncap(result.stdout, end)[0])
    if result.exit_status == 127 and "apache: not found" in result.stdout:
        raise ConfigReadError(f"Apache httpd is not installed on {remote.name}",
                              "Check --proxy, or give the host that runs Apache.")
    parts = result.stdout.split(marker + "\n")
    if len(parts) < 3:
        raise ConfigReadError(f"Unexpected output from apachectl on {remote.name}",
                              "Run `apachectl -t -D DUMP_INCLUDES` on the host.",
                              detail=result.output[-2000:])
    version = parse_version(parts[0])
    modules = parse_modules(parts[1])
    listed = parse_dump_includes(parts[2])
    if not listed:
        main = config_path or "/etc/apache2/apache2.conf"
        listed = [main]
        note = "apachectl -t refused the config: " + " ".join(parts[2].strip().splitlines()[-2:])
    else:
        note = ""
    texts = cat_files(remote, listed, budget)
    if listed[0] not in texts:
        raise ConfigReadError(f"Cannot read {listed[0]} on {remote.name}",
                              "Check --config and the deploy user's sudo rights.",
                              detail=parts[2][-2000:])
    files = [(p, texts[p]) for p in listed if p in texts]
    source = f"apachectl{conf} -t -D DUMP_INCLUDES, -M, -v on {remote.name}"
    facts = facts_from_files(files, query, version=version, modules=modules, source=source,
                             config_path=config_path)
    return replace(facts, notes=(*facts.notes, note)) if note else facts


def parse_version(text: str) -> str | None:
    m = re.search(r"Apache/(\d+\.\d+\.\d+)", text)
    return m.group(1) if m else None


def parse_modules(text: str) -> frozenset[str] | None:
    found = re.findall(r"^[ \t]*(\w+_module)[ \t]+\((?:static|shared)\)", text, flags=re.M)
    return frozenset(found) if found else None


def parse_dump_includes(text: str) -> list[str]:
    # Linear: no `\s*` spanning lines, no lazy group before trailing blanks.
    return [m.rstrip() for m in
            re.findall(r"^[ \t]*\((?:\*|\d+)\)[ \t]+(\S[^\n]*)", text, flags=re.M)]


# --------------------------------------------------------------------------- semantics


def facts_from_text(text: str, query: RouteQuery, *, file: str = "httpd.conf",
                    version: str | None = None,
                    modules: Sequence[str] | None = None) -> RouteFacts:
    """One self-contained file (a full httpd.conf, or a site file with VirtualHost blocks)."""
    return facts_from_files([(file, text)], query, version=version,
                            modules=frozenset(modules) if modules is not None else None,
                            source=file)


def facts_from_files(files: Sequence[tuple[str, str]], query: RouteQuery, *,
                     version: str | None = None, modules: frozenset[str] | None = None,
                     source: str = "apache", config_path: str | None = None) -> RouteFacts:
    if not files:
        raise ConfigReadError("The Apache config is empty", "Check --config.")
    parsed = {path: parse_text(text, path) for path, text in files}
    main = files[0][0]
    roots = [*DEFAULT_SERVER_ROOTS]
    if config_path:
        roots.append(posixpath.dirname(config_path))
    roots.append(posixpath.dirname(main))
    vt = tuple(int(p) for p in version.split(".")) if version else None
    env = _Env(parsed, roots, modules, vt)
    tree = expand(parsed[main], env)
    root = ANode("(main server)", (), main, 0, tree, "")
    return _Analysis(root, query, version, vt, modules, source, tuple(parsed), env.notes).facts()


@dataclass(frozen=True)
class _Handler:
    """How one request kind is handled: proxied to ``target`` by ``node`` (or not)."""

    kind: str  # "proxy" | "none" | "deny" | "redirect"
    node: ANode | None = None
    target: str = ""
    prefix: str = ""  # the ProxyPass path (or the rewritten path)
    params: dict[str, str] = field(default_factory=dict)
    path_after: str = ""  # the request path as the backend sees it
    via: str = ""  # "ProxyPass", "RewriteRule [P]", "<Location> ProxyPass"
    shadowed: ANode | None = None  # a later rule for the same path that never runs


class _Analysis:
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
    def handle(self, vhost: ANode | None, websocket: bool) -> _Handler:
        path = self.query.path
        scope = vhost if vhost is not None else self.root
        engine = scope.last("RewriteEngine")
        if engine is not None and engine.args[:1] and engine.args[0].lower() == "on":
            outcome = self.rewrite(scope, path, websocket)
            if outcome is not None and isinstance(outcome, _Handler):
                return outcome
            if isinstance(outcome, str):
                path = outcome
        for loc in self.locations(vhost, path):
            pp = loc.last("ProxyPass")
            if pp is not None and pp.args:
                if pp.args[0] == "!":
                    return _Handler("none", pp)
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
                try:
                    m = re.search(rule.args[0], path)
                except re.error:
                    continue
                if not m:
                    continue
                if rule.args[1] == "!":
                    return _Handler("none", rule)
                target = expand_groups(rule.args[1], m)
                return self.proxy_handler(rule, target, rule.args[2:], "", path,
                                          "ProxyPassMatch", exact_target=True)
            prefix = rule.args[0]
            if not _prefix_match(path, prefix):
                continue
            if rule.args[1] == "!":
                return _Handler("none", rule)
            handler = self.proxy_handler(rule, rule.args[1], rule.args[2:], prefix, path,
                                         "ProxyPass")
            later = next((r for r in rules[i + 1:] if r.key == "proxypass" and len(r.args) > 1
                          and _prefix_match(path, r.args[0]) and len(r.args[0]) > len(prefix)),
                         None)
            return replace(handler, shadowed=later)
        return _Handler("none")

    def locations(self, vhost: ANode | None, path: str) -> list[ANode]:
        found = [loc for loc in self.root.children("Location")
                 if loc.args and _prefix_match(path, loc.args[0])]
        if vhost is not None:
            found += [loc for loc in vhost.children("Location")
                      if loc.args and _prefix_match(path, loc.args[0])]
        # Later (and more specific) sections merge over earlier ones.
        return list(reversed(found))

    def proxy_handler(self, node: ANode, target: str, extra: Sequence[str], prefix: str,
                      path: str, via: str, exact_target: bool = False) -> _Handler:
        params = dict(p.split("=", 1) for p in extra if "=" in p)
        if exact_target:
            after = re.sub(r"^[a-z]+://[^/]*", "", target) or "/"
        else:
            rest = path[len(prefix):] if path.startswith(prefix) else path[len(prefix) - 1:]
            base = re.sub(r"^[a-z]+://[^/]*", "", target, flags=re.I)
            after = join_upstream_path(base, rest) if base else "/" + rest.lstrip("/")
        return _Handler("proxy", node, target, prefix, params, after, via)

    def rewrite(self, scope: ANode, path: str, websocket: bool) -> _Handler | str | None:
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
            flags = _flags(node.args[2:])
            negate = pattern.startswith("!")
            try:
                m = re.search(pattern.lstrip("!"), current, re.I if "nc" in flags else 0)
            except re.error:
                continue
            if bool(m) == negate or not self.conds_hold(rule_conds, current, websocket):
                continue
            target = subst
            if m is not None:
                target = expand_groups(subst, m)
            if "p" in flags:
                after = re.sub(r"^[a-z]+://[^/]*", "", target, flags=re.I).split("?")[0] or "/"
                return _Handler("proxy", node, target, "", {}, after, "RewriteRule [P]")
            if "f" in flags or "g" in flags:
                return _Handler("deny", node)
            if any(f.startswith("r") and f != "nc" for f in flags) or re.match(
                    r"https?://", target):
                return _Handler("redirect", node)
            if target != "-":
                current, changed = target.split("?")[0], True
            if "l" in flags or "end" in flags:
                break
        return current if changed else None

    def conds_hold(self, conds: Sequence[ANode], path: str, websocket: bool) -> bool:
        result = True
        pending_or = False
        for cond in conds:
            if len(cond.args) < 2:
                continue
            value = self.cond_value(cond.args[0], path, websocket)
            flags = _flags(cond.args[2:])
            if value is None:
                ok = True
                self.notes.append(f"RewriteCond {cond.args[0]} ({cond.file}:{cond.line}) "
                                  "was assumed true")
            else:
                pattern = cond.args[1]
                negate = pattern.startswith("!")
                pattern = pattern.lstrip("!")
                if pattern.startswith("="):
                    ok = value == pattern[1:]
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

    def cond_value(self, var: str, path: str, websocket: bool) -> str | None:
        query = f"EIO=4&transport={'websocket' if websocket else 'polling'}"
        values = {
            "%{HTTP:Upgrade}": "websocket" if websocket else "",
            "%{HTTP:Connection}": "Upgrade" if websocket else "keep-alive",
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
    def facts(self) -> RouteFacts:
        q = self.query
        listens = tuple(self.listens())
        vhost = self.pick_vhost()
        scope = vhost if vhost is not None else self.root
        server_tls = _on(self.get(vhost, "SSLEngine")) if vhost is not None else q.tls
        base = RouteFacts(proxy=ProxyKind.APACHE, source=self.source, files=self.files,
                          version=self.version, listens=listens,
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

    def members(self, vhost: ANode | None, handler: _Handler) -> tuple[list[ANode], ANode | None]:
        target = handler.target
        m = re.match(r"(?i)balancer://([^/]+)", target)
        if not m:
            return [], None
        sect = self.balancer(vhost, f"balancer://{m.group(1)}")
        if sect is None:
            return [], None
        return sect.children("BalancerMember"), sect

    def backend_facts(self, facts: RouteFacts, vhost: ANode | None, poll: _Handler,
                      ws: _Handler | None) -> RouteFacts:
        members, sect = self.members(vhost, poll)
        if sect is None:
            host = _hostport(poll.target)
            return replace(facts, backends=(host,) if host else (),
                           backends_where=poll.node.where if poll.node else None)
        backends = tuple(h for h in (_hostport(mb.args[0]) for mb in members if mb.args) if h)
        affinity, problem = self.stickiness(vhost, poll, members, sect)
        if problem is None and ws is not None and ws.target != poll.target:
            ws_members, ws_sect = self.members(vhost, ws)
            if ws_sect is not None and len(ws_members) > 1:
                _aff, ws_problem = self.stickiness(vhost, ws, ws_members, ws_sect)
                problem = ws_problem
        hints = {**facts.hints, "balancer": sect.args[0] if sect.args else ""}
        return replace(facts, backends=backends, backends_where=sect.where, affinity=affinity,
                       affinity_problem=problem, hints=hints)

    def stickiness(self, vhost: ANode | None, handler: _Handler, members: list[ANode],
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

    def timeout_facts(self, facts: RouteFacts, vhost: ANode | None, ws: _Handler,
                      poll: _Handler) -> RouteFacts:
        timeout = self.get(vhost, "Timeout")
        proxy_timeout = self.get(vhost, "ProxyTimeout")
        front = _num(timeout) if timeout else DEFAULT_TIMEOUT
        front = DEFAULT_TIMEOUT if front is None else front
        wheres_front = (timeout.where,) if timeout else ()

        def worker(handler: _Handler) -> tuple[float, tuple[Where, ...], str]:
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
                seconds = _float(params["timeout"])
                if seconds is not None:
                    return seconds, tuple(n.where for n in param_nodes), "timeout="
            if proxy_timeout is not None:
                seconds = _num(proxy_timeout)
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

    def upgrade_blockers(self, vhost: ANode | None, ws: _Handler,
                         poll: _Handler) -> list[Blocker]:
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

    def rewrite_recipe(self, poll: _Handler) -> str:
        backend = _hostport(poll.target) or "127.0.0.1:3000"
        path = self.query.path
        server_path = poll.path_after if poll.kind == "proxy" else path
        pattern = re.sub(r"([.+*?()\[\]^$|])", r"\\\1", path)
        return ("    RewriteEngine On\n"
                "    RewriteCond %{HTTP:Upgrade} websocket [NC]\n"
                "    RewriteCond %{HTTP:Connection} upgrade [NC]\n"
                f"    RewriteRule ^{pattern}(.*) \"ws://{backend}{server_path}$1\" [P,L]")

    def upgrade_fix(self, handler: _Handler, modern: bool, recipe: str) -> str:
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
        host_ok = _on(preserve) or not (add_headers is not None and not _on(add_headers))
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


def _prefix_match(path: str, prefix: str) -> bool:
    if prefix == "/":
        return True
    return path.startswith(prefix) or path.rstrip("/") == prefix.rstrip("/")


def _flags(args: Sequence[str]) -> set[str]:
    out: set[str] = set()
    for arg in args:
        if arg.startswith("[") and arg.endswith("]"):
            out |= {f.strip().lower().split("=")[0] for f in arg[1:-1].split(",")}
    return out


def _on(node: ANode | None) -> bool:
    return node is not None and bool(node.args) and node.args[0].lower() == "on"


def _num(node: ANode | None) -> float | None:
    if node is None or not node.args:
        return None
    return _float(node.args[0])


def _float(text: str) -> float | None:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms)?", text.strip())
    if not m:
        return None
    value = float(m.group(1))
    return value / 1000 if m.group(2) else value


def _hostport(url: str) -> str:
    m = re.match(r"(?i)(\w+)://([^/]+)", url)
    if not m:
        return ""
    scheme, host = m.group(1).lower(), m.group(2)
    if scheme == "balancer":
        return ""
    if ":" in host.rsplit("]", 1)[-1]:
        return host
    return f"{host}:{443 if scheme in ('https', 'wss') else 80}"
