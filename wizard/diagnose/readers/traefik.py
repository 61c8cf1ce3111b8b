"""Traefik: the file provider's dynamic configuration (YAML) -> the Socket.IO route's facts.

``read`` fetches the dynamic files (default: ``/etc/traefik/dynamic/*``, ``conf.d/*`` and the
full layout's ``traefik.yml``) in one capped round trip (:func:`cat_files`, one ReadBudget);
``facts_from_yaml`` is pure (the table-driven cases use it). The files are hostile input: parsed
with PyYAML's *safe* loader, alias-heavy documents (a "billion laughs") refused before parsing,
every value type-checked before use. The facts that matter for Socket.IO:

* the router whose ``PathPrefix`` covers the path (the longest, as Traefik ranks by rule length);
* its service's ``loadBalancer.servers`` and ``sticky.cookie`` (off by default: round-robin);
* the serversTransport's ``forwardingTimeouts.responseHeaderTimeout`` (default 0 = none): a
  long-polling GET is held up to pingInterval, so a lower value breaks polling. Upgraded
  WebSockets have no idle limit in Traefik.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from wizard.diagnose.facts import RouteFacts, RouteQuery, TimeoutFact, Where
from wizard.diagnose.readers.base import ConfigReadError, ReadBudget, cat_files
from wizard.model import ProxyKind

if TYPE_CHECKING:
    from wizard.remote import Remote

DEFAULT_FILES = ("/etc/traefik/dynamic/*.yml", "/etc/traefik/dynamic/*.yaml",
                 "/etc/traefik/conf.d/*.yml", "/etc/traefik/conf.d/*.yaml",
                 "/etc/traefik/traefik.yml")
MAX_ALIASES = 64  # real configs use few anchors; many aliases is an expansion bomb
_PREFIX = re.compile(r"PathPrefix\(\s*[`\"]([^`\"]{1,253})[`\"]\s*\)")
_HOST = re.compile(r"Host\(\s*[`\"]([^`\"]{1,253})[`\"]\s*\)")
_DURATION = re.compile(r"([0-9]{1,9}(?:\.[0-9]+)?)(ms|s|m|h)?")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def read(remote: Remote, query: RouteQuery, config_path: str | None,
         budget: ReadBudget | None = None) -> RouteFacts:
    budget = budget if budget is not None else ReadBudget()
    texts = cat_files(remote, [config_path] if config_path else list(DEFAULT_FILES), budget)
    # A static traefik.yml names the file provider's file or directory: follow it (one more
    # round trip; cat_files checks and quotes every path taken from the file).
    named = [p for f, t in texts.items() for p in _provider_files(f, t) if p not in texts]
    if named:
        texts.update(cat_files(remote, named, budget))
    if not texts:
        raise ConfigReadError(
            f"No Traefik dynamic configuration found on {remote.name}",
            "Give the file provider's file with --config (Traefik's API and other providers "
            "are not read).")
    return facts_from_yaml(texts, query, source=f"{', '.join(texts)[:200]} on {remote.name}")


def _load(file: str, text: str) -> dict[str, Any]:
    import yaml  # imported here: the CLI must start fast

    if text.count("*") > MAX_ALIASES and re.search(r"[:\-\[,]\s*\*\w", text):
        raise ConfigReadError(f"{file} uses too many YAML aliases to be a Traefik config",
                              "Check the file; sockwizard refuses alias bombs.")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigReadError(f"{file} is not valid YAML", "Fix the file (Traefik refuses it "
                              "too: see its log).", detail=str(exc)[:500]) from None
    return data if isinstance(data, dict) else {}


def _provider_files(file: str, text: str) -> list[str]:
    """The paths a static configuration's file provider reads (none for a dynamic file)."""
    if not re.search(r"^providers:", text, re.M):
        return []
    provider = _section(_load(file, text), "providers", "file")
    out = []
    if isinstance(provider.get("filename"), str):
        out.append(provider["filename"][:1000])
    if isinstance(provider.get("directory"), str):
        d = provider["directory"][:1000].rstrip("/")
        out += [f"{d}/*.yml", f"{d}/*.yaml"]
    return out


def _section(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        value = data.get(key)
        if not isinstance(value, dict):
            return {}
        data = value
    return data


def _where(file: str, text: str, name: str) -> Where:
    m = re.search(rf"^\s*{re.escape(name)}:\s*$", text, re.M)
    line = text.count("\n", 0, m.start()) + 1 if m else None
    return Where(file, line, f"{name}:")


def _seconds(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    m = _DURATION.fullmatch(str(value).strip()) if isinstance(value, str) else None
    return float(m.group(1)) * _UNIT[m.group(2)] if m else None


def facts_from_yaml(texts: dict[str, str], query: RouteQuery, *,
                    source: str = "the dynamic configuration") -> RouteFacts:
    """The facts of the route serving ``query.path``, from the dynamic files' texts."""
    routers: dict[str, tuple[str, dict[str, Any]]] = {}
    services: dict[str, tuple[str, dict[str, Any]]] = {}
    transports: dict[str, tuple[str, dict[str, Any]]] = {}
    for file, text in texts.items():
        http = _section(_load(file, text), "http")
        for table, into in (("routers", routers), ("services", services),
                            ("serversTransports", transports)):
            for name, body in _section(http, table).items():
                if isinstance(name, str) and isinstance(body, dict):
                    into[name] = (file, body)
    base = RouteFacts(proxy=ProxyKind.TRAEFIK, source=source, files=tuple(texts))
    best: tuple[int, str] | None = None
    for name, (_file, body) in routers.items():
        rule = body.get("rule")
        if not isinstance(rule, str) or "tls" in body:
            continue
        hosts = _HOST.findall(rule)
        if hosts and query.host not in hosts:
            continue
        for prefix in _PREFIX.findall(rule):
            if query.path.startswith(prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), name)
    if best is None:
        return base
    rname = best[1]
    rfile, router = routers[rname]
    service_name = str(router.get("service", "")).removesuffix("@file")
    sfile, service = services.get(service_name, (rfile, {}))
    lb = _section(service, "loadBalancer")
    raw_servers = lb.get("servers")
    servers: list[Any] = raw_servers if isinstance(raw_servers, list) else []
    backends = tuple(str(s["url"]).split("://", 1)[-1].rstrip("/")[:260] for s in servers
                     if isinstance(s, dict) and isinstance(s.get("url"), str))
    cookie = _section(lb, "sticky", "cookie")
    affinity = None
    if "sticky" in lb:
        affinity = f"sticky cookie {str(cookie.get('name') or '(default name)')[:60]}"
    tname = str(lb.get("serversTransport", "")).removesuffix("@file")
    tfile, transport = transports.get(tname, (sfile, {}))
    header = _section(transport, "forwardingTimeouts").get("responseHeaderTimeout")
    seconds = _seconds(header) if header is not None else None
    poll = TimeoutFact(
        seconds=seconds or None, directive="responseHeaderTimeout", applies_to="long-polling",
        where=(_where(tfile, texts[tfile], tname),) if header is not None and tname else (),
        default_note="" if header is not None else "Traefik's default is 0 (no limit)")
    where_route = _where(rfile, texts[rfile], rname)
    return RouteFacts(
        proxy=ProxyKind.TRAEFIK, source=source, files=tuple(texts), route=where_route,
        route_desc=f"router {rname[:60]}", proxied=bool(backends),
        upstream=_where(sfile, texts[sfile], service_name) if service_name else None,
        upstream_path=query.path, backends=backends,
        backends_where=_where(sfile, texts[sfile], service_name) if service_name else None,
        affinity=affinity, poll_timeout=poll,
        ws_idle_timeout=TimeoutFact(None, "(none)", "WebSocket",
                                    default_note="Traefik does not time out upgraded "
                                                 "connections"),
        forwarded_proto=True, forwarded_host=True,
        hints={"service": service_name[:60]})
