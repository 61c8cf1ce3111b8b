"""This machine as a host: :class:`LocalRemote` (``--host local``, the sandbox, the tests).

Commands run through ``/bin/sh`` in a new session, so a timeout kills the whole pipeline; files go
through the os module; sudo is used only when the login user is not root. :func:`local_user` is
also the default SSH login name (``wizard.remote.ssh.target``), as with ``ssh``.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import os
import selectors
import signal
import socket
import stat as stat_mod
import subprocess
import tempfile
import time
from pathlib import Path

from wizard.remote.base import MAX_OUTPUT, FileStat, RawResult, too_much_output
from wizard.remote.shell import ShellRemote
from wizard.remote.sudo import SudoMode
from wizard.remote.timeouts import ClientDeadline


class LocalRemote(ShellRemote):
    """This machine: commands through /bin/sh, files through os, sudo only when not root."""

    def __init__(self, *, sudo_password: str | None = None, name: str = "local") -> None:
        super().__init__(sudo_password=sudo_password)
        self.name = name
        self.user = local_user()
        if os.geteuid() == 0:
            self._sudo_mode = SudoMode.ROOT

    def _exec(self, command: str, *, timeout: float, stdin: bytes | None) -> RawResult:
        start = time.monotonic()
        # A new session so a timeout can kill the whole pipeline, not only the shell.
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = _collect(proc, stdin, time.monotonic() + timeout, MAX_OUTPUT)
        except subprocess.TimeoutExpired:
            raise ClientDeadline(killed_here=_kill_session(proc)) from None
        except _TooMuch:
            _kill_session(proc)
            raise too_much_output(self.name, MAX_OUTPUT, "the command was killed") from None
        # Killed by a signal: report it as a shell would (128 + N), like the SSH side does.
        status = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        return RawResult(status, out, err, time.monotonic() - start)

    def _d_read(self, path: str, limit: int) -> bytes:
        with open(path, "rb") as f:
            return f.read(limit)

    def _d_stat(self, path: str) -> FileStat:
        st = os.stat(path)
        return FileStat(stat_mod.S_IMODE(st.st_mode), st.st_size, st.st_mtime, st.st_uid,
                        st.st_gid)

    def _d_readlink(self, path: str) -> str | None:
        try:
            return os.readlink(path)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # exists but is not a symlink
                return None
            raise

    def _d_create(self, path: str, data: bytes, mode: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)

    def _d_chown(self, path: str, uid: int, gid: int) -> None:
        st = os.stat(path)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(path, uid, gid)

    def _d_rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def _d_remove(self, path: str) -> None:
        os.unlink(path)

    def _d_sync_dir(self, directory: str) -> None:
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _staging_dir(self) -> str:
        return tempfile.gettempdir()

    def tcp_check(self, host: str, port: int, timeout: float = 3.0) -> bool | str:
        return local_tcp_check(host, port, timeout)

    def close(self) -> None:
        """Nothing to release for this machine."""


def local_tcp_check(host: str, port: int, timeout: float) -> bool | str:
    """Remote.tcp_check from this machine: a plain connect, no shell."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return f"timed out after {timeout:g} s"
    except OSError as exc:  # no route, name unknown (socket.gaierror), ...
        return exc.strerror or str(exc) or type(exc).__name__


def local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.geteuid())


class _TooMuch(Exception):
    pass


def _collect(proc: subprocess.Popen[bytes], stdin: bytes | None, deadline: float,
             limit: int) -> tuple[bytes, bytes]:
    """``communicate`` with a cap: feed ``stdin``, read stdout and stderr until both end, at
    most ``limit`` bytes of the two (raises _TooMuch past it, TimeoutExpired at the
    deadline; the caller kills the session either way)."""
    out, err = bytearray(), bytearray()
    buffers = {proc.stdout: out, proc.stderr: err}
    view = memoryview(stdin or b"")
    with selectors.DefaultSelector() as sel:
        for pipe in buffers:
            assert pipe is not None
            sel.register(pipe, selectors.EVENT_READ)
        if proc.stdin is not None:
            if view:
                os.set_blocking(proc.stdin.fileno(), False)
                sel.register(proc.stdin, selectors.EVENT_WRITE)
            else:
                proc.stdin.close()
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(proc.args, 0)
            for key, _ in sel.select(remaining):
                if key.fileobj is proc.stdin:
                    try:
                        view = view[os.write(key.fd, view[:65536]):]
                    except BrokenPipeError:  # the command stopped reading: as communicate
                        view = view[:0]
                    if not view:
                        sel.unregister(key.fileobj)
                        proc.stdin.close()
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buffers[key.fileobj] += chunk  # type: ignore[index]
                if len(out) + len(err) > limit:
                    raise _TooMuch
    remaining = deadline - time.monotonic()
    proc.wait(max(remaining, 0.001))  # both pipes ended: the shell is exiting
    return bytes(out), bytes(err)


def _kill_session(proc: subprocess.Popen[bytes]) -> bool:
    """SIGKILL every process of ``proc``'s session (it was started as a session leader): the
    shell, its pipeline, and groups a `timeout` or job control made inside it. True when all
    were signalled (a non-root user cannot signal sudo's root children: False)."""
    complete = True
    for pid in [proc.pid, *_session_members(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError:
            complete = False
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:  # not read any further: a survivor writing to it gets EPIPE
            with contextlib.suppress(OSError):
                pipe.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return complete


def _session_members(sid: int) -> list[int]:
    """Live processes whose session id is ``sid`` (Linux /proc; empty elsewhere)."""
    members: list[int] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat_line = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
            fields = stat_line[stat_line.rfind(")") + 2:].split()
            if len(fields) > 3 and fields[3] == str(sid) and fields[0] != "Z":
                members.append(int(entry.name))
    return members
