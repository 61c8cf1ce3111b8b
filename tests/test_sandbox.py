"""``sockwizard sandbox`` (wizard/sandbox/): a real proxy and a real python-socketio server on
loopback, the rendered config deployed into it by the real transaction, and a clean teardown.

The node sandbox runs too: the deploy uploads sockwizard's own http-proxy beside proxy.js
(wizard/vendor/node), so it needs neither npm nor the registry.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import socketio

from wizard import sandbox
from wizard.errors import MissingTool
from wizard.model import Backend, DeploySpec, Layout, ProxyKind
from wizard.render import render

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
            assert client.call("echo", {"n": 7}, timeout=10) == {"n": 7, "server": "backend-1"}
        finally:
            client.disconnect()
    finally:
        box.stop()
    assert all(p.popen.poll() is not None for p in procs)
    assert not box.prefix.exists()


@pytest.mark.parametrize("kind", KINDS, ids=[k.value for k in KINDS])
def test_two_backends_run_as_two_servers_with_the_rendered_stickiness(kind: ProxyKind) -> None:
    """Issue #14 item 1: the spec's two backends become two demo servers, each answering with
    its own id; the rendered balancing (ip hash / route cookie / lb_policy cookie) is what is
    deployed, and N polling sessions through it meet no "Session ID unknown"."""
    spec = DeploySpec(backends=(Backend("app1", 3000), Backend("app2", 3000)))
    box = sandbox.start_sandbox(kind, spec)
    try:
        assert box.ok, box.result.message() if box.result else "no result"
        assert len(box.backend_ports) == 2 and box.spec.sticky
        assert box.affinity is not None and box.affinity.requested >= 10
        assert box.affinity.ok == box.affinity.requested and box.affinity.unknown_session == 0
        assert render(box.spec).text.count("127.0.0.1:") >= 2  # both servers in the config
        seen = []
        for port in box.backend_ports:  # each server answers as itself
            client = socketio.Client(reconnection=False)
            client.connect(f"http://127.0.0.1:{port}", wait_timeout=10)
            try:
                seen.append(client.call("echo", {}, timeout=10)["server"])
            finally:
                client.disconnect()
        assert seen == ["backend-1", "backend-2"]
        subs = [str(s) for s in box.substitutions]
        assert subs[0].startswith("backend 1: app1:3000 → 127.0.0.1:")
        assert subs[1].startswith("backend 2: app2:3000 → 127.0.0.1:")
        assert any(s.startswith("listen: *:80 → 127.0.0.1:") for s in subs)
    finally:
        box.stop()


def test_substitutions_name_everything_the_sandbox_changed() -> None:
    spec = DeploySpec(server_name="chat.example.com", tls_cert="/etc/c.pem", tls_key="/etc/k.pem",
                      layout=Layout.FULL, listen_address="10.0.0.5", listen_port=8080)
    built, subs = sandbox.sandbox_spec(ProxyKind.NGINX, spec, 4000, [4001])
    text = "\n".join(str(s) for s in subs)
    assert "backend 1: localhost:3000 → 127.0.0.1:4001" in text
    assert "listen: 10.0.0.5:8080 → 127.0.0.1:4000" in text
    assert "TLS: /etc/c.pem → plain HTTP" in text
    assert "server name: chat.example.com → none" in text and "layout: full → site" in text
    assert built.read_timeout == spec.read_timeout and built.path == spec.path


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
    assert "listen: *:80 → 127.0.0.1:" in done.stderr  # says what it substituted


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_closing_the_terminal_stops_the_sandbox_and_removes_it(signum: int) -> None:
    # Closing the terminal (SIGHUP) ended the command alone: its nginx and demo server ran
    # on, orphaned, and its temp dir stayed. Now a hang-up or a TERM cleans up as Ctrl-C does.
    proc = subprocess.Popen([sys.executable, "-m", "wizard", "sandbox", "--proxy", "nginx"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("http://")
        prefix = Path(_sandbox_dir(proc.pid))
        children = _descendants(proc.pid)
        assert prefix.is_dir() and len(children) >= 2, (prefix, children)  # nginx, a backend
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr
    assert "sandbox stopped" in stderr, stderr
    assert not prefix.exists()
    assert [pid for pid in children if Path(f"/proc/{pid}").exists()
            and _state(pid) != "Z"] == []


def _sandbox_dir(pid: int) -> str:
    """The sandbox's temp dir: the one its nginx runs in (from its command line)."""
    for child in _descendants(pid):
        # nginx sets its title ("nginx: master process ... -p DIR/ ..."): one string.
        line = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        if (found := re.search(r" -p (\S+)", line)) is not None:
            return found[1].rstrip("/")
    raise AssertionError("no nginx under the sandbox")


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                    out.append(int(entry.name))
                    todo.append(int(entry.name))
    return out


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
