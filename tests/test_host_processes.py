"""Every program a deploy starts on a host is CPU on each host of a fleet (issue #15 item 4;
bench/bench_hostcpu.py measures ~1 ms per program, bench/RESULTS.md): the host probe, the
detect script and the deploy's own scripts (the activation with its lock, backup and reload;
the finish; a claim made apart) run no program a shell builtin can stand in for, and still
answer the same.

Counted structurally, not timed: the real scripts run in the real shells as the rig's deploy
users under ``strace -f`` (root, ``-u USER``: sudo keeps its setuid), which lists every
program exec'd and every fork.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import pwd
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tests import rig
from tests.test_deploy_unit import OLD, SPEC, Host
from wizard.deploy import Outcome, bundle, hoststate
from wizard.deploy.detect import HELPERS, detect_script, parse_facts
from wizard.deploy.gather import privileged_peek
from wizard.deploy.scripts import (
    Activation,
    Backup,
    LockStep,
    Upload,
    activation_script,
    backup_script,
    parse_activation,
)
from wizard.model import DeploySpec, ProxyKind
from wizard.proxies import profile
from wizard.remote import HOST_PROBE, LocalRemote, SudoMode, guarded
from wizard.remote.base import RawResult
from wizard.remote.sudo import HOST_PROBE_UNTRIED, parse_sudo_probe, parse_timeout_probe

pytestmark = pytest.mark.skipif(
    not rig.is_root() or shutil.which("strace") is None,
    reason="needs root (the rig's users) and strace (scripts/setup --test installs it)")

_EXEC = re.compile(r'^execve\("([^"]+)".*\) = 0$', re.M)
_FORK = re.compile(r"^(?:clone3?|v?fork)\(.*\) = [1-9]\d*$", re.M)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def traced(user: str, shell: str, script: str, tmp: Path, *, stdin: bytes = b"",
           status: list[int] | None = None, **env: str) -> tuple[str, list[str], int]:
    """Run ``shell -c script`` as ``user``: its output, the programs it exec'd (the shell
    itself left out), and how many processes it forked. ``status``: gets the exit status."""
    for old in tmp.glob("trace.*"):
        old.unlink()
    prefix = tmp / "trace"
    proc = subprocess.run(
        ["strace", "-f", "-ff", "-qq", "-o", str(prefix), "-u", user,
         "-e", "trace=execve,clone,clone3,fork,vfork", "--", shell, "-c", script],
        capture_output=True, input=stdin, timeout=60, cwd="/",
        env={"PATH": PATH, "HOME": "/", "LANG": "C.UTF-8", **env})
    if status is not None:
        status.append(proc.returncode)
    logs = [p.read_text() for p in tmp.glob("trace.*")]
    programs = sorted(os.path.basename(m) for log in logs for m in _EXEC.findall(log))
    programs.remove(os.path.basename(shell))
    forks = sum(len(_FORK.findall(log)) for log in logs)
    return proc.stdout.decode(errors="replace"), programs, forks


@pytest.fixture(scope="module", autouse=True)
def _users() -> None:
    rig.ensure_test_users()


def test_host_probe_without_a_password_runs_only_timeout(tmp_path: Path) -> None:
    """No `head`, no `id` (bash's $EUID), no `sudo -n true`: the first sudo command tells."""
    out, programs, forks = traced(rig.DEPLOY_USER, "/bin/bash", HOST_PROBE_UNTRIED, tmp_path)
    assert parse_sudo_probe(out) is SudoMode.UNTRIED
    assert out.splitlines() == ["timeout (GNU coreutils)", "sudo"]
    assert programs == ["timeout"], programs
    assert forks <= 2, forks


def test_host_probe_with_a_password_runs_three_programs(tmp_path: Path) -> None:
    """A password to offer: sudo -n true tells whether to (sudo -S reads it, NOPASSWD not)."""
    out, programs, forks = traced(rig.DEPLOY_USER, "/bin/bash", HOST_PROBE, tmp_path)
    assert parse_sudo_probe(out) is SudoMode.NOPASSWD
    assert parse_timeout_probe(out)
    assert out.splitlines() == ["timeout (GNU coreutils)", "nopasswd"]
    assert programs == ["sudo", "timeout", "true"], programs
    assert forks <= 4, forks  # $(timeout), sudo, sudo's own fork, and its `true`


def test_host_probe_in_dash_as_a_user_sudo_asks_a_password(tmp_path: Path) -> None:
    """No $EUID in dash: `id -u` is the fallback; sudo wants a password: "password"."""
    out, programs, _ = traced(rig.NOSUDO_USER, "/bin/sh", HOST_PROBE, tmp_path)
    assert parse_sudo_probe(out) is SudoMode.PASSWORD
    assert parse_timeout_probe(out)
    assert "id" in programs


def test_detect_script_runs_only_what_a_builtin_cannot_do(tmp_path: Path) -> None:
    """readlink -f, the default-site grep and `nginx -v`: no `id`, no `head`, no subshell per
    helper looked up, no `grep -v | sed` — and the facts are the same."""
    site = rig.make_world_dir("sockwizard-detect-")
    try:
        (site / "conf.d").mkdir(mode=0o755)
        dest = f"{site}/conf.d/sockwizard.conf"
        out, programs, forks = traced(rig.DEPLOY_USER, "/bin/sh",
                                      detect_script(DeploySpec(), dest), tmp_path)
    finally:
        shutil.rmtree(site, ignore_errors=True)
    facts = parse_facts(out)
    assert facts.uid == pwd.getpwnam(rig.DEPLOY_USER).pw_uid
    present = {b: p for b in HELPERS if (p := shutil.which(b, path=PATH))}
    assert facts.binaries == present  # absent helpers are not listed at all
    assert facts.version_text.startswith("nginx version: nginx/")
    assert facts.real_dest == dest
    # The stock check's reads ride on detect (wizard.deploy.stockread): one readlink per
    # default site that is a link here (Debian's sites-enabled/default), in its own $(...).
    links = [s.path for s in profile(ProxyKind.NGINX).default_sites if os.path.islink(s.path)]
    assert programs == ["grep", "nginx", "readlink", *(["readlink"] * len(links))], programs
    assert forks <= 5 + len(links), forks


def test_a_remote_runs_one_sudo_per_privileged_command(tmp_path: Path) -> None:
    """The whole path, as the deploy user with no password: the probe and one privileged
    command run sudo once (it was twice: the probe's `sudo -n true`), and it is NOPASSWD."""
    script = ("from wizard.remote import LocalRemote\n"
              "r = LocalRemote()\n"
              "print(r.run('id -u', sudo=True).stdout.strip(), r.sudo_mode().value)\n")
    repo = rig.world_readable_package()
    try:
        out, programs, _ = traced(rig.DEPLOY_USER, "/usr/bin/python3", script, tmp_path,
                                  PYTHONPATH=str(repo))
    finally:
        shutil.rmtree(repo, ignore_errors=True)
    assert out.split() == ["0", "nopasswd"]
    assert programs.count("sudo") == 1, programs


def test_the_peek_riding_on_detect_runs_sudo_once(tmp_path: Path) -> None:
    """The read-only peek on the detect script goes through `sudo -n` once, no `sudo -n true`
    first (each sudo is ~1 s under the VM lane's TCG); a user sudo refuses gets nothing on
    stdout (the peek then runs apart, and says why) and the script goes on."""
    peek = privileged_peek("echo peeked; id -u") + "\necho after"
    out, programs, _ = traced(rig.DEPLOY_USER, "/bin/sh", peek, tmp_path)
    assert out.split() == ["peeked", "0", "after"]
    assert programs.count("sudo") == 1, programs
    out, programs, _ = traced(rig.NOSUDO_USER, "/bin/sh", peek, tmp_path)
    assert out.split() == ["after"]
    assert programs.count("sudo") == 1, programs


# --------------------------------------------------------------------------------------------
# The deploy's own scripts, as the host runs them: `timeout -s KILL … sh -c SCRIPT` under root
# (sudo's part is counted above), from the second deploy on (the directories exist).
# --------------------------------------------------------------------------------------------

TOKEN = "0123456789abcdef"
# What the activation still runs from the second deploy on (the command's own guard apart): the
# work itself. Gone: the lock's `cat`/`sed`/`cut` per ancestor, `date` per step mark, `mkdir -p`
# of directories that exist, `find`/`rm` with nothing to sweep, `sed`/`tr`/`cut` around the sums.
ACTIVATION = sorted([
    "date",  # the lock's time (epoch seconds): dash has no clock builtin (bash: none)
    "flock", "mkdir",  # the lock: serialised, then made
    "sha256sum",  # still the file read (compare-and-swap)
    "head", "sha256sum", "chmod", "sync",  # the upload from stdin, whole and on disk
    "cp", "sha256sum", "flock", "tail",  # the backup and its history line
    "sha256sum", "chmod", "chown", "mv",  # unchanged since; mode and owner; the journal
    "mv",  # the rename; `true` validates (a builtin)
    "timeout", "sh",  # the reload (`true`) under its own deadline
])


@dataclass
class Site:
    """A destination, its backup dir, and the scripts of one deploy of ``new`` over ``old``."""

    root: Path
    old: bytes
    new: bytes

    @property
    def dest(self) -> str:
        return str(self.root / "conf.d" / "sockwizard.conf")

    @property
    def backups(self) -> str:
        return str(self.root / "backups")

    def activation(self, stamp: str) -> str:
        """As ``wizard.deploy.plan.activation_cmd`` builds it: lock, compare-and-swap, upload
        on stdin, backup + history, journal, rename, validate (``true``), reload (``true``)."""
        old_sha, new_sha = (hashlib.sha256(b).hexdigest() for b in (self.old, self.new))
        backup = f"{self.backups}/{stamp}-sockwizard.conf"
        tmp = posixpath.join(hoststate.temp_dir(self.dest),
                             f".{hoststate.state_key(self.dest)}.new.sockwizard-{stamp}.tmp")
        record = {"time": stamp, "dest": self.dest, "backup": backup, "old_sha256": old_sha,
                  "new_sha256": new_sha}
        entry = {**record, "id": TOKEN[:10], "outcome": "pending", "kind": "deploy"}
        return activation_script(
            tmp, self.dest, backup, "true", (), (), expect_sha=old_sha,
            journal=hoststate.journal_lines(self.backups, self.dest, record),
            clear_journal=hoststate.journal_path(self.backups, self.dest),
            upload=Upload.of(self.new), reload=("true", 10.0),
            backup_first=Backup(backup_script(self.dest, self.backups, backup, entry),
                                (old_sha,)),
            lock=LockStep(self.backups, TOKEN, "test:1", old_sha, len(self.new)))

    def release(self) -> str:
        return hoststate.release_script(self.backups, self.dest, TOKEN, clear_journal=True)


def run_on_host(site: Site, script: str, tmp: Path, stdin: bytes = b""
                ) -> tuple[str, list[str], int, int]:
    """``script`` as the deploy runs it (``guarded``) in dash, traced: output, programs (the
    guard's own `timeout` and `sh` left out), forks, exit status."""
    status: list[int] = []
    out, programs, forks = traced("root", "/bin/sh", guarded(script, 30), tmp,
                                  stdin=stdin, status=status)
    for wrapper in ("timeout", "sh"):
        programs.remove(wrapper)
    return out, programs, forks, status[0]


@pytest.fixture
def site() -> Iterator[Site]:
    root = rig.make_world_dir("sockwizard-scripts-")
    (root / "conf.d").mkdir()
    path = root / "conf.d" / "sockwizard.conf"
    path.write_bytes(b"# before\n")
    try:
        yield Site(root, b"# before\n", b"# deployed 1\n")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def deploy_once(site: Site, tmp: Path, stamp: str) -> tuple[str, list[str], int]:
    """One activation then the finish, checked; the activation's output, programs, forks."""
    out, programs, forks, status = run_on_host(site, site.activation(stamp), tmp, site.new)
    report = parse_activation(status, out, "", 1.0)
    assert report.outcome is Activation.VALIDATED, (status, out)
    assert report.backup_sums == (hashlib.sha256(site.old).hexdigest(),)
    assert report.reload is not None and report.reload.exit_status == 0
    assert Path(site.dest).read_bytes() == site.new
    lock = Path(hoststate.lock_path(site.backups, site.dest))
    owner = (lock / "owner").read_text()
    # The holder walk went up past `sh` and `timeout` to what started them (strace here).
    assert re.fullmatch(rf"pid=\d+ start=\d+ time=\d+ token={TOKEN} client=test:1\n", owner)
    assert abs(int(re.findall(r"time=(\d+)", owner)[0]) - time.time()) < 5
    _, released, _, status = run_on_host(site, site.release(), tmp)
    assert status == 0 and not lock.exists()
    assert not Path(hoststate.journal_path(site.backups, site.dest)).exists()
    assert released == ["rm", "rm"], released  # the journal, the lock: no `grep`
    site.old, site.new = site.new, site.new + b"# again\n"
    return out, programs, forks


def test_the_activation_from_the_second_deploy_on_runs_only_the_work(
        site: Site, tmp_path: Path) -> None:
    """The lock's ancestor walk, its clock and the step marks with no program; the marks
    still in nanoseconds, in order; the owner line as before (``ACTIVATION``)."""
    _, programs_first, _ = deploy_once(site, tmp_path, "20261206T000001Z")
    assert programs_first.count("mkdir") == 4  # locks/, the lock, the temp dir, pending/
    out, programs, forks = deploy_once(site, tmp_path, "20261206T000002Z")
    assert programs == ACTIVATION, programs
    assert forks <= 14, forks  # each program, the $(…) of the sums and the backup
    marks = re.findall(r"^@@sw (start|uploaded|backedup|renamed|validated 0|reloaded 0) (\d+)$",
                       out, re.M)
    assert [m for m, _ in marks] == ["start", "uploaded", "backedup", "renamed", "validated 0",
                                     "reloaded 0"], out
    stamps = [int(s) for _, s in marks]
    assert stamps == sorted(stamps) and len(str(stamps[0])) >= 8, stamps  # nanoseconds


def test_a_claim_made_apart_runs_flock_and_mkdir(site: Site, tmp_path: Path) -> None:
    """The claim (prepare before the activation): lock, sweep, journal — three programs when
    nothing is left over; a leftover temp file is still swept (by `find`)."""
    deploy_once(site, tmp_path, "20261206T000001Z")
    leftover = Path(hoststate.temp_dir(site.dest)) / f"{hoststate.state_key(site.dest)}.new"
    leftover.write_bytes(b"cut off\n")
    claim = hoststate.claim_script(site.backups, site.dest, TOKEN, "test:1")
    out, programs, _, status = run_on_host(site, claim, tmp_path)
    assert status == 0 and hoststate.parse_claim(out).locked, out
    assert not leftover.exists()
    assert programs == ["date", "find", "flock", "mkdir", "rm"], programs  # find -exec rm
    _, _, _, status = run_on_host(site, site.release(), tmp_path)
    out, programs, _, status = run_on_host(site, claim, tmp_path)
    assert status == 0 and hoststate.parse_claim(out).locked, out
    assert programs == ["date", "flock", "mkdir"], programs


class TracingRemote(LocalRemote):
    """This machine as the host (root, no sudo), each command under ``strace``: the programs
    and forks of every command a real deploy runs, from the real plan (``wizard.deploy.plan``)."""

    def __init__(self, tmp: Path) -> None:
        super().__init__()
        self.tmp = tmp
        self.traces: list[tuple[str, list[str], int]] = []

    def _exec(self, command: str, *, timeout: float, stdin: bytes | None) -> RawResult:
        prefix = self.tmp / f"command{len(self.traces)}"
        prefix.mkdir()
        raw = super()._exec(
            f"exec strace -f -ff -qq -o {prefix}/trace -e trace=execve,clone,clone3,fork,vfork "
            f"-- /bin/sh -c {shlex.quote(command)}", timeout=timeout, stdin=stdin)
        logs = [p.read_text() for p in prefix.glob("trace.*")]
        programs = sorted(os.path.basename(m) for log in logs for m in _EXEC.findall(log))
        programs.remove("sh")  # the shell LocalRemote runs the command with
        self.traces.append((command, programs, sum(len(_FORK.findall(log)) for log in logs)))
        return raw


def test_a_second_deploy_runs_few_programs_in_each_command(tmp_path: Path) -> None:
    """A whole deploy through the real transaction on this machine (the deploy's unit-test
    host: `true` validates and reloads), its second run traced command by command: the finish
    runs no `mkdir` of the backup dir that exists and no `grep`; the activation as above."""
    conf = tmp_path / "host" / "conf.d"
    conf.mkdir(parents=True)
    host = Host(tmp_path / "host", conf / "sockwizard.conf")
    host.dest.write_bytes(OLD)
    assert host.deploy().outcome is Outcome.DEPLOYED
    (tmp_path / "traces").mkdir()
    remote = TracingRemote(tmp_path / "traces")
    result = host.deploy(spec=replace(SPEC, listen_port=8081), remote=remote)
    assert result.outcome is Outcome.DEPLOYED, result.message()
    activation = [t for t in remote.traces if "@@sw locked" in t[0]]
    finish = [t for t in remote.traces if "index.jsonl" in t[0] and "@@sw" not in t[0]]
    assert len(activation) == 1 and len(finish) == 1, [t[0][:80] for t in remote.traces]
    assert finish[0][1] == ["flock", "rm", "rm", "sh", "tail", "timeout"], finish[0][1]
    assert activation[0][1] == sorted([*ACTIVATION, "timeout", "sh"]), activation[0][1]


def test_the_bundle_checks_every_file_at_once_and_writes_each_with_two_programs(
        tmp_path: Path) -> None:
    """The node proxy's ~20 vendored files (wizard.deploy.bundle): one `sha256sum -c` for all
    of them, then `dd` (copy + fsync) and `mv` per file — it was ~8 processes per file
    (`$(sha256sum | cut)`, `$(dirname)`, `$(basename)`, cp, sync, mv): ~7 s of a first node
    deploy under the VM lane's TCG."""
    site = rig.make_world_dir("sockwizard-bundle-")
    user = pwd.getpwnam(rig.DEPLOY_USER)
    os.chown(site, user.pw_uid, user.pw_gid)  # the deploy user writes there, as root would
    try:
        files = [(f"{site}/m{i}.js", f"module {i}\n".encode()) for i in range(5)]
        _, programs, forks = traced(rig.DEPLOY_USER, "/bin/sh", bundle.write_script(files),
                                    tmp_path, stdin=bundle.tar_stream(files))
        assert [Path(p).read_bytes() for p, _ in files] == [data for _, data in files]
    finally:
        shutil.rmtree(site, ignore_errors=True)
    assert programs == sorted(["mktemp", "tar", "sha256sum", "rm", *["dd", "mv"] * 5]), programs
    assert forks <= 4 + 2 * 5, forks
