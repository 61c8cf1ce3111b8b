"""Caddy's HTTP app, evaluated for one request: routes in order with matcher sets (path globs,
host, header, not), ``group``, ``terminal``, ``subroute`` recursion, ``rewrite`` and the first
responding handler. Pure; ``wizard.diagnose.readers.caddy`` turns the outcome into facts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

DEFAULT_CONFIG = "/etc/caddy/Caddyfile"
# Policies that keep one client on one upstream. `first` does while the first one is up.


@dataclass
class Request:
    path: str
    host: str
    websocket: bool
    tls: bool
    header_ops: list[dict[str, Any]] = field(default_factory=list)
    body_max: list[int] = field(default_factory=list)  # request_body max_size on the way


@dataclass(frozen=True)
class Outcome:
    kind: str  # "proxy" | "static_response" | "file_server" | ...
    handler: Mapping[str, Any]
    path: str  # after rewrites
    matchers: tuple[str, ...]  # path patterns that led here (to locate the route)
    rewritten: bool
    header_ops: tuple[dict[str, Any], ...] = ()
    body_max: int | None = None  # the last request_body max_size before the handler


def walk(routes: Sequence[Mapping[str, Any]], req: Request, notes: list[str],
          matchers: tuple[str, ...], depth: int = 0) -> Outcome | None:
    if depth > 12:
        return None
    done_groups: set[str] = set()
    rewritten = False
    for route in routes:
        group = route.get("group")
        if group and group in done_groups:
            continue
        matched, paths = _match_any(route.get("match"), req, notes)
        if not matched:
            continue
        if group:
            done_groups.add(group)
        here = matchers + tuple(paths)
        for handler in route.get("handle", []) or []:
            kind = handler.get("handler")
            if kind == "subroute":
                outcome = walk(handler.get("routes", []) or [], req, notes, here, depth + 1)
                if outcome is not None:
                    return outcome
            elif kind == "rewrite":
                rewritten = _rewrite(handler, req) or rewritten
            elif kind == "request_body" and isinstance(handler.get("max_size"), int):
                req.body_max.append(int(handler["max_size"]))
            elif kind == "headers":
                ops = (handler.get("request") or {})
                if ops:
                    req.header_ops.append(dict(ops))
            elif kind == "reverse_proxy":
                path = req.path
                inner = handler.get("rewrite") or {}
                if inner.get("uri"):
                    path = _expand(str(inner["uri"]), req).split("?")[0]
                return Outcome("proxy", handler, path, here, rewritten or path != req.path,
                                tuple(req.header_ops),
                                req.body_max[-1] if req.body_max else None)
            elif kind in ("static_response", "file_server", "error", "templates",
                          "authentication", "php_fastcgi"):
                return Outcome(str(kind), handler, req.path, here, rewritten)
        if route.get("terminal"):
            return None
    return None


def _match_any(match: Sequence[Mapping[str, Any]] | None, req: Request,
               notes: list[str]) -> tuple[bool, list[str]]:
    if not match:
        return True, []
    for matcher_set in match:
        ok, paths = _match_set(matcher_set, req, notes)
        if ok:
            return True, paths
    return False, []


def _match_set(ms: Mapping[str, Any], req: Request, notes: list[str]) -> tuple[bool, list[str]]:
    paths: list[str] = []
    for kind, value in ms.items():
        if kind == "path":
            hit = next((p for p in value if _glob(str(p), req.path)), None)
            if hit is None:
                return False, []
            paths.append(str(hit))
        elif kind == "host":
            if not any(_glob(str(h), req.host) for h in value):
                return False, []
        elif kind == "header":
            for name, wanted in (value or {}).items():
                have = _header(req, name)
                if wanted is None or wanted == []:
                    if not have:
                        return False, []
                elif not any(_glob(str(w), have) for w in wanted):
                    return False, []
        elif kind == "header_regexp":
            for name, spec in (value or {}).items():
                if not re.search(str(spec.get("pattern", "")), _header(req, name)):
                    return False, []
        elif kind == "path_regexp":
            if not re.search(str(value.get("pattern", "")), req.path):
                return False, []
        elif kind == "not":
            if any(_match_set(inner, req, notes)[0] for inner in value):
                return False, []
        elif kind == "protocol":
            if str(value) == "https" and not req.tls:
                return False, []
        elif kind == "method":
            if "GET" not in [str(v).upper() for v in value]:
                return False, []
        else:
            notes.append(f"Caddy matcher `{kind}` was assumed to match")
    return True, paths


def _header(req: Request, name: str) -> str:
    if not req.websocket:
        return ""
    return {"connection": "Upgrade", "upgrade": "websocket"}.get(name.lower(), "")


def _glob(pattern: str, value: str) -> bool:
    rx = "".join(".*" if c == "*" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, flags=re.I) is not None


def _rewrite(handler: Mapping[str, Any], req: Request) -> bool:
    before = req.path
    prefix = handler.get("strip_path_prefix")
    if prefix and req.path.lower().startswith(str(prefix).lower()):
        req.path = req.path[len(prefix):] or "/"
        if not req.path.startswith("/"):
            req.path = "/" + req.path
    suffix = handler.get("strip_path_suffix")
    if suffix and req.path.endswith(str(suffix)):
        req.path = req.path[: -len(suffix)]
    for sub in handler.get("uri_substring", []) or []:
        req.path = req.path.replace(str(sub.get("find", "")), str(sub.get("replace", "")),
                                    int(sub.get("limit", 0)) or -1)
    for sub in handler.get("path_regexp", []) or []:
        req.path = re.sub(str(sub.get("find", "")), str(sub.get("replace", "")), req.path)
    if handler.get("uri"):
        req.path = _expand(str(handler["uri"]), req).split("?")[0] or req.path
    return req.path != before


def _expand(template: str, req: Request) -> str:
    values = {"http.request.uri.path": req.path, "path": req.path, "uri": req.path,
              "http.request.uri": req.path, "query": "", "http.request.uri.query": ""}
    return re.sub(r"\{([^}]+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


def duration_of(value: Any) -> float | None:
    """Caddy JSON durations: nanoseconds (int) or Go strings ("60s", "1m30s", "500ms")."""
    if value is None or value == 0:
        return None
    if isinstance(value, (int, float)):
        return float(value) / 1e9
    text = str(value)
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
             "d": 86400.0}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)", text):
        total += float(number) * units[unit]
    return total or None
