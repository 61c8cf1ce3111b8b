"""Issue 12, the probe's side: what browsers, front tiers and real app servers meet.

Each setup is real (nginx, Apache, python-socketio, Node socket.io, a relay that caps a
connection's age), is first checked with an independent client for its symptom (urllib, a raw
socket upgrade, python-socketio's own client), then probed/diagnosed; each has a healthy twin
that gives no error finding (and not the class's finding).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import socket
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import rig
from tests.test_probe import nginx_site, start_nginx
from wizard.diagnose import run_diagnosis
from wizard.findings import Finding
from wizard.model import ProxyKind
from wizard.probe import ProbeOptions, format_report, run_probe
from wizard.probe.browser import SessionTry, form_finding
from wizard.remote import LocalRemote

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

Backend = Callable[..., rig.NodeBackend]


def found(report_findings: tuple[Finding, ...] | list[Finding], code: str) -> Finding | None:
    return next((f for f in report_findings if f.code == code), None)


def errors(findings: tuple[Finding, ...] | list[Finding]) -> list[str]:
    return [f.code for f in findings if f.severity == "error"]


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """The independent client: urllib, status, headers and body."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def raw_upgrade(port: int, path_qs: str, connection: str) -> int:
    """The independent client for the upgrade: one request on a plain socket, its status."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET {path_qs} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: {connection}\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request.encode())
        head = sock.recv(4096).decode("latin-1")
    return int(head.split()[1])


def new_sid(base: str) -> str:
    status, _, body = get(f"{base}/socket.io/?EIO=4&transport=polling")
    assert status == 200, body
    return body.split('"sid":"')[1].split('"')[0]


# --------------------------------------------------------------------------- servers

PY_SERVER = textwrap.dedent("""\
    import asyncio, sys
    import socketio
    from aiohttp import web

    # cors_allowed_origins=None: python-socketio's default, same-origin only (as Flask-SocketIO)
    sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins=None)
    app = web.Application()
    sio.attach(app)

    async def main():
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print("READY", site._server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """)

# A WSGI python-socketio whose async mode has no WebSocket server: engineio's own condition for
# "The WebSocket transport is not available" (gevent without gevent-websocket, Werkzeug/threading
# without simple-websocket, gunicorn's sync worker): the handshake offers upgrades [].
NO_WS_SERVER = textwrap.dedent("""\
    import socketio
    from wsgiref.simple_server import make_server, WSGIRequestHandler

    sio = socketio.Server(async_mode="threading")
    sio.eio._async = {**sio.eio._async, "websocket": None}
    app = socketio.WSGIApp(sio)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    print("READY", server.server_port, flush=True)
    server.serve_forever()
    """)


@pytest.fixture
def py_server(tmp_path: Path) -> Iterator[Callable[[str], rig.Daemon]]:
    """Start one of the scripts above; returns the daemon (its ``address`` set)."""
    started: list[rig.Daemon] = []

    def make(source: str) -> rig.Daemon:
        script = tmp_path / f"srv{len(started)}.py"
        script.write_text(source)
        daemon = rig.Daemon("python-socketio server", [sys.executable, str(script)])
        started.append(daemon)
        match = daemon.wait_line(r"^READY (\d+)$", timeout=20)
        daemon.address = f"127.0.0.1:{match.group(1)}"  # type: ignore[attr-defined]
        return daemon

    yield make
    for daemon in reversed(started):
        daemon.stop()


class AgeCapRelay:
    """A TCP relay that closes every connection at a fixed age, however busy (the way GCP's
    backend service timeout treats WebSockets). ``cap_s`` None: a plain relay."""

    def __init__(self, upstream: str, cap_s: float | None) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.cap_s = cap_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        born = time.monotonic()
        upstream = socket.create_connection(self.upstream, timeout=5)
        done = threading.Event()

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            done.set()

        for a, b in ((client, upstream), (upstream, client)):
            a.settimeout(None)
            threading.Thread(target=pump, args=(a, b), daemon=True).start()
        done.wait(self.cap_s - (time.monotonic() - born) if self.cap_s else None)
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.fixture
def relay() -> Iterator[Callable[[str, float | None], AgeCapRelay]]:
    made: list[AgeCapRelay] = []

    def make(upstream: str, cap_s: float | None) -> AgeCapRelay:
        made.append(AgeCapRelay(upstream, cap_s))
        return made[-1]

    yield make
    for r in made:
        r.stop()


def diagnose_nginx(proxy: rig.ProxyInstance, options: ProbeOptions) -> list[Finding]:
    """The real diagnose: the live config read on this machine (LocalRemote) plus the probe."""
    diagnosis = run_diagnosis(proxy.url, options, remote=LocalRemote(), proxy=ProxyKind.NGINX,
                              config_path=str(proxy.config_path))
    return list(diagnosis.findings)


# --------------------------------------------------------------------------- 1. origin


@pytest.mark.parametrize(("host_line", "refused"), [
    ("proxy_set_header Host $host;", True),  # drops the port: the server expects :80
    ("proxy_set_header Host {backend};", True),  # changeOrigin: the backend's own address
    ("proxy_set_header Host $http_host;", False),  # the healthy twin
], ids=["host-without-port", "change-origin", "healthy-http-host"])
def test_same_origin_page_refused_through_nginx(
        host_line: str, refused: bool, py_server: Callable[[str], rig.Daemon],
        proxy_factory: rig.ProxyFactory) -> None:
    server = py_server(PY_SERVER)
    address: str = server.address  # type: ignore[attr-defined]

    def site(port: int) -> str:
        return nginx_site(port, address).replace(
            "proxy_set_header Host $host;", host_line.replace("{backend}", address))

    proxy = start_nginx(proxy_factory, site)
    base = proxy.url
    origin = base  # a page served by the same proxy, e.g. http://127.0.0.1:PORT
    # Independent client: curl-style works, the browser's Origin does not (or does, healthy).
    assert get(f"{base}/socket.io/?EIO=4&transport=polling")[0] == 200
    status, _, body = get(f"{base}/socket.io/?EIO=4&transport=polling", {"Origin": origin})
    assert (status == 400 and "not an accepted origin" in body) is refused, (status, body)

    report = run_probe(base, ProbeOptions(timeout=3))
    finding = found(report.findings, "browser-origin-rejected")
    assert (finding is not None) is refused, format_report(report)
    assert report.transport == "websocket" and report.ok  # curl-style clients are fine
    if finding is not None:
        assert "not an accepted origin" in finding.evidence
        assert "$http_host" in finding.fix and "X-Forwarded-Proto" in finding.fix
    else:
        assert report.stage("origin") is not None and report.stage("origin").ok  # type: ignore[union-attr]
    diagnosed = diagnose_nginx(proxy, ProbeOptions(timeout=3))
    assert (found(diagnosed, "browser-origin-rejected") is not None) is refused
    if not refused:
        assert errors(diagnosed) == []


def test_an_explicit_origin_skips_the_same_origin_stage(py_server: Callable[[str], rig.Daemon]
                                                        ) -> None:
    server = py_server(PY_SERVER)
    url = f"http://{server.address}"  # type: ignore[attr-defined]
    report = run_probe(url, ProbeOptions(origin=url, timeout=3))
    assert report.stage("origin") is None and report.ok, format_report(report)


# --------------------------------------------------------------------------- 2. Firefox

APACHE_REWRITE = """<VirtualHost *:{port}>
    ProxyPreserveHost On
    RewriteEngine On
    {cond}
    RewriteCond %{{QUERY_STRING}} transport=websocket [NC]
    RewriteRule ^/socket.io/(.*) ws://{backend}/socket.io/$1 [P,L]
    ProxyPass /socket.io/ http://{backend}/socket.io/
    ProxyPassReverse /socket.io/ http://{backend}/socket.io/
</VirtualHost>
"""


@pytest.mark.parametrize(("cond", "firefox_ok"), [
    ("RewriteCond %{HTTP:Connection} ^Upgrade$", False),
    ("RewriteCond %{HTTP:Connection} =upgrade [NC]", False),
    ("RewriteCond %{HTTP:Upgrade} websocket [NC]", True),  # the healthy twin
], ids=["connection-anchored", "connection-equals-nc", "healthy-upgrade-header"])
def test_firefox_connection_form_through_apache(cond: str, firefox_ok: bool,
                                                node_backend: Backend,
                                                proxy_factory: rig.ProxyFactory) -> None:
    backend = node_backend(ping_interval=3000, ping_timeout=2000)
    port = rig.free_port()
    text = APACHE_REWRITE.format(port=port, cond=cond, backend=backend.address)
    proxy = proxy_factory.from_site("apache", text, port=port).start()
    base = proxy.url
    # Independent client: Chrome's form upgrades; Firefox's only on the healthy twin.
    query = "/socket.io/?EIO=4&transport=websocket&sid="
    assert raw_upgrade(port, query + new_sid(base), "Upgrade") == 101
    assert (raw_upgrade(port, query + new_sid(base), "keep-alive, Upgrade") == 101) is firefox_ok

    report = run_probe(base, ProbeOptions(timeout=3))
    finding = found(report.findings, "upgrade-header-form")
    firefox = report.stage("firefox")
    assert firefox is not None and firefox.ok is firefox_ok, format_report(report)
    assert report.stage("websocket").ok  # type: ignore[union-attr]
    if firefox_ok:
        assert finding is None and errors(report.findings) == [], format_report(report)
    else:
        assert finding is not None and finding.severity == "error", format_report(report)
        assert "keep-alive, Upgrade" in finding.title and "[NC]" in finding.fix


def test_form_is_not_blamed_when_the_plain_upgrade_lost_its_session() -> None:
    """Behind a front tier with several egress addresses and an address hash, each upgrade
    lands on a random backend: the Firefox try may be the lucky one. That is stickiness (the
    sessions rule says so), not the Connection form (seen in CI)."""
    lucky = SessionTry(None, True, upgraded=True)
    assert form_finding(False, lucky) is not None  # without the sticky fault: the warning
    assert form_finding(False, lucky, plain_unknown=True) is None


# --------------------------------------------------------------------------- 8. front tiers


def front_site(port: int, upstream: str, headers: str) -> str:
    """A second nginx in front, on loopback, adding the headers a CDN / LB would."""
    return nginx_site(port, upstream, extra=headers)


@pytest.mark.parametrize(("headers", "tier"), [
    ('add_header cf-ray "8a1b2c3d4e5f6a7b-AMS" always;', "Cloudflare"),
    ('add_header Via "1.1 google" always;', "Google Cloud Load Balancer"),
    ("", None),  # the healthy twin: the same chain, no naming headers
], ids=["cloudflare", "gcp", "healthy-plain-chain"])
def test_front_tier_named_from_headers(headers: str, tier: str | None, node_backend: Backend,
                                       proxy_factory: rig.ProxyFactory) -> None:
    backend = node_backend(ping_interval=3000, ping_timeout=2000)
    inner = start_nginx(proxy_factory, lambda p: nginx_site(p, backend.address))
    inner_address = inner.url.removeprefix("http://")
    front = start_nginx(proxy_factory, lambda p: front_site(p, inner_address, headers))
    # Independent client: the header is (or is not) on the answer.
    _, seen, _ = get(f"{front.url}/socket.io/?EIO=4&transport=polling")
    assert (("cf-ray" in {k.lower() for k in seen}) or ("google" in seen.get("Via", ""))) \
        is (tier is not None)

    report = run_probe(front.url, ProbeOptions(timeout=3))
    finding = found(report.findings, "front-tier")
    assert report.ok, format_report(report)
    if tier is None:
        assert finding is None, format_report(report)
        return
    assert finding is not None and finding.severity == "info", format_report(report)
    assert tier in finding.title
    assert ("100 s" in finding.fix) if tier == "Cloudflare" else ("30 s" in finding.fix)


# --------------------------------------------------------------------------- 7. lifetime caps


def sio_lifetime(url: str, wait_s: float) -> float | None:
    """Independent client: python-socketio on WebSocket; seconds from connect to disconnect."""
    import socketio

    client = socketio.Client(reconnection=False)
    gone: list[float] = []
    client.on("disconnect", lambda *a: gone.append(time.monotonic()))
    client.connect(url, transports=["websocket"], wait_timeout=5)
    started = time.monotonic()
    deadline = started + wait_s
    while not gone and time.monotonic() < deadline:
        time.sleep(0.1)
    if not gone:
        client.disconnect()
        return None
    return gone[0] - started


@pytest.mark.parametrize(("cap", "interval", "hold"), [
    (3.0, 1000, 6.0),  # pings every second keep it busy: cut at 3 s anyway
    (2.5, 5000, 5.0),  # cut before the first ping: only the busy twin tells
], ids=["busy-with-pings", "before-first-ping"])
def test_lifetime_cap_is_named(cap: float, interval: int, hold: float, node_backend: Backend,
                               relay: Callable[[str, float | None], AgeCapRelay]) -> None:
    backend = node_backend(ping_interval=interval, ping_timeout=3000)
    capped = relay(backend.address, cap)
    lived = sio_lifetime(capped.url, cap + 3)
    assert lived is not None and abs(lived - cap) < 1.0, lived

    report = run_probe(capped.url, ProbeOptions(timeout=3, hold=hold))
    finding = found(report.findings, "connection-lifetime-cap")
    assert finding is not None and finding.severity == "error", format_report(report)
    assert found(report.findings, "read-timeout-too-short") is None
    assert report.hold is not None and report.hold.age_at_drop_s is not None
    assert abs(report.hold.age_at_drop_s - cap) < 1.0
    # the title names the measured age, whole seconds (2.5 s may read "~2 s" or "~3 s")
    named = re.search(r"fixed age of ~(\d+) s", finding.title)
    assert named is not None and abs(int(named.group(1)) - cap) < 1.0, finding.title


def test_idle_timeout_twin_is_not_a_lifetime_cap(node_backend: Backend,
                                                 proxy_factory: rig.ProxyFactory,
                                                 relay: Callable[[str, float | None],
                                                                 AgeCapRelay]) -> None:
    backend = node_backend(ping_interval=5000, ping_timeout=3000)
    proxy = start_nginx(proxy_factory, lambda p: nginx_site(
        p, backend.address, extra="proxy_read_timeout 2s;"))
    report = run_probe(proxy.url, ProbeOptions(timeout=3, hold=5))
    assert found(report.findings, "connection-lifetime-cap") is None, format_report(report)
    timeout = found(report.findings, "read-timeout-too-short")
    assert timeout is not None and "busy" in timeout.evidence, format_report(report)
    assert report.hold is not None and report.hold.busy is not None
    assert not report.hold.busy.dropped
    # and an uncapped relay: nothing dropped, nothing found
    plain = relay(backend.address, None)
    healthy = run_probe(plain.url, ProbeOptions(timeout=3, hold=3))
    assert healthy.ok and not errors(healthy.findings), format_report(healthy)


# --------------------------------------------------------------------------- 9. no WebSocket


@pytest.mark.parametrize("behind_nginx", [False, True], ids=["direct", "behind-nginx"])
def test_backend_without_websocket_gets_the_server_side_fix(
        behind_nginx: bool, py_server: Callable[[str], rig.Daemon],
        proxy_factory: rig.ProxyFactory) -> None:
    server = py_server(NO_WS_SERVER)
    address: str = server.address  # type: ignore[attr-defined]
    url = (start_nginx(proxy_factory, lambda p: nginx_site(p, address)).url if behind_nginx
           else f"http://{address}")
    _, _, body = get(f"{url}/socket.io/?EIO=4&transport=polling")
    assert '"upgrades":[]' in body  # independent: the server itself offers nothing
    report = run_probe(url, ProbeOptions(timeout=3))
    finding = found(report.findings, "backend-without-websocket")
    assert finding is not None and finding.severity == "error", format_report(report)
    assert "simple-websocket" in finding.fix and "gunicorn" in finding.fix
    assert found(report.findings, "websocket-upgrade-blocked") is None
    assert any("WebSocket transport is not available" in line for line in server.lines())


def test_backend_with_websocket_is_the_healthy_twin(py_server: Callable[[str], rig.Daemon]
                                                    ) -> None:
    server = py_server(PY_SERVER)
    report = run_probe(f"http://{server.address}", ProbeOptions(timeout=3))  # type: ignore[attr-defined]
    assert report.ok and not errors(report.findings), format_report(report)
    assert found(report.findings, "backend-without-websocket") is None
