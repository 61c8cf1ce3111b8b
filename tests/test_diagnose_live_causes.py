"""Issue 12, config side: ``diagnose`` names the causes users meet, against real setups.

Each setup is written by hand after a public bug report and runs for real: a real proxy
(nginx, Apache, Caddy, a node http-proxy or Express + http-proxy-middleware script from
tests/rig.py) in front of real servers (Node socket.io; python-socketio/aiohttp for the Origin
cases, since Node's server never checks an Origin; a Node ``cluster`` server for the
multi-process case), and where a front tier is needed a second nginx on loopback that sends each
request from another 127.0.0.x source address. Every setup is first checked for its symptom
with an independent client (plain http.client/socket requests, never sockwizard's probe),
then diagnosed over ``LocalRemote`` (``--host local``) or the rig's real sshd; each fault has a
healthy twin that must give no error finding (and here: exactly the expected pairs).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests import rig
from tests import test_diagnose_live as live
from tests.test_diagnose_live import MAP, Ctx, PythonServer, Server
from wizard.diagnose import format_diagnosis, run_diagnosis
from wizard.model import ProxyKind
from wizard.probe import ProbeOptions
from wizard.remote import LocalRemote, Remote

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
# The python-socketio server and the sshd connections, as test_diagnose_live starts them.
python_server = live.python_server
ssh_remote_factory = live.ssh_remote_factory

HS = "/socket.io/?EIO=4&transport=polling"


# --------------------------------------------------------------------------- independent client


def request(url: str, method: str = "GET", path: str = HS, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace"), dict(resp.getheaders())
    finally:
        conn.close()


def handshake(url: str, headers: dict[str, str] | None = None) -> tuple[str, str]:
    """(sid, cookie) of a fresh Engine.IO session; the cookie the proxy set, if any."""
    status, body, head = request(url, headers=headers)
    assert status == 200, (status, body)
    sid = json.loads(body[1:])["sid"]
    cookie = "; ".join(v.split(";", 1)[0] for k, v in head.items() if k.lower() == "set-cookie")
    return sid, cookie


def unknown_sessions(url: str, count: int = 8, cookies: bool = False) -> int:
    """How many of ``count`` polling sessions get "Session ID unknown" on their next request."""
    bad = 0
    for _ in range(count):
        sid, cookie = handshake(url)
        headers = {"Cookie": cookie} if cookies and cookie else {}
        for _ in range(2):
            status, body, _h = request(url, "POST", f"{HS}&sid={sid}", b"40", headers)
            if status == 400 and "Session ID unknown" in body:
                bad += 1
                break
    return bad


def ws_upgrade_status(url: str, connection: str, sid: str | None = None,
                      cookie: str = "", origin: str = "") -> int:
    """The status line of a raw WebSocket upgrade with this Connection header."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    path = "/socket.io/?EIO=4&transport=websocket" + (f"&sid={sid}" if sid else "")
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
             f"Connection: {connection}", f"Sec-WebSocket-Key: {key}",
             "Sec-WebSocket-Version: 13", *([f"Cookie: {cookie}"] if cookie else []),
             *([f"Origin: {origin}"] if origin else [])]
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = s.recv(1024).decode("latin-1")
    return int(head.split(" ", 2)[1])


# --------------------------------------------------------------------------- the symptoms


def origin_refused(url: str) -> None:
    assert request(url)[0] == 200, "curl-like request (no Origin) works"
    status, body, _ = request(url, headers={"Origin": url})
    assert status == 400 and "not an accepted origin" in body, (status, body)


def origin_accepted(url: str) -> None:
    assert request(url, headers={"Origin": url})[0] == 200


def ws_origin_refused(url: str) -> None:
    """Polling with the Origin passes, the browser's upgrade (same Origin) does not."""
    origin_accepted(url)
    sid, _ = handshake(url, {"Origin": url})
    assert ws_upgrade_status(url, "Upgrade", sid, origin=url) == 400


def firefox_refused(url: str) -> None:
    assert ws_upgrade_status(url, "Upgrade") == 101, "Chrome's form is tunnelled"
    assert ws_upgrade_status(url, "keep-alive, Upgrade") != 101, "Firefox's is not"


def firefox_upgrades(url: str) -> None:
    assert ws_upgrade_status(url, "Upgrade") == 101
    assert ws_upgrade_status(url, "keep-alive, Upgrade") == 101


def sessions_mixed(url: str) -> None:
    assert unknown_sessions(url) > 0, "some sessions reach another server/process"


def sessions_kept(url: str) -> None:
    assert unknown_sessions(url) == 0


def cookie_needed(url: str) -> None:
    assert unknown_sessions(url, cookies=True) == 0, "with the cookie sent back: sticky"
    assert unknown_sessions(url, cookies=False) > 0, "without it: Session ID unknown"


def ws_upgrade_mixed(url: str) -> None:
    """Polling is pinned by the route cookie; upgrades go through another balancer."""
    statuses = []
    for _ in range(8):
        sid, cookie = handshake(url)
        assert unknown_sessions(url, 1, cookies=True) == 0
        statuses.append(ws_upgrade_status(url, "Upgrade", sid, cookie))
    assert 101 in statuses and any(s != 101 for s in statuses), statuses


def ws_upgrade_pinned(url: str) -> None:
    for _ in range(6):
        sid, cookie = handshake(url)
        assert ws_upgrade_status(url, "Upgrade", sid, cookie) == 101


def big_post(url: str, size: int = 60_000) -> int:
    sid, _ = handshake(url)
    return request(url, "POST", f"{HS}&sid={sid}", b"4" + b"x" * size,
                   {"Content-Type": "text/plain;charset=UTF-8"})[0]


def body_refused(url: str) -> None:
    assert big_post(url) in (413, 502)  # Caddy 2.6 answers 502 (its reverse_proxy's error)


def body_accepted(url: str) -> None:
    assert big_post(url) == 200


def mount_404(url: str) -> None:
    assert request(url)[0] == 404


def handshake_ok(url: str) -> None:
    assert request(url)[0] == 200


# --------------------------------------------------------------------------- configs


def nginx_site(c: Ctx, *, host: str = "$http_host", extra: str = "", upstream: str = "",
               before: str = "", server_extra: str = "") -> str:
    return (f"{MAP}{before}server {{\n    listen 127.0.0.1:{c.port};\n{server_extra}"
            f"    location /socket.io/ {{\n        proxy_pass http://{upstream or c.b};\n"
            "        proxy_http_version 1.1;\n"
            "        proxy_set_header Upgrade $http_upgrade;\n"
            "        proxy_set_header Connection $connection_upgrade;\n"
            f"        proxy_set_header Host {host};\n{extra}    }}\n}}\n")


def two(c: Ctx, head: str = "") -> str:
    return f"upstream nodes {{\n{head}" + "".join(f"    server {b};\n" for b in c.backends) + "}\n"


def node_proxy(c: Ctx, options: str) -> str:
    return ("'use strict';\nconst http = require('http');\nconst httpProxy = require('http-proxy');\n"
            f"const proxy = httpProxy.createProxyServer({{ target: 'http://{c.b}', {options} }});\n"
            "proxy.on('error', (err, req, res) => { if (res.destroy) res.destroy(); });\n"
            "const server = http.createServer((req, res) => proxy.web(req, res));\n"
            "server.on('upgrade', (req, socket, head) => proxy.ws(req, socket, head));\n"
            f"server.listen({c.port}, '127.0.0.1');\n"
            "process.on('SIGTERM', () => process.exit(0));\n")


def express(c: Ctx, mount: str) -> str:
    return ("'use strict';\nconst express = require('express');\n"
            "const { createProxyMiddleware } = require('http-proxy-middleware');\n"
            f"const app = express();\n{mount.replace('TARGET', f'http://{c.b}')}\n"
            f"app.listen({c.port}, '127.0.0.1');\n"
            "process.on('SIGTERM', () => process.exit(0));\n")


def apache_rewrite(c: Ctx, cond: str, upgrade_cond: str = "websocket [NC]") -> str:
    return (f"<VirtualHost *:{c.port}>\n    ProxyPreserveHost On\n"
            "    RequestHeader set X-Forwarded-Proto \"http\"\n    RewriteEngine On\n"
            f"    RewriteCond %{{HTTP:Upgrade}} {upgrade_cond}\n"
            f"    RewriteCond %{{HTTP:Connection}} {cond}\n"
            f"    RewriteRule ^/socket.io/(.*) \"ws://{c.b}/socket.io/$1\" [P,L]\n"
            f"    ProxyPass \"/socket.io/\" \"http://{c.b}/socket.io/\"\n"
            f"    ProxyPassReverse \"/socket.io/\" \"http://{c.b}/socket.io/\"\n</VirtualHost>\n")


def apache_balancers(c: Ctx, ws_sticky: bool) -> str:
    routes = [f"route=n{i}" for i in range(len(c.backends))]

    def members(scheme: str, routed: bool) -> str:
        return "".join(f"        BalancerMember \"{scheme}://{b}\" {r if routed else ''}\n"
                       for b, r in zip(c.backends, routes, strict=True))

    sticky = "        ProxySet stickysession=SWROUTE\n"
    return (f"<VirtualHost *:{c.port}>\n    ProxyPreserveHost On\n"
            "    RequestHeader set X-Forwarded-Proto \"http\"\n"
            "    Header add Set-Cookie \"SWROUTE=sticky.%{BALANCER_WORKER_ROUTE}e; path=/\" "
            "env=BALANCER_ROUTE_CHANGED\n"
            f"    <Proxy \"balancer://nodes\">\n{members('http', True)}{sticky}    </Proxy>\n"
            f"    <Proxy \"balancer://nodes_ws\">\n{members('ws', ws_sticky)}"
            f"{sticky if ws_sticky else ''}    </Proxy>\n"
            "    RewriteEngine On\n    RewriteCond %{HTTP:Upgrade} websocket [NC]\n"
            "    RewriteCond %{HTTP:Connection} upgrade [NC]\n"
            "    RewriteRule ^/socket.io/(.*) \"balancer://nodes_ws/socket.io/$1\" [P,L]\n"
            "    ProxyPass \"/socket.io/\" \"balancer://nodes/socket.io/\"\n</VirtualHost>\n")


def caddy(c: Ctx, body: str) -> str:
    return f"http://127.0.0.1:{c.port} {{\n\tbind 127.0.0.1\n{body}}}\n"


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Setup:
    id: str
    kind: ProxyKind
    config: Callable[[Ctx], str]
    expect: list[tuple[str, str]]
    symptom: Callable[[str], None]
    servers: str = "node"  # node | two | python | cluster | cluster1
    full: bool = False
    ssh: bool = False
    origin: bool = False
    front: bool = False  # a second nginx in front, one 127.0.0.x source per request
    fix_contains: str = ""


PY = "python"
REFUSED = [("origin-rejected", "error"), ("origin-headers-changed", "error")]
SETUPS: list[Setup] = [
    # ---- 1. the Origin a browser sends, refused by python-socketio behind the proxy
    Setup("nginx-host-drops-port", ProxyKind.NGINX, lambda c: nginx_site(c, host="$host"),
          REFUSED, origin_refused, PY, origin=True, fix_contains="Host $http_host"),
    Setup("node-change-origin", ProxyKind.NODE,
          lambda c: node_proxy(c, "ws: true, changeOrigin: true"), REFUSED, origin_refused, PY,
          full=True, origin=True, ssh=True, fix_contains="remove `changeOrigin: true`"),
    # measured: xfwd adds X-Forwarded-Host to polling requests only; the upgrade is refused
    Setup("node-change-origin-xfwd", ProxyKind.NODE,
          lambda c: node_proxy(c, "ws: true, changeOrigin: true, xfwd: true"),
          [*REFUSED, ("websocket-upgrade-blocked", "error")], ws_origin_refused, PY, full=True,
          origin=True),
    Setup("nginx-http-host-healthy", ProxyKind.NGINX, lambda c: nginx_site(c), [],
          origin_accepted, PY, origin=True),
    # measured: xfwd's X-Forwarded-Proto: ws is taken as the scheme by python-engineio (aiohttp)
    Setup("node-xfwd-ws-proto", ProxyKind.NODE, lambda c: node_proxy(c, "ws: true, xfwd: true"),
          [*REFUSED, ("websocket-upgrade-blocked", "error")], ws_origin_refused, PY, full=True,
          origin=True, fix_contains="proxyReqWs"),
    Setup("node-plain-healthy", ProxyKind.NODE, lambda c: node_proxy(c, "ws: true"), [],
          origin_accepted, PY, full=True, origin=True),
    # ---- 2. Firefox's `Connection: keep-alive, Upgrade` against Apache's rewrite recipe
    Setup("apache-connection-anchored", ProxyKind.APACHE,
          lambda c: apache_rewrite(c, "^Upgrade$"), [("websocket-upgrade-blocked", "error")],
          firefox_refused, fix_contains="upgrade [NC]"),
    Setup("apache-connection-equals", ProxyKind.APACHE,
          lambda c: apache_rewrite(c, "=upgrade [NC]"),
          [("websocket-upgrade-blocked", "error")], firefox_refused, ssh=True),
    Setup("apache-nc-healthy", ProxyKind.APACHE,
          lambda c: apache_rewrite(c, "upgrade [NC]", "=WebSocket [NC]"), [], firefox_upgrades),
    # ---- 3. stickiness that is not
    Setup("apache-ws-balancer-not-sticky", ProxyKind.APACHE,
          lambda c: apache_balancers(c, ws_sticky=False), [("no-sticky-sessions", "error")],
          ws_upgrade_mixed, "two", fix_contains="stickysession"),
    Setup("apache-ws-balancer-sticky-healthy", ProxyKind.APACHE,
          lambda c: apache_balancers(c, ws_sticky=True),
          [("cookie-affinity-needs-credentials", "info")], ws_upgrade_pinned, "two"),
    # Plain `hash` (crc32 of the address, modulo the weights): the front's eight egress
    # addresses split 4:4 whatever the backends' ports. With `consistent` the split followed
    # the ports' ketama points, and a run that put all eight on one backend had no symptom.
    Setup("nginx-address-hash-behind-front", ProxyKind.NGINX,
          lambda c: nginx_site(c, upstream="nodes", before=two(c, "    hash $remote_addr;\n")),
          [("no-sticky-sessions", "error"), ("affinity-by-address", "warning")],
          sessions_mixed, "two", front=True, ssh=True, fix_contains="set_real_ip_from"),
    Setup("nginx-address-hash-real-ip-healthy", ProxyKind.NGINX,
          lambda c: nginx_site(c, upstream="nodes", before=two(c, "    hash $remote_addr "
                                                                   "consistent;\n"),
                               server_extra="    set_real_ip_from 127.0.0.0/8;\n"
                                            "    real_ip_header X-Forwarded-For;\n"),
          [], sessions_kept, "two", front=True),
    Setup("caddy-cookie-affinity", ProxyKind.CADDY,
          lambda c: caddy(c, f"\treverse_proxy /socket.io/* {' '.join(c.backends)} {{\n"
                             "\t\tlb_policy cookie\n\t}\n"),
          [("cookie-affinity-needs-credentials", "info")], cookie_needed, "two",
          fix_contains="withCredentials: true"),
    # ---- 4. one backend address, several processes
    Setup("nginx-node-cluster", ProxyKind.NGINX, lambda c: nginx_site(c),
          [("several-processes-one-port", "error")], sessions_mixed, "cluster",
          fix_contains="@socket.io/sticky"),
    # (not Caddy: its pooled keep-alive connection to the backend stays on one worker, so the
    # mix only shows under concurrency — measured)
    Setup("nginx-upstream-node-cluster-ssh", ProxyKind.NGINX,
          lambda c: nginx_site(c, upstream="one", before=f"upstream one {{\n    server {c.b};\n}}\n"),
          [("several-processes-one-port", "error")], sessions_mixed, "cluster", ssh=True),
    Setup("nginx-node-cluster-one-worker-healthy", ProxyKind.NGINX, lambda c: nginx_site(c),
          [], sessions_kept, "cluster1"),
    # ---- 5. body limits below maxPayload
    Setup("nginx-client-max-body-size", ProxyKind.NGINX,
          lambda c: nginx_site(c, extra="        client_max_body_size 10k;\n"),
          [("body-limit-below-max-payload", "warning")], body_refused,
          fix_contains="client_max_body_size 1m;"),
    Setup("caddy-request-body", ProxyKind.CADDY,
          lambda c: caddy(c, "\trequest_body {\n\t\tmax_size 10KB\n\t}\n"
                             f"\treverse_proxy /socket.io/* {c.b}\n"),
          [("body-limit-below-max-payload", "warning")], body_refused, ssh=True),
    Setup("apache-limit-request-body", ProxyKind.APACHE,
          lambda c: (f"<VirtualHost *:{c.port}>\n    ProxyPreserveHost On\n"
                     "    RequestHeader set X-Forwarded-Proto \"http\"\n"
                     "    LimitRequestBody 10000\n"
                     f"    ProxyPass \"/socket.io/\" \"http://{c.b}/socket.io/\" upgrade=websocket\n"
                     "</VirtualHost>\n"),
          [], body_accepted),  # measured: not applied to proxied requests (2.4.71)
    Setup("nginx-body-default-healthy", ProxyKind.NGINX, lambda c: nginx_site(c), [],
          body_accepted),
    # ---- 6. a middleware mount that strips the path
    Setup("express-mount-inline", ProxyKind.NODE,
          lambda c: express(c, "app.use('/socket.io', createProxyMiddleware({ target: 'TARGET', "
                               "ws: true }));"),
          [("path-mismatch", "error")], mount_404, full=True, fix_contains="pathFilter"),
    Setup("express-mount-named-ssh", ProxyKind.NODE,
          lambda c: express(c, "const proxy = createProxyMiddleware({ target: 'TARGET', "
                               "ws: true, changeOrigin: true });\napp.use('/socket.io', proxy);"),
          [("path-mismatch", "error")], mount_404, full=True, ssh=True),
    Setup("express-path-filter-healthy", ProxyKind.NODE,
          lambda c: express(c, "app.use(createProxyMiddleware({ target: 'TARGET', ws: true, "
                               "pathFilter: '/socket.io' }));"), [], handshake_ok, full=True),
    # ---- red herrings (issue 12): the docs' own recipe with a hard-coded Connection
    Setup("nginx-red-herrings-healthy", ProxyKind.NGINX,
          lambda c: nginx_site(c, extra="        proxy_buffering on;\n"
                                        "        proxy_send_timeout 5s;\n"
                                        "        proxy_set_header Connection \"upgrade\";\n"),
          [], handshake_ok),
]


class ClusterBackend(rig._NodeScript):
    """tests/node/cluster.js: a Node cluster sharing one port (no @socket.io/sticky)."""

    script = "cluster.js"

    def __init__(self, workers: int) -> None:
        self.host = "127.0.0.1"
        self._launch("node cluster server", {"port": str(rig.free_port()),
                                             "workers": str(workers)}, 30)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def clusters() -> Iterator[Callable[[int], ClusterBackend]]:
    started: list[ClusterBackend] = []

    def make(workers: int) -> ClusterBackend:
        started.append(ClusterBackend(workers))
        return started[-1]

    yield make
    for c in started:
        c.stop()


def front_nginx(proxy_factory: rig.ProxyFactory, back_port: int) -> rig.ProxyInstance:
    """A front tier with eight egress addresses: each request leaves from another one."""
    port = rig.free_port()
    buckets = "".join(f"    12.5% 127.0.0.{i};\n" for i in range(2, 9)) + "    * 127.0.0.9;\n"
    text = (f"{MAP}split_clients \"$request_id\" $sw_src {{\n{buckets}}}\n"
            f"server {{\n    listen 127.0.0.1:{port};\n    location / {{\n"
            f"        proxy_pass http://127.0.0.1:{back_port};\n        proxy_bind $sw_src;\n"
            "        proxy_http_version 1.1;\n"
            "        proxy_set_header Upgrade $http_upgrade;\n"
            "        proxy_set_header Connection $connection_upgrade;\n"
            "        proxy_set_header Host $http_host;\n"
            "        proxy_set_header X-Forwarded-For $remote_addr;\n    }\n}\n")
    return proxy_factory.from_site("nginx", text, port=port).start()


@pytest.mark.parametrize("setup", SETUPS, ids=[s.id for s in SETUPS])
def test_setup(setup: Setup, request: pytest.FixtureRequest,
               node_backend: Callable[..., rig.NodeBackend],
               python_server: Callable[[Server], PythonServer],
               clusters: Callable[[int], ClusterBackend],
               proxy_factory: rig.ProxyFactory,
               ssh_remote_factory: Callable[[rig.SshdInstance], Remote]) -> None:
    if setup.servers == PY:
        backends = [python_server(Server(kind="python")).address]
    elif setup.servers.startswith("cluster"):
        backends = [clusters(1 if setup.servers == "cluster1" else 4).address]
    else:
        backends = [node_backend(server_id=f"s{i}").address
                    for i in range(2 if setup.servers == "two" else 1)]
    port = rig.free_port()
    ctx = Ctx(port, backends)
    text = setup.config(ctx)
    inst = (proxy_factory.create(setup.kind.value, text, port=port) if setup.full
            else proxy_factory.from_site(setup.kind.value, text, port=port))
    inst.start()
    url = f"http://127.0.0.1:{port}"
    if setup.front:
        url = f"http://127.0.0.1:{front_nginx(proxy_factory, port).port}"
    setup.symptom(url)  # the independent client first: the fault (or its absence) is real
    remote: Remote = LocalRemote()
    if setup.ssh:
        remote = ssh_remote_factory(request.getfixturevalue("sshd"))
    options = ProbeOptions(origin=url if setup.origin else None, timeout=5, sessions=6)
    d = run_diagnosis(url, options, remote=remote, proxy=setup.kind,
                      config_path=str(inst.config_path))
    report = format_diagnosis(d)
    got = sorted((f.code, f.severity) for f in d.findings)
    assert got == sorted(setup.expect), f"{report}\n--- config ---\n{text}"
    if setup.fix_contains:
        assert any(setup.fix_contains in f.fix for f in d.findings), report
    if not any(sev == "error" for _c, sev in setup.expect):
        assert d.ok, report


def test_every_class_has_two_faulty_setups_and_a_healthy_twin() -> None:
    by_code: dict[str, int] = {}
    for s in SETUPS:
        for code, _ in s.expect:
            by_code[code] = by_code.get(code, 0) + 1
    for code in ("origin-headers-changed", "websocket-upgrade-blocked", "several-processes-one-port",
                 "body-limit-below-max-payload", "path-mismatch"):
        assert by_code.get(code, 0) >= 2, code
    assert sum(1 for s in SETUPS if not any(sev == "error" for _c, sev in s.expect)) >= 8
