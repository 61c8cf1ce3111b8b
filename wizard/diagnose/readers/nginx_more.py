"""nginx: the facts issue 12 added — what the backend sees as Host/X-Forwarded-*, the body
limit, the kind of affinity and whether the client's real address is restored.

Called by ``nginx_analysis._Analysis.facts`` once the route is known (``levels``: http, server,
the location chain; the innermost level wins). Pure: values are classified into the symbolic
:class:`~wizard.diagnose.facts.HeaderFact` values the rules judge, never judged here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from wizard.diagnose.facts import BodyLimit, HeaderFact, RouteFacts
from wizard.diagnose.readers.nginx_syntax import Node

DEFAULT_BODY = 1024 * 1024  # client_max_body_size 1m
_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def size_of(text: str) -> int | None:
    """nginx size syntax (``512``, ``10k``, ``1m``, ``2G``) -> bytes; None when unreadable."""
    m = re.fullmatch(r"(\d{1,15})([kKmMgG]?)", text.strip())
    return int(m.group(1)) * _UNITS[m.group(2).lower()] if m else None


def more_facts(facts: RouteFacts, http: Node, levels: Sequence[Node],
               headers: Sequence[Node], port: int) -> RouteFacts:
    """``headers``: the proxy_set_header set in effect (one level's, nginx's array rule)."""
    by_name = {h.args[0].lower(): h for h in headers if len(h.args) >= 2}
    host = by_name.get("host")
    host_seen = HeaderFact("upstream", "no proxy_set_header Host: nginx sends $proxy_host")
    if host is not None:
        host_seen = HeaderFact(_host_value(host.args[1]), host.text, host.where)
    xfh = by_name.get("x-forwarded-host")
    xfh_seen = HeaderFact(_host_value(xfh.args[1]), xfh.text, xfh.where) if xfh else None
    xfp = by_name.get("x-forwarded-proto")
    xfp_seen = HeaderFact(_proto_value(xfp.args[1]), xfp.text, xfp.where) if xfp else None
    facts = replace(facts, url_port=port, host_seen=host_seen, xfh_seen=xfh_seen,
                    xfp_seen=xfp_seen, body_limit=_body_limit(levels))
    real_ip = next((n.where for level in levels for n in level.block or ()
                    if n.name in ("set_real_ip_from", "real_ip_header")), None)
    facts = replace(facts, real_ip=real_ip)
    name = facts.hints.get("upstream")
    upstream = next((u for u in http.children("upstream") if u.args[:1] == (name,)), None)
    if upstream is None:
        return facts
    for node in upstream.block or ():
        kind = _affinity_kind(node)
        if kind is not None:
            return replace(facts, affinity_kind=kind, affinity_where=node.where)
    return facts


def _host_value(value: str) -> str:
    low = value.lower()
    if low in ("$http_host", "$host:$server_port", "$http_x_forwarded_host"):
        return "client"
    if low in ("$host", "$server_name"):
        return "client-no-port"  # the name only: the port of a non-default listen is lost
    if low in ("$proxy_host", "$upstream_addr"):
        return "upstream"
    return "other"


def _proto_value(value: str) -> str:
    low = value.lower()
    if low in ("https", "http"):
        return low
    if low == "$scheme":
        return "scheme"
    return "client"  # $http_x_forwarded_proto, a map: passed on from the tier in front


def _body_limit(levels: Sequence[Node]) -> BodyLimit:
    for level in reversed(levels):
        node = level.first("client_max_body_size")
        if node is not None and node.args:
            size = size_of(node.args[0])
            if size is not None:
                return BodyLimit(size or None, "client_max_body_size", node.where)
    return BodyLimit(DEFAULT_BODY, "client_max_body_size", None,
                     "nginx's default: no client_max_body_size, so 1m applies")


def _affinity_kind(node: Node) -> str | None:
    if node.name == "ip_hash":
        return "address"
    if node.name == "hash" and node.args:
        key = node.args[0].lower()
        if re.search(r"\$(binary_|realip_)?remote_addr", key):
            return "address"  # the proxy's peer: a front tier's egress address, if any
        if "$http_x_forwarded_for" in key or "$http_x_real_ip" in key:
            return "header"
        if "$cookie_" in key:
            return "cookie"
        return "other"
    if node.name == "sticky":
        return "cookie" if node.args[:1] == ("cookie",) else "other"
    return None
