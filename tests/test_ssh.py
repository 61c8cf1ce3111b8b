"""wizard/remote/ssh/: target parsing (fast, with temp ssh config files) and SshRemote against the
rig's real sshd (tests/rig.py: users swdeploy with NOPASSWD sudo, swnosudo whose sudo wants a
password, root by key). No part of paramiko is patched or mocked.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from tests import rig
from wizard.errors import (
    BadInput,
    ConnectionFailed,
    HostKeyChanged,
    HostKeyUnknown,
    RemoteCommandFailed,
    SudoPasswordRequired,
)
from wizard.remote import (
    TEMP_MARKER,
    Remote,
    SshRemote,
    SshTarget,
    SudoMode,
    fingerprint,
    open_remote,
    parse_target,
    probe_host_key,
    record_host_key,
)

NO_CONFIG = Path("/nonexistent/ssh_config")

# --------------------------------------------------------------------------------------------
# parse_target
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port", "user"),
    [
        ("example.com", "example.com", 22, "me"),
        ("deploy@example.com", "example.com", 22, "deploy"),
        ("example.com:2222", "example.com", 2222, "me"),
        ("deploy@10.0.0.5:2222", "10.0.0.5", 2222, "deploy"),
        ("[::1]:2222", "::1", 2222, "me"),
        ("deploy@[fe80::1%eth0]:22", "fe80::1%eth0", 22, "deploy"),
        ("[::1]", "::1", 22, "me"),
        ("::1", "::1", 22, "me"),
        ("2001:db8::10", "2001:db8::10", 22, "me"),
        ("ssh://deploy@example.com:2200", "example.com", 2200, "deploy"),
        ("web_1.internal", "web_1.internal", 22, "me"),
    ],
)
def test_parse_target_forms(text: str, host: str, port: int, user: str) -> None:
    target = parse_target(text, ssh_config=NO_CONFIG, default_user="me")
    assert (target.host, target.port, target.user) == (host, port, user)
    assert target.alias == text and target.proxy_jump is None


def test_target_names_for_known_hosts_and_display() -> None:
    assert SshTarget("h", 22, "u").known_hosts_name == "h"
    assert SshTarget("h", 2222, "u").known_hosts_name == "[h]:2222"
    assert SshTarget("::1", 2222, "u").known_hosts_name == "[::1]:2222"
    assert SshTarget("::1", 2222, "u").display == "u@[::1]:2222"
    assert SshTarget("h", 22, "u").display == "u@h:22"


def test_parse_target_defaults_to_the_local_user() -> None:
    assert parse_target("example.com", ssh_config=NO_CONFIG).user == pwd.getpwuid(
        os.geteuid()).pw_name


@pytest.mark.parametrize(
    "text",
    [
        "", "host name", "host;reboot", "host\nx", "user@host$(id)", "'host'", '"host"',
        "ho`id`st", "us\\er@host", "user@", "@host", "-oProxyCommand=x", "host:0",
        "host:65536", "host:22x", "[::1", "[::1]x", "[::1]:", "a@b@c", "user name@host",
        "us$er@host", "[::g]:22", ".hidden", "host\t", "ho$t",
    ],
)
def test_parse_target_refuses_hostile_or_malformed_input(text: str) -> None:
    with pytest.raises(BadInput) as info:
        parse_target(text, ssh_config=NO_CONFIG, default_user="me")
    assert "Invalid SSH target" in info.value.title
    assert "[USER@]HOST[:PORT]" in info.value.hint


@pytest.fixture
def ssh_config(tmp_path: Path) -> Path:
    path = tmp_path / "config"
    path.write_text(
        """
Host web
    HostName 192.0.2.10
    User deploy
    Port 2200
    IdentityFile ~/.ssh/web_key
    IdentityFile /keys/%h_%r

Host bastion
    HostName bastion.example.com
    User jump

Host inner
    HostName 10.1.2.3
    ProxyJump bastion

Host chain
    HostName 10.9.9.9
    ProxyJump alice@hop1:2201,bastion

Host nojump
    HostName 10.1.2.4
    ProxyJump none

Host evil
    HostName "bad host;rm"

Host six
    HostName ::1
    Port 2222

Host viacmd
    HostName 10.1.1.1
    ProxyCommand nc %h %p

Host *
    User fallback
"""
    )
    return path


def test_parse_target_uses_the_ssh_config(ssh_config: Path) -> None:
    web = parse_target("web", ssh_config=ssh_config)
    assert (web.host, web.port, web.user, web.alias) == ("192.0.2.10", 2200, "deploy", "web")
    assert web.identity_files == (Path.home() / ".ssh" / "web_key",
                                  Path("/keys/192.0.2.10_deploy"))
    # Values on the command line win over the config, as with ssh.
    override = parse_target("root@web:2201", ssh_config=ssh_config)
    assert (override.host, override.port, override.user) == ("192.0.2.10", 2201, "root")
    # Host * supplies the user for names without their own block.
    assert parse_target("other.example", ssh_config=ssh_config).user == "fallback"
    six = parse_target("six", ssh_config=ssh_config)
    assert (six.host, six.port, six.known_hosts_name) == ("::1", 2222, "[::1]:2222")
    cmd = parse_target("viacmd", ssh_config=ssh_config)
    assert cmd.proxy_command == "nc 10.1.1.1 22"


def test_parse_target_proxy_jump(ssh_config: Path) -> None:
    inner = parse_target("inner", ssh_config=ssh_config)
    assert inner.host == "10.1.2.3"
    assert inner.proxy_jump is not None
    assert (inner.proxy_jump.host, inner.proxy_jump.user) == ("bastion.example.com", "jump")
    assert inner.proxy_jump.proxy_jump is None
    chain = parse_target("chain", ssh_config=ssh_config)
    last = chain.proxy_jump
    assert last is not None and last.host == "bastion.example.com"
    first = last.proxy_jump
    assert first is not None
    assert (first.host, first.port, first.user) == ("hop1", 2201, "alice")
    assert first.proxy_jump is None
    assert parse_target("nojump", ssh_config=ssh_config).proxy_jump is None


def test_parse_target_refuses_a_hostile_hostname_in_the_config(ssh_config: Path) -> None:
    with pytest.raises(BadInput):
        parse_target("evil", ssh_config=ssh_config)


# --------------------------------------------------------------------------------------------
# Fingerprints and known_hosts (real ssh-keygen)
# --------------------------------------------------------------------------------------------


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    for kind in ("ed25519", "ecdsa", "rsa"):
        path = tmp_path / f"key_{kind}"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
        expected = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{path}.pub"],
                                  capture_output=True, text=True, check=True).stdout.split()[1]
        assert fingerprint(paramiko.PKey.from_path(path)) == expected


def test_record_host_key_appends_and_keeps_other_lines(tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True)
    key = paramiko.PKey.from_path(tmp_path / "k")
    known = tmp_path / "sub" / "known_hosts"
    record_host_key(known, "[h]:2222", key)
    assert oct(known.parent.stat().st_mode & 0o777) == "0o700"
    known.write_text(known.read_text() + "# a comment without newline")
    record_host_key(known, "other", key)
    lines = known.read_text().splitlines()
    assert lines[0].startswith("[h]:2222 ssh-ed25519 AAAA")
    assert lines[1] == "# a comment without newline"
    assert lines[2].startswith("other ssh-ed25519 ")
    keys = paramiko.HostKeys(str(known))
    assert keys.lookup("[h]:2222") is not None


# --------------------------------------------------------------------------------------------
# Against the real sshd
# --------------------------------------------------------------------------------------------

DEPLOY, NOSUDO = rig.DEPLOY_USER, rig.NOSUDO_USER


@pytest.fixture(autouse=True)
def hermetic_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ssh-agent and no ~/.ssh default keys: each test says which key it offers."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


def target_of(sshd: rig.SshdInstance, user: str) -> SshTarget:
    return parse_target(f"{user}@{sshd.host}:{sshd.port}", ssh_config=NO_CONFIG)


def connect(sshd: rig.SshdInstance, user: str, **kwargs: object) -> SshRemote:
    options: dict[str, object] = {
        "known_hosts": sshd.known_hosts,
        "identity": sshd.client_key(user),
        "connect_timeout": 5,
    }
    options.update(kwargs)
    return SshRemote.connect(target_of(sshd, user), **options)  # type: ignore[arg-type]


@pytest.fixture
def etc_dir() -> Iterator[Path]:
    """Like /etc/nginx: root-owned 0755, visible to the deploy user but not writable."""
    path = rig.make_world_dir("sockwizard-test-ssh-", "/srv")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def user_dir(etc_dir: Path) -> Path:
    """A directory swdeploy owns (it writes there without sudo)."""
    path = etc_dir / "mine"
    path.mkdir()
    entry = pwd.getpwnam(DEPLOY)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def cut_sessions(sshd: rig.SshdInstance) -> list[int]:
    """Cut every live SSH connection as a network drop would.

    rig's kill_session_children() kills the per-connection ``sshd: USER [priv]`` monitors only;
    with privilege separation the ``sshd: USER@notty`` child holds the socket and carries on (the
    command finishes normally), so kill those sshd children first, then the monitors. The user's
    own command processes are left alone (the test reaps the one it started)."""
    pids: list[int] = []
    for monitor in sshd.session_pids():
        pids += [pid for pid in rig.children_of(monitor) if _comm(pid) == "sshd"]
        pids.append(monitor)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if TEMP_MARKER in p.name)


@pytest.mark.needs_root
def test_connect_run_read_write_as_deploy_user(sshd: rig.SshdInstance, user_dir: Path) -> None:
    with connect(sshd, DEPLOY) as remote:
        assert isinstance(remote, Remote)
        assert remote.name == f"{DEPLOY}@127.0.0.1:{sshd.port}"
        result = remote.run("echo out; echo err >&2; exit 4")
        assert (result.exit_status, result.stdout, result.stderr) == (4, "out\n", "err\n")
        assert remote.run("tr a-z A-Z", input="stdin works\n").stdout == "STDIN WORKS\n"
        assert remote.run("cat").stdout == ""  # stdin is closed when no input is given
        assert remote.run("whoami").stdout.strip() == DEPLOY

        target = user_dir / "app.conf"
        assert remote.read_file(str(target)) is None and not remote.exists(str(target))
        payload = bytes(range(256)) * 40  # binary-safe
        remote.write_file_atomic(str(target), payload)
        assert target.read_bytes() == payload  # checked beside the transport, on disk
        assert remote.read_file(str(target)) == payload
        info = remote.stat(str(target))
        assert info is not None
        assert (info.mode, info.size, info.uid) == (0o644, len(payload), pwd.getpwnam(DEPLOY).pw_uid)
        target.chmod(0o600)
        remote.write_file_atomic(str(target), b"v2")
        assert target.read_bytes() == b"v2" and target.stat().st_mode & 0o777 == 0o600
        temp = remote.upload_temp_beside(str(target), b"candidate")
        assert Path(temp).parent == user_dir and Path(temp).read_bytes() == b"candidate"
        remote.rename(temp, str(target))
        assert target.read_bytes() == b"candidate"
        remote.remove(str(target))
        remote.remove(str(target))
        assert not target.exists() and leftovers(user_dir) == []


@pytest.mark.needs_root
def test_sudo_writes_into_a_root_directory_keeping_owner_and_mode(
    sshd: rig.SshdInstance, etc_dir: Path
) -> None:
    target = etc_dir / "site.conf"
    target.write_bytes(b"old config\n")
    target.chmod(0o640)
    home = Path(pwd.getpwnam(DEPLOY).pw_dir)

    def staged() -> set[Path]:
        return {p for p in home.iterdir() if p.name.startswith(".sockwizard-upload-")}

    # Another test (an SSH cut mid-upload) may have left its own staged file: only ours count.
    before = staged()
    with connect(sshd, DEPLOY) as remote:
        assert remote.sudo_mode() is SudoMode.NOPASSWD
        assert remote.read_file(str(target)) == b"old config\n"  # 0640 root: read via sudo
        remote.write_file_atomic(str(target), b"new config\n")
        assert target.read_bytes() == b"new config\n"
        st = target.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o640)
        remote.write_file_atomic(str(etc_dir / "fresh.conf"), b"x")
        fresh = (etc_dir / "fresh.conf").stat()
        assert (fresh.st_uid, fresh.st_mode & 0o777) == (0, 0o644)

        temp = remote.upload_temp_beside(str(target), b"candidate\n")
        assert Path(temp).parent == etc_dir and Path(temp).stat().st_uid == 0
        assert target.read_bytes() == b"new config\n"
        remote.rename(temp, str(target))
        assert target.read_bytes() == b"candidate\n"
        temp = remote.upload_temp_beside(str(target), b"rejected\n")
        remote.remove(temp)
        assert leftovers(etc_dir) == []
        # nothing staged is left in the deploy user's home either
        assert staged() <= before


@pytest.mark.needs_root
def test_sudo_reaches_paths_the_user_cannot_even_see(sshd: rig.SshdInstance,
                                                     etc_dir: Path) -> None:
    private = etc_dir / "private"
    private.mkdir(mode=0o700)
    secret = private / "key.conf"
    secret.write_bytes(b"only root\n")
    with connect(sshd, DEPLOY) as remote:
        assert remote.read_file(str(secret)) == b"only root\n"
        assert remote.read_file(str(private / "absent")) is None
        info = remote.stat(str(secret))
        assert info is not None and info.size == 10 and info.uid == 0
        assert remote.stat(str(private / "absent")) is None
        remote.write_file_atomic(str(private / "new.conf"), b"made by sudo\n", mode=0o600)
        assert (private / "new.conf").read_bytes() == b"made by sudo\n"
        remote.remove(str(private / "new.conf"))
        assert not (private / "new.conf").exists()


@pytest.mark.needs_root
def test_write_follows_a_sites_enabled_symlink(sshd: rig.SshdInstance, etc_dir: Path) -> None:
    (etc_dir / "sites-available").mkdir()
    (etc_dir / "sites-enabled").mkdir()
    (etc_dir / "sites-available" / "app").write_bytes(b"old")
    link = etc_dir / "sites-enabled" / "app"
    link.symlink_to("../sites-available/app")
    with connect(sshd, DEPLOY) as remote:
        remote.write_file_atomic(str(link), b"new")
    assert link.is_symlink()
    assert (etc_dir / "sites-available" / "app").read_bytes() == b"new"


@pytest.mark.needs_root
def test_root_login_needs_no_sudo(sshd: rig.SshdInstance, etc_dir: Path) -> None:
    with connect(sshd, "root") as remote:
        assert remote.sudo_mode() is SudoMode.ROOT
        assert remote.run("id -u", sudo=True).stdout == "0\n"
        remote.write_file_atomic(str(etc_dir / "r.conf"), b"root")
    assert (etc_dir / "r.conf").read_bytes() == b"root"


@pytest.mark.needs_root
def test_sudo_password_required_is_a_clear_error(sshd: rig.SshdInstance,
                                                 etc_dir: Path) -> None:
    target = etc_dir / "site.conf"
    target.write_bytes(b"old")
    with connect(sshd, NOSUDO) as remote:
        assert remote.run("id -un").stdout.strip() == NOSUDO  # plain commands still work
        with pytest.raises(SudoPasswordRequired) as info:
            remote.run("id -u", sudo=True)
        assert "--sudo-password-stdin" in info.value.hint and "NOPASSWD" in info.value.hint
        assert info.value.exit_code == 3
        with pytest.raises(SudoPasswordRequired):
            remote.write_file_atomic(str(target), b"new")
    assert target.read_bytes() == b"old" and leftovers(etc_dir) == []
    home = Path(pwd.getpwnam(NOSUDO).pw_dir)
    assert not [p for p in home.iterdir() if p.name.startswith(".sockwizard-upload-")]


@pytest.mark.needs_root
def test_sudo_with_a_password_never_leaks_it(sshd: rig.SshdInstance, etc_dir: Path) -> None:
    password = sshd.password(NOSUDO)
    target = etc_dir / "site.conf"
    with connect(sshd, NOSUDO, sudo_password=password) as remote:
        assert password not in repr(remote)
        assert remote.sudo_mode() is SudoMode.PASSWORD
        result = remote.run("id -u; cat", sudo=True, input="payload\n")
        assert result.stdout == "0\npayload\n"
        assert password not in result.output and password not in result.command
        # twice in a row: a cached sudo credential must not push the password into stdin
        again = remote.run("cat", sudo=True, input="second\n")
        assert again.stdout == "second\n"
        remote.write_file_atomic(str(target), b"via sudo -S\n")
        assert target.read_bytes() == b"via sudo -S\n"
        assert target.stat().st_uid == 0


@pytest.mark.needs_root
def test_wrong_sudo_password_is_reported(sshd: rig.SshdInstance) -> None:
    with connect(sshd, NOSUDO, sudo_password="not-the-password") as remote:
        with pytest.raises(SudoPasswordRequired) as info:
            remote.run("id -u", sudo=True)
        assert "rejected" in info.value.title
        assert "not-the-password" not in info.value.message()


@pytest.mark.needs_root
def test_unknown_host_key_refused_then_accepted_and_recorded(sshd: rig.SshdInstance,
                                                             tmp_path: Path) -> None:
    known = tmp_path / "kh" / "known_hosts"
    with pytest.raises(HostKeyUnknown) as info:
        connect(sshd, DEPLOY, known_hosts=known)
    error = info.value
    assert error.fingerprint == sshd.host_key_fingerprint
    assert error.key_type == "ssh-ed25519"
    assert f"--accept-host-key {sshd.host_key_fingerprint}" in error.hint
    assert error.host == f"[127.0.0.1]:{sshd.port}"
    assert not known.exists()  # refusing records nothing

    with pytest.raises(HostKeyUnknown):  # a fingerprint that is not the host's changes nothing
        connect(sshd, DEPLOY, known_hosts=known,
                accept_host_key="SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert not known.exists()

    with connect(sshd, DEPLOY, known_hosts=known,
                 accept_host_key=sshd.host_key_fingerprint) as remote:
        assert remote.run("true").ok
    assert known.read_text() == sshd.host_key_line + "\n"
    with connect(sshd, DEPLOY, known_hosts=known) as remote:  # now trusted without the flag
        assert remote.run("true").ok


@pytest.mark.needs_root
def test_hashed_known_hosts_entries_are_honoured(sshd: rig.SshdInstance, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    shutil.copy(sshd.known_hosts, known)
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], check=True, capture_output=True)
    assert known.read_text().startswith("|1|")
    with connect(sshd, DEPLOY, known_hosts=known) as remote:
        assert remote.run("true").ok


@pytest.mark.needs_root
def test_changed_host_key_is_always_refused(sshd: rig.SshdInstance) -> None:
    for accept in (None, sshd.host_key_fingerprint):
        with pytest.raises(HostKeyChanged) as info:
            connect(sshd, DEPLOY, known_hosts=sshd.other_known_hosts, accept_host_key=accept)
        assert info.value.fingerprint == sshd.host_key_fingerprint
        assert "HAS CHANGED" in info.value.title
        assert "ssh-keygen -R" in info.value.hint


@pytest.mark.needs_root
def test_probe_host_key_for_the_trust_modal(sshd: rig.SshdInstance) -> None:
    assert probe_host_key(target_of(sshd, DEPLOY), 5) == ("ssh-ed25519",
                                                          sshd.host_key_fingerprint)


@pytest.mark.needs_root
def test_wrong_key_is_an_authentication_failure(sshd: rig.SshdInstance) -> None:
    wrong = sshd.client_key(NOSUDO)
    with pytest.raises(ConnectionFailed) as info:
        connect(sshd, DEPLOY, identity=wrong)
    error = info.value
    assert type(error) is ConnectionFailed
    assert error.title == f"Authentication failed for {DEPLOY}@127.0.0.1"
    assert str(wrong) in error.hint and "ssh-agent (none running)" in error.hint
    assert "--identity" in error.hint


@pytest.mark.needs_root
def test_missing_identity_file_is_bad_input(sshd: rig.SshdInstance, tmp_path: Path) -> None:
    with pytest.raises(BadInput):
        connect(sshd, DEPLOY, identity=tmp_path / "nope")


@pytest.mark.needs_root
def test_password_login(sshd: rig.SshdInstance) -> None:
    password = sshd.password(NOSUDO)
    with connect(sshd, NOSUDO, identity=None, password=password) as remote:
        assert remote.run("id -un").stdout.strip() == NOSUDO
    with pytest.raises(ConnectionFailed) as info:
        connect(sshd, NOSUDO, identity=None, password="wrong-" + password)
    assert "password" in info.value.hint
    assert password not in info.value.message()


@pytest.mark.needs_root
def test_default_key_with_passphrase_is_prompted_for(sshd: rig.SshdInstance,
                                                     hermetic_home: Path) -> None:
    ssh_dir = hermetic_home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    key = ssh_dir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret phrase", "-f", str(key)],
                   check=True)
    authorized = sshd.dir / "authorized_keys" / DEPLOY
    original = authorized.read_text()
    authorized.write_text(original + key.with_suffix(".pub").read_text())
    try:
        prompts: list[str] = []

        def prompt(text: str) -> str:
            prompts.append(text)
            return "s3cret phrase"

        with connect(sshd, DEPLOY, identity=None, passphrase_prompt=prompt) as remote:
            assert remote.run("true").ok
        assert prompts == [f"Passphrase for {key}: "]

        with pytest.raises(ConnectionFailed) as info:
            connect(sshd, DEPLOY, identity=None, passphrase_prompt=lambda _: "wrong")
        assert f"key {key} (wrong passphrase)" in info.value.hint
        with pytest.raises(ConnectionFailed) as info:
            connect(sshd, DEPLOY, identity=None)
        assert "needs a passphrase" in info.value.hint
    finally:
        authorized.write_text(original)


@pytest.mark.needs_root
def test_unreachable_port_fails_fast_with_a_clear_message() -> None:
    port = rig.free_port()
    target = parse_target(f"{DEPLOY}@127.0.0.1:{port}", ssh_config=NO_CONFIG)
    with pytest.raises(ConnectionFailed) as info:
        SshRemote.connect(target, known_hosts=Path("/nonexistent"), connect_timeout=3)
    assert info.value.title == f"Cannot reach 127.0.0.1:{port} (connection refused)"
    assert "sshd is running" in info.value.hint


def test_a_port_that_is_not_ssh_is_a_handshake_error() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        target = parse_target(f"u@127.0.0.1:{port}", ssh_config=NO_CONFIG)
        with pytest.raises(ConnectionFailed) as info:
            SshRemote.connect(target, known_hosts=Path("/nonexistent"), connect_timeout=3)
        assert info.value.title.startswith(f"SSH handshake with [127.0.0.1]:{port} failed")
    finally:
        thread.join()
        server.close()


def test_a_silent_server_times_out_as_connection_failed() -> None:
    server = socket.create_server(("127.0.0.1", 0))  # accepts (backlog) but never speaks
    port = server.getsockname()[1]
    try:
        target = parse_target(f"u@127.0.0.1:{port}", ssh_config=NO_CONFIG)
        with pytest.raises(ConnectionFailed) as info:
            SshRemote.connect(target, known_hosts=Path("/nonexistent"), connect_timeout=0.5)
        assert info.value.title.startswith(f"SSH handshake with [127.0.0.1]:{port} failed")
    finally:
        server.close()


@pytest.mark.needs_root
def test_command_timeout_then_the_connection_still_works(sshd: rig.SshdInstance) -> None:
    with connect(sshd, DEPLOY) as remote:
        with pytest.raises(RemoteCommandFailed) as info:
            remote.run("sleep 5", timeout=0.5)
        assert info.value.title.startswith("Command timed out after 0.5 s on")
        assert remote.run("echo still here").stdout == "still here\n"


@pytest.mark.needs_root
def test_session_cut_during_a_command_is_connection_failed(sshd: rig.SshdInstance,
                                                           user_dir: Path) -> None:
    marker = user_dir / "pid"
    remote = connect(sshd, DEPLOY)
    killed: list[int] = []

    def cut_when_running() -> None:
        deadline = time.monotonic() + 10
        while not marker.exists() or not marker.read_text().strip():
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        killed.extend(cut_sessions(sshd))

    killer = threading.Thread(target=cut_when_running)
    killer.start()
    try:
        with pytest.raises(ConnectionFailed) as info:
            remote.run(f"echo $$ > {marker}; exec sleep 30", timeout=20)
        assert info.value.title.startswith(f"Connection to {remote.name} lost during")
        assert killed
        with pytest.raises(ConnectionFailed):  # later steps fail the same way, no hang
            remote.read_file(str(user_dir / "x"))
        with pytest.raises(ConnectionFailed):
            remote.run("true")
    finally:
        killer.join()
        remote.close()
        pid = marker.read_text().strip() if marker.exists() else ""
        if pid.isdigit():  # the orphaned `sleep 30` of the cut session
            os.kill(int(pid), signal.SIGKILL)


@pytest.mark.needs_root
def test_session_cut_during_an_upload_leaves_the_target_whole(sshd: rig.SshdInstance,
                                                              etc_dir: Path) -> None:
    target = etc_dir / "app.conf"
    target.write_bytes(b"old config\n")
    remote = connect(sshd, "root")
    remote.run("true")  # the connection is up before the cut is armed

    def cut_when_temp_appears() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if leftovers(etc_dir):
                cut_sessions(sshd)
                return
            time.sleep(0.001)

    killer = threading.Thread(target=cut_when_temp_appears)
    killer.start()
    try:
        with pytest.raises(ConnectionFailed) as info:
            remote.write_file_atomic(str(target), os.urandom(48 * 1024 * 1024))
        assert "lost during uploading" in info.value.title
    finally:
        killer.join()
        remote.close()
    assert target.read_bytes() == b"old config\n"
    # The cut came mid-upload: the partial temp file is all that is left (hidden, not *.conf).
    for name in leftovers(etc_dir):
        (etc_dir / name).unlink()


@pytest.mark.needs_root
def test_proxy_jump_from_ssh_config(sshd: rig.SshdInstance, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host jumpbox\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {DEPLOY}\n"
        f"Host behind\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {DEPLOY}\n"
        "  ProxyJump jumpbox\n"
    )
    target = parse_target("behind", ssh_config=config)
    assert target.proxy_jump is not None
    with SshRemote.connect(target, known_hosts=sshd.known_hosts,
                           identity=sshd.client_key(DEPLOY), connect_timeout=5) as remote:
        assert remote.run("whoami").stdout.strip() == DEPLOY
        assert remote.read_file("/nonexistent-file") is None
        # The session rides a direct-tcpip channel of the jump connection, not a socket of ours.
        assert isinstance(remote._transport.sock, paramiko.Channel)
        jump = remote._jump
        assert jump is not None and jump.run("echo jump").stdout == "jump\n"
        our_socket = jump._transport.sock
        assert isinstance(our_socket, socket.socket)
        hop_port = int(remote.run("echo $SSH_CLIENT").stdout.split()[1])
        assert hop_port != our_socket.getsockname()[1]  # the hop was opened by the jump's sshd


@pytest.mark.needs_root
def test_untuned_transport_works_the_same(sshd: rig.SshdInstance) -> None:
    with connect(sshd, DEPLOY, tuned=False) as remote:
        assert remote.run("echo ok").stdout == "ok\n"


@pytest.mark.needs_root
def test_open_remote_with_a_host_string(sshd: rig.SshdInstance, tmp_path: Path) -> None:
    remote = open_remote(f"{DEPLOY}@127.0.0.1:{sshd.port}", known_hosts=sshd.known_hosts,
                         identity=sshd.client_key(DEPLOY), ssh_config=NO_CONFIG)
    with remote:
        assert isinstance(remote, SshRemote)
        assert remote.run("true").ok
