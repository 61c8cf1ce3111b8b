"""Fast tests of wizard/remote/: LocalRemote on this machine's real filesystem and shell,
InMemoryRemote as the deploy transaction's test double, and the sudo helpers.

The SSH implementation of the same protocol is tested against a real sshd in test_ssh.py.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests import rig
from wizard.errors import ConnectionFailed, RemoteCommandFailed, SudoPasswordRequired
from wizard.remote import (
    TEMP_MARKER,
    CommandResult,
    InMemoryRemote,
    LocalRemote,
    Remote,
    RunRequest,
    SudoMode,
    check_sudo_refusal,
    open_remote,
    parse_sudo_probe,
    sudo_wrap,
    temp_path_beside,
)

# --------------------------------------------------------------------------------------------
# CommandResult and helpers
# --------------------------------------------------------------------------------------------


def test_command_result_ok_and_output() -> None:
    good = CommandResult("true", 0, "out\n", "", 0.01)
    bad = CommandResult("false", 1, "a\n", "b\n", 0.01)
    assert good.ok and not bad.ok
    assert bad.output == "a\nb\n"


def test_temp_path_is_hidden_beside_the_target_and_unique() -> None:
    first = temp_path_beside("/etc/nginx/sites-available/app.conf")
    second = temp_path_beside("/etc/nginx/sites-available/app.conf")
    assert first != second
    directory, name = os.path.split(first)
    assert directory == "/etc/nginx/sites-available"
    assert name.startswith(".app.conf" + TEMP_MARKER)
    assert name.endswith(".tmp") and not name.endswith(".conf")


@pytest.mark.parametrize(
    ("stdout", "mode"),
    [("root\n", SudoMode.ROOT), ("nopasswd\n", SudoMode.NOPASSWD),
     ("password\n", SudoMode.PASSWORD), ("", SudoMode.MISSING),
     ("motd line\nnopasswd\n", SudoMode.NOPASSWD), ("garbage\n", SudoMode.MISSING)],
)
def test_parse_sudo_probe(stdout: str, mode: SudoMode) -> None:
    assert parse_sudo_probe(stdout) is mode


def test_sudo_wrap_quotes_the_command_and_picks_the_sudo_flags() -> None:
    command = "echo 'a b' > /etc/x; id -u"
    assert sudo_wrap(command, SudoMode.ROOT, with_password=False) == command
    nopass = sudo_wrap(command, SudoMode.NOPASSWD, with_password=True)
    assert nopass.startswith("LC_ALL=C sudo -n -- sh -c ")
    withpass = sudo_wrap(command, SudoMode.PASSWORD, with_password=True)
    assert withpass.startswith("LC_ALL=C sudo -S -k -p '' -- sh -c ")
    # The wrapped line, run by a real shell, must hand sudo exactly the original command.
    inner = withpass.split(" -- ", 1)[1]
    argv = subprocess.run(
        [sys.executable, "-c", "import shlex,sys; print(shlex.split(sys.argv[1])[2])", inner],
        capture_output=True, text=True, check=True,
    ).stdout.rstrip("\n")
    assert argv == command


@pytest.mark.parametrize(
    ("stderr", "raises"),
    [
        ("sudo: a password is required\n", True),
        ("Sorry, try again.\nsudo: 1 incorrect password attempt\n", True),
        ("sudo: a terminal is required to read the password\n", True),
        ("nginx: [emerg] unknown directive\n", False),
        ("", False),
    ],
)
def test_check_sudo_refusal(stderr: str, raises: bool) -> None:
    result = CommandResult("x", 1, "", stderr, 0.0)
    if raises:
        with pytest.raises(SudoPasswordRequired) as info:
            check_sudo_refusal(result, "h", "u")
        assert "sudo" in info.value.title and info.value.hint
    else:
        check_sudo_refusal(result, "h", "u")


# --------------------------------------------------------------------------------------------
# LocalRemote
# --------------------------------------------------------------------------------------------


@pytest.fixture
def local() -> LocalRemote:
    return LocalRemote()


def test_local_remote_is_a_remote(local: LocalRemote) -> None:
    assert isinstance(local, Remote)
    assert isinstance(InMemoryRemote(), Remote)
    assert local.name == "local"


def test_local_run_reports_status_streams_and_takes_input(local: LocalRemote) -> None:
    result = local.run("echo out; echo err >&2; exit 3")
    assert (result.exit_status, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert result.command == "echo out; echo err >&2; exit 3"
    assert result.seconds >= 0
    assert local.run("tr a-z A-Z", input="hello\n").stdout == "HELLO\n"
    # Without input, stdin is closed (a command reading it must not hang).
    assert local.run("cat").stdout == ""


def test_local_run_timeout_is_a_clear_error_and_kills_the_pipeline(
    local: LocalRemote, tmp_path: Path
) -> None:
    marker = tmp_path / "still-running"
    with pytest.raises(RemoteCommandFailed) as info:
        local.run(f"sleep 0.8 && touch {marker} & sleep 30", timeout=0.3)
    assert "timed out after 0.3 s" in info.value.title
    assert "sleep 30" in info.value.detail
    # The background branch was in the killed process group: it never gets to touch the file.
    local.run("sleep 1.2")
    assert not marker.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="as non-root, sudo depends on this machine")
def test_local_sudo_as_root_runs_directly(local: LocalRemote) -> None:
    assert local.sudo_mode() is SudoMode.ROOT
    result = local.run("id -u", sudo=True)
    assert result.stdout == "0\n"
    assert result.command == "id -u"


def test_local_write_read_stat_remove(local: LocalRemote, tmp_path: Path) -> None:
    target = str(tmp_path / "site.conf")
    assert local.read_file(target) is None
    assert local.stat(target) is None and not local.exists(target)
    local.write_file_atomic(target, b"server {}\n")
    assert Path(target).read_bytes() == b"server {}\n"
    info = local.stat(target)
    assert info is not None
    assert (info.mode, info.size) == (0o644, 10)
    assert local.read_file(target) == b"server {}\n"
    local.remove(target)
    local.remove(target)  # absent: not an error
    assert not Path(target).exists()


def test_local_write_keeps_the_existing_mode_unless_told(local: LocalRemote,
                                                           tmp_path: Path) -> None:
    target = tmp_path / "secret.conf"
    target.write_bytes(b"old")
    target.chmod(0o640)
    local.write_file_atomic(str(target), b"new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    local.write_file_atomic(str(target), b"newer", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_bytes() == b"newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.conf"]  # no temp left


def test_local_write_replaces_by_rename_not_in_place(local: LocalRemote,
                                                       tmp_path: Path) -> None:
    target = tmp_path / "app.conf"
    target.write_bytes(b"old")
    before = target.stat().st_ino
    local.write_file_atomic(str(target), b"new")
    assert target.stat().st_ino != before  # a new inode: old readers keep a whole old file


def test_local_reader_never_sees_a_half_written_file(local: LocalRemote,
                                                     tmp_path: Path) -> None:
    target = tmp_path / "big.conf"
    versions = [b"a" * 2_000_000, b"b" * 3_000_000]
    target.write_bytes(versions[0])
    seen: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            data = target.read_bytes()
            seen.add(len(data))
            assert data in versions, f"torn read: {len(data)} bytes"

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(30):
            local.write_file_atomic(str(target), versions[i % 2])
    finally:
        stop.set()
        thread.join()
    assert seen <= {len(v) for v in versions}


def test_local_failed_write_leaves_the_target_and_no_temp(local: LocalRemote,
                                                          tmp_path: Path) -> None:
    with pytest.raises(RemoteCommandFailed) as info:
        local.write_file_atomic(str(tmp_path / "missing-dir" / "x.conf"), b"data")
    assert "missing-dir" in info.value.title
    assert list(tmp_path.iterdir()) == []


def test_local_write_follows_a_symlink_and_keeps_it(local: LocalRemote, tmp_path: Path) -> None:
    available = tmp_path / "sites-available"
    enabled = tmp_path / "sites-enabled"
    available.mkdir()
    enabled.mkdir()
    (available / "app").write_bytes(b"old")
    (enabled / "app").symlink_to("../sites-available/app")
    local.write_file_atomic(str(enabled / "app"), b"new")
    assert (enabled / "app").is_symlink()
    assert (available / "app").read_bytes() == b"new"
    assert sorted(p.name for p in enabled.iterdir()) == ["app"]


def test_local_upload_temp_beside_then_rename(local: LocalRemote, tmp_path: Path) -> None:
    target = tmp_path / "app.conf"
    target.write_bytes(b"old")
    temp = local.upload_temp_beside(str(target), b"candidate")
    assert os.path.dirname(temp) == str(tmp_path)
    assert Path(temp).read_bytes() == b"candidate"
    assert target.read_bytes() == b"old"  # untouched until the rename
    local.rename(temp, str(target))
    assert target.read_bytes() == b"candidate"
    assert not Path(temp).exists()
    # validate-failed path: the temp is removed and the target stays
    temp = local.upload_temp_beside(str(target), b"broken")
    local.remove(temp)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.conf"]


def test_local_rename_of_a_missing_file_is_a_clear_error(local: LocalRemote,
                                                          tmp_path: Path) -> None:
    with pytest.raises(RemoteCommandFailed) as info:
        local.rename(str(tmp_path / "nope"), str(tmp_path / "dest"))
    assert "rename" in info.value.title


def test_local_context_manager(tmp_path: Path) -> None:
    with LocalRemote() as remote:
        assert remote.run("echo hi").stdout == "hi\n"


def test_open_remote_local_does_not_import_paramiko() -> None:
    code = (
        "import sys; from wizard.remote import open_remote, LocalRemote; "
        "r = open_remote('local'); assert isinstance(r, LocalRemote); "
        "print('paramiko' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, check=True).stdout
    assert out.strip() == "False"
    assert isinstance(open_remote("local"), LocalRemote)


# --------------------------------------------------------------------------------------------
# InMemoryRemote
# --------------------------------------------------------------------------------------------


def test_memory_canned_and_callable_handlers() -> None:
    remote = InMemoryRemote(files={"/etc/nginx/nginx.conf": b"events {}"})
    remote.on(r"^nginx -v", stderr="nginx version: nginx/1.22.1\n")
    remote.on(r"nginx -t", exit_status=1, stderr="emerg")

    def validate(request: RunRequest) -> CommandResult:
        ok = b"events" in remote.files["/etc/nginx/nginx.conf"]
        return CommandResult(request.command, 0 if ok else 1, "", "", 0.0)

    remote.on(r"nginx -t", validate)  # later registrations win
    assert remote.run("nginx -v").stderr == "nginx version: nginx/1.22.1\n"
    assert remote.run("nginx -t", sudo=True).ok
    remote.files["/etc/nginx/nginx.conf"] = b"broken"
    assert remote.run("nginx -t", sudo=True).exit_status == 1
    missing = remote.run("caddy version")
    assert missing.exit_status == 127 and "caddy" in missing.stderr
    assert remote.commands == ["nginx -v", "nginx -t", "nginx -t", "caddy version"]
    assert [c.sudo for c in remote.calls if c.op == "run"] == [False, True, True, False]


def test_memory_files_and_temp_rename() -> None:
    remote = InMemoryRemote()
    remote.write_file_atomic("/etc/app.conf", b"v1", mode=0o640)
    info = remote.stat("/etc/app.conf")
    assert info is not None and info.mode == 0o640 and info.size == 2
    temp = remote.upload_temp_beside("/etc/app.conf", b"v2")
    assert temp.startswith("/etc/.app.conf" + TEMP_MARKER)
    assert remote.read_file("/etc/app.conf") == b"v1"
    remote.rename(temp, "/etc/app.conf")
    assert remote.read_file("/etc/app.conf") == b"v2"
    assert remote.modes["/etc/app.conf"] == 0o640
    assert set(remote.files) == {"/etc/app.conf"}
    remote.remove("/etc/app.conf")
    assert not remote.exists("/etc/app.conf") and remote.read_file("/etc/app.conf") is None
    with pytest.raises(RemoteCommandFailed):
        remote.rename("/nope", "/etc/app.conf")


def test_memory_fault_injection_and_sudo_password() -> None:
    remote = InMemoryRemote(files={"/etc/app.conf": b"old"})
    remote.fail("upload_temp_beside", ConnectionFailed("Connection lost during upload"),
                path=r"app\.conf$")
    with pytest.raises(ConnectionFailed):
        remote.upload_temp_beside("/etc/app.conf", b"new")
    remote.upload_temp_beside("/etc/app.conf", b"new")  # only once
    assert remote.read_file("/etc/app.conf") == b"old"

    strict = InMemoryRemote(sudo_needs_password=True)
    assert strict.run("id -u").exit_status == 127
    with pytest.raises(SudoPasswordRequired):
        strict.run("nginx -s reload", sudo=True)


def test_memory_closed_remote_behaves_like_a_lost_connection() -> None:
    with InMemoryRemote(name="vm1") as remote:
        remote.run("true")
    assert remote.closed
    with pytest.raises(ConnectionFailed) as info:
        remote.read_file("/etc/x")
    assert "vm1" in info.value.title


# --------------------------------------------------------------------------------------------
# LocalRemote as a non-root user: the sudo paths for real (rig users, root only)
# --------------------------------------------------------------------------------------------

_AS_USER = """
import sys
from wizard.errors import SudoPasswordRequired
from wizard.remote import LocalRemote
password = sys.stdin.read() or None
remote = LocalRemote(sudo_password=password)
target = sys.argv[1]
lazy = sys.argv[2:] == ["lazy"]  # no sudo_mode() first: the first sudo command decides
if not lazy:
    print(remote.sudo_mode().value)
try:
    remote.write_file_atomic(target, b"written through sudo\\n")
    print(remote.read_file(target + ".private").decode().strip())
    print(remote.run("id -u; cat", sudo=True, input="in\\n").stdout.replace("\\n", " "))
except SudoPasswordRequired as exc:
    print("refused:", exc.title)
if lazy:
    print(remote._sudo_mode.value)  # what the commands taught, without a probe of its own
"""


def _run_as(user: str, target: Path, password: str = "", *, lazy: bool = False) -> list[str]:
    repo = rig.world_readable_package()
    proc = subprocess.run(
        ["runuser", "-u", user, "--", "/usr/bin/python3", "-B", "-c", _AS_USER, str(target),
         *(["lazy"] if lazy else [])],
        input=password, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(repo), "HOME": "/"},
    )
    shutil.rmtree(repo, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest.mark.needs_root
@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no system python3")
def test_local_remote_as_non_root_uses_sudo_when_denied() -> None:
    from tests import rig

    rig.ensure_test_users()
    root_dir = rig.make_world_dir("sockwizard-test-local-", "/srv")
    try:
        target = root_dir / "site.conf"
        target.write_bytes(b"old\n")
        private = root_dir / "site.conf.private"
        private.write_bytes(b"root only\n")
        private.chmod(0o600)

        assert _run_as(rig.DEPLOY_USER, target) == ["nopasswd", "root only", "0 in "]
        assert target.read_bytes() == b"written through sudo\n"
        assert target.stat().st_uid == 0

        target.write_bytes(b"old\n")
        out = _run_as(rig.NOSUDO_USER, target)
        assert out[0] == "password" and out[1].startswith("refused: sudo on local needs a password")
        assert target.read_bytes() == b"old\n"

        out = _run_as(rig.NOSUDO_USER, target, rig.NOSUDO_PASSWORD)
        assert out == ["password", "root only", "0 in "]
        assert target.read_bytes() == b"written through sudo\n"
        assert not [p for p in root_dir.iterdir() if TEMP_MARKER in p.name]

        # Without a password to offer, the probe runs no sudo (HOST_PROBE_UNTRIED): the first
        # sudo command's own `sudo -n` tells NOPASSWD, or refuses having run nothing.
        target.write_bytes(b"old\n")
        assert _run_as(rig.DEPLOY_USER, target, lazy=True) == ["root only", "0 in ", "nopasswd"]
        assert target.read_bytes() == b"written through sudo\n"
        target.write_bytes(b"old\n")
        out = _run_as(rig.NOSUDO_USER, target, lazy=True)
        assert out[0].startswith("refused: sudo on local needs a password") and out[1:] == [
            "password"]
        assert target.read_bytes() == b"old\n"
        assert not [p for p in root_dir.iterdir() if TEMP_MARKER in p.name]
    finally:
        shutil.rmtree(root_dir, ignore_errors=True)
