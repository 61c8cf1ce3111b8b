"""Every program a deploy starts on a host is CPU on each host of a fleet (issue #15 item 4;
bench/bench_hostcpu.py measures ~1 ms per program, bench/RESULTS.md): the host probe and the
detect script run no program a shell builtin can stand in for, and still answer the same.

Counted structurally, not timed: the real scripts run in the real shells as the rig's deploy
users under ``strace -f`` (root, ``-u USER``: sudo keeps its setuid), which lists every
program exec'd and every fork.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import rig
from wizard.deploy.detect import HELPERS, detect_script, parse_facts
from wizard.model import DeploySpec, ProxyKind
from wizard.proxies import profile
from wizard.remote import HOST_PROBE, SudoMode
from wizard.remote.sudo import HOST_PROBE_UNTRIED, parse_sudo_probe, parse_timeout_probe

pytestmark = pytest.mark.skipif(
    not rig.is_root() or shutil.which("strace") is None,
    reason="needs root (the rig's users) and strace (scripts/setup --test installs it)")

_EXEC = re.compile(r'^execve\("([^"]+)".*\) = 0$', re.M)
_FORK = re.compile(r"^(?:clone3?|v?fork)\(.*\) = [1-9]\d*$", re.M)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def traced(user: str, shell: str, script: str, tmp: Path, **env: str
           ) -> tuple[str, list[str], int]:
    """Run ``shell -c script`` as ``user``: its output, the programs it exec'd (the shell
    itself left out), and how many processes it forked."""
    prefix = tmp / "trace"
    proc = subprocess.run(
        ["strace", "-f", "-ff", "-qq", "-o", str(prefix), "-u", user,
         "-e", "trace=execve,clone,clone3,fork,vfork", "--", shell, "-c", script],
        capture_output=True, text=True, timeout=60, cwd="/",
        env={"PATH": PATH, "HOME": "/", "LANG": "C.UTF-8", **env})
    logs = [p.read_text() for p in tmp.glob("trace.*")]
    programs = sorted(os.path.basename(m) for log in logs for m in _EXEC.findall(log))
    programs.remove(os.path.basename(shell))
    forks = sum(len(_FORK.findall(log)) for log in logs)
    return proc.stdout, programs, forks


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
