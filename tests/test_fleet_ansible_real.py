"""The fleet, for real: five SSH hosts, each its own sshd + nginx in front of a Socket.IO
server, deployed by the exported Ansible role and by ``sockwizard deploy --inventory``.

Each "host" is a rig sshd on its own loopback port (its own host key, checked strictly) with
an nginx whose site file, checker and reload come from per-host inventory variables
(``sockwizard_dest`` / ``sockwizard_validate_cmd`` / ``sockwizard_reload_cmd``) - the same
variables both engines read. One host's ``backends`` points at a port nobody listens on: its
new config validates and reloads, then the probe fails, and it alone must roll back, its file
byte-identical, while the others deploy and serve. ansible-core and ansible-lint are pinned in
the test extra; sockwizard itself never imports them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import rig
from wizard.deploy.marker import stamp
from wizard.export import export_ansible
from wizard.model import Backend, DeploySpec, ProxyKind
from wizard.probe import ProbeOptions, run_probe
from wizard.render import render

pytestmark = [pytest.mark.needs_root, pytest.mark.slow, pytest.mark.timeout(300)]

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
needs_ansible = pytest.mark.skipif(not (BIN / "ansible-playbook").exists(),
                                   reason="ansible-core (test extra) is not installed")
N_HOSTS = 5
DEAD = 4  # the host whose backend is dead


@dataclass
class Host:
    name: str
    sshd: rig.SshdInstance
    nginx: rig.ProxyInstance
    backend_port: int

    def spec(self, **kw: object) -> DeploySpec:
        base: dict[str, object] = {
            "proxy": ProxyKind.NGINX, "listen_address": "127.0.0.1",
            "listen_port": self.nginx.port, "server_name": f"{self.name}.fleet.test",
            "backends": (Backend("127.0.0.1", self.backend_port),)}
        base.update(kw)
        return DeploySpec(**base)  # type: ignore[arg-type]

    def inventory_line(self, server_name: str | None = None) -> str:
        vars_ = {
            "ansible_host": "127.0.0.1", "ansible_port": self.sshd.port,
            "ansible_user": rig.DEPLOY_USER,
            "ansible_ssh_private_key_file": self.sshd.client_key(rig.DEPLOY_USER),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={self.sshd.known_hosts} "
                                       "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
            "listen_address": "127.0.0.1", "listen_port": self.nginx.port,
            "server_name": server_name or f"{self.name}.fleet.test",
            "backends": f"127.0.0.1:{self.backend_port}",
            "sockwizard_dest": self.nginx.site_path,
            "sockwizard_validate_cmd": self.nginx.validate_cmd,
            "sockwizard_reload_cmd": self.nginx.reload_cmd,
        }
        # INI quoting: shlex-split, so quote every value that has spaces.
        parts = [f"{k}={json.dumps(str(v)) if ' ' in str(v) else v}" for k, v in vars_.items()]
        return f"{self.name} " + " ".join(parts)

    def config(self) -> bytes:
        return self.nginx.site_path.read_bytes()

    def serving(self) -> bool:
        report = run_probe(self.nginx.url, ProbeOptions(path="/socket.io/", timeout=5))
        return bool(report.ok and report.transport == "websocket")


@pytest.fixture
def fleet(node_backend: Callable[..., rig.NodeBackend], proxy_factory: rig.ProxyFactory
          ) -> Iterator[list[Host]]:
    yield from start_hosts(N_HOSTS, DEAD, node_backend, proxy_factory)


def start_hosts(count: int, dead: int, node_backend: Callable[..., rig.NodeBackend],
                proxy_factory: rig.ProxyFactory) -> Iterator[list[Host]]:
    """``count`` hosts (an sshd + nginx each) in front of one live backend; host ``dead``'s
    backend port has no listener. For a fixture to ``yield from``; stops the sshds after."""
    if not rig.is_root():
        pytest.skip("needs root: runs sshd")
    live = node_backend(server_id="live")
    hosts: list[Host] = []
    sshds: list[rig.SshdInstance] = []
    try:
        for i in range(count):
            sshd = rig.SshdInstance()
            sshds.append(sshd)
            port = rig.free_port()
            inst = proxy_factory.from_site(
                ProxyKind.NGINX, rig.minimal_site(ProxyKind.NGINX, port, live.address),
                port=port)
            inst.start()
            backend_port = rig.free_port() if i == dead else live.port
            hosts.append(Host(f"h{i}", sshd, inst, backend_port))
        yield hosts
    finally:
        for sshd in sshds:
            sshd.stop()


def write_inventory(path: Path, hosts: list[Host], **names: str) -> Path:
    lines = ["[fleet]", *(h.inventory_line(names.get(h.name)) for h in hosts),
             "[fleet:vars]", "ansible_python_interpreter=/usr/bin/python3",
             "sockwizard_settle_timeout=6"]
    path.write_text("\n".join(lines) + "\n")
    return path


def ansible_env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "ANSIBLE_PIPELINING": "1", "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-local"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp / "cp"), "PYTHONWARNINGS": "ignore",
            "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_FORKS": "5"}


def playbook(tmp: Path, inventory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory),
                           str(tmp / "export" / "site.yml"), *extra],
                          capture_output=True, text=True, timeout=240, env=ansible_env(tmp))


@needs_ansible
def test_exported_role_deploys_five_hosts_and_one_rolls_back_alone(
        fleet: list[Host], tmp_path: Path) -> None:
    export_ansible(DeploySpec(proxy=ProxyKind.NGINX), tmp_path / "export")
    inventory = write_inventory(tmp_path / "hosts.ini", fleet)
    before = {h.name: h.config() for h in fleet}

    # --check --diff shows the change and makes none.
    check = playbook(tmp_path, inventory, "--check", "--diff")
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]
    assert "+    add_header X-Sockwizard-Config" in check.stdout
    assert {h.name: h.config() for h in fleet} == before

    run = playbook(tmp_path, inventory)
    out = run.stdout
    (tmp_path / "play.log").write_text(out + run.stderr + fleet[0].nginx.log_text())
    assert run.returncode != 0, out[-4000:]  # the dead host failed the play
    for h in fleet:
        if h.name == f"h{DEAD}":
            continue
        # Byte for byte what `sockwizard deploy` would have written for this host's spec.
        assert h.config() == stamp(ProxyKind.NGINX, render(h.spec()).text).text.encode(), h.name
        assert h.serving(), h.name
    dead = fleet[DEAD]
    assert dead.config() == before[dead.name]  # restored byte for byte
    assert dead.serving()
    recap = {line.split()[0]: line for line in out.splitlines() if "failed=" in line}
    assert "failed=1" in recap[dead.name] and "rescued=1" in recap[dead.name], out[-3000:]
    for h in fleet[:DEAD]:
        assert "failed=0" in recap[h.name] and "rescued=0" in recap[h.name], recap[h.name]
    assert "Socket.IO probe failed" in out

    # A second run changes nothing on the deployed hosts.
    again = playbook(tmp_path, inventory, "--limit", "fleet:!h4")
    assert again.returncode == 0 and "changed=0" in again.stdout.split("PLAY RECAP")[1], \
        again.stdout[-3000:]


@needs_ansible
def test_exported_role_passes_ansible_lint(tmp_path: Path) -> None:
    lint = BIN / "ansible-lint"
    if not lint.exists():
        pytest.skip("ansible-lint (test extra) is not installed")
    export_ansible(DeploySpec(proxy=ProxyKind.NGINX), tmp_path / "export")
    proc = subprocess.run([str(lint), "--offline", "site.yml", "roles/sockwizard"],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path / "export",
                          env={**ansible_env(tmp_path), "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def test_sockwizard_deploy_inventory_three_hosts_one_fails_alone(
        fleet: list[Host], tmp_path: Path) -> None:
    three = [fleet[0], fleet[1], fleet[DEAD]]
    inventory = write_inventory(tmp_path / "hosts.ini", three)
    before = {h.name: h.config() for h in three}
    known = tmp_path / "known_hosts"  # one file for the three hosts' keys
    known.write_text("".join(h.sshd.known_hosts.read_text() for h in three))
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.run(
        [sys.executable, "-m", "wizard", "deploy", "--proxy", "nginx", "--inventory",
         str(inventory), "--forks", "3", "--backup-dir", str(tmp_path / "backups"),
         "--known-hosts", str(known), "--settle-timeout", "6", "--json"],
        capture_output=True, text=True, timeout=240, env=env, cwd=REPO)
    assert proc.returncode not in (0, 2), proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    outcome = {r["host"]: r["outcome"] for r in report["hosts"]}
    targets = {h.name: f"{rig.DEPLOY_USER}@127.0.0.1:{h.sshd.port}" for h in three}
    assert outcome[targets["h0"]] == "deployed" and outcome[targets["h1"]] == "deployed", \
        proc.stderr[-3000:]
    assert outcome[targets[f"h{DEAD}"]] == "rolled back", proc.stderr[-3000:]
    for h in three[:2]:
        assert h.config() == stamp(ProxyKind.NGINX, render(h.spec()).text).text.encode()
        assert h.serving()
    assert fleet[DEAD].config() == before[f"h{DEAD}"] and fleet[DEAD].serving()
    assert "failed step" in proc.stderr  # the per-host table
