"""One source for a fix's config lines: what ``diagnose`` tells the user to paste is the text
``render`` writes for the same path, backends and timeout (both come from the proxy's
templates/<kind>/_macros.j2), and config-derived values never reach those lines unchecked."""

from __future__ import annotations

import re

import pytest

from wizard import findings as codes
from wizard.diagnose import RouteFacts, Where, diagnose, fixtext
from wizard.findings import Finding
from wizard.model import Backend, DeploySpec, ProxyKind, parse_backend
from wizard.render import FIX_MACROS, render, snippet

PATH = "/chat/"
ONE = ("127.0.0.1:3001",)
TWO = ("127.0.0.1:3001", "127.0.0.1:3002")


def rendered(kind: ProxyKind, backends: tuple[str, ...]) -> str:
    """The site config for these values; the timeout is what diagnose suggests for the
    default pings (no probe: 25 s + 20 s -> 60 s)."""
    spec = DeploySpec(proxy=kind, path=PATH, read_timeout=60, send_timeout=60,
                      backends=tuple(map(parse_backend, backends)))
    return render(spec).text.expandtabs(4)  # fixes print Caddy's tabs as spaces


def fix_for(code: str, facts: RouteFacts, path: str = PATH) -> Finding:
    found = [f for f in diagnose(facts, None, path) if f.code == code]
    assert len(found) == 1, found
    return found[0]


def between(text: str, start: str, end: str) -> str:
    """The block of ``text`` from the line starting with ``start`` through the next ``end``."""
    m = re.search(rf"^{re.escape(start)}.*?{re.escape(end)}", text, re.M | re.S)
    assert m, f"{start!r} not in\n{text}"
    return m.group(0)


ROUTE_BLOCKS = {
    ProxyKind.NGINX: ("    # Socket.IO (", "\n    }\n"),
    ProxyKind.APACHE: ("    # Socket.IO (", 'ProxyPassReverse "/chat/" "http://127.0.0.1:3001/chat/"\n'),
    ProxyKind.CADDY: ("    handle /chat/* {", "\n    }\n"),
}


@pytest.mark.parametrize("kind", list(ROUTE_BLOCKS), ids=str)
def test_the_route_a_fix_prints_is_the_route_render_writes(kind: ProxyKind) -> None:
    facts = RouteFacts(kind, "test", server=Where("site.conf", 1, "server {"), backends=ONE)
    fix = fix_for(codes.PATH_MISMATCH, facts).fix + "\n"
    block = between(rendered(kind, ONE), *ROUTE_BLOCKS[kind])
    assert block in fix, f"template:\n{block}\nfix:\n{fix}"


STICKY_LINES = {
    ProxyKind.NGINX: ("    hash $remote_addr", "\n"),
    ProxyKind.APACHE: ("    <Proxy \"balancer://sockwizard_http\">", "</Proxy>\n"),
    ProxyKind.CADDY: ("            lb_policy", "\n"),
    ProxyKind.NODE: ("function pickBackend(req) {", "\n}\n"),
}


@pytest.mark.parametrize("kind", list(STICKY_LINES), ids=str)
def test_the_sticky_lines_a_fix_prints_are_the_templates(kind: ProxyKind) -> None:
    facts = RouteFacts(kind, "test", proxied=True, route=Where("site.conf", 3, "route"),
                       backends=TWO, backends_where=Where("site.conf", 5, "backends"),
                       hints={"balancer": "balancer://sockwizard_http"})
    fix = fix_for(codes.NO_STICKY_SESSIONS, facts).fix + "\n"
    block = between(rendered(kind, TWO), *STICKY_LINES[kind])
    # The fix is indented for where it goes; compare line by line, without the indentation.
    lines = [x.strip() for x in block.splitlines()]
    fix_lines = [x.strip() for x in fix.splitlines()]
    start = fix_lines.index(lines[0])
    assert fix_lines[start:start + len(lines)] == lines, fix


@pytest.mark.parametrize("kind", list(ProxyKind), ids=str)
def test_every_kind_renders_every_fix_macro(kind: ProxyKind) -> None:
    spec = DeploySpec(proxy=kind, path=PATH, backends=(Backend("127.0.0.1", 3001),
                                                       Backend("127.0.0.1", 3002)))
    out = {name: snippet(kind, name, spec=spec, **extra) for name, extra in zip(
        FIX_MACROS, ({}, {"balancer": "balancer://b"}, {"existing": False}), strict=True)}
    assert out["fix_sticky"].strip() and out["fix_timeout"].strip()
    assert out["fix_route"].strip() or kind is ProxyKind.NODE  # http-proxy's route is prose
    assert "60" in out["fix_timeout"]


HOSTILE = ("127.0.0.1:3001;\n    return 200 'owned'", "$evil:80", "127.0.0.1:3002",
           "127.0.0.1:3003 { }", "127.0.0.1:3002")


@pytest.mark.parametrize("kind", list(ProxyKind), ids=str)
def test_config_values_reach_fix_lines_only_when_the_model_accepts_them(kind: ProxyKind) -> None:
    facts = RouteFacts(kind, "test", proxied=True, route=Where("site.conf", 3, "route"),
                       backends=HOSTILE, backends_where=Where("site.conf", 5, "backends"),
                       hints={"balancer": 'balancer://x">\n    ProxyPass / "http://evil'})
    fix = fix_for(codes.NO_STICKY_SESSIONS, facts).fix
    assert "owned" not in fix and "evil" not in fix and "{ }" not in fix
    if kind is ProxyKind.APACHE:
        assert '<Proxy "balancer://…">' in fix and fix.count("BalancerMember") == 1
        assert '"http://127.0.0.1:3002" route=node1' in fix
    assert fixtext.checked_backends(HOSTILE) == (Backend("127.0.0.1", 3002),)


def test_a_path_the_model_refuses_gives_no_lines() -> None:
    facts = RouteFacts(ProxyKind.NGINX, "test", server=Where("site.conf", 1, "server {"),
                       backends=ONE)
    fix = fix_for(codes.PATH_MISMATCH, facts, path="/a;b/").fix
    assert "/a;b/" not in fix and fixtext.UNWRITTEN in fix
