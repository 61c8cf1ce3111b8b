"""A small stdin folded into the command line (wizard.remote.inline): exact bytes, never a
secret, and through a real sshd one round trip fewer for the deploy's activation."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import rig
from wizard.errors import ConnectionFailed, RemoteCommandFailed
from wizard.remote import SshRemote, SshTarget
from wizard.remote.inline import FOLD_MAX_INPUT, FOLD_MAX_LINE, FoldableInput, fold

SHELLS = [s for s in ("sh", "dash", "bash") if subprocess.run(
    ["sh", "-c", f"command -v {s}"], capture_output=True).returncode == 0]


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\0",
                                      blacklist_categories=("Cs",)), min_size=1, max_size=300))
def test_the_folded_bytes_arrive_exactly_in_every_shell(text: str) -> None:
    data = text.encode()
    line = fold("sha256sum; printf end", FoldableInput(data))
    assert line is not None
    want = hashlib.sha256(data).hexdigest()
    for shell in SHELLS:
        out = subprocess.run([shell, "-c", line], capture_output=True, timeout=10).stdout
        assert out.decode().split()[0] == want and out.endswith(b"end"), shell


def test_what_is_never_folded() -> None:
    assert fold("cat", b"plain bytes: a password goes this way") is None
    assert fold("cat", b"pw\n" + FoldableInput(b"x")) is None  # sudo's prefix: plain bytes
    assert fold("cat", FoldableInput(b"a\0b")) is None  # no NUL in an argument
    assert fold("cat", FoldableInput(b"\xff\xfe")) is None  # not UTF-8
    assert fold("cat", FoldableInput(b"x" * (FOLD_MAX_INPUT + 1))) is None
    assert fold("x" * FOLD_MAX_LINE, FoldableInput(b"y")) is None  # over one argument's limit
    assert fold("cat", FoldableInput(b"")) is None


def test_over_ssh_input_arrives_whole_either_way(sshd: rig.SshdInstance) -> None:
    remote = SshRemote.connect(
        SshTarget(host=sshd.host, port=sshd.port, user=rig.DEPLOY_USER),
        known_hosts=sshd.known_hosts, identity=sshd.client_key(rig.DEPLOY_USER))
    small = "server { listen 80; } # it's $(x) `y` \\ é\n".encode()
    big = bytes(range(256)) * 300  # binary: on stdin as before
    for data in (small, big):
        got = remote.run("sha256sum", input=data.decode("utf-8", "surrogateescape"))
        assert got.exit_status == 0, got.stderr
        assert got.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    remote.close()


def test_a_host_that_floods_its_output_is_stopped_at_the_cap(
        sshd: rig.SshdInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every buffer a cap: a command's output is read up to MAX_OUTPUT, then the command
    fails with words (not this machine's memory) and the connection is closed: the next
    command is refused cleanly instead of racing the host's leftover output."""
    from wizard.remote.ssh import remote as ssh_remote

    monkeypatch.setattr(ssh_remote, "MAX_OUTPUT", 2**20)
    remote = SshRemote.connect(
        SshTarget(host=sshd.host, port=sshd.port, user=rig.DEPLOY_USER),
        known_hosts=sshd.known_hosts, identity=sshd.client_key(rig.DEPLOY_USER))
    try:
        with pytest.raises(RemoteCommandFailed, match="more than 1 MiB"):
            remote.run("head -c 50000000 /dev/zero", timeout=30)
        assert not remote.active
        with pytest.raises(ConnectionFailed, match="lost"):
            remote.run("echo after")
    finally:
        remote.close()


def test_a_file_too_large_to_be_a_config_is_refused_at_the_cap(
        sshd: rig.SshdInstance, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every buffer a cap, on both of ``read_file``'s ways: SFTP as the login user (a link to
    /dev/zero never ends) and ``sudo head -c`` for a root-only file. The cap + 1 bytes are read,
    never more; a file at the cap is read whole."""
    from wizard.remote import shell

    cap = 2**20
    monkeypatch.setattr(shell, "MAX_FILE_BYTES", cap)
    base = tmp_path_factory.mktemp("caps")
    base.chmod(0o755)
    (base / "zero.conf").symlink_to("/dev/zero")
    root_only = base / "big.conf"
    root_only.write_bytes(b"#" * (cap + 10))
    root_only.chmod(0o600)
    whole = base / "at-cap.conf"
    whole.write_bytes(b"x" * cap)
    remote = SshRemote.connect(
        SshTarget(host=sshd.host, port=sshd.port, user=rig.DEPLOY_USER),
        known_hosts=sshd.known_hosts, identity=sshd.client_key(rig.DEPLOY_USER))
    try:
        for path in (base / "zero.conf", root_only):
            with pytest.raises(RemoteCommandFailed, match="larger than 1 MiB") as caught:
                remote.read_file(str(path))
            assert "device" in caught.value.hint
        assert remote.read_file(str(whole)) == b"x" * cap
        assert remote.read_file(str(base / "absent.conf")) is None
        assert remote.run("echo still here").stdout.strip() == "still here"
    finally:
        remote.close()


def test_the_local_host_reads_to_the_cap_too(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from wizard.remote import LocalRemote, shell

    monkeypatch.setattr(shell, "MAX_FILE_BYTES", 2**20)
    link = tmp_path / "zero.conf"
    link.symlink_to("/dev/zero")
    with pytest.raises(RemoteCommandFailed, match="larger than 1 MiB"):
        LocalRemote().read_file(str(link))


def test_the_first_command_carries_its_script_once(sshd: rig.SshdInstance) -> None:
    """The first plain command rides with the host probe (``ShellRemote._run_probing``) and
    runs under GNU ``timeout`` or without it, as the probe finds: the script goes once, in a
    variable either branch runs — written into both branches it was sent twice (a warm
    deploy's one command: 50 KB, 26 KB now)."""
    from tests.ssh_turns import count_channels

    script = "echo " + "x" * 20_000 + " | wc -c"
    remote = SshRemote.connect(
        SshTarget(host=sshd.host, port=sshd.port, user=rig.DEPLOY_USER),
        known_hosts=sshd.known_hosts, identity=sshd.client_key(rig.DEPLOY_USER))
    try:
        with count_channels() as counter:
            result = remote.run(script, timeout=30)
        assert (result.exit_status, result.stdout) == (0, "20001\n")
        assert len(counter.commands) == 1
        assert len(script) < len(counter.commands[0]) < len(script) + 2_000
        assert remote._group_kill  # the probe found GNU timeout: the guarded branch ran
    finally:
        remote.close()
