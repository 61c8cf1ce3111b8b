"""A remote command that outlives its timeout is killed with its whole process tree (issue #10,
items 4 and 8), on the real sshd (plain, ``sudo -n``, ``sudo -S``) and on LocalRemote.

Each hanging command carries a unique marker (a fractional sleep length) in its argv; afterwards
no live process with that marker may remain (zombies are ignored: PID 1 reaps them late).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import rig
from tests.test_ssh import NOSUDO, connect
from wizard.remote import (
    CLIENT_SLACK,
    CommandTimedOut,
    LocalRemote,
    ShellRemote,
    parse_timeout_probe,
)


def _marker() -> str:
    return f"987.{secrets.randbelow(10**6):06d}"


def _hang(marker: str) -> str:
    """sleep, a child subshell that sleeps, and a grandchild that ignores SIGTERM (it survived
    ``timeout -k``, which stops caring once its own child is dead)."""
    return (f"sleep {marker} & ( sleep {marker}; true ) & ( trap '' TERM; sleep {marker}; true ) "
            f"& sleep {marker}; wait")


def _live(marker: str) -> list[int]:
    """PIDs of non-zombie processes whose argv contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
            stat_line = (entry / "stat").read_text()
        except OSError:
            continue
        state = stat_line[stat_line.rfind(")") + 2:].split()[0]
        if marker.encode() in argv and state != "Z":
            found.append(int(entry.name))
    return found


def _wait_for(marker: str, count: int, limit: float = 10) -> None:
    deadline = time.monotonic() + limit
    while len(_live(marker)) < count:
        assert time.monotonic() < deadline, f"{marker} never started"
        time.sleep(0.02)


@contextlib.contextmanager
def _reaped(marker: str) -> Iterator[None]:
    """Kill whatever a failed test left behind, so one failure does not leak 16-minute sleeps."""
    try:
        yield
    finally:
        for pid in _live(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _assert_killed(remote: ShellRemote, marker: str, *, sudo: bool, timeout: float = 1) -> None:
    start = time.monotonic()
    with _reaped(marker), pytest.raises(CommandTimedOut) as info:
        remote.run(_hang(marker), sudo=sudo, timeout=timeout)
    elapsed = time.monotonic() - start
    error = info.value
    assert error.killed, error.message()
    assert error.timeout == timeout and error.host == remote.name
    assert error.title == (f"Command timed out after {timeout:g} s on {remote.name} and was "
                           f"killed: `{error.short}`")
    assert error.short.startswith(f"sleep {marker} &") and marker in error.detail
    time.sleep(0.2)  # SIGKILL is delivered asynchronously
    assert _live(marker) == []
    # Killed by the host at the timeout, not by the client's later deadline.
    assert timeout <= elapsed < timeout + CLIENT_SLACK
    time.sleep(0.2)  # SIGKILL is delivered asynchronously
    assert _live(marker) == []


# --------------------------------------------------------------------------------------------
# The real sshd
# --------------------------------------------------------------------------------------------


@pytest.mark.needs_root
def test_ssh_timeout_kills_the_whole_tree(sshd: rig.SshdInstance) -> None:
    with connect(sshd, rig.DEPLOY_USER) as remote:
        _assert_killed(remote, _marker(), sudo=False)
        assert remote.notes == []  # this host has GNU timeout
        assert remote.run("echo still here").stdout == "still here\n"


@pytest.mark.needs_root
def test_ssh_timeout_kills_a_root_tree_under_sudo_n(sshd: rig.SshdInstance) -> None:
    marker = _marker()
    with connect(sshd, rig.DEPLOY_USER) as remote:
        _assert_killed(remote, marker, sudo=True)
        assert remote.run("id -u", sudo=True).stdout == "0\n"


@pytest.mark.needs_root
def test_ssh_timeout_kills_a_root_tree_under_sudo_s_and_the_password_stays_on_stdin(
    sshd: rig.SshdInstance,
) -> None:
    password = sshd.password(NOSUDO)
    marker = _marker()
    leaks: list[str] = []

    def look_while_it_runs() -> None:
        _wait_for(marker, 4)
        for entry in Path("/proc").iterdir():
            for part in ("cmdline", "environ"):
                with contextlib.suppress(OSError):
                    if password.encode() in (entry / part).read_bytes():
                        leaks.append(f"{entry}/{part}")

    watcher = threading.Thread(target=look_while_it_runs)
    with connect(sshd, NOSUDO, sudo_password=password) as remote:
        watcher.start()
        try:
            _assert_killed(remote, marker, sudo=True)
        finally:
            watcher.join()
        assert remote.run("cat", sudo=True, input="after\n").stdout == "after\n"
    assert leaks == []


@pytest.mark.needs_root
def test_ssh_a_command_exiting_124_by_itself_is_not_a_timeout(sshd: rig.SshdInstance) -> None:
    with connect(sshd, rig.DEPLOY_USER) as remote:
        assert remote.run("exit 124", timeout=5).exit_status == 124
        assert remote.run("exit 124", sudo=True, timeout=5).exit_status == 124


@pytest.mark.needs_root
def test_ssh_the_host_is_probed_once_per_connection(sshd: rig.SshdInstance) -> None:
    with connect(sshd, rig.DEPLOY_USER) as remote:
        lines: list[str] = []
        exec_ = remote._exec

        def counting(command: str, *, timeout: float, stdin: bytes | None) -> object:
            lines.append(command)
            return exec_(command, timeout=timeout, stdin=stdin)

        remote._exec = counting  # type: ignore[method-assign,assignment]
        remote.run("true")
        remote.run("true", sudo=True)
        remote.read_file("/etc/shadow")  # denied over SFTP: a sudo script
        # One probe, riding with the first plain command (one channel), then exactly one exec
        # per command: no round trip added per command.
        assert len(lines) == 3 and "timeout --version" in lines[0]
        assert "exec timeout -s KILL " in lines[0]
        assert all(line.startswith("exec timeout -s KILL ") or " sudo -n -- timeout -s KILL " in line
                   for line in lines[1:])
        assert not any("timeout --version" in line for line in lines[1:])


@pytest.mark.needs_root
def test_ssh_host_without_gnu_timeout_says_so(sshd: rig.SshdInstance) -> None:
    """A host whose timeout is not GNU's (busybox): no wrapper, a note, and an error that does
    not claim the command was killed."""
    marker = _marker()
    with connect(sshd, rig.DEPLOY_USER) as remote, _reaped(marker):
        remote._probe_host()
        remote._group_kill = False  # as the probe of a busybox host would set it
        remote.notes.append("no GNU timeout")
        with pytest.raises(CommandTimedOut) as info:
            remote.run(f"sleep {marker}", timeout=0.5)
        assert not info.value.killed
        assert "not known to be killed" in info.value.title
        assert "no GNU timeout" in info.value.hint


def test_parse_timeout_probe() -> None:
    assert parse_timeout_probe("timeout (GNU coreutils) 9.1\nroot\n")
    assert not parse_timeout_probe("root\n")  # busybox: `timeout --version` is a usage error


# --------------------------------------------------------------------------------------------
# LocalRemote
# --------------------------------------------------------------------------------------------


def test_local_timeout_kills_the_whole_tree() -> None:
    remote = LocalRemote()
    _assert_killed(remote, _marker(), sudo=os.geteuid() != 0)


def test_local_without_gnu_timeout_still_kills_the_session() -> None:
    remote = LocalRemote()
    remote._probe_host()
    remote._group_kill = False
    marker = _marker()
    start = time.monotonic()
    with _reaped(marker), pytest.raises(CommandTimedOut) as info:
        remote.run(_hang(marker), timeout=0.5)
    assert info.value.killed and time.monotonic() - start < 0.5 + 5
    time.sleep(0.2)
    assert _live(marker) == []
