"""``--host local`` reads a command's output with the cap the SSH side has (``MAX_OUTPUT``):
a command that floods is killed, its whole session, and fails with words; below the cap
everything arrives, stdin and the two outputs at once without a deadlock.
"""

from __future__ import annotations

import hashlib
import os
import resource
import time
from pathlib import Path

import pytest

from wizard.errors import RemoteCommandFailed
from wizard.remote import LocalRemote, local


def test_a_flood_is_stopped_at_the_cap_and_its_session_killed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "MAX_OUTPUT", 2**20)
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(RemoteCommandFailed, match="more than 1 MiB") as caught:
        # A pipeline that would print forever: the reader in the background, the shell waits.
        LocalRemote().run(f"sh -c 'echo $$ > {pid_file}; exec yes' | cat", timeout=30)
    assert time.monotonic() - started < 10
    assert "killed" in caught.value.hint
    pid = int(pid_file.read_text())
    for _ in range(50):  # the yes (and cat) are gone, not left printing to nobody
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists() or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_the_real_cap_holds_this_process_memory() -> None:
    """The real 64 MiB cap against 1 GB of output: the process grows by about the cap."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(RemoteCommandFailed, match="more than 64 MiB"):
        LocalRemote().run("head -c 1000000000 /dev/zero", timeout=60)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, grown_mb


def test_below_the_cap_stdin_and_both_outputs_arrive_whole() -> None:
    data = os.urandom(3 * 2**20).hex()  # 6 MB: more than any pipe buffer, each way
    result = LocalRemote().run("tee /dev/stderr | sha256sum", input=data, timeout=60)
    assert result.exit_status == 0
    assert result.stdout.split()[0] == hashlib.sha256(data.encode()).hexdigest()
    assert result.stderr == data


def test_a_command_that_ignores_its_stdin_still_ends() -> None:
    result = LocalRemote().run("echo ok; exit 3", input="x" * 2**20, timeout=30)
    assert (result.exit_status, result.stdout) == (3, "ok\n")
