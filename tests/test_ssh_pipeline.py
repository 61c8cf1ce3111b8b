"""Issue #15: the SSH connect in fewer round trips (wizard/remote/ssh/pipeline.py), against the
rig's real sshd (OpenSSH 9.2) through a relay that counts the client's turns
(tests/ssh_turns.py), plus the fallbacks when paramiko lacks an internal (internals.py).

The USERAUTH_REQUEST leaves right behind the SERVICE_REQUEST and the first session channel's
CHANNEL_OPEN right behind it; every auth method still works: a key, a refused key then an
accepted one, ssh-agent keys, a password.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import paramiko
import pytest
from paramiko.auth_handler import AuthHandler

from tests import rig
from tests.ssh_turns import CONNECT_COMMAND_TURNS, TurnRelay, count_channels
from wizard.errors import ConnectionFailed
from wizard.remote import SshRemote, parse_target
from wizard.remote.ssh import internals
from wizard.remote.ssh.pipeline import PipelinedAuthHandler
from wizard.remote.ssh.transport import QuickTransport

DEPLOY, NOSUDO = rig.DEPLOY_USER, rig.NOSUDO_USER
TRIES = 7  # the fewest turns of this many connects: noise only ever adds turns


@pytest.fixture(autouse=True)
def hermetic_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


@pytest.fixture
def relay(sshd: rig.SshdInstance) -> Iterator[TurnRelay]:
    relay = TurnRelay((sshd.host, sshd.port))
    yield relay
    relay.close()


def connect(sshd: rig.SshdInstance, relay: TurnRelay, tmp_path: Path, user: str,
            **kw: object) -> SshRemote:
    target = parse_target(f"{user}@127.0.0.1:{relay.port}",
                          ssh_config=Path("/nonexistent/ssh_config"))
    options: dict[str, object] = {"known_hosts": relay.known_hosts(sshd.known_hosts, tmp_path),
                                  "identity": sshd.client_key(user), "connect_timeout": 5}
    options.update(kw)
    return SshRemote.connect(target, **options)  # type: ignore[arg-type]


def fewest_turns(open_remote: Callable[[], SshRemote], relay: TurnRelay) -> int:
    """Connect, run one command, disconnect, TRIES times: the fewest client turns."""
    seen = []
    for _ in range(TRIES):
        with open_remote() as remote:
            assert remote.run("id -un").ok
        seen.append(relay.count())
    print("turns:", seen)
    return min(seen)


@pytest.mark.needs_root
def test_key_connect_and_first_command_take_two_round_trips_fewer(
        sshd: rig.SshdInstance, relay: TurnRelay, tmp_path: Path) -> None:
    with count_channels() as counter:
        turns = fewest_turns(lambda: connect(sshd, relay, tmp_path, DEPLOY), relay)
    assert turns <= CONNECT_COMMAND_TURNS  # main: 8 at best
    # The first command ran in the channel opened in the auth flight: the only channel paramiko
    # opened itself is the spare for the next command (main: that one and the first).
    assert counter.channels == ["session"] * TRIES


@pytest.mark.needs_root
def test_password_connect_takes_two_round_trips_fewer(sshd: rig.SshdInstance,
                                                      relay: TurnRelay, tmp_path: Path) -> None:
    password = sshd.password(NOSUDO)
    turns = fewest_turns(lambda: connect(sshd, relay, tmp_path, NOSUDO, identity=None,
                                         password=password), relay)
    assert turns <= CONNECT_COMMAND_TURNS
    with connect(sshd, relay, tmp_path, NOSUDO, identity=None, password=password) as remote:
        assert remote.run("id -un").stdout == f"{NOSUDO}\n"


@pytest.mark.needs_root
def test_a_refused_key_then_an_accepted_one(sshd: rig.SshdInstance, relay: TurnRelay,
                                            tmp_path: Path, hermetic_home: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """--identity names a key sshd refuses, ~/.ssh/id_ed25519 is the right one: the early channel
    behind the refused request is dropped by sshd (SSH_MSG_UNIMPLEMENTED) and forgotten; the
    one behind the accepted request runs the first command."""
    key = hermetic_home / ".ssh" / "id_ed25519"
    key.write_bytes(sshd.client_key(DEPLOY).read_bytes())
    key.chmod(0o600)
    wrong = sshd.client_key(NOSUDO)
    caplog.set_level(logging.WARNING, logger="paramiko")
    with count_channels() as counter:
        turns = fewest_turns(lambda: connect(sshd, relay, tmp_path, DEPLOY, identity=wrong), relay)
    assert turns <= CONNECT_COMMAND_TURNS + 1  # main: 10 at best (a SERVICE_REQUEST per key)
    assert counter.channels == ["session"] * TRIES
    assert not [r for r in caplog.records if r.name.startswith("paramiko")], caplog.text
    with connect(sshd, relay, tmp_path, DEPLOY, identity=wrong) as remote:
        assert remote.run("id -un").stdout == f"{DEPLOY}\n"
        # The abandoned early channel is gone from paramiko's map (it was never confirmed).
        chans = remote._transport._channels.values()  # type: ignore[attr-defined]
        assert chans and not [c for c in chans if not c.active and not c.closed]


@pytest.mark.needs_root
def test_a_wrong_key_fails_with_the_same_clear_error(sshd: rig.SshdInstance, relay: TurnRelay,
                                                     tmp_path: Path) -> None:
    wrong = sshd.client_key(NOSUDO)
    with pytest.raises(ConnectionFailed) as info:
        connect(sshd, relay, tmp_path, DEPLOY, identity=wrong)
    error = info.value
    assert error.title == f"Authentication failed for {DEPLOY}@127.0.0.1"
    assert str(wrong) in error.hint and "ssh-agent (none running)" in error.hint


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], None]]:
    """A real ssh-agent on its own socket; call the fixture to add a key."""
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not sock.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "ssh-agent did not start"
            time.sleep(0.02)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))

        def add(key: Path) -> None:
            subprocess.run(["ssh-add", "-q", str(key)], check=True, timeout=10,
                           env={**os.environ, "SSH_AUTH_SOCK": str(sock)})

        yield add
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.mark.needs_root
def test_agent_keys_a_refused_one_then_the_right_one(sshd: rig.SshdInstance, relay: TurnRelay,
                                                     tmp_path: Path,
                                                     agent: Callable[[Path], None]) -> None:
    agent(sshd.client_key(NOSUDO))  # offered first, refused for swdeploy
    agent(sshd.client_key(DEPLOY))
    turns = fewest_turns(lambda: connect(sshd, relay, tmp_path, DEPLOY, identity=None), relay)
    assert turns <= CONNECT_COMMAND_TURNS + 1


def test_the_early_channel_goes_to_openssh_only() -> None:
    """dropbear (and who knows what else) drops a connection that opens a channel before auth
    succeeded; OpenSSH answers UNIMPLEMENTED and carries on (the tests above)."""
    ours, theirs = socket.socketpair()
    transport = QuickTransport(ours)
    try:
        transport.remote_version = "SSH-2.0-dropbear_2022.83"
        assert transport.open_early_channel() is None
        transport.remote_version = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"
        message = transport.open_early_channel()
        assert message is not None
        early = transport.early_channel
        assert early is not None
        assert transport.open_early_channel() is None  # one at a time
        transport.abandon_early_channel()
        assert early.abandoned and transport.early_channel is None
        with pytest.raises(paramiko.SSHException):
            early.wait(1)
    finally:
        transport.close()
        theirs.close()


def test_every_paramiko_internal_we_use_is_there() -> None:
    """On the paramiko this project pins, nothing falls back (a release that renamed one would
    fail here first, and still work)."""
    assert internals.detect() == internals.Support(True, True, True, True, True)


def test_a_missing_internal_turns_off_only_what_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    needs = dict(internals.NEEDS)
    needs["pipelined_auth"] = ((AuthHandler, "_request_auth_renamed"),)
    monkeypatch.setattr(internals, "NEEDS", needs)
    assert internals.detect() == internals.Support(exec_nowait=True, ignore_reply=True,
                                                   pipelined_auth=False, early_channel=False,
                                                   sftp_fsync=True)


def without_internals(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if paramiko had renamed every private we use."""
    monkeypatch.setattr(internals, "NEEDS", {
        feature: tuple((owner, name + "_renamed") for owner, name in needs)
        for feature, needs in internals.NEEDS.items()})
    monkeypatch.setattr(internals, "SUPPORT", internals.detect())
    assert internals.Support(False, False, False, False, False) == internals.SUPPORT


@pytest.mark.needs_root
def test_without_the_internals_every_auth_takes_the_public_path(
        sshd: rig.SshdInstance, relay: TurnRelay, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, agent: Callable[[Path], None]) -> None:
    without_internals(monkeypatch)
    agent(sshd.client_key(NOSUDO))
    agent(sshd.client_key(DEPLOY))
    with count_channels() as counter:
        with connect(sshd, relay, tmp_path, DEPLOY, identity=None) as remote:
            transport = remote._transport
            assert type(transport.auth_handler) is AuthHandler  # paramiko's, not ours
            result = remote.run("echo hi >&2; id -un", input="")
            assert (result.exit_status, result.stdout, result.stderr) == (0, f"{DEPLOY}\n",
                                                                          "hi\n")
            path = f"/tmp/sockwizard-pipeline-{os.getpid()}-{time.time_ns()}"
            remote.write_file_atomic(path, b"x")  # SFTP, without fsync@openssh.com
            assert remote.read_file(path) == b"x"
            remote.remove(path)
        with connect(sshd, relay, tmp_path, NOSUDO, identity=None,
                     password=sshd.password(NOSUDO)) as remote:
            assert remote.run("id -un").stdout == f"{NOSUDO}\n"
    print(counter)
    # Every command went through exec_command (send_exec's fallback) in a channel paramiko
    # opened after auth: none rode in the auth flight.
    assert any("id -un" in c for c in counter.commands)
    assert len(counter.channels) >= len(counter.commands)


def test_the_pipelined_handler_is_installed_for_every_attempt(monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    ours, theirs = socket.socketpair()
    transport = QuickTransport(ours)
    try:
        transport.auth_handler = AuthHandler(transport)
        assert type(transport.auth_handler) is PipelinedAuthHandler
        monkeypatch.setattr(internals, "SUPPORT", replace(internals.SUPPORT,
                                                          pipelined_auth=False))
        transport.auth_handler = AuthHandler(transport)
        assert type(transport.auth_handler) is AuthHandler
    finally:
        transport.close()
        theirs.close()


@pytest.mark.needs_root
def test_an_early_channel_sshd_never_answers_costs_the_first_command_a_bounded_wait(
        sshd: rig.SshdInstance, relay: TurnRelay, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An sshd that dropped the early CHANNEL_OPEN (none known; dropbear is never sent one):
    the first command opens its own channel after EARLY_CHANNEL_WAIT_S, not after the I/O
    timeout. Simulated by sending SSH_MSG_IGNORE in the open's place."""
    from paramiko.common import cMSG_IGNORE
    from paramiko.message import Message

    from wizard.remote.ssh import pipeline
    from wizard.remote.ssh import remote as ssh_remote

    real_init = pipeline.EarlyChannel.__init__

    def unsent(self: pipeline.EarlyChannel, transport: QuickTransport) -> None:
        real_init(self, transport)
        self.message = Message()
        self.message.add_byte(cMSG_IGNORE)
        self.message.add_string(b"")

    monkeypatch.setattr(pipeline.EarlyChannel, "__init__", unsent)
    monkeypatch.setattr(ssh_remote, "EARLY_CHANNEL_WAIT_S", 0.5)
    with connect(sshd, relay, tmp_path, DEPLOY) as remote:  # its I/O timeout: 60 s
        started = time.monotonic()
        assert remote.run("id -un").stdout.strip() == DEPLOY
        waited = time.monotonic() - started
    assert waited < 10, waited  # without the bound: the 60 s I/O timeout


@pytest.mark.needs_root
def test_a_command_on_stdin_takes_the_spare_only_when_it_is_fresh(
        sshd: rig.SshdInstance, relay: TurnRelay, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The activation (a command fed on stdin) runs on the spare channel when sshd confirmed it
    within FRESH_CHANNEL_S (no round trip for an open), else on a channel opened for it — the
    link then known alive just before (a failure to open: NotStarted, nothing ran)."""
    from wizard.remote.ssh import remote as ssh_remote

    with count_channels() as counter, connect(sshd, relay, tmp_path, DEPLOY) as remote:
        assert remote.run("cat", input="fresh").stdout == "fresh"  # the early channel
        first = len(counter.channels)
        monkeypatch.setattr(ssh_remote, "FRESH_CHANNEL_S", 0.0)
        remote.run("true")  # leaves a spare opened while it ran
        time.sleep(0.05)
        opened = len(counter.channels)
        assert remote.run("cat", input="stale").stdout == "stale"
        # The stale spare was left for later: a channel was opened for the stdin command.
        assert len(counter.channels) == opened + 1
    # The first ran in the channel opened in the auth flight; the one opened was the next
    # spare (a channel of its own would make it two).
    assert first == 1, counter.channels
