"""node without npm (issue #13, item 2): sockwizard carries http-proxy and its dependencies
(wizard/vendor/node, pinned to tests/node/package-lock.json, licences kept) and uploads them
with proxy.js; the systemd unit it writes passes `systemd-analyze verify`.

The real test deploys into private mount and network namespaces (as in
tests/test_debian_layouts_real.py) where `npm` is hidden and /opt is empty: the default
destination /opt/sockwizard/proxy.js, the uploaded node_modules/, a supervisor standing in
for systemd (``--reload-cmd``), and a probe of Socket.IO through the vendored http-proxy on
port 80 — over WebSocket.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import rig
from tests.test_debian_layouts_real import DebianHost, _need, _running, _start_namespaces
from wizard.deploy.detect import HostFacts, detect_script, parse_facts
from wizard.deploy.vendor import manifest, node_modules, node_unit
from wizard.model import Backend, DeploySpec, ProxyKind

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "wizard" / "vendor" / "node"


def test_the_vendored_packages_are_the_lockfiles_with_their_licences() -> None:
    lock = json.loads((ROOT / "tests" / "node" / "package-lock.json").read_text())["packages"]
    http_proxy = lock["node_modules/http-proxy"]
    assert set(manifest()) == {"http-proxy", *http_proxy["dependencies"]}
    for name, meta in manifest().items():
        pinned = lock[f"node_modules/{name}"]
        assert (meta["version"], meta["integrity"]) == (pinned["version"], pinned["integrity"])
        package = json.loads((VENDOR / name / "package.json").read_text())
        assert package["version"] == meta["version"] and package["license"] == "MIT"
        assert "Permission is hereby granted" in (VENDOR / name / "LICENSE").read_text()
    paths = [p for p, _ in node_modules()]
    assert "http-proxy/lib/http-proxy/passes/ws-incoming.js" in paths
    assert len(paths) == len(set(paths)) == sum(len(m["files"]) for m in manifest().values())


def test_the_unit_verifies_and_runs_unprivileged_restarts_and_is_enabled(tmp_path: Path) -> None:
    unit = node_unit("/opt/sockwizard/proxy.js", "/usr/bin/node")
    for line in ("DynamicUser=yes", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes",
                 "Restart=on-failure", "WantedBy=multi-user.target",
                 "ExecStart=/usr/bin/node /opt/sockwizard/proxy.js"):
        assert f"\n{line}\n" in unit
    assert "ExecStart=/usr/bin/env node" in node_unit("/opt/x/proxy.js", "/usr/bin/node; rm")
    analyze = shutil.which("systemd-analyze")
    node = shutil.which("node")
    if analyze is None or node is None:
        pytest.skip("systemd-analyze or node is not installed")
    (tmp_path / "proxy.js").write_text("'use strict';\n")
    path = tmp_path / "sockwizard-proxy.service"
    path.write_text(node_unit(str(tmp_path / "proxy.js"), node))
    out = subprocess.run([analyze, "verify", "--man=no", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr


@pytest.mark.needs_root
@pytest.mark.slow
def test_node_deploys_on_a_host_without_npm(tmp_path: Path, npm_ready: None) -> None:
    _need("node")
    (tmp_path / "backups").mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "no-npm").write_text("")  # bound over npm: not executable, so not found
    npm = shutil.which("npm")
    holder = _start_namespaces(tmp_path, [
        "mount -t tmpfs none /opt", f"mount --bind {tmp_path}/backups /var/backups",
        *([f"mount --bind {tmp_path}/no-npm {npm}"] if npm else []),
        "if [ -d /run/systemd ]; then mount -t tmpfs none /run/systemd; fi"])
    host = DebianHost(tmp_path, holder, "node")
    # What was there before: a placeholder on port 80 (it has no http-proxy to require).
    placeholder = ("mkdir -p /opt/sockwizard && printf '%s\\n' \"require('http')"
                   ".createServer((q, s) => s.end('placeholder')).listen(80);\" "
                   "> /opt/sockwizard/proxy.js")
    assert host.run("sh", "-c", placeholder).returncode == 0
    # systemd's part: run proxy.js, restart it on "reload" (SIGHUP).
    supervise = ("node", str(rig.NODE_DIR / "supervise.js"), "/opt/sockwizard/proxy.js",
                 "/opt/supervise.pid")
    with _running(host, supervise, None, ready=r"CHILD START"):
        assert host.run("sh", "-c", "command -v npm").returncode != 0
        assert host.run("node", "-e", "require.resolve('http-proxy')",
                        timeout=30).returncode != 0
        result = host.sockwizard(
            "deploy", "--proxy", "node", "--backend", "127.0.0.1:3000", "--host", "local",
            "--reload-cmd", "kill -HUP \"$(cat /opt/supervise.pid)\"", "--settle-timeout", "8")
        assert result.returncode == 0, result.stderr
        assert "npm" not in result.stderr
        assert "Socket.IO connected on websocket" in result.stderr
        shipped = host.run("cat", "/opt/sockwizard/node_modules/http-proxy/package.json")
        assert json.loads(shipped.stdout)["version"] == manifest()["http-proxy"]["version"]
        probe = host.sockwizard("probe", "http://127.0.0.1/")
        assert probe.returncode == 0, probe.stdout + probe.stderr


def test_detect_sees_the_vendored_copy_beside_the_proxy_without_starting_node(
        tmp_path: Path) -> None:
    """The detect script runs for real (sh on this machine) with a `node` that only logs that
    it ran: sockwizard's copy beside proxy.js is seen by its files (node costs ~2 s on a slow
    host, every node deploy); without that copy node itself is still asked."""
    stub = tmp_path / "bin"
    stub.mkdir()
    ran = tmp_path / "node-ran"
    (stub / "node").write_text(f"#!/bin/sh\necho \"$*\" >> {ran}\nexit 1\n")
    (stub / "node").chmod(0o755)
    dest = tmp_path / "app" / "proxy.js"
    spec = DeploySpec(proxy=ProxyKind.NODE, backends=(Backend("127.0.0.1", 3000),))

    def facts() -> HostFacts:
        out = subprocess.run(["sh", "-c", detect_script(spec, str(dest), stock=False)],
                             capture_output=True, text=True, timeout=30,
                             env={"PATH": f"{stub}:/usr/bin:/bin"}, check=True).stdout
        return parse_facts(out, str(dest))

    dest.parent.mkdir()
    assert not facts().node_has_http_proxy
    assert "require.resolve" in ran.read_text()  # no copy here: node was asked (and said no)
    ran.unlink()
    for rel, data in node_modules():
        path = dest.parent / "node_modules" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert facts().node_has_http_proxy
    assert "require.resolve" not in (ran.read_text() if ran.exists() else "")
