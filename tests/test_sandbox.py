"""``sockwizard sandbox`` (wizard/sandbox/): a real proxy and a real python-socketio server on
loopback, the rendered config deployed into it by the real transaction, and a clean teardown.

The node sandbox runs too: the deploy uploads sockwizard's own http-proxy beside proxy.js
(wizard/vendor/node), so it needs neither npm nor the registry.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import socketio

from wizard import sandbox
from wizard.errors import MissingTool
from wizard.model import DeploySpec, ProxyKind

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

KINDS = [ProxyKind.NGINX, ProxyKind.APACHE, ProxyKind.CADDY, ProxyKind.HAPROXY,
         ProxyKind.TRAEFIK, ProxyKind.NODE]
REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("kind", KINDS, ids=[k.value for k in KINDS])
def test_sandbox_deploys_serves_and_cleans_up(kind: ProxyKind) -> None:
    box = sandbox.start_sandbox(kind, DeploySpec(path="/chat/", server_path="/socket.io/"))
    procs = list(box.procs)
    try:
        assert box.ok, box.result.message() if box.result else "no result"
        assert box.result is not None and box.result.probe is not None
        assert box.result.probe.transport == "websocket"
        client = socketio.Client(reconnection=False)
        client.connect(box.url, socketio_path="/chat/", wait_timeout=10)
        try:
            assert client.transport() == "websocket"
            assert client.call("echo", {"n": 7}, timeout=10) == {"n": 7, "server": "sandbox"}
        finally:
            client.disconnect()
    finally:
        box.stop()
    assert all(p.popen.poll() is not None for p in procs)
    assert not box.prefix.exists()


def test_missing_proxy_binary_names_the_install_command() -> None:
    with pytest.raises(MissingTool) as err:  # binaries looked for where there are none
        sandbox.start_sandbox(ProxyKind.CADDY, binary_dirs=["/nonexistent"])
    assert "apt-get install caddy" in err.value.hint


def test_cli_no_wait_prints_the_url_and_exits_clean() -> None:
    done = subprocess.run([sys.executable, "-m", "wizard", "sandbox", "--proxy", "caddy",
                           "--no-wait"], capture_output=True, text=True, cwd=REPO, timeout=90)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("http://127.0.0.1:")
    assert "sandbox is live" in done.stderr and "sandbox stopped" in done.stderr
