"""``sockwizard diagnose --fix`` / ``--apply`` against real proxies with a real fault.

One setup per proxy (nginx, Apache httpd, Caddy, a node http-proxy script; the rig's real
daemons in front of the rig's Node socket.io servers), configs written by hand with one fault
each. For each: the real CLI (a subprocess) with ``--fix`` prints a diff; ``patch -p0`` applies
it to a copy of the files; ``--apply`` makes the change on the "host" (``--host local``, and one
over the rig's real sshd as swdeploy with sudo) through the guarded deploy; then the fault is
gone (the transaction's own probe passed, and the CLI's re-diagnosis and a fresh one show no
finding of that code), and the applied file equals the patched copy byte for byte. A fix the
checker refuses (``--validate-cmd`` that fails) leaves every file byte-identical, exit 4.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import rig
from tests.test_diagnose_live import (
    Ctx,
    apache_pp,
    apache_vhost,
    caddy_site,
    nginx_loc,
    node_script,
)
from wizard.diagnose import run_diagnosis
from wizard.errors import ExitCode
from wizard.model import ProxyKind
from wizard.probe import ProbeOptions
from wizard.remote import LocalRemote

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parent.parent
SHORT = {"ping_interval": 5000, "ping_timeout": 3000}


@dataclass(frozen=True)
class Fault:
    id: str
    kind: ProxyKind
    config: Callable[[Ctx], str]
    code: str
    backends: int = 1
    ping: tuple[tuple[str, int], ...] = ()
    full: bool = False


FAULTS = [
    Fault("nginx-read-timeout", ProxyKind.NGINX,
          lambda c: nginx_loc(c, extra="        proxy_read_timeout 3s;\n"),
          "read-timeout-too-short"),
    Fault("nginx-no-sticky", ProxyKind.NGINX,
          lambda c: nginx_loc(c, upstream="nodes", before=(
              "upstream nodes {\n" + "".join(f"    server {b};\n" for b in c.backends) + "}\n")),
          "no-sticky-sessions", backends=2),
    Fault("apache-timeouts", ProxyKind.APACHE,
          lambda c: apache_vhost(c, "    ProxyTimeout 6\n" + apache_pp(c), head="Timeout 6\n"),
          "read-timeout-too-short", ping=tuple(SHORT.items())),
    Fault("caddy-read-timeout", ProxyKind.CADDY,
          lambda c: caddy_site(c, f"\treverse_proxy /socket.io/* {c.b} {{\n\t\ttransport http "
                                  "{\n\t\t\tread_timeout 4s\n\t\t}\n\t}\n"),
          "read-timeout-too-short", ping=tuple(SHORT.items())),
    Fault("node-proxy-timeout", ProxyKind.NODE,
          lambda c: node_script(c, head="const TIMEOUT_MS = 3000;\n",
                                options="ws: true, xfwd: true, proxyTimeout: TIMEOUT_MS"),
          "read-timeout-too-short", ping=tuple(SHORT.items()), full=True),
]


@dataclass
class Setup:
    fault: Fault
    inst: rig.ProxyInstance
    work: Path

    def argv(self, *extra: str, host: str = "local") -> list[str]:
        return [sys.executable, "-m", "wizard", "diagnose", self.inst.url, "--host", host,
                "--proxy", self.fault.kind.value, "--config", str(self.inst.config_path),
                *extra]

    def apply_argv(self, *extra: str, host: str = "local") -> list[str]:
        return self.argv("--apply", "--validate-cmd", self.inst.validate_cmd, "--reload-cmd",
                         self.inst.reload_cmd, "--backup-dir", str(self.work / "backups"),
                         *extra, host=host)

    def files(self) -> dict[Path, bytes]:
        """The config files: the site file and the main config (one file in full mode)."""
        return {p: p.read_bytes() for p in {self.inst.site_path, self.inst.config_path}}

    def codes(self) -> list[str]:
        d = run_diagnosis(self.inst.url, ProbeOptions(sessions=6), remote=LocalRemote(),
                          proxy=self.fault.kind, config_path=str(self.inst.config_path))
        return [f.code for f in d.findings]


def run(argv: list[str], work: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
           "XDG_STATE_HOME": str(work / "state"), "HOME": str(work)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO, env=env)


@pytest.fixture
def make_setup(node_backend: Callable[..., rig.NodeBackend],
               proxy_factory: rig.ProxyFactory, tmp_path: Path) -> Callable[[Fault], Setup]:
    def make(fault: Fault) -> Setup:
        backends = [node_backend(server_id=f"s{i}", **dict(fault.ping)).address
                    for i in range(fault.backends)]
        port = rig.free_port()
        text = fault.config(Ctx(port, backends))
        inst = (proxy_factory.create(fault.kind.value, text, port=port) if fault.full
                else proxy_factory.from_site(fault.kind.value, text, port=port))
        inst.start()
        return Setup(fault, inst, tmp_path)

    return make


def patched_copy(setup: Setup, diff: str) -> Path:
    """The files under a copy root (the same absolute paths), the diff applied with patch -p0."""
    root = setup.work / "copy"
    for path in setup.files():
        dest = root / str(path).lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    proc = subprocess.run(["patch", "-p0", "-d", str(root), "--batch", "--forward"],
                          input=diff, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr + diff
    return root


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fix_prints_a_diff_and_apply_cures(fault: Fault,
                                           make_setup: Callable[[Fault], Setup]) -> None:
    setup = make_setup(fault)
    assert fault.code in setup.codes()
    before = setup.files()

    fixed = run(setup.argv("--fix"), setup.work)
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.startswith("--- "), fixed.stdout + fixed.stderr
    assert setup.files() == before  # --fix changes nothing
    root = patched_copy(setup, fixed.stdout)

    applied = run(setup.apply_argv(), setup.work)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert f"before: {fault.code}" in applied.stdout or \
        ("before: " in applied.stdout and fault.code in applied.stdout.split("after:")[0])
    assert fault.code not in applied.stdout.split("after:")[1], applied.stdout
    for step in ("backup", "validate", "reload", "settle", "probe", "done"):
        assert any(line.startswith(step) for line in applied.stderr.splitlines()), step
    after = setup.files()
    assert after != before
    for path, data in after.items():  # the applied result equals what patch made
        assert (root / str(path).lstrip("/")).read_bytes() == data, path
    assert fault.code not in setup.codes()  # and a fresh diagnosis agrees
    assert run(setup.argv("--fix"), setup.work).stdout == ""  # nothing left to fix


@pytest.mark.parametrize("fault", [FAULTS[0], FAULTS[2], FAULTS[3], FAULTS[4]],
                         ids=["nginx", "apache", "caddy", "node"])
def test_refused_fix_leaves_files_byte_identical(fault: Fault,
                                                 make_setup: Callable[[Fault], Setup]) -> None:
    setup = make_setup(fault)
    before = setup.files()
    refused = run(setup.argv("--apply", "--validate-cmd", "false", "--reload-cmd",
                             setup.inst.reload_cmd, "--backup-dir",
                             str(setup.work / "backups")), setup.work)
    assert refused.returncode == ExitCode.VALIDATE_ROLLED_BACK, refused.stdout + refused.stderr
    assert setup.files() == before
    assert fault.code in refused.stdout.split("after:")[1]  # still there, and said so


def test_apply_over_real_sshd(make_setup: Callable[[Fault], Setup],
                              sshd: rig.SshdInstance) -> None:
    """The same over SSH as swdeploy (sudo for the checker, the reload and the file moves)."""
    setup = make_setup(FAULTS[0])
    host = f"{rig.DEPLOY_USER}@127.0.0.1:{sshd.port}"
    auth = ("--identity", str(sshd.client_key(rig.DEPLOY_USER)),
            "--known-hosts", str(sshd.known_hosts))
    before = setup.files()
    fixed = run(setup.argv("--fix", *auth, host=host), setup.work)
    assert fixed.returncode == 0 and fixed.stdout.startswith("--- "), fixed.stderr
    root = patched_copy(setup, fixed.stdout)
    applied = run(setup.apply_argv(*auth, host=host), setup.work)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    after = setup.files()
    assert after != before
    for path, data in after.items():
        assert (root / str(path).lstrip("/")).read_bytes() == data
    assert "read-timeout-too-short" not in setup.codes()


def test_apply_with_only_the_config_reloads_the_nginx_it_names(
        make_setup: Callable[[Fault], Setup]) -> None:
    # An nginx run on its own file (-c; its own pid file) was checked with -c but reloaded
    # with a bare `nginx -s reload`, which reads the packaged config's pid: the reload failed
    # (or signalled another nginx), the restore's reload too, and the fix ended "rollback
    # failed". --config alone (no --validate-cmd / --reload-cmd) now names it for both.
    setup = make_setup(FAULTS[0])
    before = setup.files()
    applied = run(setup.argv("--apply", "--backup-dir", str(setup.work / "backups")), setup.work)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert f"nginx -s reload -c {setup.inst.config_path}" in applied.stderr, applied.stderr
    assert setup.files() != before
    assert FAULTS[0].code not in applied.stdout.split("after:")[1], applied.stdout
