"""wizard/remote/ssh/filecache.py: known_hosts, identity keys and ~/.ssh/config are parsed once
per file content per process — and a file changed in between is read again.

The parse counts come from counting spies around paramiko's own loaders (``HostKeys.load``,
``PKey.from_path``, ``SSHConfig.from_path``): they call the real method and only count, so
behaviour is paramiko's. Without the caches every connect parses again and these counts are N.
The real-sshd tests use tests/rig.py's sshd, as tests/test_ssh.py does.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests import rig
from tests.test_ssh import hermetic_home  # noqa: F401 - autouse: no agent, no ~/.ssh keys
from wizard.errors import BadInput, ConnectionFailed, HostKeyChanged, HostKeyUnknown
from wizard.remote import SshRemote, parse_target
from wizard.remote.ssh import auth, hostkeys
from wizard.remote.ssh.filecache import MAX_FILE_BYTES, FileCache

DEPLOY = rig.DEPLOY_USER
NO_CONFIG = Path("/nonexistent/ssh_config")


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str,
                *, static: bool = False) -> list[object]:
    """Wrap ``owner.name`` so each call is recorded (first argument) and then runs as before."""
    calls: list[object] = []
    real = getattr(owner, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0] if static else args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, staticmethod(spy) if static else spy)
    return calls


def other_host_lines(n: int) -> str:
    """``n`` known_hosts lines with fresh ed25519 keys for hosts that are not the rig's."""
    lines = []
    for i in range(n):
        pub = Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        lines.append(f"[10.9.{i // 250}.{i % 250 + 1}]:2222 {pub}\n")
    return "".join(lines)


def in_threads(n: int, work: Callable[[], None]) -> list[BaseException]:
    """Run ``work`` in ``n`` threads at once (a fleet's forks); what each raised."""
    errors: list[BaseException] = []

    def one() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def connect(sshd: rig.SshdInstance, known_hosts: Path, **kwargs: Any) -> SshRemote:
    target = parse_target(f"{DEPLOY}@{sshd.host}:{sshd.port}", ssh_config=NO_CONFIG)
    return SshRemote.connect(target, known_hosts=known_hosts, identity=sshd.client_key(DEPLOY),
                             connect_timeout=10, **kwargs)


# -- the cache itself (no sshd) ---------------------------------------------------------------


def test_many_threads_at_once_cause_one_parse(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("v1")
    parsed: list[str] = []

    def parse(p: Path) -> str:
        time.sleep(0.05)  # long enough for every thread to arrive while the first parses
        parsed.append(p.read_text())
        return p.read_text()

    cache = FileCache(parse)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(path)))
               for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["v1"] * 20
    assert parsed == ["v1"]


def test_a_same_size_rewrite_is_parsed_again(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("aaaa")
    cache = FileCache(lambda p: p.read_text())
    assert cache.get(path) == "aaaa"
    path.write_text("bbbb")  # same size, same inode, very likely the same mtime tick
    assert cache.get(path) == "bbbb"
    assert cache.get(path) == "bbbb"
    assert cache.parses == 2


def test_companion_files_count_and_errors_are_not_cached(tmp_path: Path) -> None:
    path, cert = tmp_path / "key", tmp_path / "key-cert.pub"
    path.write_text("k")
    calls: list[int] = []

    def parse(p: Path) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("broken")
        return p.read_text() + (cert.read_text() if cert.exists() else "")

    cache = FileCache(parse, lambda p: (p.with_name(p.name + "-cert.pub"),))
    with pytest.raises(ValueError):
        cache.get(path)
    assert cache.get(path) == "k"  # the error was not remembered
    cert.write_text("+cert")
    assert cache.get(path) == "k+cert"
    assert cache.get(path) == "k+cert"
    assert len(calls) == 3


def test_a_huge_known_hosts_is_bad_input_not_a_memory_hog(tmp_path: Path) -> None:
    from wizard.remote.ssh.hostkeys import load_known_hosts

    known = tmp_path / "known_hosts"
    with known.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(BadInput) as info:
        load_known_hosts(paramiko.SSHClient(), known, "example.com")
    assert str(known) in info.value.title


def test_ssh_config_parsed_once_for_many_targets(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("".join(f"Host web{i}\n  HostName 10.0.0.{i}\n  User deploy\n"
                              for i in range(1, 51)))
    calls = count_calls(monkeypatch, paramiko.SSHConfig, "from_path", static=True)
    targets = [parse_target(f"web{i}", ssh_config=config) for i in range(1, 51)]
    assert [t.host for t in targets] == [f"10.0.0.{i}" for i in range(1, 51)]
    assert len(calls) == 1
    config.write_text("Host web1\n  HostName 10.1.1.1\n")  # edited meanwhile: seen at once
    assert parse_target("web1", ssh_config=config).host == "10.1.1.1"
    assert len(calls) == 2


# -- against the rig's real sshd --------------------------------------------------------------


@pytest.mark.needs_root
def test_known_hosts_and_key_parsed_once_over_many_connects(
        sshd: rig.SshdInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(other_host_lines(49) + sshd.host_key_line + "\n")
    # The caches are per process: an earlier test in this run may have parsed the rig's key.
    auth.KEYS.clear()
    hostkeys.KNOWN_HOSTS.clear()
    loads = count_calls(monkeypatch, paramiko.HostKeys, "load")
    key_loads = count_calls(monkeypatch, paramiko.PKey, "from_path", static=True)

    for _ in range(4):
        with connect(sshd, known) as remote:
            assert remote.run("true").ok

    def one() -> None:
        with connect(sshd, known) as remote:
            assert remote.run("true").ok

    assert in_threads(8, one) == []
    assert loads == [str(known)]  # 12 connects, one parse (without the cache: 12)
    assert key_loads == [sshd.client_key(DEPLOY)]


@pytest.mark.needs_root
def test_a_key_added_or_changed_between_connects_is_seen(sshd: rig.SshdInstance,
                                                         tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    others = other_host_lines(20)
    known.write_text(others)
    with pytest.raises(HostKeyUnknown):
        connect(sshd, known)
    # Another process (ssh, the TUI's trust dialog in another sockwizard) adds the host's key.
    with known.open("a") as f:
        f.write(sshd.host_key_line + "\n")
    with connect(sshd, known) as remote:
        assert remote.run("true").ok
    # The host's line replaced by a different key of the same size: refused, not the cached OK.
    wrong = sshd.other_known_hosts.read_text()
    assert len(wrong) == len(sshd.host_key_line + "\n")
    known.write_text(others + wrong)
    with pytest.raises(HostKeyChanged):
        connect(sshd, known)
    with pytest.raises(HostKeyChanged):  # vouching for the fingerprint never overrides a change
        connect(sshd, known, accept_host_key=sshd.host_key_fingerprint)
    known.write_text(others)  # removed (ssh-keygen -R): unknown again
    with pytest.raises(HostKeyUnknown):
        connect(sshd, known)


@pytest.mark.needs_root
def test_accepting_in_this_process_is_seen_by_the_next_connect(sshd: rig.SshdInstance,
                                                               tmp_path: Path) -> None:
    """The TUI's path: refused, the user vouches for the fingerprint, it is recorded; the next
    connect (same process, cache warm) trusts it without being told again."""
    known = tmp_path / "known_hosts"
    known.write_text(other_host_lines(5))
    with pytest.raises(HostKeyUnknown):
        connect(sshd, known)
    with connect(sshd, known, accept_host_key=sshd.host_key_fingerprint) as remote:
        assert remote.run("true").ok
    with connect(sshd, known) as remote:
        assert remote.run("true").ok
    assert known.read_text().endswith(sshd.host_key_line + "\n")


@pytest.mark.needs_root
def test_a_passphrase_is_asked_once_for_a_fleet_and_again_by_another_prompt(
        sshd: rig.SshdInstance, tmp_path: Path) -> None:
    """Eight threads share one prompt (as the CLI's fleet does): one question, all connect.
    Another prompt function asks again, and its wrong answer still fails."""
    key = Path.home() / ".ssh" / "id_ed25519"  # HOME is the hermetic one
    key.parent.mkdir(mode=0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "fleet phrase", "-f", str(key)],
                   check=True)
    authorized = sshd.dir / "authorized_keys" / DEPLOY
    original = authorized.read_text()
    authorized.write_text(original + key.with_suffix(".pub").read_text())
    known = tmp_path / "known_hosts"
    known.write_text(sshd.host_key_line + "\n")
    target = parse_target(f"{DEPLOY}@{sshd.host}:{sshd.port}", ssh_config=NO_CONFIG)
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        time.sleep(0.1)  # a user typing: the other threads arrive meanwhile
        return "fleet phrase"

    def one() -> None:
        with SshRemote.connect(target, known_hosts=known, passphrase_prompt=prompt,
                               connect_timeout=10) as remote:
            assert remote.run("true").ok

    try:
        assert in_threads(8, one) == []
        assert asked == [f"Passphrase for {key}: "]
        with pytest.raises(ConnectionFailed) as info:
            SshRemote.connect(target, known_hosts=known, passphrase_prompt=lambda _: "wrong",
                              connect_timeout=10)
        assert f"key {key} (wrong passphrase)" in info.value.hint
    finally:
        authorized.write_text(original)
