"""The deploy over a real SSH connection into real proxies, and every fault the issue lists.

The host is the rig's sshd on loopback (tests/rig.py): ``swdeploy`` logs in with its key and
runs the proxy's checker and reload through passwordless sudo; ``swnosudo``'s sudo wants a
password. Each proxy is a rig instance whose site file the deploy replaces (``--dest`` /
``--validate-cmd`` / ``--reload-cmd`` point at it), in front of the real Node socket.io server.
Every fault test checks three things: the documented exit code, a message that says what to do,
and that the host's config is byte-identical to before and still serving (a real probe).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from tests import rig
from wizard.deploy import (
    ConnectOptions,
    DeployEvent,
    DeployOptions,
    DeployResult,
    Outcome,
    Step,
    StepFinished,
    StepStarted,
    deploy_host,
    deploy_many,
    history,
)
from wizard.deploy.marker import stamp
from wizard.deploy.vendor import node_modules
from wizard.errors import ExitCode
from wizard.model import Backend, DeploySpec, ProxyKind
from wizard.probe import ProbeOptions, run_probe
from wizard.proxies import profile
from wizard.proxies.traefik import check_script
from wizard.render import render

pytestmark = [pytest.mark.needs_root, pytest.mark.slow, pytest.mark.timeout(120)]

KINDS = list(ProxyKind)
NO_SSH_CONFIG = Path("/nonexistent/ssh_config")
REPO = Path(__file__).resolve().parent.parent


def spec_for(kind: ProxyKind, port: int, backend_port: int, **kw: Any) -> DeploySpec:
    return DeploySpec(proxy=kind, backends=(Backend("127.0.0.1", backend_port),),
                      listen_address="127.0.0.1", listen_port=port, **kw)


@dataclass
class Site:
    """One proxy instance on "the host", the spec that is live on it, and how to deploy."""

    sshd: rig.SshdInstance
    inst: rig.ProxyInstance
    spec: DeploySpec
    backend: rig.NodeBackend
    work: Path
    user: str = rig.DEPLOY_USER
    events: list[DeployEvent] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"{self.user}@127.0.0.1:{self.sshd.port}"

    def connect(self, **kw: Any) -> ConnectOptions:
        base: dict[str, Any] = {"known_hosts": self.sshd.known_hosts,
                                "identity": self.sshd.client_key(self.user),
                                "ssh_config": NO_SSH_CONFIG, "connect_timeout": 5}
        base.update(kw)
        return ConnectOptions(**base)

    def options(self, **kw: Any) -> DeployOptions:
        base: dict[str, Any] = {"dest": str(self.inst.site_path),
                                "validate_cmd": self.inst.validate_cmd,
                                "reload_cmd": self.inst.reload_cmd,
                                "backup_dir": str(self.work / "backups"),
                                "state_dir": self.work / "state"}
        base.update(kw)
        return DeployOptions(**base)

    def deploy(self, spec: DeploySpec | None = None, *, target: str | None = None,
               on_event: Callable[[DeployEvent], None] | None = None,
               connect: dict[str, Any] | None = None, **kw: Any) -> DeployResult:
        self.events.clear()

        def sink(event: DeployEvent) -> None:
            self.events.append(event)
            if on_event is not None:
                on_event(event)

        return deploy_host(target or self.target, spec or self.spec, self.options(**kw),
                           self.connect(**(connect or {})), on_event=sink)

    def config(self) -> bytes:
        return self.inst.site_path.read_bytes()

    def assert_serving(self) -> None:
        """The config on the host answers Socket.IO over WebSocket (a real probe)."""
        report = run_probe(self.inst.url, ProbeOptions(path="/socket.io/", timeout=10))
        assert report.ok and report.transport == "websocket", (
            f"probe failed: {report.findings}\n{self.inst.log_text()[-2000:]}")

    def steps(self) -> dict[str, str]:
        return {e.step.value: e.status for e in self.events if isinstance(e, StepFinished)}


@pytest.fixture
def make_site(sshd: rig.SshdInstance, node_backend: Callable[..., rig.NodeBackend],
              proxy_factory: rig.ProxyFactory, tmp_path: Path) -> Callable[..., Site]:
    """make_site(kind, initial="minimal"|"stamped") -> a started proxy whose site file the
    deploy user may replace, serving either a hand-written config or sockwizard's own."""

    def make(kind: ProxyKind, initial: str = "stamped", user: str = rig.DEPLOY_USER) -> Site:
        backend = node_backend(server_id="live")
        port = rig.free_port()
        spec = spec_for(kind, port, backend.port)
        text = (rig.minimal_site(kind, port, backend.address) if initial == "minimal"
                else stamp(kind, render(spec).text).text)
        options: dict[str, object] = {}
        if kind is ProxyKind.APACHE:
            options["modules"] = ["mpm_event", "authz_core", *profile(kind).modules(spec)]
        inst = proxy_factory.from_site(kind, text, port=port, **options)
        if kind is ProxyKind.NODE:
            # http-proxy is already on this "host" (else the deploy uploads its own copy):
            # sockwizard's vendored files in a real directory the deploy user can read. (A link
            # to tests/node/node_modules is not: CI's checkout may sit in a 0700 mktemp dir,
            # and every deploy then uploaded its copy through the link into the checkout.)
            for rel, data in node_modules():
                path = inst.prefix / "node_modules" / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        inst.start()
        inst.allow_user(user)
        work = tmp_path / f"{kind.value}-work"
        work.mkdir()
        return Site(sshd, inst, spec, backend, work, user=user)

    return make


# --------------------------------------------------------------------------------------------
# Each proxy: deploy, probe over WebSocket, backup, second deploy is a no-op
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=[k.value for k in KINDS])
def test_deploy_over_ssh_then_second_deploy_is_a_noop(kind: ProxyKind,
                                                      make_site: Callable[..., Site]) -> None:
    site = make_site(kind, initial="minimal")
    before = site.config()
    result = site.deploy()
    assert (result.outcome, result.exit_code) == (Outcome.DEPLOYED, ExitCode.OK), \
        result.message() + "\n" + site.inst.log_text()[-2000:]
    assert result.probe is not None and result.probe.transport == "websocket"
    assert site.steps()["probe"] == "ok" and site.steps()["settle"] == "ok"
    assert site.config() == stamp(kind, render(site.spec).text).text.encode()
    # the backup, on the host and locally, is the config that was there before
    assert result.backup is not None and Path(result.backup).read_bytes() == before
    assert result.local_backup is not None and Path(result.local_backup).read_bytes() == before
    index = (site.work / "backups" / "index.jsonl").read_text().splitlines()
    assert json.loads(index[-1])["backup"] == result.backup
    site.assert_serving()

    again = site.deploy()
    assert (again.outcome, again.exit_code) == (Outcome.UNCHANGED, ExitCode.OK), again.message()
    assert again.diff == "" and site.steps()["upload"] == "skipped"
    assert site.steps()["reload"] == "skipped" and site.steps()["probe"] == "ok"
    # The history holds the deploy (with its backup) and the no-op, which made no backup.
    records = history.parse((site.work / "backups" / "index.jsonl").read_text())
    assert [(r.outcome, r.get("backup")) for r in records] == \
        [("deployed", result.backup), ("unchanged", None)]


# --------------------------------------------------------------------------------------------
# Faults on the proxy side, for every proxy: validate, reload, probe
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=[k.value for k in KINDS])
def test_validation_failure_keeps_the_old_config(kind: ProxyKind,
                                                 make_site: Callable[..., Site]) -> None:
    site = make_site(kind)
    before = site.config()
    # Certificate files that do not exist: nginx, Apache and Caddy's own checkers refuse this.
    # HAProxy takes one PEM holding the certificate and its key.
    key = "/nonexistent/sockwizard-test" + (".pem" if kind is ProxyKind.HAPROXY else ".key")
    bad = replace(site.spec, tls_cert="/nonexistent/sockwizard-test.pem", tls_key=key,
                  tls_port=rig.free_port())
    kw: dict[str, Any] = {}
    if kind is ProxyKind.NODE:
        # `node --check` reads only the syntax; this checker also wants the files proxy.js loads.
        kw["validate_cmd"] = (f"{site.inst.validate_cmd} && test -r {bad.tls_cert} "
                              f"&& test -r {bad.tls_key} || {{ echo 'cannot read "
                              f"{bad.tls_cert}' >&2; exit 1; }}")
    result = site.deploy(bad, **kw)
    assert (result.outcome, result.exit_code) == (Outcome.ROLLED_BACK,
                                                  ExitCode.VALIDATE_ROLLED_BACK), result.message()
    # the checker's own words (Apache lacks the TLS modules here: mod_rewrite/mod_ssl)
    said = {ProxyKind.NGINX: "cannot load certificate", ProxyKind.CADDY: "loading certificates",
            ProxyKind.APACHE: "Invalid command", ProxyKind.NODE: "cannot read",
            ProxyKind.HAPROXY: "unable to stat SSL certificate",
            ProxyKind.TRAEFIK: "Unable to parse certificate"}[kind]
    assert said in result.detail, result.detail
    assert "then deploy again" in result.hint
    assert site.config() == before
    assert "reload" not in site.steps()
    site.assert_serving()


def test_traefik_never_watches_a_refused_file(make_site: Callable[..., Site]) -> None:
    """Traefik's file provider watches its directory: a refused file renamed in for the check
    would be live until the restore. With the profile's checker (it takes {config}) the deploy
    checks the temp file first (validate_before_rename): a watcher polling the directory all
    through the deploy sees only the old bytes, and Traefik's own log never names the file's
    missing certificate."""
    site = make_site(ProxyKind.TRAEFIK)
    before = site.config()
    log = site.inst.prefix / "logs" / "traefik.log"
    logged = len(log.read_bytes())
    seen: set[tuple[str, bytes]] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for path in site.inst.site_path.parent.iterdir():
                with contextlib.suppress(OSError):
                    seen.add((path.name, path.read_bytes()))
            time.sleep(0.002)

    bad = replace(site.spec, tls_cert="/nonexistent/sockwizard-test.pem",
                  tls_key="/nonexistent/sockwizard-test.key", tls_port=rig.free_port())
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = site.deploy(bad, validate_cmd=check_script(rig.TRAEFIK_BIN, static=False))
    finally:
        stop.set()
        watcher.join(5)
    assert (result.outcome, result.exit_code) == (Outcome.ROLLED_BACK,
                                                  ExitCode.VALIDATE_ROLLED_BACK), result.message()
    assert "Unable to parse certificate" in result.detail, result.detail
    assert site.steps()["rename"] == "skipped"
    assert seen == {(site.inst.site_path.name, before)}
    assert site.config() == before
    time.sleep(0.5)  # what Traefik would have logged for the refused file has been written
    assert b"/nonexistent/" not in log.read_bytes()[logged:]
    site.assert_serving()


@pytest.mark.parametrize("kind", KINDS, ids=[k.value for k in KINDS])
def test_reload_failure_rolls_back(kind: ProxyKind, make_site: Callable[..., Site]) -> None:
    site = make_site(kind)
    before = site.config()
    original = site.work / "original.conf"
    original.write_bytes(before)
    original.chmod(0o644)
    # The reload refuses anything but the original config (as a daemon refuses a config it
    # cannot apply); the rollback's reload of the restored file goes through.
    reload_cmd = (f"if cmp -s {{config}} {original}; then {site.inst.reload_cmd}; else "
                  "echo 'reload refused: cannot apply the new configuration' >&2; exit 1; fi")
    new = replace(site.spec, read_timeout=90)
    result = site.deploy(new, reload_cmd=reload_cmd)
    assert (result.outcome, result.exit_code) == (Outcome.ROLLED_BACK,
                                                  ExitCode.RELOAD_ROLLED_BACK), result.message()
    assert "cannot apply the new configuration" in result.detail
    assert [s for s in ("restore", "recheck", "reload-old") if site.steps().get(s) == "ok"] == [
        "restore", "recheck", "reload-old"]
    assert site.config() == before
    site.assert_serving()


def test_caddy_reload_fails_for_real_when_the_port_is_taken(make_site: Callable[..., Site]
                                                            ) -> None:
    """`caddy validate` accepts a site on a port in use; `caddy reload` cannot bind it."""
    site = make_site(ProxyKind.CADDY)
    before = site.config()
    taken = replace(site.spec, listen_port=site.backend.port)
    result = site.deploy(taken, probe=False)
    assert result.exit_code == ExitCode.RELOAD_ROLLED_BACK, result.message()
    assert "address already in use" in result.detail
    assert site.config() == before
    site.assert_serving()


@pytest.mark.parametrize("kind", KINDS, ids=[k.value for k in KINDS])
def test_probe_failure_rolls_back(kind: ProxyKind, make_site: Callable[..., Site]) -> None:
    site = make_site(kind)
    before = site.config()
    dead = replace(site.spec, backends=(Backend("127.0.0.1", rig.free_port()),))
    result = site.deploy(dead)
    assert (result.outcome, result.exit_code) == (Outcome.ROLLED_BACK,
                                                  ExitCode.PROBE_ROLLED_BACK), result.message()
    assert result.failed_step is Step.PROBE
    assert "backend-unreachable" in result.detail and "Socket.IO server" in result.hint
    assert site.config() == before
    site.assert_serving()


def test_no_rollback_keeps_the_failing_config(make_site: Callable[..., Site]) -> None:
    site = make_site(ProxyKind.NGINX)
    dead = replace(site.spec, backends=(Backend("127.0.0.1", rig.free_port()),))
    result = site.deploy(dead, rollback=False)
    assert (result.outcome, result.exit_code) == (Outcome.KEPT, ExitCode.FAILED)
    assert site.config() == stamp(ProxyKind.NGINX, render(dead).text).text.encode()


# --------------------------------------------------------------------------------------------
# Faults on the SSH side
# --------------------------------------------------------------------------------------------


def deploy_cut_at_upload(site: Site) -> DeployResult:
    """A changed deploy whose SSH connection is cut as the upload step starts."""
    killed: list[int] = []

    def cut(event: DeployEvent) -> None:
        if isinstance(event, StepStarted) and event.step is Step.UPLOAD:
            killed.extend(site.sshd.kill_session_children())

    result = site.deploy(replace(site.spec, read_timeout=90), on_event=cut)
    assert killed, "no SSH session to cut"
    return result


def test_connection_cut_during_upload_leaves_the_config_whole(
        make_site: Callable[..., Site], monkeypatch: pytest.MonkeyPatch) -> None:
    """The activation on a channel opened for it (no fresh spare): a cut before it is known
    not to have run it (NotStarted), and the report says nothing changed."""
    from wizard.remote.ssh import remote as ssh_remote

    monkeypatch.setattr(ssh_remote, "FRESH_CHANNEL_S", 0.0)
    site = make_site(ProxyKind.NGINX)
    before = site.config()
    result = deploy_cut_at_upload(site)
    assert (result.outcome, result.exit_code) == (Outcome.FAILED, ExitCode.CONNECTION)
    assert result.failed_step is Step.UPLOAD
    assert "was not changed" in result.title and "run the" in result.hint.lower()
    assert site.config() == before
    site.assert_serving()


def test_connection_cut_as_the_activation_leaves_on_a_fresh_spare(
        make_site: Callable[..., Site]) -> None:
    """On the spare channel (confirmed within FRESH_CHANNEL_S: no round trip for an open) the
    exec request may reach sshd before the cut does, so the script may run: the report is then
    the reconnect and the byte-for-byte restore; else nothing changed. Either way the config
    is whole and the report says which."""
    site = make_site(ProxyKind.NGINX)
    before = site.config()
    result = deploy_cut_at_upload(site)
    assert result.exit_code == ExitCode.CONNECTION, result.message()
    if result.outcome is Outcome.ROLLED_BACK:
        assert "restored byte for byte" in result.title
    else:
        assert result.outcome is Outcome.FAILED and "was not changed" in result.title
    assert site.config() == before
    site.assert_serving()


def test_sudo_that_needs_a_password(make_site: Callable[..., Site]) -> None:
    site = make_site(ProxyKind.NGINX, user=rig.NOSUDO_USER)
    before = site.config()
    new = replace(site.spec, read_timeout=90)
    result = site.deploy(new)
    assert (result.outcome, result.exit_code) == (Outcome.FAILED, ExitCode.CONNECTION)
    assert "needs a password" in result.title and "--sudo-password-stdin" in result.hint
    assert site.config() == before
    site.assert_serving()
    # ...and with the password, the same deploy goes through.
    ok = site.deploy(new, connect={"sudo_password": rig.NOSUDO_PASSWORD})
    assert ok.exit_code == ExitCode.OK, ok.message()
    assert rig.NOSUDO_PASSWORD not in json.dumps(ok.to_dict())


def test_unknown_host_key_is_refused_with_its_fingerprint(make_site: Callable[..., Site],
                                                           tmp_path: Path) -> None:
    site = make_site(ProxyKind.NGINX)
    before = site.config()
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    new = replace(site.spec, read_timeout=90)
    result = site.deploy(new, connect={"known_hosts": empty})
    assert (result.exit_code, result.failed_step) == (ExitCode.CONNECTION, Step.CONNECT)
    assert site.sshd.host_key_fingerprint in result.title
    assert f"--accept-host-key {site.sshd.host_key_fingerprint}" in result.hint
    assert site.config() == before and empty.read_text() == ""
    site.assert_serving()
    trusted = site.deploy(new, connect={"known_hosts": empty,
                                        "accept_host_key": site.sshd.host_key_fingerprint})
    assert trusted.ok, trusted.message()
    assert f"[127.0.0.1]:{site.sshd.port}" in empty.read_text()


def test_changed_host_key_is_refused_loudly(make_site: Callable[..., Site]) -> None:
    site = make_site(ProxyKind.NGINX)
    before = site.config()
    result = site.deploy(replace(site.spec, read_timeout=90),
                         connect={"known_hosts": site.sshd.other_known_hosts,
                                  "accept_host_key": site.sshd.host_key_fingerprint})
    assert result.exit_code == ExitCode.CONNECTION
    assert "HAS CHANGED" in result.title and "ssh-keygen -R" in result.hint
    assert site.config() == before
    site.assert_serving()


def test_wrong_key_is_an_authentication_failure(make_site: Callable[..., Site]) -> None:
    site = make_site(ProxyKind.NGINX)
    before = site.config()
    result = site.deploy(replace(site.spec, read_timeout=90),
                         connect={"identity": site.sshd.client_key("root")})
    assert result.exit_code == ExitCode.CONNECTION
    assert "Authentication failed" in result.title and "--identity" in result.hint
    assert site.config() == before
    site.assert_serving()


def test_unreachable_port(make_site: Callable[..., Site]) -> None:
    site = make_site(ProxyKind.NGINX)
    before = site.config()
    result = site.deploy(target=f"{rig.DEPLOY_USER}@127.0.0.1:{rig.free_port()}")
    assert (result.exit_code, result.failed_step) == (ExitCode.CONNECTION, Step.CONNECT)
    assert result.hint and result.seconds < 5
    assert site.config() == before
    site.assert_serving()


# --------------------------------------------------------------------------------------------
# Several hosts, the CLI, rollback
# --------------------------------------------------------------------------------------------


def test_two_hosts_at_once_one_failing_never_touches_the_other(
        make_site: Callable[..., Site]) -> None:
    site = make_site(ProxyKind.NGINX)
    dead = f"{rig.DEPLOY_USER}@127.0.0.1:{rig.free_port()}"
    new = replace(site.spec, read_timeout=90)
    results = deploy_many([site.target, dead], new, site.options(), site.connect())
    assert [r.host for r in results] == [site.target, dead]
    assert results[0].exit_code == ExitCode.OK, results[0].message()
    assert results[1].exit_code == ExitCode.CONNECTION
    assert site.config() == stamp(ProxyKind.NGINX, render(new).text).text.encode()
    site.assert_serving()


def test_cli_deploy_json_and_exit_codes(make_site: Callable[..., Site]) -> None:
    site = make_site(ProxyKind.NGINX)
    env = dict(os.environ, XDG_STATE_HOME=str(site.work / "state"))
    base = [sys.executable, "-m", "wizard", "deploy", "--proxy", "nginx",
            "--backend", site.backend.address, "--listen", f"127.0.0.1:{site.inst.port}",
            "--read-timeout", "90", "--host", site.target,
            "--identity", str(site.sshd.client_key(site.user)),
            "--known-hosts", str(site.sshd.known_hosts),
            "--dest", str(site.inst.site_path), "--validate-cmd", site.inst.validate_cmd,
            "--reload-cmd", site.inst.reload_cmd, "--backup-dir", str(site.work / "backups")]
    ok = subprocess.run([*base, "--json"], capture_output=True, text=True, env=env, cwd=REPO,
                        timeout=60)
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["exit_code"] == 0 and report["hosts"][0]["outcome"] == "deployed"
    assert report["hosts"][0]["probe"]["transport"] == "websocket"
    lines = ok.stderr.splitlines()
    for step in ("connect", "detect", "backup", "upload", "rename", "validate", "reload",
                 "settle", "probe", "done"):
        assert any(line.startswith(step) and " ms" in line for line in lines), (step, lines)
    # rollback puts the previous config back, over the same connection flags
    rb = subprocess.run([sys.executable, "-m", "wizard", "rollback", "--host", site.target,
                         "--identity", str(site.sshd.client_key(site.user)),
                         "--known-hosts", str(site.sshd.known_hosts),
                         "--backup-dir", str(site.work / "backups")],
                        capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert rb.returncode == 0, rb.stderr
    assert site.config() == stamp(ProxyKind.NGINX, render(site.spec).text).text.encode()
    site.assert_serving()
    # an unknown host key through the CLI: exit 3, one paragraph that says what to do
    unknown = site.work / "empty_known_hosts"
    unknown.write_text("")
    bad = subprocess.run([*base[:-2], "--known-hosts", str(unknown)], capture_output=True,
                         text=True, env=env, cwd=REPO, timeout=60)
    assert bad.returncode == ExitCode.CONNECTION
    assert "--accept-host-key SHA256:" in bad.stderr and "Traceback" not in bad.stderr
    # two hosts, one unreachable: a line per step per host, then the summary table
    dead = f"{rig.DEPLOY_USER}@127.0.0.1:{rig.free_port()}"
    two = subprocess.run([*base, "--host", dead, "--read-timeout", "91"], capture_output=True,
                         text=True, env=env, cwd=REPO, timeout=60)
    assert two.returncode == ExitCode.CONNECTION, two.stderr
    lines = two.stderr.splitlines()
    table = lines[next(i for i, line in enumerate(lines) if line.split()[:2] == ["host",
                                                                               "outcome"]):]
    assert table[0].split()[:3] == ["host", "outcome", "exit"]
    assert any(row.startswith(site.target) and " deployed " in row for row in table)
    assert any(row.startswith(dead) and " failed " in row for row in table)
    site.assert_serving()


def test_cli_history_rollback_to_dry_run_and_twice(make_site: Callable[..., Site]) -> None:
    """Over real SSH, through the CLI: deploys A and B, C failing its probe (rolled back);
    `history --json` lists all three with who and outcome; `rollback --dry-run` shows the diff
    and leaves the file byte-identical; `rollback --to A` returns to A; `rollback` then goes
    back to the config before A, and once more says there is nothing left — B and the failed
    C never come back."""
    site = make_site(ProxyKind.NGINX)
    env = dict(os.environ, XDG_STATE_HOME=str(site.work / "state"))
    ssh = ["--host", site.target, "--identity", str(site.sshd.client_key(site.user)),
           "--known-hosts", str(site.sshd.known_hosts),
           "--backup-dir", str(site.work / "backups")]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "wizard", *args, *ssh],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=90)

    def deploy(read_timeout: int, backend: str) -> subprocess.CompletedProcess[str]:
        return cli("deploy", "--proxy", "nginx", "--backend", backend,
                   "--listen", f"127.0.0.1:{site.inst.port}", "--read-timeout",
                   str(read_timeout), "--dest", str(site.inst.site_path), "--validate-cmd",
                   site.inst.validate_cmd, "--reload-cmd", site.inst.reload_cmd,
                   "--settle-timeout", "5")

    before_a = site.config()
    configs = {}
    for name, timeout in (("A", 90), ("B", 91)):
        assert deploy(timeout, site.backend.address).returncode == 0
        configs[name] = site.config()
    failed = deploy(92, f"127.0.0.1:{rig.free_port()}")
    assert failed.returncode == ExitCode.PROBE_ROLLED_BACK, failed.stderr
    assert site.config() == configs["B"]

    listed = cli("history", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)["entries"]
    assert [e["what"] for e in entries] == ["deployed", "deployed", "failed, rolled back"]
    assert {e["ssh_user"] for e in entries} == {site.user}
    assert all("@" in e["by"] and e["dest"] == str(site.inst.site_path) for e in entries)
    a_id = entries[0]["id"]

    dry = cli("rollback", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert site.config() == configs["B"]  # byte-identical
    assert "proxy_read_timeout 91s" in dry.stdout and "would undo deploy" in dry.stderr

    to_a = cli("rollback", "--to", a_id)
    assert to_a.returncode == 0, to_a.stderr
    assert site.config() == configs["A"]
    site.assert_serving()
    back = cli("rollback")
    assert back.returncode == 0, back.stderr
    assert site.config() == before_a
    nothing = cli("rollback")
    assert nothing.returncode == ExitCode.BAD_INPUT and "Nothing to roll back" in nothing.stderr
    assert site.config() == before_a
    site.assert_serving()
    whats = [e["what"] for e in json.loads(cli("history", "--json").stdout)["entries"]]
    assert whats[3:] == ["rolled back", "rolled back"]
