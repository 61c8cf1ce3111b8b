"""End to end: each proxy runs the rendered config in front of the real Node socket.io server,
and the real python-socketio client gets through on WebSocket with an emit/ack round trip.

Also: the custom path, and two backends where 20 polling-only sessions must all succeed
(no "Session ID unknown") — with a control that proves the check catches a non-sticky setup.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from dataclasses import replace

import pytest
import socketio

from tests import rig
from wizard.model import Backend, DeploySpec, ProxyKind, Scope
from wizard.probe import ProbeOptions, run_probe
from wizard.proxies import profile
from wizard.render import render

pytestmark = pytest.mark.slow

KINDS = list(ProxyKind)


def start_proxy(proxy_factory: rig.ProxyFactory, spec: DeploySpec) -> rig.ProxyInstance:
    port = rig.free_port()
    spec = replace(spec, listen_address="127.0.0.1", listen_port=port)
    options: dict[str, object] = {}
    if spec.proxy is ProxyKind.APACHE:
        options["modules"] = ["mpm_event", "authz_core", *profile(spec.proxy).modules(spec)]
    inst = proxy_factory.from_site(spec.proxy, render(spec).text, port=port, **options)
    return inst.start()


def roundtrip(url: str, path: str, transports: list[str] | None = None) -> tuple[str, dict]:
    """Connect, echo with an ack; return (transport in use, ack payload)."""
    client = socketio.Client(reconnection=False)
    try:
        client.connect(url, socketio_path=path, transports=transports, wait_timeout=10)
        ack = client.call("echo", {"n": 42}, timeout=10)
        return client.transport(), ack
    finally:
        client.disconnect()


@pytest.mark.parametrize("kind", KINDS, ids=[k.value for k in KINDS])
@pytest.mark.parametrize(("path", "scope"), [("/socket.io/", Scope.ALL),
                                             ("/my-custom-path/", Scope.SOCKETIO)],
                         ids=["default-path", "custom-path"])
def test_websocket_roundtrip_through_proxy(kind: ProxyKind, path: str, scope: Scope,
                                           node_backend: Callable[..., rig.NodeBackend],
                                           proxy_factory: rig.ProxyFactory) -> None:
    backend = node_backend(path=path, server_id="only")
    spec = DeploySpec(proxy=kind, path=path, scope=scope,
                      backends=(Backend("127.0.0.1", backend.port),))
    proxy = start_proxy(proxy_factory, spec)
    transport, ack = roundtrip(proxy.url, path)
    assert transport == "websocket", f"stayed on {transport}:\n{proxy.log_text()}"
    assert ack == {"n": 42, "server": "only"}


@pytest.mark.parametrize("kind", [ProxyKind.CADDY, ProxyKind.NGINX, ProxyKind.APACHE,
                                  ProxyKind.NODE, ProxyKind.HAPROXY, ProxyKind.TRAEFIK],
                         ids=lambda k: k.value)
def test_path_rewrite_to_server_path(kind: ProxyKind,
                                     node_backend: Callable[..., rig.NodeBackend],
                                     proxy_factory: rig.ProxyFactory) -> None:
    """Clients on /my-custom-path/, the server on /socket.io/ (Caddy's handle_path recipe)."""
    backend = node_backend(path="/socket.io/", server_id="rw")
    spec = DeploySpec(proxy=kind, path="/my-custom-path/", server_path="/socket.io/",
                      backends=(Backend("127.0.0.1", backend.port),))
    proxy = start_proxy(proxy_factory, spec)
    transport, ack = roundtrip(proxy.url, "/my-custom-path/")
    assert (transport, ack["server"]) == ("websocket", "rw")


def polling_sessions(url: str, n: int) -> list[str]:
    """Run n polling-only sessions one after another; return the errors seen."""
    errors = []
    for i in range(n):
        try:
            transport, ack = roundtrip(url, "/socket.io/", transports=["polling"])
            assert transport == "polling" and ack["n"] == 42
        except Exception as exc:  # any failure counts; we report them all
            errors.append(f"session {i}: {type(exc).__name__}: {exc}")
    return errors


@pytest.mark.parametrize("kind", KINDS, ids=[k.value for k in KINDS])
def test_two_backends_are_sticky(kind: ProxyKind, node_backend: Callable[..., rig.NodeBackend],
                                 proxy_factory: rig.ProxyFactory) -> None:
    a, b = node_backend(server_id="a"), node_backend(server_id="b")
    spec = DeploySpec(proxy=kind, backends=(Backend("127.0.0.1", a.port),
                                            Backend("127.0.0.1", b.port)))
    proxy = start_proxy(proxy_factory, spec)
    assert polling_sessions(proxy.url, 20) == []
    transport, _ = roundtrip(proxy.url, "/socket.io/")
    assert transport == "websocket"
    # sockwizard's own probe agrees: its sessions carry the affinity cookie like a browser.
    report = run_probe(proxy.url, ProbeOptions(sessions=10))
    codes = [f.code for f in report.findings]
    assert report.ok and "no-sticky-sessions" not in codes, report.to_dict()


# What makes each proxy sticky, removed for the round-robin control.
_STICKY_TEXT = {
    ProxyKind.NGINX: "hash $remote_addr consistent;",
    ProxyKind.HAPROXY: "cookie SERVERID insert indirect nocache httponly",
    ProxyKind.TRAEFIK: ('        sticky:\n          cookie:\n            name: "sio_backend"\n'
                        '            httpOnly: true\n            secure: false\n'
                        '            sameSite: "lax"\n'),
}


@pytest.mark.parametrize("kind", list(_STICKY_TEXT), ids=lambda k: k.value)
def test_sticky_check_catches_round_robin(kind: ProxyKind,
                                          node_backend: Callable[..., rig.NodeBackend],
                                          proxy_factory: rig.ProxyFactory) -> None:
    """Control: the same config without its stickiness loses polling sessions to the other
    backend (400 "Session ID unknown"), so the sticky test above can fail."""
    a, b = node_backend(server_id="a"), node_backend(server_id="b")
    port = rig.free_port()
    spec = DeploySpec(proxy=kind, listen_address="127.0.0.1", listen_port=port,
                      backends=(Backend("127.0.0.1", a.port), Backend("127.0.0.1", b.port)))
    text = render(spec).text
    assert _STICKY_TEXT[kind] in text
    proxy_factory.from_site(kind, text.replace(_STICKY_TEXT[kind], ""), port=port).start()
    answers = []
    for _ in range(4):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/socket.io/?EIO=4&transport=polling")
        sid = json.loads(conn.getresponse().read()[1:])["sid"]
        conn.request("POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}", body=b"40")
        resp = conn.getresponse()
        answers.append((resp.status, resp.read()))
        conn.close()
    assert (400, b'{"code":1,"message":"Session ID unknown"}') in answers
