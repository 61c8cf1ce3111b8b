"""``sockwizard diagnose`` against real proxies configured by hand, each with one fault.

Every scenario runs a real proxy (nginx, Apache httpd, Caddy or a node http-proxy script, from
tests/rig.py) in front of real Socket.IO servers (the rig's Node socket.io 4.x/2.x servers with
default or shortened ping settings; a python-socketio server for the Origin cases, because the
Node server never refuses an Origin), reads the proxy's live config through a Remote — this
machine's LocalRemote, or the rig's real sshd as `swdeploy` with passwordless sudo — and checks
the exact (code, severity) pairs. Configs here are written by hand on purpose (not by our
templates); a last group checks that configs sockwizard renders give no findings at all.

No timed asserts: the "verdict in seconds, not after the drop" figure is in
bench/bench_verdict.py. Nothing here waits for an idle timeout, except the one --hold case that
confirms a drop without SSH (2 s).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests import rig
from wizard.diagnose import Diagnosis, format_diagnosis, run_diagnosis
from wizard.model import Backend, DeploySpec, ProxyKind
from wizard.probe import ProbeOptions
from wizard.proxies import profile
from wizard.remote import LocalRemote, Remote
from wizard.render import render

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

MAP = "map $http_upgrade $connection_upgrade {\n    default upgrade;\n    '' close;\n}\n"


# --------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class Server:
    """One Socket.IO server behind the proxy."""

    kind: str = "node4"  # node4 | node2 | python
    path: str = "/socket.io/"
    ping_interval: int = 25000
    ping_timeout: int = 20000
    cors: str = ""  # python: "" = same-origin only (python-socketio's default), else one origin


@dataclass
class Ctx:
    """What a config template gets: the proxy's port, the servers' addresses, cert paths."""

    port: int
    backends: list[str]
    cert: str = ""
    key: str = ""
    dead: str = ""  # an address where nothing listens

    @property
    def b(self) -> str:
        return self.backends[0]


PY_SERVER = textwrap.dedent("""\
    import asyncio, sys
    import socketio
    from aiohttp import web

    path, interval, timeout, cors = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=interval / 1000,
                               ping_timeout=timeout / 1000,
                               cors_allowed_origins=[cors] if cors else None)
    app = web.Application()
    sio.attach(app, socketio_path=path.strip("/"))

    @sio.on("echo")
    async def echo(sid, data):
        return data

    async def main():
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        print("READY", port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """)


class PythonServer:
    """python-socketio (aiohttp) as a child process; same-origin checks like Flask-SocketIO."""

    def __init__(self, spec: Server, workdir: Path) -> None:
        script = workdir / "py_server.py"
        script.write_text(PY_SERVER)
        self.daemon = rig.Daemon("python-socketio server", [
            sys.executable, str(script), spec.path, str(spec.ping_interval),
            str(spec.ping_timeout), spec.cors])
        try:
            m = self.daemon.wait_line(r"^READY (\d+)$", timeout=20)
        except rig.RigError:
            self.daemon.stop()
            raise
        self.address = f"127.0.0.1:{m.group(1)}"

    def stop(self) -> None:
        self.daemon.stop()


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    id: str
    kind: ProxyKind
    config: Callable[[Ctx], str]
    expect: list[tuple[str, str]]
    servers: tuple[Server, ...] = (Server(),)
    full: bool = False  # the text is a whole main config (else a site fragment)
    path: str = "/socket.io/"
    tls: bool = False
    origin: str | None = None  # "{url}" is replaced by the proxy's URL
    hold: float = 0.0
    ssh: bool = False
    read_config: bool = True
    stop_proxy: bool = False
    probe_port: Callable[[Ctx], int] | None = None
    modules: tuple[str, ...] | None = None
    config_evidence: bool = True  # the findings point at a line of the live config


def nginx_loc(ctx: Ctx, *, upstream: str | None = None, headers: str | None = None,
              extra: str = "", listen: str | None = None, path: str = "/socket.io/",
              before: str = "") -> str:
    h = headers if headers is not None else (
        "        proxy_http_version 1.1;\n"
        "        proxy_set_header Upgrade $http_upgrade;\n"
        "        proxy_set_header Connection $connection_upgrade;\n"
        "        proxy_set_header Host $host;\n"
        "        proxy_set_header X-Forwarded-Proto $scheme;\n")
    return (f"{MAP}{before}server {{\n    listen {listen or f'127.0.0.1:{ctx.port}'};\n"
            f"    location {path} {{\n        proxy_pass http://{upstream or ctx.b};\n"
            f"{h}{extra}    }}\n}}\n")


def apache_vhost(ctx: Ctx, body: str, head: str = "") -> str:
    return (f"{head}<VirtualHost *:{ctx.port}>\n    ProxyPreserveHost On\n"
            f"    RequestHeader set X-Forwarded-Proto \"http\"\n{body}</VirtualHost>\n")


def apache_pp(ctx: Ctx, extra: str = " upgrade=websocket", path: str = "/socket.io/") -> str:
    return (f"    ProxyPass \"{path}\" \"http://{ctx.b}{path}\"{extra}\n"
            f"    ProxyPassReverse \"{path}\" \"http://{ctx.b}{path}\"\n")


def caddy_site(ctx: Ctx, body: str) -> str:
    return f"http://127.0.0.1:{ctx.port} {{\n\tbind 127.0.0.1\n{body}}}\n"


def haproxy_site(ctx: Ctx, backend: str = "", *, cookies: bool = False) -> str:
    """A frontend + backend for the rig's conf.d (its main config: Debian's stock defaults,
    timeout client/server 50 s, no timeout tunnel)."""
    servers = "".join(f"    server app{i} {b}" + (f" cookie app{i}" if cookies else "") + "\n"
                      for i, b in enumerate(ctx.backends, 1))
    return (f"frontend web\n    bind 127.0.0.1:{ctx.port}\n    default_backend nodes\n\n"
            f"backend nodes\n{backend}{servers}")


NODE_ERR = ("proxy.on('error', (err, req, res) => {\n"
            "  if (res && res.writeHead && !res.headersSent) { res.writeHead(502); res.end(); }\n"
            "  else if (res && res.destroy) res.destroy();\n});\n")


def node_script(ctx: Ctx, *, options: str = "ws: true, xfwd: true", upgrade: bool = True,
                head: str = "", error: bool = True, target: str | None = None) -> str:
    tgt = target or f"http://{ctx.b}"
    return ("'use strict';\nconst http = require('http');\nconst httpProxy = require('http-proxy');\n"
            f"{head}const proxy = httpProxy.createProxyServer({{ target: '{tgt}', {options} }});\n"
            + (NODE_ERR if error else "")
            + "const server = http.createServer((req, res) => proxy.web(req, res));\n"
            + ("server.on('upgrade', (req, socket, head) => proxy.ws(req, socket, head));\n"
               if upgrade else "")
            + f"server.listen({ctx.port}, '127.0.0.1');\n"
            "process.on('SIGTERM', () => process.exit(0));\n")


def traefik_dyn(ctx: Ctx, *, sticky: bool = True, header_timeout: str = "60s") -> str:
    return ("http:\n  routers:\n    socketio:\n      rule: \"PathPrefix(`/socket.io/`)\"\n"
            "      service: \"socketio\"\n  services:\n    socketio:\n      loadBalancer:\n"
            "        servers:\n" + "".join(f"          - url: \"http://{b}\"\n"
                                          for b in ctx.backends)
            + ("        sticky:\n          cookie:\n            name: \"sio\"\n"
               if sticky else "")
            + "        serversTransport: \"socketio\"\n  serversTransports:\n    socketio:\n"
            f"      forwardingTimeouts:\n        responseHeaderTimeout: \"{header_timeout}\"\n")


SHORT = Server(ping_interval=5000, ping_timeout=3000)
TWO = (Server(), Server())

SCENARIOS: list[Scenario] = [
    # ---- healthy, hand-written, one per proxy (and one with shortened pings)
    Scenario("nginx-healthy", ProxyKind.NGINX, lambda c: nginx_loc(c), []),
    Scenario("apache-healthy", ProxyKind.APACHE, lambda c: apache_vhost(c, apache_pp(c)), []),
    Scenario("caddy-healthy", ProxyKind.CADDY,
             lambda c: caddy_site(c, f"\treverse_proxy /socket.io/* {c.b}\n"), []),
    Scenario("node-healthy", ProxyKind.NODE, lambda c: node_script(c), [], full=True),
    Scenario("haproxy-healthy", ProxyKind.HAPROXY,
             lambda c: haproxy_site(c, "    timeout tunnel 1h\n"), []),
    # HAProxy: Debian's stock 50 s client/server timeouts and no tunnel timeout, under a
    # server that pings every 60 s (and the healthy twin with timeout tunnel/server raised).
    Scenario("haproxy-no-tunnel-timeout-ping-60s", ProxyKind.HAPROXY, lambda c: haproxy_site(c),
             [("read-timeout-too-short", "error")],
             servers=(Server(ping_interval=60000, ping_timeout=20000),), ssh=True),
    Scenario("haproxy-tunnel-timeout-ping-60s-healthy", ProxyKind.HAPROXY,
             lambda c: haproxy_site(c, "    timeout server 90s\n    timeout tunnel 120s\n"), [],
             servers=(Server(ping_interval=60000, ping_timeout=20000),)),
    # HAProxy: the docs' `cookie io prefix` with Socket.IO 4 (no io cookie: not sticky), and
    # the twin that inserts its own cookie.
    Scenario("haproxy-cookie-io-prefix", ProxyKind.HAPROXY,
             lambda c: haproxy_site(c, "    timeout tunnel 1h\n    cookie io prefix indirect "
                                       "nocache\n", cookies=True),
             [("no-sticky-sessions", "error")], servers=TWO),
    Scenario("haproxy-cookie-insert-healthy", ProxyKind.HAPROXY,
             lambda c: haproxy_site(c, "    timeout tunnel 1h\n    cookie SERVERID insert "
                                       "indirect nocache\n", cookies=True), [], servers=TWO),
    Scenario("nginx-healthy-short-ping", ProxyKind.NGINX,
             lambda c: nginx_loc(c, extra="        proxy_read_timeout 10s;\n"), [],
             servers=(SHORT,)),
    # ---- read-timeout-too-short (no waiting: from the config and the live handshake)
    Scenario("nginx-timeout-ssh", ProxyKind.NGINX,
             lambda c: nginx_loc(c, extra="        proxy_read_timeout 3s;\n"),
             [("read-timeout-too-short", "error")], ssh=True),
    Scenario("caddy-read-timeout-short-ping", ProxyKind.CADDY,
             lambda c: caddy_site(c, f"\treverse_proxy /socket.io/* {c.b} {{\n\t\ttransport http "
                                     "{\n\t\t\tread_timeout 4s\n\t\t}\n\t}\n"),
             [("read-timeout-too-short", "error")], servers=(SHORT,)),
    Scenario("apache-timeout-at-risk", ProxyKind.APACHE,
             lambda c: apache_vhost(c, "    ProxyTimeout 6\n" + apache_pp(c), head="Timeout 6\n"),
             [("read-timeout-too-short", "warning")], servers=(SHORT,), ssh=True),
    Scenario("node-proxy-timeout", ProxyKind.NODE,
             lambda c: node_script(c, head="const TIMEOUT_MS = 3000;\n",
                                   options="ws: true, xfwd: true, proxyTimeout: TIMEOUT_MS"),
             [("read-timeout-too-short", "error")], servers=(SHORT,), full=True, ssh=True),
    Scenario("nginx-default-timeout-raised-ping", ProxyKind.NGINX, lambda c: nginx_loc(c),
             [("read-timeout-too-short", "warning")],
             servers=(Server(ping_interval=50000, ping_timeout=20000),)),
    Scenario("nginx-hold-confirms-without-ssh", ProxyKind.NGINX,
             lambda c: nginx_loc(c, extra="        proxy_read_timeout 2s;\n"),
             [("read-timeout-too-short", "error")], read_config=False, hold=3.5),
    # ---- websocket-upgrade-blocked
    Scenario("nginx-headers-lost-by-inheritance", ProxyKind.NGINX,
             lambda c: (f"{MAP}server {{\n    listen 127.0.0.1:{c.port};\n"
                        "    proxy_set_header Upgrade $http_upgrade;\n"
                        "    proxy_set_header Connection $connection_upgrade;\n"
                        f"    location /socket.io/ {{\n        proxy_pass http://{c.b};\n"
                        "        proxy_http_version 1.1;\n        proxy_set_header Host $host;\n"
                        "        proxy_set_header X-Forwarded-Proto $scheme;\n    }\n}\n"),
             [("websocket-upgrade-blocked", "error")], ssh=True),
    Scenario("apache-no-upgrade-param", ProxyKind.APACHE,
             lambda c: apache_vhost(c, apache_pp(c, extra="")),
             [("websocket-upgrade-blocked", "error")]),
    Scenario("caddy-header-up-upgrade", ProxyKind.CADDY,
             lambda c: caddy_site(c, f"\treverse_proxy /socket.io/* {c.b} {{\n"
                                     "\t\theader_up -Upgrade\n\t}\n"),
             [("websocket-upgrade-blocked", "error")], ssh=True),
    Scenario("node-no-upgrade-listener", ProxyKind.NODE, lambda c: node_script(c, upgrade=False),
             [("websocket-upgrade-blocked", "error")], full=True),
    # ---- path-mismatch
    Scenario("nginx-proxy-pass-strips-path", ProxyKind.NGINX,
             lambda c: nginx_loc(c, upstream=f"{c.b}/"), [("path-mismatch", "error")]),
    Scenario("caddy-handle-path-without-rewrite", ProxyKind.CADDY,
             lambda c: caddy_site(c, f"\thandle_path /chat/* {{\n\t\treverse_proxy {c.b}\n\t}}\n"),
             [("path-mismatch", "error")], servers=(Server(path="/chat/"),), path="/chat/"),
    Scenario("apache-no-socketio-route", ProxyKind.APACHE,
             lambda c: apache_vhost(c, apache_pp(c, path="/api/")),
             [("path-mismatch", "error")], ssh=True),
    # ---- no-sticky-sessions
    Scenario("nginx-two-backends-round-robin", ProxyKind.NGINX,
             lambda c: nginx_loc(c, upstream="nodes", before=(
                 "upstream nodes {\n" + "".join(f"    server {b};\n" for b in c.backends)
                 + "}\n")),
             [("no-sticky-sessions", "error")], servers=TWO),
    Scenario("caddy-lb-round-robin", ProxyKind.CADDY,
             lambda c: caddy_site(c, f"\treverse_proxy /socket.io/* {' '.join(c.backends)} {{\n"
                                     "\t\tlb_policy round_robin\n\t}\n"),
             [("no-sticky-sessions", "error")], servers=TWO, ssh=True),
    Scenario("apache-balancer-without-stickysession", ProxyKind.APACHE,
             lambda c: apache_vhost(c, "    <Proxy \"balancer://nodes\">\n" + "".join(
                 f"        BalancerMember \"http://{b}\" upgrade=websocket\n" for b in c.backends)
                 + "    </Proxy>\n    ProxyPass \"/socket.io/\" \"balancer://nodes/socket.io/\"\n"),
             [("no-sticky-sessions", "error")], servers=TWO),
    Scenario("traefik-no-sticky-cookie", ProxyKind.TRAEFIK,
             lambda c: traefik_dyn(c, sticky=False),
             [("no-sticky-sessions", "error")], servers=TWO, ssh=True),
    Scenario("traefik-sticky-healthy", ProxyKind.TRAEFIK, lambda c: traefik_dyn(c), [],
             servers=TWO, ssh=True),
    Scenario("traefik-response-header-timeout-short", ProxyKind.TRAEFIK,
             lambda c: traefik_dyn(c, header_timeout="3s"),
             [("read-timeout-too-short", "error")], servers=(SHORT,)),
    Scenario("traefik-response-header-timeout-healthy", ProxyKind.TRAEFIK,
             lambda c: traefik_dyn(c, header_timeout="10s"), [], servers=(SHORT,)),
    # ---- backend-unreachable
    Scenario("nginx-backend-down", ProxyKind.NGINX, lambda c: nginx_loc(c, upstream=c.dead),
             [("backend-unreachable", "error")], servers=()),
    Scenario("nginx-one-of-two-backends-down", ProxyKind.NGINX,
             lambda c: nginx_loc(c, upstream="nodes", before=(
                 f"upstream nodes {{\n    ip_hash;\n    server {c.b};\n    server {c.dead};\n}}\n")),
             [("backend-unreachable", "warning"), ("affinity-by-address", "warning")],
             ssh=True),
    Scenario("node-backend-down", ProxyKind.NODE,
             lambda c: node_script(c, target=f"http://{c.dead}"),
             [("backend-unreachable", "error")], servers=(), full=True, ssh=True),
    # ---- proxy-unreachable
    Scenario("nginx-probed-on-wrong-port", ProxyKind.NGINX, lambda c: nginx_loc(c),
             [("proxy-unreachable", "error")], probe_port=lambda c: rig.free_port()),
    Scenario("apache-not-running", ProxyKind.APACHE, lambda c: apache_vhost(c, apache_pp(c)),
             [("proxy-unreachable", "error")], stop_proxy=True, ssh=True),
    # ---- eio-version-mismatch (a Socket.IO 2.x server from npm)
    Scenario("nginx-socketio2-server", ProxyKind.NGINX, lambda c: nginx_loc(c),
             [("eio-version-mismatch", "error")], servers=(Server(kind="node2"),),
             config_evidence=False),
    Scenario("caddy-socketio2-server", ProxyKind.CADDY,
             lambda c: caddy_site(c, f"\treverse_proxy /socket.io/* {c.b}\n"),
             [("eio-version-mismatch", "error")], servers=(Server(kind="node2"),),
             config_evidence=False),
    # ---- origin-rejected (python-socketio checks the Origin; the Node server never does)
    Scenario("nginx-tls-without-forwarded-proto", ProxyKind.NGINX,
             lambda c: nginx_loc(c, listen=f"127.0.0.1:{c.port} ssl", headers=(
                 "        proxy_http_version 1.1;\n"
                 "        proxy_set_header Upgrade $http_upgrade;\n"
                 "        proxy_set_header Connection $connection_upgrade;\n"
                 "        proxy_set_header Host $http_host;\n"), before=(
                 f"ssl_certificate {c.cert};\nssl_certificate_key {c.key};\n")),
             [("origin-rejected", "error")], servers=(Server(kind="python"),), tls=True,
             origin="{url}", ssh=True),
    Scenario("caddy-origin-not-allowed", ProxyKind.CADDY,
             lambda c: caddy_site(c, f"\treverse_proxy /socket.io/* {c.b}\n"),
             [("origin-rejected", "error")],
             servers=(Server(kind="python", cors="https://app.example.com"),),
             origin="https://evil.example.com", config_evidence=False),
    Scenario("nginx-tls-python-healthy", ProxyKind.NGINX,
             lambda c: nginx_loc(c, listen=f"127.0.0.1:{c.port} ssl", headers=(
                 "        proxy_http_version 1.1;\n"
                 "        proxy_set_header Upgrade $http_upgrade;\n"
                 "        proxy_set_header Connection $connection_upgrade;\n"
                 "        proxy_set_header Host $http_host;\n"
                 "        proxy_set_header X-Forwarded-Proto $scheme;\n"), before=(
                 f"ssl_certificate {c.cert};\nssl_certificate_key {c.key};\n")),
             [], servers=(Server(kind="python"),), tls=True, origin="{url}"),
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def certs() -> Iterator[tuple[str, str]]:
    """A self-signed certificate for 127.0.0.1 (the TLS scenarios probe with --insecure)."""
    directory = rig.make_world_dir("sockwizard-diag-tls-")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    key.chmod(0o644)
    yield str(cert), str(key)
    subprocess.run(["rm", "-rf", str(directory)], check=False)


@pytest.fixture
def python_server() -> Iterator[Callable[[Server], PythonServer]]:
    started: list[PythonServer] = []
    workdir = rig.make_world_dir("sockwizard-diag-py-")

    def make(spec: Server) -> PythonServer:
        server = PythonServer(spec, workdir)
        started.append(server)
        return server

    yield make
    for server in reversed(started):
        server.stop()
    subprocess.run(["rm", "-rf", str(workdir)], check=False)


@pytest.fixture(scope="module")
def ssh_remote_factory() -> Iterator[Callable[[rig.SshdInstance], Remote]]:
    """Opens SshRemote connections as swdeploy (one per scenario) and closes them all."""
    opened: list[Remote] = []

    def connect(sshd: rig.SshdInstance) -> Remote:
        from wizard.remote import SshRemote, SshTarget

        remote = SshRemote.connect(
            SshTarget(host=sshd.host, port=sshd.port, user=rig.DEPLOY_USER),
            known_hosts=sshd.known_hosts, identity=sshd.client_key(rig.DEPLOY_USER))
        opened.append(remote)
        return remote

    yield connect
    for remote in opened:
        remote.close()


def start_servers(scenario: Scenario, node_backend: Callable[..., rig.NodeBackend],
                  python_server: Callable[[Server], PythonServer]) -> list[str]:
    addresses = []
    for i, spec in enumerate(scenario.servers):
        if spec.kind == "python":
            addresses.append(python_server(spec).address)
        else:
            backend = node_backend(path=spec.path, ping_interval=spec.ping_interval,
                                   ping_timeout=spec.ping_timeout, server_id=f"s{i}",
                                   version=2 if spec.kind == "node2" else 4)
            addresses.append(backend.address)
    return addresses


def diagnose_instance(inst: rig.ProxyInstance | None, kind: ProxyKind, url: str,
                      options: ProbeOptions, remote: Remote | None,
                      config: str | None = None) -> Diagnosis:
    return run_diagnosis(url, options, remote=remote, proxy=kind if remote else None,
                         config_path=config or (str(inst.config_path) if inst else None))


def pairs(d: Diagnosis) -> list[tuple[str, str]]:
    return [(f.code, f.severity) for f in d.findings]


# --------------------------------------------------------------------------- the table


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_scenario(scenario: Scenario, request: pytest.FixtureRequest,
                  node_backend: Callable[..., rig.NodeBackend],
                  python_server: Callable[[Server], PythonServer],
                  proxy_factory: rig.ProxyFactory,
                  certs: tuple[str, str],
                  ssh_remote_factory: Callable[[rig.SshdInstance], Remote]) -> None:
    remote: Remote | None = None
    if scenario.read_config:
        if scenario.ssh:
            sshd: rig.SshdInstance = request.getfixturevalue("sshd")
            remote = ssh_remote_factory(sshd)
        else:
            remote = LocalRemote()
    port = rig.free_port()
    ctx = Ctx(port, start_servers(scenario, node_backend, python_server), certs[0], certs[1],
              dead=f"127.0.0.1:{rig.free_port()}")
    text = scenario.config(ctx)
    options: dict[str, Any] = {}
    if scenario.kind is ProxyKind.APACHE and scenario.modules is not None:
        options["modules"] = scenario.modules
    if scenario.full:
        inst = proxy_factory.create(scenario.kind.value, text, port=port, **options)
    else:
        inst = proxy_factory.from_site(scenario.kind.value, text, port=port, **options)
    inst.start()
    if scenario.stop_proxy:
        assert inst.daemon is not None
        inst.daemon.stop()
    probe_port = scenario.probe_port(ctx) if scenario.probe_port else port
    url = f"{'https' if scenario.tls else 'http'}://127.0.0.1:{probe_port}"
    origin = scenario.origin.replace("{url}", url) if scenario.origin else None
    probe = ProbeOptions(path=scenario.path, origin=origin, insecure=scenario.tls, timeout=5,
                         hold=scenario.hold, sessions=6)
    diagnosis = diagnose_instance(inst, scenario.kind, url, probe, remote)
    report = format_diagnosis(diagnosis)
    assert sorted(pairs(diagnosis)) == sorted(scenario.expect), (
        f"{report}\n--- config ---\n{text}\n--- proxy log ---\n{inst.log_text()[-3000:]}")
    for finding in diagnosis.findings:
        assert finding.fix.strip() and finding.evidence.strip()
    if remote is not None and scenario.expect and scenario.config_evidence:
        # A config-backed finding points at a line of the live config.
        assert any(str(inst.prefix) in f.evidence or str(inst.prefix) in f.fix
                   for f in diagnosis.findings), report
    if not scenario.expect:
        assert diagnosis.ok and "No problems found" in report


def test_every_code_has_two_live_cases() -> None:
    counts: dict[str, int] = {}
    for scenario in SCENARIOS:
        for code, _ in scenario.expect:
            counts[code] = counts.get(code, 0) + 1
    for code in ("read-timeout-too-short", "websocket-upgrade-blocked", "path-mismatch",
                 "no-sticky-sessions", "backend-unreachable", "proxy-unreachable",
                 "eio-version-mismatch", "origin-rejected"):
        assert counts.get(code, 0) >= 2, code
    healthy = {s.kind for s in SCENARIOS if not s.expect}
    assert healthy == set(ProxyKind)


# --------------------------------------------------------------------------- rendered configs


def _render_spec(kind: ProxyKind, port: int, backends: list[str]) -> DeploySpec:
    return DeploySpec(proxy=kind, listen_address="127.0.0.1", listen_port=port,
                      backends=tuple(Backend(b.rsplit(":", 1)[0], int(b.rsplit(":", 1)[1]))
                                     for b in backends))


@pytest.mark.parametrize("kind", list(ProxyKind), ids=[k.value for k in ProxyKind])
@pytest.mark.parametrize("count", [1, 2], ids=["one-backend", "two-backends-sticky"])
def test_rendered_config_gives_no_findings(kind: ProxyKind, count: int,
                                           node_backend: Callable[..., rig.NodeBackend],
                                           proxy_factory: rig.ProxyFactory) -> None:
    backends = [node_backend(server_id=f"r{i}").address for i in range(count)]
    port = rig.free_port()
    spec = _render_spec(kind, port, backends)
    options: dict[str, Any] = {}
    if kind is ProxyKind.APACHE:
        options["modules"] = ["mpm_event", "authz_core", *profile(kind).modules(spec)]
    text = render(spec).text
    inst = (proxy_factory.create(kind.value, text, port=port) if kind is ProxyKind.NODE
            else proxy_factory.from_site(kind.value, text, port=port, **options))
    inst.start()
    diagnosis = diagnose_instance(inst, kind, inst.url, ProbeOptions(sessions=6), LocalRemote())
    # A sticky config still draws advice by design (issue 12): about the clients sending the
    # cookie back, or about a front tier an address hash cannot see past. Nothing else.
    advice = {("cookie-affinity-needs-credentials", "info"), ("affinity-by-address", "warning")}
    assert [f for f in diagnosis.findings if count == 1 or (f.code, f.severity) not in advice] \
        == [], format_diagnosis(diagnosis)
    assert diagnosis.facts is not None and diagnosis.facts.proxied


# --------------------------------------------------------------------------- bad input


def test_bad_url_is_a_clear_error() -> None:
    from wizard.errors import ProbeFailed

    with pytest.raises(ProbeFailed, match="Malformed URL"):
        run_diagnosis("not a url", ProbeOptions())


def test_host_without_proxy_kind_is_refused() -> None:
    from wizard.errors import BadInput

    with pytest.raises(BadInput, match="--proxy"):
        run_diagnosis("http://127.0.0.1:9", ProbeOptions(), remote=LocalRemote())


def test_wrong_proxy_kind_gives_a_finding_not_a_traceback(
        node_backend: Callable[..., rig.NodeBackend], proxy_factory: rig.ProxyFactory) -> None:
    """--proxy apache against an nginx config file: the probe still runs, the config read
    becomes a config-unreadable warning."""
    backend = node_backend()
    port = rig.free_port()
    inst = proxy_factory.from_site("nginx", nginx_loc(Ctx(port, [backend.address])), port=port)
    inst.start()
    d = run_diagnosis(inst.url, ProbeOptions(), remote=LocalRemote(), proxy="caddy",
                      config_path=str(inst.config_path))
    assert pairs(d) == [("config-unreadable", "warning")], format_diagnosis(d)
    assert d.ok


def test_cli_json_and_exit_codes(node_backend: Callable[..., rig.NodeBackend],
                                 proxy_factory: rig.ProxyFactory) -> None:
    """The real CLI in a subprocess: --json shape, exit 1 with an error finding, 0 when fixed."""
    import json

    backend = node_backend()
    port = rig.free_port()
    ctx = Ctx(port, [backend.address])
    inst = proxy_factory.from_site(
        "nginx", nginx_loc(ctx, extra="        proxy_read_timeout 3s;\n"), port=port)
    inst.start()
    argv = [sys.executable, "-m", "wizard", "diagnose", inst.url, "--host", "local", "--proxy",
            "nginx", "--config", str(inst.config_path), "--json"]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=root)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) >= {"findings", "probe"}
    assert [f["code"] for f in data["findings"]] == ["read-timeout-too-short"]
    assert data["probe"]["handshake"]["pingInterval"] == 25000
    inst.reload(nginx_loc(ctx, extra="        proxy_read_timeout 60s;\n"))
    proc = subprocess.run(argv[:-1], capture_output=True, text=True, timeout=60, cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No problems found" in proc.stdout


def test_cli_probe_only_unreachable_exit_1() -> None:
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-m", "wizard", "diagnose",
                           f"http://127.0.0.1:{rig.free_port()}", "--sessions", "0"],
                          capture_output=True, text=True, timeout=60, cwd=root)
    assert proc.returncode == 1
    assert "proxy-unreachable" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("mode", "scheme", "code"), [
    ("http", "http", "path-mismatch"),  # an HTML page where Socket.IO should answer
    ("ws", "http", "path-mismatch"),  # a plain WebSocket server
    ("http", "https", "tls-error"),  # https:// to a plain HTTP port
    ("silent", "http", "proxy-unreachable"),  # accepts TCP, never answers
], ids=["html-page", "plain-websocket", "tls-to-plain-port", "silent-port"])
def test_bad_targets_are_findings(mode: str, scheme: str, code: str,
                                  plain_server: Callable[..., rig.PlainServer]) -> None:
    server = plain_server(mode, status=200, body="<html>hello</html>")
    d = run_diagnosis(f"{scheme}://127.0.0.1:{server.port}", ProbeOptions(timeout=2))
    assert [f.code for f in d.findings] == [code], format_diagnosis(d)
    assert not d.ok


def test_cli_ssh_host_key_mismatch_exits_3(sshd: rig.SshdInstance) -> None:
    """A changed host key is refused before anything is read: exit 3, a message, no trace."""
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "wizard", "diagnose", f"http://127.0.0.1:{rig.free_port()}",
         "--host", f"{rig.DEPLOY_USER}@{sshd.host}:{sshd.port}", "--proxy", "nginx",
         "--identity", str(sshd.client_key(rig.DEPLOY_USER)),
         "--known-hosts", str(sshd.other_known_hosts)],
        capture_output=True, text=True, timeout=60, cwd=root)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "HAS CHANGED" in proc.stderr and "Traceback" not in proc.stderr


def test_scenarios_use_distinct_ids() -> None:
    ids = [s.id for s in SCENARIOS]
    assert len(ids) == len(set(ids))
    assert replace(SCENARIOS[0], id="x").id == "x"
