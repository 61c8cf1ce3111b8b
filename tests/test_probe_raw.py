"""The raw Socket.IO CONNECT mode the deploy uses: same verdicts, no python-socketio import."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests import rig
from wizard.model import Backend, DeploySpec
from wizard.probe import ProbeOptions, run_probe
from wizard.render import render

pytestmark = pytest.mark.slow


def test_raw_connect_on_a_healthy_server(node_backend: Callable[..., rig.NodeBackend]) -> None:
    backend = node_backend(path="/rt/")
    report = run_probe(backend.url, ProbeOptions(path="/rt/", raw_connect=True))
    stage = report.stage("socketio")
    assert report.ok and report.transport == "websocket"
    assert stage is not None and stage.data["raw"] is True and stage.data["sid"]


def test_raw_connect_fails_when_the_proxy_drops_the_upgrade(
        node_backend: Callable[..., rig.NodeBackend], proxy_factory: rig.ProxyFactory) -> None:
    backend = node_backend()
    port = rig.free_port()
    text = render(DeploySpec(backends=(Backend("127.0.0.1", backend.port),),
                             listen_address="127.0.0.1", listen_port=port)).text
    text = text.replace("proxy_set_header Upgrade $http_upgrade;", "")
    proxy_factory.from_site("nginx", text, port=port).start()
    report = run_probe(f"http://127.0.0.1:{port}", ProbeOptions(raw_connect=True))
    assert not report.ok
    assert "websocket-upgrade-blocked" in [f.code for f in report.findings]


def test_raw_connect_does_not_import_socketio(node_backend: Callable[..., rig.NodeBackend]) -> None:
    backend = node_backend()
    code = ("import json, sys\nfrom wizard.probe import ProbeOptions, run_probe\n"
            f"r = run_probe({backend.url!r}, ProbeOptions(raw_connect=True))\n"
            "print(json.dumps([r.ok, 'socketio' in sys.modules, 'engineio' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert json.loads(out) == [True, False, False]


def test_raw_connect_refuses_emit() -> None:
    assert ProbeOptions(raw_connect=True, emit="echo").problems()
