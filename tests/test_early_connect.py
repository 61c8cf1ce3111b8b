"""``sockwizard deploy`` (and ``rollback``, ``diagnose``) to one SSH host starts its connect
before it imports the deploy (or the diagnosis).

The key exchange and auth are three round trips this process spends waiting; the deploy's
imports and its render (~150 ms here) now run in them (``wizard.remote.Opening``,
bench/RESULTS.md). What must not change: the errors of a connect that fails, and no connect
at all for input the deploy refuses.

The CLI runs in a fresh interpreter, exactly as the console script runs it, against a TCP
listener of the test's own: it records the connections and answers with a banner that is not
SSH, so the handshake fails at once. The connect itself is the real ``open_host``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import rig
from wizard.errors import ConnectionFailed, ExitCode
from wizard.remote.connect import ConnectOptions, Opening
from wizard.remote.ssh import SshRemote

ROOT = Path(__file__).resolve().parent.parent

# `python -m wizard ARGS`, noting which of the deploy's modules were loaded when the socket to
# the listener was connected; the notes go to the last line of stderr.
PROBE = r"""
import json, runpy, socket, sys
port = int(sys.argv[1])
sys.argv = ["wizard", *json.loads(sys.argv[2])]
watched = ("wizard.deploy.transaction", "wizard.deploy.steps", "jinja2", "wizard.probe",
           "wizard.diagnose.run")
notes = []
real_connect = socket.socket.connect
def connect(self, address):
    if isinstance(address, tuple) and address[1] == port:
        notes.append(sorted(m for m in watched if m in sys.modules))
    return real_connect(self, address)
socket.socket.connect = connect
code = 0
try:
    runpy.run_module("wizard", run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
sys.stderr.write("\n@@connects " + json.dumps({"code": code, "loaded": notes}) + "\n")
"""


class NotSsh:
    """A loopback listener that counts connections and answers each with an HTTP line."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[NotSsh]:
    server = NotSsh()
    yield server
    server.close()


DEPLOY = ("deploy", "--proxy", "nginx", "--backend", "127.0.0.1:3000")


def deploy(port: int, *flags: str, tmp_path: Path, command: tuple[str, ...] = DEPLOY,
           user: str = "someone") -> tuple[int, list[list[str]], str]:
    known = tmp_path / "known_hosts"
    known.write_text("")
    args = [*command, "--host", f"{user}@127.0.0.1:{port}", "--known-hosts", str(known),
            "--connect-timeout", "5", *flags]
    proc = subprocess.run([sys.executable, "-c", PROBE, str(port), json.dumps(args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("@@connects ")]
    assert lines, proc.stderr
    report = json.loads(lines[-1].removeprefix("@@connects "))
    return int(report["code"]), report["loaded"], proc.stderr


@pytest.mark.parametrize("command", [
    DEPLOY, ("rollback",), ("diagnose", "http://127.0.0.1:9/", "--proxy", "nginx"),
], ids=["deploy", "rollback", "diagnose"])
def test_the_connect_starts_before_the_command_imports_its_stack(
        listener: NotSsh, tmp_path: Path, command: tuple[str, ...]) -> None:
    code, loaded, stderr = deploy(listener.port, tmp_path=tmp_path, command=command)
    assert loaded == [[]], loaded  # one connect, with none of the deploy's stacks loaded yet
    # The failure is the connect step's, in the same words as before.
    assert code == ExitCode.CONNECTION, stderr
    assert "SSH handshake with [127.0.0.1]:" in stderr, stderr
    assert "Traceback" not in stderr, stderr


def test_no_connect_for_a_spec_the_deploy_refuses(listener: NotSsh, tmp_path: Path) -> None:
    code, loaded, stderr = deploy(listener.port, "--read-timeout", "-5", tmp_path=tmp_path)
    assert code == ExitCode.BAD_INPUT, stderr
    assert "--read-timeout" in stderr, stderr
    assert loaded == []
    assert listener.accepted == 0


@pytest.mark.parametrize(("flag", "value", "why"), [
    ("--dest", "conf.d/sockwizard.conf", "a relative path"),
    ("--backup-dir", "backups", "a relative path"),
    ("--backup-dir", "/var/backups/x\nid", "a path with a NUL or line break"),
])
def test_no_connect_for_a_path_the_host_cannot_use(listener: NotSsh, tmp_path: Path,
                                                   flag: str, value: str, why: str) -> None:
    # A relative --backup-dir was taken: the backups went wherever the remote command
    # started (the login's home, or this process's directory for --host local), and a later
    # rollback from elsewhere found no history. Refused with the flag's name, unconnected.
    code, loaded, stderr = deploy(listener.port, flag, value, tmp_path=tmp_path)
    assert code == ExitCode.BAD_INPUT, stderr
    assert f"{flag}: {why}" in stderr and "Traceback" not in stderr, stderr
    assert loaded == []
    assert listener.accepted == 0


def test_several_hosts_connect_as_before(listener: NotSsh, tmp_path: Path) -> None:
    """With two hosts each connects in its own transaction (nothing started early)."""
    other = NotSsh()
    try:
        code, loaded, stderr = deploy(listener.port, "--host",
                                      f"someone@127.0.0.1:{other.port}", tmp_path=tmp_path)
    finally:
        other.close()
    assert code == ExitCode.CONNECTION, stderr
    assert len(loaded) == 1 and "wizard.deploy.transaction" in loaded[0], loaded
    assert listener.accepted == 1 and other.accepted == 1


@pytest.mark.needs_root
def test_an_unknown_host_key_is_refused_as_before(sshd: rig.SshdInstance,
                                                 tmp_path: Path) -> None:
    """The real sshd, a known_hosts without its key: the thread's HostKeyUnknown reaches the
    user as the connect step's failure, with the key's fingerprint and no change made."""
    code, loaded, stderr = deploy(sshd.port, "--identity",
                                  str(sshd.client_key(rig.DEPLOY_USER)), tmp_path=tmp_path,
                                  user=rig.DEPLOY_USER)
    assert code == ExitCode.CONNECTION, stderr
    assert loaded == [[]], loaded
    assert sshd.host_key_fingerprint in stderr, stderr
    assert "Traceback" not in stderr, stderr


# -- Opening on its own: the real sshd of the rig ---------------------------------------------


def rig_host(sshd: rig.SshdInstance) -> tuple[str, ConnectOptions]:
    return (f"{rig.DEPLOY_USER}@{sshd.host}:{sshd.port}",
            ConnectOptions(known_hosts=sshd.known_hosts,
                           identity=sshd.client_key(rig.DEPLOY_USER)))


@pytest.mark.needs_root
def test_an_opening_hands_over_a_working_remote_once(sshd: rig.SshdInstance) -> None:
    opening = Opening(*rig_host(sshd))
    remote = opening.remote()
    try:
        assert remote.run("echo hello").stdout == "hello\n"
        with pytest.raises(RuntimeError):
            opening.remote()
    finally:
        remote.close()


@pytest.mark.needs_root
def test_a_discarded_opening_closes_its_connection(sshd: rig.SshdInstance) -> None:
    opening = Opening(*rig_host(sshd))
    opening.discard()  # before the handshake is through: closed once it is
    assert opening._done.wait(20)
    remote = opening._remote
    assert isinstance(remote, SshRemote)
    assert not remote.active
    with pytest.raises(RuntimeError):
        opening.remote()


def test_an_opening_raises_the_connect_error_in_the_caller(listener: NotSsh,
                                                           tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    opening = Opening(f"someone@127.0.0.1:{listener.port}",
                      ConnectOptions(known_hosts=known, connect_timeout=5))
    with pytest.raises(ConnectionFailed, match="SSH handshake"):
        opening.remote()
