"""Many hosts through the fleet path: ``sockwizard deploy --inventory`` on twelve real SSH
hosts with ``--forks 10``, one host with a dead backend and one that refuses connections.

Each host is its own rig sshd (own host key, strict known_hosts) and nginx, set up like
``test_fleet_ansible_real`` (whose ``Host`` and inventory writer this reuses); twelve hosts and
ten forks make the pool queue work. Expected: the ten good hosts deploy and serve the new
config, the dead-backend host rolls back alone (its file byte-identical), the unreachable host
fails at connect, and the report names each. Beside it, an in-memory branch test proves
``--forks`` bounds the hosts in flight. No timing is asserted (bench/bench_fleet.py measures).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import rig
from tests.test_fleet_ansible_real import Host, start_hosts, write_inventory
from wizard.deploy import ConnectOptions, DeployOptions, DeployResult, Outcome
from wizard.deploy.marker import stamp
from wizard.errors import ExitCode
from wizard.fleet import HostJob, deploy_fleet
from wizard.model import DeploySpec, ProxyKind
from wizard.render import render

REPO = Path(__file__).resolve().parent.parent
N_HOSTS = 12
FORKS = 10
DEAD = 5  # its backend port has no listener: validates, reloads, fails the probe


@pytest.fixture
def many(node_backend: Callable[..., rig.NodeBackend], proxy_factory: rig.ProxyFactory
         ) -> Iterator[list[Host]]:
    yield from start_hosts(N_HOSTS, DEAD, node_backend, proxy_factory)


@pytest.mark.needs_root
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_inventory_twelve_hosts_forks_ten_bad_hosts_fail_alone(
        many: list[Host], tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path / "hosts.ini", many)
    # One more host whose port nobody listens on: it fails at connect, touching nothing.
    closed = rig.free_port()
    with inventory.open("a") as f:
        f.write(f"[gone]\nh{N_HOSTS} ansible_host=127.0.0.1 ansible_port={closed} "
                f"ansible_user={rig.DEPLOY_USER}\n")
    before = {h.name: h.config() for h in many}
    known = tmp_path / "known_hosts"
    known.write_text("".join(h.sshd.known_hosts.read_text() for h in many))
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.run(
        [sys.executable, "-m", "wizard", "deploy", "--proxy", "nginx", "--inventory",
         str(inventory), "--forks", str(FORKS), "--backup-dir", str(tmp_path / "backups"),
         "--known-hosts", str(known), "--settle-timeout", "8", "--json"],
        capture_output=True, text=True, timeout=240, env=env, cwd=REPO)
    assert proc.returncode not in (0, 2), proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    outcome = {r["host"]: r for r in report["hosts"]}
    assert len(outcome) == N_HOSTS + 1
    for h in many:
        got = outcome[f"{rig.DEPLOY_USER}@127.0.0.1:{h.sshd.port}"]
        assert got["name"] == h.name  # the inventory's name beside the SSH target
        if h.name == f"h{DEAD}":
            assert got["outcome"] == "rolled back", got
            assert h.config() == before[h.name]  # restored byte for byte
        else:
            assert got["outcome"] == "deployed", (h.name, got, proc.stderr[-2000:])
            assert h.config() == stamp(ProxyKind.NGINX, render(h.spec()).text).text.encode()
        assert h.serving(), h.name
    gone = outcome[f"{rig.DEPLOY_USER}@127.0.0.1:{closed}"]
    assert gone["outcome"] == "failed" and gone["failed_step"] == "connect", gone
    # The table and the verdicts name hosts as the inventory does, with where they went.
    assert re.search(rf"^h{DEAD} +{rig.DEPLOY_USER}@127\.0\.0\.1:\d+ +rolled back",
                     proc.stderr, re.M), proc.stderr[-2000:]
    assert f"sockwizard: h{N_HOSTS}: " in proc.stderr


def test_forks_bounds_the_hosts_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fifteen jobs, forks 4: never more than four at once, all fifteen done, in order."""
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def fake_deploy(host: str, spec: DeploySpec, options: DeployOptions,
                    connect: ConnectOptions, **_: object) -> DeployResult:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.02)
        with lock:
            in_flight -= 1
        return DeployResult(host=host, outcome=Outcome.DEPLOYED, exit_code=ExitCode.OK,
                            title="ok")

    spec = DeploySpec(proxy=ProxyKind.NGINX)
    jobs = [HostJob(f"h{i}", f"h{i}.example", spec, DeployOptions(), ConnectOptions())
            for i in range(15)]
    monkeypatch.setattr("wizard.fleet.run.deploy_host", fake_deploy)
    results = deploy_fleet(jobs, forks=4)
    assert [r.host for r in results] == [j.target for j in jobs]
    assert 1 < peak <= 4


def test_templates_compile_once_before_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jinja2's template cache has no lock: fifty threads that miss it at once compile the same
    templates fifty times. The fleet fills it in the calling thread before fanning out."""
    import jinja2

    from wizard.render import engine, render

    engine.environment.cache_clear()  # a fresh environment: an empty template cache
    compiled_in: list[str] = []
    original = jinja2.Environment._compile

    def counting(self: jinja2.Environment, source: str, filename: str) -> object:
        compiled_in.append(threading.current_thread().name)
        return original(self, source, filename)

    monkeypatch.setattr(jinja2.Environment, "_compile", counting)

    def fake_deploy(host: str, spec: DeploySpec, options: DeployOptions,
                    connect: ConnectOptions, **_: object) -> DeployResult:
        render(spec)  # what the transaction's render step does
        return DeployResult(host=host, outcome=Outcome.DEPLOYED, exit_code=ExitCode.OK,
                            title="ok")

    monkeypatch.setattr("wizard.fleet.run.deploy_host", fake_deploy)
    jobs = [HostJob(f"h{i}", f"h{i}.example", DeploySpec(proxy=kind), DeployOptions(),
                    ConnectOptions())
            for i, kind in enumerate([ProxyKind.NGINX, ProxyKind.CADDY] * 6)]
    deploy_fleet(jobs, forks=12)
    assert compiled_in, "nothing was compiled: the test did not exercise the cache"
    assert set(compiled_in) == {threading.current_thread().name}, compiled_in
    engine.environment.cache_clear()
