"""The diagnosis rules (wizard/diagnose/rules.py) and config readers (wizard/diagnose/readers/),
from a table.

One TOML file per case in tests/diagnose_cases/: a config text (run through the real reader —
crossplane for nginx, our parser for Apache, the local `caddy adapt` for Caddy, the regex
reader for node) or raw facts, and/or probe data, in; the expected (code, severity) pairs out.
Adding a rule means adding a case. Case format:

    description = "..."
    expect = [["read-timeout-too-short", "error"]]   # [] = no findings at all
    notes = true                                      # optional: at least one note expected
    [config]            # optional
    kind = "nginx"      # nginx | apache | caddy | node | haproxy
    text = '''...'''
    path = "/socket.io/"  port = 8080  host = "127.0.0.1"  tls = false
    version = "1.22.1"  modules = [...]              # apache: -v and -M
    [facts]             # optional, instead of [config]: RouteFacts.from_dict
    [probe]             # optional: preset = "healthy" | "no-handshake", then overrides:
    ping_interval = 25000  ping_timeout = 20000  transport = "polling"
    failed = ["websocket"]  eio = 3
    [[probe.findings]]  code = "..." severity = "error" evidence = "..."

Also here: every config sockwizard itself renders gives zero findings with a healthy probe.
"""

from __future__ import annotations

import shutil
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.scenarios import cases as render_cases
from wizard.diagnose import (
    ConfigReadError,
    RouteFacts,
    RouteQuery,
    diagnose,
    diagnose_with_notes,
    grade_timeout,
    order,
    ping_of,
)
from wizard.findings import Finding
from wizard.model import DeploySpec, Layout, ProxyKind
from wizard.probe import ClientsResult, ProbeReport, Stage
from wizard.probe.wire import Handshake
from wizard.proxies import profile
from wizard.render import render

CASES_DIR = Path(__file__).parent / "diagnose_cases"
CASE_FILES = sorted(CASES_DIR.glob("*.toml"))
APACHE_MODULES = ["mpm_event_module", "proxy_module", "proxy_http_module", "headers_module",
                  "rewrite_module", "proxy_wstunnel_module", "proxy_balancer_module",
                  "lbmethod_byrequests_module", "slotmem_shm_module", "ssl_module",
                  "socache_shmcb_module", "authz_core_module", "mime_module"]
HAVE_CADDY = shutil.which("caddy") is not None


# --------------------------------------------------------------------------- builders


def make_probe(raw: dict[str, Any] | None, path: str = "/socket.io/",
               url: str = "http://127.0.0.1:8080") -> ProbeReport | None:
    """A ProbeReport from a case's [probe] table (a preset plus overrides)."""
    if raw is None:
        return None
    preset = raw.get("preset", "healthy")
    ping_interval = int(raw.get("ping_interval", 25000))
    ping_timeout = int(raw.get("ping_timeout", 20000))
    handshake: Handshake | None = Handshake(
        "sid0", ("websocket",), ping_interval, ping_timeout,
        None if raw.get("eio", 4) == 3 else 1_000_000, int(raw.get("eio", 4)))
    names = ["tcp", "polling", "websocket", "socketio"]
    if preset == "no-handshake":
        handshake = None
        names = ["tcp", "polling"]
    if preset == "unreachable":
        handshake = None
        names = ["tcp"]
    failed = set(raw.get("failed", []))
    if preset in ("no-handshake",):
        failed.add("polling")
    if preset == "unreachable":
        failed.add("tcp")
    stages = tuple(Stage(n, n not in failed, 1.0, f"{n} {'failed' if n in failed else 'ok'}")
                   for n in names)
    transport = raw.get("transport", None if handshake is None else "websocket")
    findings = tuple(Finding(f["code"], f.get("severity", "error"), f.get("title", f["code"]),
                             f.get("evidence", f"{f['code']} seen by the probe"),
                             f.get("fix", "probe fix"))
                     for f in raw.get("findings", []))
    ok = not failed and transport == "websocket" and not any(
        f.severity == "error" for f in findings)
    clients = None
    if "clients" in raw:  # a --clients run: requested and connected are enough for the rules
        c = raw["clients"]
        clients = ClientsResult(int(c["requested"]), int(c["connected"]), 1.0, 2.0, 3.0, 4.0,
                                1.0, 0, {"refused": int(c["requested"]) - int(c["connected"])},
                                0.1, 50.0)
    return ProbeReport(raw.get("url", url), path, ok, transport, handshake, stages, findings,
                       clients=clients)


def make_facts(case: dict[str, Any]) -> RouteFacts | None:
    if "facts" in case:
        return RouteFacts.from_dict(case["facts"])
    config = case.get("config")
    if config is None:
        return None
    kind = ProxyKind(config["kind"])
    query = RouteQuery(config.get("path", "/socket.io/"), config.get("host", "127.0.0.1"),
                       int(config.get("port", 8080)), bool(config.get("tls", False)))
    return facts_from_text(kind, config["text"], query, version=config.get("version"),
                           modules=config.get("modules"))


def facts_from_text(kind: ProxyKind, text: str, query: RouteQuery, *,
                    version: str | None = None, modules: list[str] | None = None,
                    file: str | None = None) -> RouteFacts:
    if kind is ProxyKind.NGINX:
        from wizard.diagnose.readers import nginx

        return nginx.facts_from_text(text, query, file=file or "site.conf",
                                     version=version or "1.22.1")
    if kind is ProxyKind.APACHE:
        from wizard.diagnose.readers import apache

        return apache.facts_from_text(text, query, file=file or "site.conf",
                                      version=version or "2.4.71",
                                      modules=modules if modules is not None else APACHE_MODULES)
    if kind is ProxyKind.CADDY:
        from wizard.diagnose.readers import caddy

        return caddy.facts_from_caddyfile(text, query, file=file or "Caddyfile",
                                          version=version)
    if kind is ProxyKind.HAPROXY:
        from wizard.diagnose.readers import haproxy

        return haproxy.facts_from_text(text, query, file=file or "haproxy.cfg", version=version)
    from wizard.diagnose.readers import node

    if kind is ProxyKind.TRAEFIK:
        from wizard.diagnose.readers import traefik

        return traefik.facts_from_yaml({file or "sockwizard.yml": text}, query)
    return node.facts_from_script(text, query, file=file or "proxy.js")


def pairs(found: list[Finding]) -> list[tuple[str, str]]:
    return [(f.code, f.severity) for f in found]


# --------------------------------------------------------------------------- the table


def test_there_are_cases_for_every_code() -> None:
    """At least two cases per stable code of issue 4, and healthy ones."""
    expected: dict[str, int] = {}
    healthy = 0
    for path in CASE_FILES:
        case = tomllib.loads(path.read_text())
        if not case["expect"]:
            healthy += 1
        for code, _severity in case["expect"]:
            expected[code] = expected.get(code, 0) + 1
    for code in ("read-timeout-too-short", "websocket-upgrade-blocked", "path-mismatch",
                 "no-sticky-sessions", "backend-unreachable", "proxy-unreachable",
                 "eio-version-mismatch", "origin-rejected"):
        assert expected.get(code, 0) >= 2, f"{code}: {expected.get(code, 0)} case(s)"
    assert healthy >= 4


@pytest.mark.parametrize("case_file", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_case(case_file: Path) -> None:
    case = tomllib.loads(case_file.read_text())
    if case.get("config", {}).get("kind") == "caddy" and not HAVE_CADDY:
        pytest.skip("caddy is not installed (the Caddy reader adapts with it)")
    path = case.get("config", {}).get("path", "/socket.io/")
    facts = make_facts(case)
    probe = make_probe(case.get("probe"), path)
    found, notes = diagnose_with_notes(facts, probe, path)
    want = [tuple(x) for x in case["expect"]]
    assert sorted(pairs(found)) == sorted(want), "\n".join(
        f"[{f.severity}] {f.code}: {f.title}\n  evidence: {f.evidence}\n  fix: {f.fix}"
        for f in found) + f"\nnotes: {notes}\nfacts: {facts}"
    assert pairs(found) == pairs(order(found)), "findings must come most serious first"
    for finding in found:
        assert finding.title and finding.evidence and finding.fix
    if case.get("notes"):
        assert notes, "expected a note explaining the disagreement"
    for text in case.get("evidence_contains", []):
        assert any(text in f.evidence for f in found), f"{text!r} not in any evidence"
    for text in case.get("fix_contains", []):
        assert any(text in f.fix for f in found), f"{text!r} not in any fix"


# --------------------------------------------------------------------------- rendered configs


def _render_query(spec: DeploySpec) -> RouteQuery:
    port = spec.tls_port if spec.tls else spec.listen_port
    return RouteQuery(spec.path, spec.server_name or "127.0.0.1", port, spec.tls)


@pytest.mark.parametrize(("case_id", "spec"), render_cases(),
                         ids=[c[0] for c in render_cases()])
def test_rendered_config_gives_no_findings(case_id: str, spec: DeploySpec) -> None:
    """Whatever sockwizard renders, read back by the readers, is healthy per the rules."""
    if spec.proxy is ProxyKind.CADDY and not HAVE_CADDY:
        pytest.skip("caddy is not installed")
    if spec.stream_close_delay is not None:
        pytest.skip("stream_close_delay needs Caddy >= 2.7; this caddy cannot adapt it")
    text = render(spec).text
    modules = None
    if spec.proxy is ProxyKind.APACHE:
        modules = ["mpm_event_module", *(f"{m}_module" for m in profile(spec.proxy).modules(spec))]
    facts = facts_from_text(spec.proxy, text, _render_query(spec), modules=modules,
                            version=spec.apache_version if spec.proxy is ProxyKind.APACHE
                            else None)
    assert facts.proxied and facts.route is not None, facts
    probe = make_probe({"ping_interval": spec.ping_interval_ms,
                        "ping_timeout": spec.ping_timeout_ms}, spec.path)
    found = [f for f in diagnose(facts, probe, spec.path) if not _advice(f, spec)]
    assert found == [], "\n".join(f"{f.code}: {f.title} | {f.evidence}" for f in found)
    # ...and the same without a probe (config only, default pings).
    if spec.ping_interval_ms == 25000:
        assert [f for f in diagnose(facts, None, spec.path) if not _advice(f, spec)] == []


def _advice(finding: Finding, spec: DeploySpec) -> bool:
    """What a rendered sticky config still draws, by design (issue 12): advice about the
    clients (a cookie) or a front tier (an address hash), never an error."""
    advice = {("cookie-affinity-needs-credentials", "info"), ("affinity-by-address", "warning")}
    return spec.sticky and (finding.code, finding.severity) in advice


# --------------------------------------------------------------------------- small pure pieces


@pytest.mark.parametrize(("seconds", "grade"), [
    (None, None), (5, "certain"), (25, "certain"), (25.5, "at-risk"), (45, "at-risk"),
    (45.1, None), (60, None)])
def test_timeout_grading_default_ping(seconds: float | None, grade: str | None) -> None:
    assert grade_timeout(seconds, ping_of(None)) == grade


def test_ping_comes_from_the_live_handshake() -> None:
    probe = make_probe({"ping_interval": 50000, "ping_timeout": 20000})
    ping = ping_of(probe)
    assert (ping.interval_ms, ping.timeout_ms, ping.live) == (50000, 20000, True)
    assert grade_timeout(60, ping) == "at-risk"  # nginx's default 60 s is not enough here


def test_facts_round_trip_through_dict() -> None:
    text = (CASES_DIR / "nginx-timeout-certain.toml").read_text()
    facts = make_facts(tomllib.loads(text))
    assert facts is not None
    assert RouteFacts.from_dict(facts.to_dict()) == facts


def test_unknown_fact_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown RouteFacts keys"):
        RouteFacts.from_dict({"proxy": "nginx", "source": "x", "read_timeout": 5})


def test_unbalanced_apache_section_is_a_config_error() -> None:
    with pytest.raises(ConfigReadError, match="never closed"):
        facts_from_text(ProxyKind.APACHE, "<VirtualHost *:80>\nProxyPass / http://a/\n",
                        RouteQuery())


def test_node_reader_refuses_a_script_that_is_not_http_proxy() -> None:
    with pytest.raises(ConfigReadError, match="http-proxy"):
        facts_from_text(ProxyKind.NODE, "console.log('hello')", RouteQuery())


def test_nginx_site_file_keeps_its_line_numbers() -> None:
    text = "server {\n    listen 8080;\n    location /socket.io/ {\n        proxy_pass http://a:1;\n" \
           "        proxy_read_timeout 7s;\n    }\n}\n"
    facts = facts_from_text(ProxyKind.NGINX, text, RouteQuery(port=8080), file="x.conf")
    assert facts.route is not None and (facts.route.file, facts.route.line) == ("x.conf", 3)
    assert facts.ws_idle_timeout is not None
    assert facts.ws_idle_timeout.where[0].line == 5 and facts.ws_idle_timeout.seconds == 7


def test_nginx_layout_full_vs_site_agree() -> None:
    spec = DeploySpec(read_timeout=50, ping_interval_ms=30000, ping_timeout_ms=15000)
    a = facts_from_text(ProxyKind.NGINX, render(replace(spec, layout=Layout.SITE)).text,
                        _render_query(spec))
    b = facts_from_text(ProxyKind.NGINX, render(replace(spec, layout=Layout.FULL)).text,
                        _render_query(spec))
    assert a.ws_idle_timeout is not None and b.ws_idle_timeout is not None
    assert a.ws_idle_timeout.seconds == b.ws_idle_timeout.seconds == 50


# --------------------------------------------------------------------------- reading over a Remote
# Fast branch tests with the in-memory Remote (the real sshd runs in test_diagnose_live.py).


def _marker(command: str) -> str:
    import re

    found = re.search(r"==sockwizard-[0-9a-f]+==", command)
    assert found, command
    return found.group(0)


def test_nginx_read_splits_the_dump_and_keeps_file_lines() -> None:
    from wizard.diagnose.readers import read_route
    from wizard.remote import CommandResult, InMemoryRemote, RunRequest

    site = ("server {\n    listen 8080;\n    location /socket.io/ {\n"
            "        proxy_pass http://127.0.0.1:3000;\n        proxy_read_timeout 5s;\n    }\n}\n")
    main = "events {}\nhttp {\n    include /etc/nginx/conf.d/*.conf;\n}\n"

    def answer(req: RunRequest) -> CommandResult:
        assert req.sudo and "nginx -T -c /etc/nginx/nginx.conf" in req.command
        marker = _marker(req.command)
        dump = (f"# configuration file /etc/nginx/nginx.conf:\n{main}\n"
                f"# configuration file /etc/nginx/conf.d/a.conf:\n{site}\n")
        return CommandResult(req.command, 0, f"nginx version: nginx/1.22.1\n{marker}\n{dump}",
                             "nginx: configuration file test is successful\n", 0.01)

    remote = InMemoryRemote(name="fake")
    remote.on(r"nginx -T", answer)
    facts = read_route(remote, ProxyKind.NGINX, RouteQuery(port=8080), "/etc/nginx/nginx.conf")
    assert facts.version == "1.22.1"
    assert facts.route is not None and (facts.route.file, facts.route.line) == (
        "/etc/nginx/conf.d/a.conf", 3)
    assert facts.ws_idle_timeout is not None and facts.ws_idle_timeout.seconds == 5
    assert [b.reason for b in facts.upgrade_blockers], "HTTP/1.0 and no Upgrade header"
    assert len(remote.commands) == 1, "one round trip"


def test_apache_read_uses_dump_includes_and_one_cat() -> None:
    from wizard.diagnose.readers import read_route
    from wizard.remote import CommandResult, InMemoryRemote, RunRequest

    files = {
        "/etc/apache2/apache2.conf": "Timeout 300\nIncludeOptional sites-enabled/*.conf\n",
        "/etc/apache2/sites-enabled/a.conf": (
            "<VirtualHost *:8080>\n    ProxyTimeout 10\n"
            "    ProxyPass \"/socket.io/\" \"http://127.0.0.1:3000/socket.io/\"\n"
            "</VirtualHost>\n"),
    }

    def ctl(req: RunRequest) -> CommandResult:
        marker = _marker(req.command)
        out = (f"Server version: Apache/2.4.62 (Debian)\n{marker}\nLoaded Modules:\n"
               " core_module (static)\n proxy_module (shared)\n proxy_http_module (shared)\n"
               f"{marker}\nIncluded configuration files:\n  (*) /etc/apache2/apache2.conf\n"
               "    (2) /etc/apache2/sites-enabled/a.conf\n")
        return CommandResult(req.command, 0, out, "", 0.01)

    def cat(req: RunRequest) -> CommandResult:
        marker = _marker(req.command)
        out = "".join(f"{marker} {path}\n{text}\n" for path, text in files.items())
        return CommandResult(req.command, 0, out, "", 0.01)

    remote = InMemoryRemote(name="fake")
    remote.on(r"DUMP_INCLUDES", ctl)
    remote.on(r"for f in", cat)
    facts = read_route(remote, ProxyKind.APACHE, RouteQuery(port=8080), None)
    assert facts.version == "2.4.62" and facts.route is not None
    assert facts.route.file == "/etc/apache2/sites-enabled/a.conf"
    # Tunnel: max(Timeout 300, ProxyTimeout 10); long-polls: ProxyTimeout 10.
    assert facts.ws_idle_timeout is not None and facts.ws_idle_timeout.seconds == 300
    assert facts.poll_timeout is not None and facts.poll_timeout.seconds == 10
    assert facts.upgrade_blockers, "no upgrade=websocket"
    assert len(remote.commands) == 2


def test_a_reader_crash_becomes_a_finding_not_a_traceback() -> None:
    """The boundary in run_diagnosis: an unexpected error while reading the config is a
    config-unreadable warning; the probe's own findings still come out."""
    import socket

    from wizard.diagnose import run_diagnosis
    from wizard.probe import ProbeOptions
    from wizard.remote import InMemoryRemote, RunRequest

    def boom(_req: RunRequest) -> Any:
        raise RuntimeError("reader bug")

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    remote = InMemoryRemote(name="fake")
    remote.on(r"nginx", boom)
    d = run_diagnosis(f"http://127.0.0.1:{port}", ProbeOptions(timeout=1), remote=remote,
                      proxy="nginx")
    assert pairs(list(d.findings)) == [("proxy-unreachable", "error"),
                                       ("config-unreadable", "warning")]
    assert "RuntimeError: reader bug" in d.findings[1].title


def test_a_client_left_on_polling_by_unsticky_sessions_is_the_stickiness_finding() -> None:
    """Behind a front with several egress addresses, `hash $remote_addr` sends one session's
    requests to different servers. The raw upgrade may reach the handshake's server (101) while
    python-socketio's does not and it stays on polling: that is the stickiness fault (one
    fault, one finding), not a blocked upgrade. Seen in a full CI run of
    test_diagnose_live_causes[nginx-address-hash-behind-front]."""
    text = ("upstream nodes {\n    hash $remote_addr consistent;\n"
            "    server 127.0.0.1:3001;\n    server 127.0.0.1:3002;\n}\n"
            "server {\n    listen 8080;\n    location /socket.io/ {\n"
            "        proxy_pass http://nodes;\n        proxy_http_version 1.1;\n"
            "        proxy_set_header Upgrade $http_upgrade;\n"
            "        proxy_set_header Connection \"upgrade\";\n    }\n}\n")
    facts = facts_from_text(ProxyKind.NGINX, text,
                            RouteQuery("/socket.io/", "127.0.0.1", 8080, False))
    unknown = '400 Bad Request (application/json) "Session ID unknown"'
    stages = (Stage("tcp", True, 1.0, "connected"), Stage("polling", True, 1.0, "sid s1"),
              Stage("websocket", True, 1.0, "101 Switching Protocols"),
              Stage("firefox", False, 1.0, f"upgrade answered {unknown}"),
              Stage("socketio", False, 1.0, "connected, but stayed on polling"),
              Stage("sessions", False, 1.0, f"0/6 sessions completed; request 2 (POST) "
                                            f"answered {unknown}"))
    report = ProbeReport("http://127.0.0.1:8080", "/socket.io/", False, "polling",
                         Handshake("s1", ("websocket",), 25000, 20000, 1_000_000, 4), stages,
                         (Finding("websocket-upgrade-blocked", "error", "stayed on polling",
                                  "socketio: python-socketio connected on polling", "fix"),
                          Finding("no-sticky-sessions", "error", "sessions",
                                  f"sessions: {unknown}", "fix")))
    codes = [f.code for f in diagnose(facts, report, "/socket.io/")]
    assert "websocket-upgrade-blocked" not in codes
    assert "no-sticky-sessions" in codes
