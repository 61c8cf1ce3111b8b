"""The probe (wizard/probe/) against real servers and proxies.

Backends are the rig's Node socket.io 4.8 / 2.5 servers, proxies are real nginx, Apache, Caddy
and http-proxy instances, bad inputs are real non-Socket.IO servers (tests/rig.py). Ping
settings are shortened so the hold tests take seconds. The classification rules are also
tested as pure functions from tables, beside the real runs that prove them.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import rig
from wizard import probe
from wizard.errors import BadInput, ExitCode, ProbeFailed
from wizard.findings import Finding, merge_findings, sort_findings
from wizard.probe import HoldResult, ProbeOptions, ProbeReport, Stage, percentile, run_probe
from wizard.probe.wire import Handshake, HttpResponse

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

Backend = Callable[..., rig.NodeBackend]
Plain = Callable[..., rig.PlainServer]


def codes(report: ProbeReport) -> list[str]:
    return [f.code for f in report.findings]


def stage(report: ProbeReport, name: str) -> Stage:
    found = report.stage(name)
    assert found is not None, f"no {name} stage in {[s.name for s in report.stages]}"
    return found


def nginx_site(port: int, upstream: str, *, upgrade: bool = True, extra: str = "",
               upstream_block: str = "", path: str = "/socket.io/") -> str:
    """A hand-written nginx site with exactly one fault switched on by the caller."""
    headers = ("proxy_set_header Upgrade $http_upgrade;\n"
               "        proxy_set_header Connection $connection_upgrade;") if upgrade else ""
    return f"""map $http_upgrade $connection_upgrade {{
    default upgrade;
    '' close;
}}
{upstream_block}
server {{
    listen 127.0.0.1:{port};
    location {path} {{
        proxy_pass http://{upstream};
        proxy_http_version 1.1;
        {headers}
        proxy_set_header Host $host;
        {extra}
    }}
}}
"""


def start_nginx(factory: rig.ProxyFactory, site: Callable[[int], str]) -> rig.ProxyInstance:
    port = rig.free_port()
    return factory.from_site("nginx", site(port), port=port).start()


# --------------------------------------------------------------------------- healthy


def test_healthy_direct_backend_reports_every_stage(node_backend: Backend) -> None:
    backend = node_backend(ping_interval=3000, ping_timeout=2000)
    seen: list[str] = []
    report = run_probe(backend.url, ProbeOptions(emit="echo", data='{"n": 7}'),
                       on_stage=lambda s: seen.append(s.name))
    assert report.ok, probe.format_report(report)
    assert report.transport == "websocket"
    assert report.findings == ()
    assert seen == ["tcp", "polling", "websocket", "origin", "firefox", "socketio", "emit"]
    hs = report.handshake
    assert hs is not None
    assert (hs.ping_interval_ms, hs.ping_timeout_ms, hs.eio_version) == (3000, 2000, 4)
    assert hs.upgrades == ("websocket",) and hs.max_payload == 1_000_000
    assert stage(report, "emit").data["reply"] == {"n": 7, "server": "a"}
    assert stage(report, "websocket").data["status"] == 101
    # the JSON form the CLI prints: plain JSON with the promised keys
    data = json.loads(json.dumps(report.to_dict()))
    assert {"ok", "transport", "handshake", "stages", "findings"} <= set(data)
    assert data["handshake"]["pingInterval"] == 3000
    assert {"name", "ok", "ms", "detail"} <= set(data["stages"][0])
    table = probe.format_report(report)
    assert "websocket" in table and "findings: none" in table and "result: OK" in table


def test_the_socketio_child_connects_without_loading_aiohttp(node_backend: Backend) -> None:
    """The real client's child process (``wizard.probe.sio``) uses python-socketio's sync
    Client; engineio imports aiohttp only for its AsyncClient, so the child marks it absent
    (~0.12 s of its start). Run as ``sio_probe_bounded`` runs it, with the import log on."""
    import dataclasses
    import os

    from wizard.probe.sio import SioRequest

    backend = node_backend(ping_interval=3000, ping_timeout=2000)
    request = SioRequest(base_url=backend.url, path="/socket.io/", headers=[], insecure=False,
                         timeout=10)
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-c", "from wizard.probe.sio import sio_child; sio_child()"],
        input=json.dumps(dataclasses.asdict(request)), capture_output=True, text=True,
        timeout=60, cwd=root, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    outcome = json.loads(proc.stdout)
    assert (outcome["transport"], outcome["error"]) == ("websocket", None), proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "socketio.client" in imported and "websocket" in imported
    # (the log names `aiohttp` for the refused attempt too; a real import loads its modules)
    assert not any(m.startswith("aiohttp.") for m in imported)


def test_expect_waits_for_an_event_instead_of_an_ack(node_backend: Backend) -> None:
    backend = node_backend(ping_interval=3000, ping_timeout=2000)
    report = run_probe(backend.url, ProbeOptions(emit="echo", data="1", expect="hello",
                                                 timeout=3))
    # "hello" comes on connect, so it may arrive before the emit: either way it is seen.
    assert report.ok, probe.format_report(report)
    assert stage(report, "emit").data["reply"] == {"id": "a"}


def test_an_unanswered_emit_is_a_round_trip_failure(node_backend: Backend) -> None:
    backend = node_backend(ping_interval=3000, ping_timeout=2000)
    report = run_probe(backend.url, ProbeOptions(emit="no-such-event", timeout=1))
    assert not report.ok
    assert report.transport == "websocket"
    assert codes(report) == ["round-trip-failed"]
    assert not stage(report, "emit").ok


def test_custom_path_and_the_default_path_against_it(node_backend: Backend) -> None:
    backend = node_backend(path="/rt/", ping_interval=3000, ping_timeout=2000)
    assert run_probe(backend.url, ProbeOptions(path="/rt")).ok
    wrong = run_probe(backend.url, ProbeOptions())
    assert not wrong.ok
    assert codes(wrong) == ["path-mismatch"]
    assert "404" in wrong.findings[0].title
    assert stage(wrong, "polling").data["status"] == 404
    assert wrong.stage("websocket") is None  # nothing to upgrade without a session


@pytest.mark.parametrize("kind", rig.PROXY_KINDS)
def test_healthy_through_each_proxy(kind: rig.ProxyKind, node_backend: Backend,
                                    proxy_factory: rig.ProxyFactory) -> None:
    backend = node_backend(ping_interval=3000, ping_timeout=2000)
    port = rig.free_port()
    proxy = proxy_factory.from_site(kind, rig.minimal_site(kind, port, backend.address),
                                    port=port).start()
    options = ProbeOptions(emit="echo", data=json.dumps({"k": kind}), sessions=4)
    report = run_probe(proxy.url, options)
    assert report.ok, probe.format_report(report)
    assert report.findings == ()
    assert report.sessions is not None and report.sessions.ok == 4


# --------------------------------------------------------------------------- proxy faults


def test_nginx_without_upgrade_headers_blocks_websocket(
        node_backend: Backend, proxy_factory: rig.ProxyFactory) -> None:
    backend = node_backend(ping_interval=3000, ping_timeout=2000)
    proxy = start_nginx(proxy_factory, lambda p: nginx_site(p, backend.address, upgrade=False))
    report = run_probe(proxy.url, ProbeOptions())
    assert not report.ok
    assert report.transport == "polling"  # python-socketio fell back without an error
    assert codes(report) == ["websocket-upgrade-blocked"]
    ws = stage(report, "websocket")
    assert not ws.ok and ws.data["status"] == 400 and '"code":3' in ws.data["body"]
    assert not stage(report, "socketio").ok
    assert "polling" in report.findings[0].evidence


def test_short_proxy_read_timeout_drops_the_hold_before_the_first_ping(
        node_backend: Backend, proxy_factory: rig.ProxyFactory) -> None:
    backend = node_backend(ping_interval=10000, ping_timeout=2000)
    proxy = start_nginx(proxy_factory, lambda p: nginx_site(
        p, backend.address, extra="proxy_read_timeout 2s;"))
    report = run_probe(proxy.url, ProbeOptions(hold=4))
    hold = report.hold
    assert hold is not None and hold.transport == "websocket"
    assert hold.dropped and hold.pings == 0 and hold.verdict == "certain"
    assert not report.ok and report.transport == "websocket"
    assert codes(report) == ["read-timeout-too-short"]
    finding = report.findings[0]
    assert finding.severity == "error" and "certain" in finding.title
    assert "12 s" in finding.fix  # pingInterval + pingTimeout from the live handshake


def test_short_read_timeout_is_also_seen_over_long_polling(
        node_backend: Backend, proxy_factory: rig.ProxyFactory) -> None:
    backend = node_backend(ping_interval=10000, ping_timeout=2000)
    proxy = start_nginx(proxy_factory, lambda p: nginx_site(
        p, backend.address, upgrade=False, extra="proxy_read_timeout 2s;"))
    report = run_probe(proxy.url, ProbeOptions(hold=4))
    hold = report.hold
    assert hold is not None and hold.transport == "polling"
    assert hold.dropped and hold.verdict == "certain" and "504" in hold.how
    assert codes(report) == ["websocket-upgrade-blocked", "read-timeout-too-short"]


def test_hold_counts_pings_when_nothing_drops(node_backend: Backend,
                                              proxy_factory: rig.ProxyFactory) -> None:
    backend = node_backend(ping_interval=500, ping_timeout=1000)
    proxy = start_nginx(proxy_factory, lambda p: nginx_site(
        p, backend.address, extra="proxy_read_timeout 30s;"))
    report = run_probe(proxy.url, ProbeOptions(hold=1.8))
    hold = report.hold
    assert hold is not None and not hold.dropped and hold.verdict == "no-drop"
    assert hold.pings >= 2  # every 0.5 s, answered by the probe, so the server keeps it
    assert report.ok and stage(report, "hold").ok


def test_two_backends_without_affinity_lose_sessions(
        node_backend: Backend, proxy_factory: rig.ProxyFactory) -> None:
    a = node_backend(server_id="a", ping_interval=3000, ping_timeout=2000)
    b = node_backend(server_id="b", ping_interval=3000, ping_timeout=2000)
    pool = f"upstream nodes {{ server {a.address}; server {b.address}; }}"
    proxy = start_nginx(proxy_factory, lambda p: nginx_site(p, "nodes", upstream_block=pool))
    report = run_probe(proxy.url, ProbeOptions(sessions=6, timeout=2))
    assert "no-sticky-sessions" in codes(report)
    assert report.sessions is not None and report.sessions.unknown_session > 0
    assert not stage(report, "sessions").ok
    assert not report.ok


def test_two_backends_with_ip_hash_keep_sessions(
        node_backend: Backend, proxy_factory: rig.ProxyFactory) -> None:
    a = node_backend(server_id="a", ping_interval=3000, ping_timeout=2000)
    b = node_backend(server_id="b", ping_interval=3000, ping_timeout=2000)
    pool = f"upstream nodes {{ ip_hash; server {a.address}; server {b.address}; }}"
    proxy = start_nginx(proxy_factory, lambda p: nginx_site(p, "nodes", upstream_block=pool))
    report = run_probe(proxy.url, ProbeOptions(sessions=6))
    assert report.ok, probe.format_report(report)
    assert report.sessions is not None and report.sessions.ok == 6


def test_dead_backend_behind_nginx_is_a_502(proxy_factory: rig.ProxyFactory) -> None:
    nowhere = f"127.0.0.1:{rig.free_port()}"
    proxy = start_nginx(proxy_factory, lambda p: nginx_site(p, nowhere))
    report = run_probe(proxy.url, ProbeOptions(hold=1, sessions=2, clients=3))
    assert codes(report) == ["backend-unreachable"]
    assert stage(report, "polling").data["status"] == 502
    # the optional stages say why they did not run instead of failing noisily
    assert stage(report, "hold").detail.startswith("skipped")
    assert stage(report, "sessions").detail.startswith("skipped")
    assert stage(report, "clients").detail.startswith("skipped")


def test_clients_through_nginx_report_percentiles(
        node_backend: Backend, proxy_factory: rig.ProxyFactory) -> None:
    backend = node_backend(ping_interval=3000, ping_timeout=2000)
    proxy = start_nginx(proxy_factory, lambda p: nginx_site(p, backend.address))
    report = run_probe(proxy.url, ProbeOptions(clients=50))
    clients = report.clients
    assert clients is not None
    assert (clients.requested, clients.connected, clients.failed) == (50, 50, 0)
    assert clients.p50_ms is not None and clients.p95_ms is not None
    assert clients.p99_ms is not None and clients.max_ms is not None
    assert clients.p50_ms <= clients.p95_ms <= clients.p99_ms <= clients.max_ms
    assert clients.cpu_s >= 0 and clients.max_rss_mb > 0
    assert report.ok and stage(report, "clients").ok
    assert backend.wait_event("CONNECT")  # the server really saw Socket.IO connections


# --------------------------------------------------------------------------- bad inputs


def test_closed_port_is_proxy_unreachable() -> None:
    report = run_probe(f"http://127.0.0.1:{rig.free_port()}", ProbeOptions(timeout=2))
    assert codes(report) == ["proxy-unreachable"]
    assert [s.name for s in report.stages] == ["tcp"]
    assert "refused" in report.findings[0].title


def test_socketio_2_server_is_an_eio_version_mismatch(node_backend: Backend) -> None:
    backend = node_backend(version=2, ping_interval=3000, ping_timeout=2000)
    report = run_probe(backend.url, ProbeOptions())
    assert codes(report) == ["eio-version-mismatch"]
    assert report.handshake is not None and report.handshake.eio_version == 3
    assert stage(report, "polling-eio3").ok
    assert not report.ok and report.transport is None


def test_v4_server_refusing_eio3_is_not_a_mismatch(node_backend: Backend) -> None:
    # Control for the test above: a 4.x server answers EIO=4, no EIO=3 retry happens.
    report = run_probe(node_backend(allow_eio3=False).url, ProbeOptions())
    assert report.stage("polling-eio3") is None and report.ok


def test_plain_http_server_is_not_socketio(plain_server: Plain) -> None:
    report = run_probe(plain_server("http").url, ProbeOptions())
    assert codes(report) == ["path-mismatch"]
    assert "not Socket.IO" in report.findings[0].title


def test_plain_websocket_server_is_named(plain_server: Plain) -> None:
    report = run_probe(plain_server("ws").url, ProbeOptions())
    assert codes(report) == ["path-mismatch"]
    assert "plain WebSocket server" in report.findings[0].title


@pytest.mark.parametrize("mode", ["silent", "close"])
def test_servers_that_never_answer_do_not_hang_the_probe(mode: str, plain_server: Plain) -> None:
    report = run_probe(plain_server(mode).url, ProbeOptions(timeout=1))
    assert codes(report) == ["proxy-unreachable"]
    assert not stage(report, "polling").ok


def test_https_to_a_plain_http_port_is_a_tls_error(plain_server: Plain) -> None:
    server = plain_server("http")
    report = run_probe(server.url.replace("http://", "https://"), ProbeOptions(timeout=2))
    assert codes(report) == ["tls-error"]
    assert "plain HTTP" in report.findings[0].fix


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60)
    return cert, key


def test_self_signed_tls_needs_insecure(self_signed: tuple[Path, Path], node_backend: Backend,
                                        proxy_factory: rig.ProxyFactory) -> None:
    cert, key = self_signed
    backend = node_backend(ping_interval=3000, ping_timeout=2000)
    proxy = start_nginx(proxy_factory, lambda p: nginx_site(p, backend.address).replace(
        f"listen 127.0.0.1:{p};",
        f"listen 127.0.0.1:{p} ssl;\n    ssl_certificate {cert};\n"
        f"    ssl_certificate_key {key};"))
    url = f"https://127.0.0.1:{proxy.port}"
    refused = run_probe(url, ProbeOptions(timeout=3))
    assert codes(refused) == ["tls-error"]
    assert "--insecure" in refused.findings[0].fix
    report = run_probe(url, ProbeOptions(insecure=True, emit="echo", data="{}", clients=5))
    assert report.ok, probe.format_report(report)
    assert stage(report, "tls").ok and report.transport == "websocket"


PYTHON_SERVER = """
import sys
from aiohttp import web
import socketio

transports = sys.argv[1].split(",")
sio = socketio.AsyncServer(async_mode="aiohttp", transports=transports,
                           cors_allowed_origins=["https://good.example"],
                           ping_interval=3, ping_timeout=2)

@sio.on("echo")
async def echo(sid, data):
    return data

async def ready(runner):
    port = runner.addresses[0][1]
    print("READY", port, flush=True)

app = web.Application()
sio.attach(app)
async def main():
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print("READY", site._server.sockets[0].getsockname()[1], flush=True)
    import asyncio
    await asyncio.Event().wait()

import asyncio
asyncio.run(main())
"""


@pytest.fixture
def python_server(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """python-socketio's own server (aiohttp) allowing one origin; `transports` is its
    comma-separated transports option. Every server is stopped at teardown."""
    script = tmp_path / "pysrv.py"
    script.write_text(PYTHON_SERVER)
    procs: list[subprocess.Popen[str]] = []

    def make(transports: str = "polling,websocket") -> str:
        proc = subprocess.Popen([sys.executable, str(script), transports],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY"), line
        return f"http://127.0.0.1:{line.split()[1]}"

    yield make
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def test_origin_rejected_by_python_socketio(python_server: Callable[[str], str]) -> None:
    url = python_server("polling,websocket")
    report = run_probe(url, ProbeOptions(origin="https://evil.example", timeout=2))
    assert codes(report) == ["origin-rejected"]
    assert "not an accepted origin" in report.findings[0].evidence.lower()
    accepted = run_probe(url, ProbeOptions(origin="https://good.example", emit="echo",
                                           data='"x"'))
    assert accepted.ok, probe.format_report(accepted)
    assert stage(accepted, "emit").data["reply"] == "x"


def test_websocket_only_server(python_server: Callable[[str], str]) -> None:
    report = run_probe(python_server("websocket"), ProbeOptions(hold=1, sessions=2))
    assert stage(report, "websocket").ok
    assert report.handshake is not None and report.handshake.ping_interval_ms == 3000
    assert report.transport == "websocket"
    assert codes(report) == ["polling-disabled"]
    assert report.findings[0].severity == "warning"
    assert report.ok  # a warning: WebSocket works end to end
    assert stage(report, "sessions").detail.startswith("skipped")


@pytest.mark.parametrize("url", ["", "localhost:3000", "ftp://h", "http://", "http://h:70000",
                                 "http://h/chat", "http://h/?x=1"])
def test_malformed_urls_raise_probe_failed(url: str) -> None:
    with pytest.raises(ProbeFailed) as info:
        run_probe(url, ProbeOptions())
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert info.value.hint


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (ProbeOptions(timeout=0), "--timeout"),
        (ProbeOptions(hold=-1), "--hold"),
        (ProbeOptions(sessions=-2), "--sessions"),
        (ProbeOptions(clients=10**7), "--clients"),
        (ProbeOptions(expect="x"), "--expect needs --emit"),
        (ProbeOptions(data="1"), "--data needs --emit"),
        (ProbeOptions(emit="e", data="{x"), "--data is not valid JSON"),
        (ProbeOptions(headers=(("Bad Name", "v"),)), "invalid header"),
        (ProbeOptions(path="/a?b"), "Invalid Socket.IO path"),
    ],
)
def test_bad_options_raise_before_any_traffic(options: ProbeOptions, words: str) -> None:
    with pytest.raises(ProbeFailed) as info:
        run_probe("http://127.0.0.1:1", options)
    assert words in info.value.title


def test_parse_header_and_data() -> None:
    assert probe.parse_header("Authorization: Bearer a:b") == ("Authorization", "Bearer a:b")
    assert probe.parse_data('{"a": [1]}') == {"a": [1]}
    assert probe.parse_data("null") is None
    for bad in ("NoColon", ": v", "Two Words: v"):
        with pytest.raises(BadInput):
            probe.parse_header(bad)
    with pytest.raises(BadInput, match="not valid JSON"):
        probe.parse_data("{x")


def test_host_header_and_origin_reach_every_stage(node_backend: Backend,
                                                 proxy_factory: rig.ProxyFactory) -> None:
    # Probing a virtual host by IP: nginx routes on Host, so a lost or doubled Host header in
    # any stage (raw or python-socketio's polling and WebSocket requests) would fail it.
    backend = node_backend(ping_interval=3000, ping_timeout=2000)

    def site(port: int) -> str:
        vhost = nginx_site(port, backend.address).replace(
            f"listen 127.0.0.1:{port};", f"listen 127.0.0.1:{port};\n    server_name app.example;")
        return vhost + (f"server {{ listen 127.0.0.1:{port} default_server; "
                        "return 404; }\n")

    proxy = start_nginx(proxy_factory, site)
    report = run_probe(proxy.url, ProbeOptions(headers=(("Host", "app.example"),),
                                               origin="https://app.example", emit="echo",
                                               data="{}"))
    assert report.ok, probe.format_report(report)
    assert report.transport == "websocket"
    assert codes(run_probe(proxy.url, ProbeOptions())) == ["path-mismatch"]


# --------------------------------------------------------------------------- pure rules


def response(status: int, body: bytes, content_type: str = "text/plain",
             reason: str = "R") -> HttpResponse:
    return HttpResponse(status, reason, (("Content-Type", content_type),), body)


@pytest.mark.parametrize(
    ("answer", "origin", "code", "retry", "ws_only"),
    [
        (response(404, b"not found"), None, "path-mismatch", False, False),
        (response(502, b"<html>bad gateway"), None, "backend-unreachable", False, False),
        (response(503, b"unavailable"), None, "backend-unreachable", False, False),
        (response(504, b"timeout"), None, "backend-unreachable", False, False),
        (response(426, b"Upgrade Required"), None, "path-mismatch", False, False),
        (response(200, b"<!doctype html>", "text/html"), None, "path-mismatch", False, False),
        (response(400, b'{"code":5,"message":"Unsupported protocol version"}'), None, None,
         True, False),
        (response(400, b'{"code":0,"message":"Transport unknown"}'), None, None, False, True),
        (response(200, b'96:0{"sid":"x","upgrades":[],"pingInterval":1,"pingTimeout":1}2:40'),
         None, None, True, False),
        (response(400, b'"Not an accepted origin."'), "https://x", "origin-rejected", False,
         False),
        (response(403, b'{"code":4,"message":"Forbidden"}'), None, "origin-rejected", False,
         False),
        (response(403, b"denied"), "https://x", "origin-rejected", False, False),
        (response(418, b'{"code":9,"message":"teapot"}'), None, "unexpected-response", False,
         False),
    ],
)
def test_classify_handshake(answer: HttpResponse, origin: str | None, code: str | None,
                            retry: bool, ws_only: bool) -> None:
    verdict = probe.classify_handshake(answer, "/socket.io/", origin)
    assert [f.code for f in verdict.findings] == ([code] if code else [])
    assert (verdict.retry_eio3, verdict.websocket_only) == (retry, ws_only)
    assert verdict.handshake is None


@pytest.mark.parametrize(
    ("answer", "code", "words"),
    [
        (response(400, b'{"code":3,"message":"Bad request"}'), "websocket-upgrade-blocked",
         "Upgrade/Connection"),
        (response(200, b"6"), "websocket-upgrade-blocked", "long-polling"),
        (response(400, b'{"code":1,"message":"Session ID unknown"}'), "no-sticky-sessions",
         "another server"),
        (response(400, b'"Invalid session abc"'), "no-sticky-sessions", "another server"),
        (response(502, b""), "websocket-upgrade-blocked", "cannot reach"),
        (response(404, b""), "websocket-upgrade-blocked", "no route"),
        (response(403, b'{"code":4,"message":"Forbidden"}'), "origin-rejected", "Origin"),
    ],
)
def test_classify_upgrade(answer: HttpResponse, code: str, words: str) -> None:
    finding = probe.classify_upgrade(answer, "/socket.io/", None)
    assert finding.code == code
    assert words in finding.title


HS = Handshake("s", ("websocket",), 10000, 5000, 1_000_000, 4)


@pytest.mark.parametrize(
    ("idle", "closed", "verdict"),
    [(2.0, False, "certain"), (9.0, False, "certain"), (10.0, False, "at-risk"),
     (15.0, False, "at-risk"), (40.0, False, "late"), (2.0, True, "server-closed")],
)
def test_hold_verdict(idle: float, closed: bool, verdict: str) -> None:
    assert probe.hold_verdict(HS, idle, closed) == verdict


def hold(verdict: str, idle: float) -> HoldResult:
    return HoldResult("websocket", 30, idle, 0, (), True, idle, idle, "closed",
                      verdict)  # type: ignore[arg-type]


def test_hold_findings_grade_severity() -> None:
    certain = probe.hold_finding(HS, hold("certain", 2.0))
    risky = probe.hold_finding(HS, hold("at-risk", 12.0))
    late = probe.hold_finding(HS, hold("late", 40.0))
    assert certain is not None and certain.severity == "error"
    assert certain.code == "read-timeout-too-short" and "certain" in certain.title
    assert risky is not None and risky.severity == "warning" and "at risk" in risky.title
    assert late is not None and late.code == "connection-dropped"
    assert "15 s" in certain.fix and "60 s" in certain.fix  # sum, and wizard.heartbeat's suggestion
    held = HoldResult("websocket", 3, 3, 0, (), False, None, None, "held", "no-drop")
    assert probe.hold_finding(HS, held) is None


def test_merge_and_sort_findings() -> None:
    a1 = Finding("a", "warning", "A", "stage 1", "fix a")
    a2 = Finding("a", "error", "A again", "stage 2", "other")
    b = Finding("b", "info", "B", "x", "y")
    c = Finding("c", "error", "C", "x", "y")
    merged = sort_findings(merge_findings([b, a1, a2, c]))
    assert [f.code for f in merged] == ["a", "c", "b"]
    assert merged[0].severity == "error" and merged[0].evidence == "stage 1; stage 2"
    assert merged[0].title == "A" and merged[0].fix == "fix a"


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (
        50.0, 95.0, 99.0)
    assert percentile([], 50) is None and percentile([7.0], 99) == 7.0


def test_importing_the_probe_stays_light() -> None:
    code = ("import sys, wizard.probe; heavy = [m for m in ('socketio', 'engineio', 'aiohttp', "
            "'asyncio', 'requests') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def raw_server() -> Iterator[Callable[[bytes], str]]:
    """A TCP server that answers every connection with fixed bytes (a non-HTTP service, a
    broken HTTP server), in a thread; all stopped at teardown."""
    import socket
    import threading

    servers: list[tuple[socket.socket, threading.Thread]] = []

    def make(answer: bytes) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.2)

        def serve() -> None:
            while listener.fileno() != -1:
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                with conn:
                    conn.settimeout(1)
                    with contextlib.suppress(OSError):
                        conn.recv(65536)
                        conn.sendall(answer)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        servers.append((listener, thread))
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield make
    for listener, thread in servers:
        listener.close()
        thread.join(5)


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (b"SSH-2.0-OpenSSH_9.2p1\r\n", "unexpected-response"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "unexpected-response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", "proxy-unreachable"),
    ],
)
def test_broken_answers_become_findings(raw_server: Callable[[bytes], str], answer: bytes,
                                        code: str) -> None:
    report = run_probe(raw_server(answer), ProbeOptions(timeout=1, sessions=2, hold=1))
    assert codes(report) == [code]
    assert not report.ok


def test_more_clients_than_open_files_is_refused_up_front() -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > 90_000:
        pytest.skip(f"the hard open-file limit ({hard}) allows the clients")
    with pytest.raises(ProbeFailed, match="open files") as info:
        run_probe("http://127.0.0.1:1", ProbeOptions(clients=99_000))
    assert "ulimit" in info.value.hint
