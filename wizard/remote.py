"""The one seam between sockwizard and the host it changes: run a command, read and write files.

``wizard/deploy.py`` (the guarded transaction), ``sockwizard sandbox``, ``--host local`` and the
TUI's deploy screen all talk to a host through the :class:`Remote` protocol and never learn which
implementation they hold:

* :class:`LocalRemote` — this machine (the wizard runs on the server itself, or the sandbox).
* ``wizard.ssh.SshRemote`` — one paramiko connection (one SFTP session) per host.
* :class:`InMemoryRemote` — a dict of files and a table of canned command answers, so the
  transaction's branches can be unit-tested in milliseconds, beside the real-sshd tests.

The file operations carry the safety guarantee deploy relies on: a destination is never
half-written. New content goes to a temp file *beside* the target (same directory, so the same
filesystem), is flushed to disk, then renamed over the target in one step. When the login user
cannot write the directory, the content is staged in a directory the user can write and moved
beside the target with ``sudo install``, then renamed with ``sudo mv`` — same guarantee.
Privileged steps go through ``sudo -n`` (or ``sudo -S`` with a password the caller supplied);
when sudo wants a password nobody gave, :class:`~wizard.errors.SudoPasswordRequired` says so.

Every command runs under GNU ``timeout -s KILL`` on the host (inside sudo, so it can kill root's
children), which kills the command's whole process group when its timeout runs out, even when
the link is dead; the client's own deadline is a few seconds later. Whether the host has GNU
``timeout`` is probed once per connection, in the same round trip as the sudo mode; without it
(busybox) the client can only close the channel, and ``notes`` says so.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import os
import posixpath
import re
import secrets
import shlex
import signal
import socket
import stat as stat_mod
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from wizard.errors import (
    ConnectionFailed,
    RemoteCommandFailed,
    SockwizardError,
    SudoPasswordRequired,
)

# Temp files beside a target are named ".NAME.sockwizard-XXXXXXXX.tmp": hidden and not ending in
# .conf, so `include sites-enabled/*` (nginx), `IncludeOptional conf.d/*.conf` (Apache) and
# `import *.caddy` never pick one up while it waits for validation or the rename.
TEMP_MARKER = ".sockwizard-"
DEFAULT_MODE = 0o644
# Exit status our privileged helper scripts use for "no such file" (distinct from cat/stat's 1).
_ABSENT = 44


@dataclass(frozen=True)
class CommandResult:
    """What one command did on the host. ``run`` returns it for any exit status."""

    command: str
    exit_status: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def output(self) -> str:
        """stdout then stderr, as a checker's own output for an error's detail."""
        return self.stdout + self.stderr


@dataclass(frozen=True)
class FileStat:
    """The parts of ``stat`` deploy needs: keep a config's mode and owner across a rewrite."""

    mode: int  # permission bits only (stat.S_IMODE)
    size: int
    mtime: float
    uid: int
    gid: int


@runtime_checkable
class Remote(Protocol):
    """A host sockwizard can change. Paths are POSIX strings on that host."""

    name: str  # "swdeploy@127.0.0.1:2222", "local", ...

    def run(
        self, command: str, *, sudo: bool = False, timeout: float = 60, input: str | None = None
    ) -> CommandResult:
        """Run ``command`` with ``sh``. Never raises for a non-zero exit; raises
        ConnectionFailed when the transport is lost, SudoPasswordRequired when sudo wants a
        password nobody gave, CommandTimedOut (a RemoteCommandFailed) when ``timeout`` runs
        out: the command's whole process group is killed then, on the host, sudo or not."""
        ...

    def read_file(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist (sudo is used when needed)."""
        ...

    def write_file_atomic(self, path: str, data: bytes, *, mode: int | None = None) -> None:
        """Replace ``path`` in one rename; it is never seen half-written. ``mode`` defaults
        to the current file's mode (and owner), else 0644. A symlink at ``path`` is followed."""
        ...

    def upload_temp_beside(self, path: str, data: bytes, *, mode: int | None = None) -> str:
        """Write ``data`` to a new temp file in ``path``'s directory and return its path, for
        validate-then-``rename`` flows; ``remove`` it if validation fails."""
        ...

    def rename(self, src: str, dst: str) -> None:
        """Atomically rename ``src`` over ``dst`` (same directory in practice)."""
        ...

    def exists(self, path: str) -> bool: ...

    def stat(self, path: str) -> FileStat | None:
        """Mode, size, mtime and owner (following symlinks), or None when absent."""
        ...

    def remove(self, path: str) -> None:
        """Delete a file; an absent file is not an error."""
        ...

    def tcp_check(self, host: str, port: int, timeout: float = 3.0) -> bool | str:
        """Whether a TCP connection from the host to ``host:port`` opens: True, or why not
        ("refused", "timed out", ...). No shell is involved (over SSH: a direct-tcpip channel);
        raises ConnectionFailed only when the host itself is lost."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def temp_path_beside(path: str) -> str:
    """A fresh, unguessable temp name in ``path``'s directory (see TEMP_MARKER)."""
    directory, base = posixpath.split(path)
    return posixpath.join(directory, f".{base}{TEMP_MARKER}{secrets.token_hex(4)}.tmp")


# --------------------------------------------------------------------------------------------
# sudo
# --------------------------------------------------------------------------------------------


class SudoMode(Enum):
    """How privileged commands run on a host; probed once per connection, on first use."""

    ROOT = "root"  # already uid 0: run as is
    NOPASSWD = "nopasswd"  # `sudo -n` works
    PASSWORD = "password"  # sudo asks for a password
    MISSING = "missing"  # no sudo binary


# One round trip per connection answers "root? passwordless sudo? sudo at all?" and "is there a
# GNU timeout to kill a command's process group on the host?" (the sudo word comes last).
# LC_ALL=C keeps sudo's and timeout's messages in English so the checks below can read them.
HOST_PROBE = (
    "LC_ALL=C timeout --version 2>/dev/null | head -n 1; "
    'if [ "$(id -u)" -eq 0 ]; then echo root; '
    "elif LC_ALL=C sudo -n true >/dev/null 2>&1; then echo nopasswd; "
    "elif command -v sudo >/dev/null 2>&1; then echo password; "
    "else echo missing; fi"
)
SUDO_PROBE = HOST_PROBE  # the name callers knew

# The client waits this much longer than the host-side kill before it gives up on the channel
# (a dead link, a host too busy to answer): the host's own `timeout` needs no channel.
CLIENT_SLACK = 3
# What a command GNU timeout SIGKILLed reports (the kill reaches `timeout` itself, which is in
# the group it signals): 137 from a shell or sudo, -1 over SSH when `timeout` was exec'd by the
# login shell (sshd sends exit-signal, not exit-status).
_KILLED_STATUSES = (128 + 9, -1)


def parse_sudo_probe(stdout: str) -> SudoMode:
    word = stdout.strip().splitlines()[-1] if stdout.strip() else "missing"
    try:
        return SudoMode(word)
    except ValueError:
        return SudoMode.MISSING


def parse_timeout_probe(stdout: str) -> bool:
    """True when the host's ``timeout`` is GNU coreutils' (it runs the command in its own process
    group and signals the whole group; busybox's signals only the one process)."""
    return "GNU coreutils" in stdout


def guarded(command: str, timeout: float) -> str:
    """``command`` under GNU ``timeout``, which SIGKILLs its whole process group after
    ``timeout`` seconds; the host does it even when the link is dead.

    KILL at once, not TERM then ``-k`` KILL: timeout exits as soon as its own child (the
    ``sh``) dies of the TERM, and never sends the KILL to a grandchild that ignored the TERM
    (measured: a ``trap '' TERM`` subshell survived ``timeout -k``).
    """
    return f"timeout -s KILL {max(timeout, 0.01):.3f} sh -c {shlex.quote(command)}"


def sudo_wrap(
    command: str, mode: SudoMode, *, with_password: bool, timeout: float | None = None
) -> str:
    """The command line that runs ``command`` as root under ``mode``.

    With a password, ``sudo -S -p ''`` reads it from the first stdin line (no prompt text is
    printed, nothing echoes) and ``-k`` makes sudo read it every time: were a cached credential
    used instead, the password line would flow on into the command's own stdin.

    With ``timeout``, the command runs under :func:`guarded` *inside* sudo, so the ``timeout``
    that kills the group is root and can kill root's children (outside, it could only signal
    sudo, which would not reach a command in another process group).
    """
    inner = guarded(command, timeout) if timeout is not None else f"sh -c {shlex.quote(command)}"
    if mode is SudoMode.ROOT:
        return f"exec {inner}" if timeout is not None else command
    if mode is SudoMode.PASSWORD and with_password:
        return f"LC_ALL=C sudo -S -k -p '' -- {inner}"
    return f"LC_ALL=C sudo -n -- {inner}"


_SUDO_HINT = (
    "Pass the sudo password with --sudo-password-stdin (or enter it in the TUI), or allow the "
    "deploy user passwordless sudo for these commands (a NOPASSWD line in /etc/sudoers.d/)."
)


def check_sudo_refusal(result: CommandResult, host: str, user: str) -> None:
    """Raise SudoPasswordRequired when sudo itself (not the command) refused to run."""
    err = result.stderr
    if result.exit_status != 1 or "sudo" not in err:
        return
    if "incorrect password attempt" in err or "Sorry, try again" in err:
        raise SudoPasswordRequired(
            f"sudo on {host} rejected the password given for {user}",
            "Check the sudo password (it is the login password of the deploy user) and try again.",
        )
    if "a password is required" in err or "a terminal is required" in err:
        raise SudoPasswordRequired(f"sudo on {host} needs a password for {user}", _SUDO_HINT)


# --------------------------------------------------------------------------------------------
# The shared implementation: direct file access first, sudo through the shell when denied
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawResult:
    """A finished command's exit status and raw output (bytes: files travel through sudo cat)."""

    exit_status: int
    stdout: bytes
    stderr: bytes
    seconds: float


class ShellRemote(ABC):
    """Everything of :class:`Remote` that does not depend on the transport.

    Subclasses provide command execution (:meth:`_exec`) and *direct* file primitives as the
    login user (``_d_*``: os calls locally, SFTP over SSH) which raise FileNotFoundError and
    PermissionError like the os module. Each public file operation tries the direct way first and
    falls back to a ``sudo`` shell script only on PermissionError, so a root login or a writable
    directory costs no extra process.
    """

    name: str
    user: str

    def __init__(self, *, sudo_password: str | None = None) -> None:
        # Kept only in memory for this session's sudo calls; never logged or shown in repr.
        self.__sudo_password = sudo_password
        self._sudo_mode: SudoMode | None = None
        # Whether the host has GNU timeout to kill a timed-out command's process group (probed
        # once, with the sudo mode); notes say what the user should know about this host.
        self._group_kill: bool | None = None
        self.notes: list[str] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # -- transport primitives ----------------------------------------------------------------

    @abstractmethod
    def _exec(self, command: str, *, timeout: float, stdin: bytes | None) -> RawResult:
        """Run a shell command line as the login user; raise ClientDeadline after ``timeout``."""

    @abstractmethod
    def _d_read(self, path: str) -> bytes: ...

    @abstractmethod
    def _d_stat(self, path: str) -> FileStat: ...

    @abstractmethod
    def _d_readlink(self, path: str) -> str | None:
        """The symlink's target, or None when ``path`` is not a symlink."""

    @abstractmethod
    def _d_create(self, path: str, data: bytes, mode: int) -> None:
        """Create ``path`` exclusively, write, chmod, flush to disk."""

    @abstractmethod
    def _d_chown(self, path: str, uid: int, gid: int) -> None: ...

    @abstractmethod
    def _d_rename(self, src: str, dst: str) -> None: ...

    @abstractmethod
    def _d_remove(self, path: str) -> None: ...

    @abstractmethod
    def _d_sync_dir(self, directory: str) -> None:
        """Make a rename in ``directory`` durable (best effort)."""

    @abstractmethod
    def _staging_dir(self) -> str:
        """A directory the login user can write, for content on its way through sudo."""

    @abstractmethod
    def tcp_check(self, host: str, port: int, timeout: float = 3.0) -> bool | str:
        """See Remote.tcp_check."""

    @abstractmethod
    def close(self) -> None:
        """Release the transport; safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- commands ----------------------------------------------------------------------------

    def sudo_mode(self) -> SudoMode:
        """How this host runs privileged commands (probed once, then cached)."""
        self._probe_host()
        assert self._sudo_mode is not None
        return self._sudo_mode

    def _probe_host(self) -> None:
        """One round trip per connection, before the first command: sudo mode and GNU timeout."""
        if self._group_kill is not None:
            return
        try:
            raw = self._exec(HOST_PROBE, timeout=30, stdin=None)
        except ClientDeadline as exc:
            raise CommandTimedOut(self.name, HOST_PROBE, 30, killed=exc.killed_here,
                                  why="") from None
        stdout = raw.stdout.decode("utf-8", "replace")
        if self._sudo_mode is None:
            self._sudo_mode = parse_sudo_probe(stdout)
        self._group_kill = parse_timeout_probe(stdout)
        if not self._group_kill:
            self.notes.append(
                f"{self.name} has no GNU coreutils `timeout`: a remote command that times out "
                "cannot be killed on the host; sockwizard only closes its channel, and the "
                "command may run on (install coreutils to have it killed)."
            )

    def run(
        self, command: str, *, sudo: bool = False, timeout: float = 60, input: str | None = None
    ) -> CommandResult:
        stdin = input.encode() if input is not None else None
        raw = self._run_raw(command, sudo=sudo, timeout=timeout, stdin=stdin)
        return CommandResult(
            command=command,
            exit_status=raw.exit_status,
            stdout=raw.stdout.decode("utf-8", "replace"),
            stderr=raw.stderr.decode("utf-8", "replace"),
            seconds=raw.seconds,
        )

    def _run_raw(
        self, command: str, *, sudo: bool, timeout: float, stdin: bytes | None
    ) -> RawResult:
        self._probe_host()
        guard = bool(self._group_kill)
        if not sudo:
            line = f"exec {guarded(command, timeout)}" if guard else command
            return self._exec_guarded(line, command, timeout, guard, stdin)
        mode = self.sudo_mode()
        if mode is SudoMode.MISSING:
            raise RemoteCommandFailed(
                f"{self.name} has no sudo and the login user is not root",
                "Install sudo on the host or connect as a user who can write the proxy config.",
            )
        password = self.__sudo_password
        if mode is SudoMode.PASSWORD and password is None:
            raise SudoPasswordRequired(f"sudo on {self.name} needs a password for {self.user}",
                                       _SUDO_HINT)
        line = sudo_wrap(command, mode, with_password=password is not None,
                         timeout=timeout if guard else None)
        if mode is SudoMode.PASSWORD and password is not None:
            stdin = password.encode() + b"\n" + (stdin or b"")
        raw = self._exec_guarded(line, command, timeout, guard, stdin)
        check_sudo_refusal(
            CommandResult(command, raw.exit_status, "", raw.stderr.decode("utf-8", "replace"), 0),
            self.name,
            self.user,
        )
        return raw

    def _exec_guarded(
        self, line: str, command: str, timeout: float, guard: bool, stdin: bytes | None
    ) -> RawResult:
        """Run ``line`` (``command``, wrapped); a timeout becomes CommandTimedOut either way:
        the host's ``timeout`` killed the group (killed by SIGKILL once ``timeout`` has passed), or
        the client's later deadline ran out (the link or the host stopped answering)."""
        client_timeout = timeout + CLIENT_SLACK if guard else timeout
        try:
            raw = self._exec(line, timeout=client_timeout, stdin=stdin)
        except ClientDeadline as exc:
            killed = exc.killed_here or (guard and exc.exit_status in _KILLED_STATUSES)
            why = "" if killed else (
                f"sockwizard stopped waiting after {client_timeout:g} s and closed the channel; "
                f"the host's `timeout` kills the command's process group {timeout:g} s after "
                "its start even with the link down (check with ps on the host)."
                if guard else self.notes[-1] if self.notes else ""
            )
            raise CommandTimedOut(self.name, command, timeout, killed=killed, why=why) from None
        if guard and raw.exit_status in _KILLED_STATUSES and raw.seconds >= timeout:
            raise CommandTimedOut(self.name, command, timeout, killed=True)
        return raw

    def _sudo_script(self, script: str, what: str, *, allow_absent: bool = False) -> RawResult:
        """Run a privileged helper script; any failure but "absent" becomes RemoteCommandFailed."""
        raw = self._run_raw(script, sudo=True, timeout=120, stdin=None)
        if raw.exit_status == 0 or (allow_absent and raw.exit_status == _ABSENT):
            return raw
        raise RemoteCommandFailed(
            f"Could not {what} on {self.name}",
            "Check that the path exists and that the deploy user's sudo allows it.",
            detail=(raw.stdout + raw.stderr).decode("utf-8", "replace"),
        )

    def _fs_error(self, what: str, exc: OSError) -> RemoteCommandFailed:
        reason = exc.strerror or str(exc) or type(exc).__name__
        return RemoteCommandFailed(f"Could not {what} on {self.name}: {reason}")

    # -- files -------------------------------------------------------------------------------

    def read_file(self, path: str) -> bytes | None:
        try:
            return self._d_read(path)
        except FileNotFoundError:
            return None
        except PermissionError:
            q = shlex.quote(path)
            raw = self._sudo_script(
                f"[ -e {q} ] || exit {_ABSENT}; exec cat -- {q}", f"read {path}", allow_absent=True
            )
            return None if raw.exit_status == _ABSENT else raw.stdout
        except OSError as exc:
            raise self._fs_error(f"read {path}", exc) from exc

    def stat(self, path: str) -> FileStat | None:
        try:
            return self._d_stat(path)
        except FileNotFoundError:
            return None
        except PermissionError:
            q = shlex.quote(path)
            raw = self._sudo_script(
                f"[ -e {q} ] || exit {_ABSENT}; exec stat -L -c '%f %s %Y %u %g' -- {q}",
                f"stat {path}",
                allow_absent=True,
            )
            if raw.exit_status == _ABSENT:
                return None
            mode_hex, size, mtime, uid, gid = raw.stdout.decode().split()
            return FileStat(stat_mod.S_IMODE(int(mode_hex, 16)), int(size), float(mtime),
                            int(uid), int(gid))
        except OSError as exc:
            raise self._fs_error(f"stat {path}", exc) from exc

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def remove(self, path: str) -> None:
        try:
            self._d_remove(path)
        except FileNotFoundError:
            return
        except PermissionError:
            self._sudo_script(f"rm -f -- {shlex.quote(path)}", f"remove {path}")
        except OSError as exc:
            raise self._fs_error(f"remove {path}", exc) from exc

    def rename(self, src: str, dst: str) -> None:
        self._rename_resolved(src, self._resolve(dst))

    def _rename_resolved(self, src: str, dst: str) -> None:
        try:
            self._d_rename(src, dst)
        except FileNotFoundError as exc:
            raise self._fs_error(f"rename {src} to {dst}", exc) from exc
        except PermissionError:
            self._sudo_script(
                f"mv -f -- {shlex.quote(src)} {shlex.quote(dst)}", f"rename {src} to {dst}"
            )
        except OSError as exc:
            raise self._fs_error(f"rename {src} to {dst}", exc) from exc
        self._d_sync_dir(posixpath.dirname(dst) or ".")

    def write_file_atomic(self, path: str, data: bytes, *, mode: int | None = None) -> None:
        dest = self._resolve(path)
        tmp = self._write_beside(dest, data, mode, then_rename=True)
        if tmp is None:  # the sudo path already renamed it
            return
        try:
            self._rename_resolved(tmp, dest)
        except BaseException:
            self._remove_quietly(tmp)
            raise

    def upload_temp_beside(self, path: str, data: bytes, *, mode: int | None = None) -> str:
        dest = self._resolve(path)
        tmp = self._write_beside(dest, data, mode, then_rename=False)
        assert tmp is not None
        return tmp

    def _write_beside(
        self, dest: str, data: bytes, mode: int | None, *, then_rename: bool
    ) -> str | None:
        """Put ``data`` in a temp file beside ``dest``. Returns the temp path, or None when the
        sudo path already renamed it over ``dest`` (``then_rename``)."""
        current = self.stat(dest)
        final_mode = mode if mode is not None else (current.mode if current else DEFAULT_MODE)
        tmp = temp_path_beside(dest)
        try:
            self._d_create(tmp, data, final_mode)
        except PermissionError:
            return self._sudo_write(dest, data, final_mode, current, then_rename=then_rename)
        except OSError as exc:
            self._remove_quietly(tmp)
            raise self._fs_error(f"write {dest}", exc) from exc
        if current is not None:
            try:  # keep the config's owner (root writing www-data's file); others may not chown
                self._d_chown(tmp, current.uid, current.gid)
            except PermissionError:
                pass
            except OSError as exc:
                self._remove_quietly(tmp)
                raise self._fs_error(f"write {dest}", exc) from exc
        return tmp

    def _sudo_write(
        self, dest: str, data: bytes, mode: int, current: FileStat | None, *, then_rename: bool
    ) -> str | None:
        """Stage as the login user, then `sudo install` beside ``dest`` (and `mv` over it)."""
        staged = self._stage(data)
        tmp = temp_path_beside(dest)
        owner = f" -o {current.uid} -g {current.gid}" if current is not None else ""
        t, d = shlex.quote(tmp), shlex.quote(dest)
        lines = [
            "set -e",
            # Whatever fails below, never leave a stray temp file beside the config.
            f"trap 'rm -f -- {t}' EXIT"
            if then_rename
            else f"trap '[ $? -eq 0 ] || rm -f -- {t}' EXIT",
            f"install -m {mode:04o}{owner} -- {shlex.quote(staged)} {t}",
            f"sync -- {t} 2>/dev/null || sync",
        ]
        if then_rename:
            # No directory fsync after the rename (one more process, ~2 ms): after a crash the
            # host may come back with the old file, which is whole too.
            lines.append(f"mv -f -- {t} {d}")
        try:
            self._sudo_script("\n".join(lines), f"write {dest}")
        finally:
            self._remove_quietly(staged)
        return None if then_rename else tmp

    def _stage(self, data: bytes) -> str:
        path = posixpath.join(self._staging_dir(), f".sockwizard-upload-{secrets.token_hex(6)}")
        try:
            self._d_create(path, data, 0o600)
        except OSError as exc:
            raise self._fs_error(f"stage an upload in {self._staging_dir()}", exc) from exc
        return path

    def _remove_quietly(self, path: str) -> None:
        with contextlib.suppress(OSError, SockwizardError):
            self.remove(path)

    def _resolve(self, path: str) -> str:
        """Follow a symlink at ``path`` (Debian's sites-enabled/X -> ../sites-available/X) so a
        rename replaces the real file and leaves the link in place."""
        current = path
        for _ in range(40):
            try:
                target = self._d_readlink(current)
            except FileNotFoundError:
                return current
            except PermissionError:
                q = shlex.quote(current)
                raw = self._sudo_script(
                    f"[ -L {q} ] || exit {_ABSENT}; exec readlink -- {q}",
                    f"inspect {current}",
                    allow_absent=True,
                )
                target = None if raw.exit_status == _ABSENT else raw.stdout.decode().rstrip("\n")
            except OSError as exc:
                raise self._fs_error(f"inspect {current}", exc) from exc
            if target is None:
                return current
            current = posixpath.normpath(posixpath.join(posixpath.dirname(current), target))
        raise RemoteCommandFailed(f"Too many levels of symlinks at {path} on {self.name}")


# --------------------------------------------------------------------------------------------
# LocalRemote
# --------------------------------------------------------------------------------------------


class LocalRemote(ShellRemote):
    """This machine: commands through /bin/sh, files through os, sudo only when not root."""

    def __init__(self, *, sudo_password: str | None = None, name: str = "local") -> None:
        super().__init__(sudo_password=sudo_password)
        self.name = name
        self.user = _local_user()
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
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ClientDeadline(killed_here=_kill_session(proc)) from None
        # Killed by a signal: report it as a shell would (128 + N), like the SSH side does.
        status = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        return RawResult(status, out, err, time.monotonic() - start)

    def _d_read(self, path: str) -> bytes:
        return Path(path).read_bytes()

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


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.geteuid())


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
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:  # a survivor still holds the pipes: stop reading them
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


class ClientDeadline(Exception):  # noqa: N818 - a signal between _exec and its caller
    """``_exec``'s own deadline passed. ``killed_here``: the client killed the process tree
    itself (LocalRemote); ``exit_status``: what the host reported before the output ended."""

    def __init__(self, *, killed_here: bool = False, exit_status: int | None = None) -> None:
        super().__init__("deadline")
        self.killed_here = killed_here
        self.exit_status = exit_status


def short_command(command: str, limit: int = 60) -> str:
    """A command on one line, cut to ``limit`` characters, for titles and progress lines."""
    line = " ".join(command.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class CommandTimedOut(RemoteCommandFailed):
    """A remote command outlived its timeout. ``killed`` says whether its process group was
    killed (on the host by GNU timeout, or locally), so callers can report the outcome exactly."""

    def __init__(
        self, host: str, command: str, timeout: float, *, killed: bool, why: str = ""
    ) -> None:
        self.host = host
        self.command = command
        self.short = short_command(command)
        self.timeout = timeout
        self.killed = killed
        if killed:
            title = (f"Command timed out after {timeout:g} s on {host} and was killed: "
                     f"`{self.short}`")
            hint = ("Its whole process group was killed; nothing of it runs on. Run it by hand "
                    "on the host to see why it hangs, or raise the timeout.")
        else:
            title = (f"Command timed out after {timeout:g} s on {host}, not known to be killed: "
                     f"`{self.short}`")
            hint = (why + " " if why else "") + (
                "Run it by hand on the host to see why it hangs, or raise the timeout.")
        super().__init__(title, hint, detail=f"$ {command}")


# --------------------------------------------------------------------------------------------
# InMemoryRemote
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRequest:
    """What a command handler of InMemoryRemote is asked to answer."""

    command: str
    sudo: bool
    input: str | None


@dataclass(frozen=True)
class RemoteCall:
    """One entry of InMemoryRemote.calls: the operation, its path or command, and sudo."""

    op: str
    target: str
    sudo: bool = False
    extra: str = ""


Handler = CommandResult | Callable[[RunRequest], CommandResult]


@dataclass
class _Fault:
    op: str
    error: Exception
    pattern: re.Pattern[str] | None
    times: int


@dataclass
class InMemoryRemote:
    """A fake host for fast branch tests of the deploy transaction.

    ``files`` maps absolute paths to bytes (``modes`` to their permission bits). Commands are
    answered by the first handler whose regex matches (``re.search``), either a canned
    CommandResult or a callable that may also change ``files``; an unmatched command answers
    like a shell that lacks it (exit 127). Every operation is appended to ``calls``. ``fail``
    injects an exception into the next matching operation (e.g. ConnectionFailed in the middle
    of an upload), and ``sudo_needs_password`` makes every sudo call raise SudoPasswordRequired.
    """

    name: str = "memory"
    files: dict[str, bytes] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    sudo_needs_password: bool = False
    calls: list[RemoteCall] = field(default_factory=list)
    closed: bool = False
    _handlers: list[tuple[re.Pattern[str], Handler]] = field(
        default_factory=list, init=False, repr=False
    )
    _faults: list[_Fault] = field(default_factory=list, init=False, repr=False)
    _clock: float = field(default=1_700_000_000.0, init=False, repr=False)
    # tcp_check answers by "host:port"; an address not listed is refused.
    tcp: dict[str, bool | str] = field(default_factory=dict)

    # -- configuration -------------------------------------------------------------------------

    def on(
        self,
        pattern: str,
        handler: Handler | None = None,
        *,
        exit_status: int = 0,
        stdout: str = "",
        stderr: str = "",
    ) -> None:
        """Answer commands matching ``pattern``: with ``handler``, else with the given output.
        Later registrations win over earlier ones, so a test can override a default."""
        if handler is None:
            handler = CommandResult("", exit_status, stdout, stderr, 0.0)
        self._handlers.insert(0, (re.compile(pattern), handler))

    def fail(self, op: str, error: Exception, *, path: str | None = None, times: int = 1) -> None:
        """Raise ``error`` from the next ``times`` calls of ``op`` ("run", "write_file_atomic",
        "upload_temp_beside", "rename", "read_file", ...) whose path/command matches ``path``."""
        pattern = re.compile(path) if path is not None else None
        self._faults.append(_Fault(op, error, pattern, times))

    @property
    def commands(self) -> list[str]:
        """The commands run so far, in order."""
        return [c.target for c in self.calls if c.op == "run"]

    # -- Remote --------------------------------------------------------------------------------

    def run(
        self, command: str, *, sudo: bool = False, timeout: float = 60, input: str | None = None
    ) -> CommandResult:
        self._enter("run", command, sudo=sudo)
        if sudo and self.sudo_needs_password:
            raise SudoPasswordRequired(f"sudo on {self.name} needs a password", _SUDO_HINT)
        request = RunRequest(command, sudo, input)
        for pattern, handler in self._handlers:
            if pattern.search(command):
                result = handler if isinstance(handler, CommandResult) else handler(request)
                return CommandResult(
                    command, result.exit_status, result.stdout, result.stderr, result.seconds
                )
        name = command.split()[0] if command.split() else command
        return CommandResult(command, 127, "", f"sh: 1: {name}: not found\n", 0.0)

    def read_file(self, path: str) -> bytes | None:
        self._enter("read_file", path)
        return self.files.get(path)

    def write_file_atomic(self, path: str, data: bytes, *, mode: int | None = None) -> None:
        self._enter("write_file_atomic", path)
        self._put(path, data, mode)

    def upload_temp_beside(self, path: str, data: bytes, *, mode: int | None = None) -> str:
        self._enter("upload_temp_beside", path)
        tmp = temp_path_beside(path)
        self._put(tmp, data, mode if mode is not None else self.modes.get(path, DEFAULT_MODE))
        return tmp

    def rename(self, src: str, dst: str) -> None:
        self._enter("rename", src, extra=dst)
        if src not in self.files:
            raise RemoteCommandFailed(f"Could not rename {src} to {dst} on {self.name}: "
                                      "No such file or directory")
        self.files[dst] = self.files.pop(src)
        self.modes[dst] = self.modes.pop(src, DEFAULT_MODE)

    def exists(self, path: str) -> bool:
        self._enter("exists", path)
        return path in self.files

    def stat(self, path: str) -> FileStat | None:
        self._enter("stat", path)
        if path not in self.files:
            return None
        return FileStat(self.modes.get(path, DEFAULT_MODE), len(self.files[path]), self._clock,
                        0, 0)

    def remove(self, path: str) -> None:
        self._enter("remove", path)
        self.files.pop(path, None)
        self.modes.pop(path, None)

    def tcp_check(self, host: str, port: int, timeout: float = 3.0) -> bool | str:
        self._enter("tcp_check", f"{host}:{port}")
        return self.tcp.get(f"{host}:{port}", "refused")

    def close(self) -> None:
        self.calls.append(RemoteCall("close", ""))
        self.closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------

    def _enter(self, op: str, target: str, *, sudo: bool = False, extra: str = "") -> None:
        if self.closed:
            raise ConnectionFailed(f"Connection to {self.name} lost during {op} (closed)")
        self.calls.append(RemoteCall(op, target, sudo, extra))
        for fault in self._faults:
            if fault.op == op and fault.times > 0 and (
                fault.pattern is None or fault.pattern.search(target)
            ):
                fault.times -= 1
                raise fault.error

    def _put(self, path: str, data: bytes, mode: int | None) -> None:
        self._clock += 1
        self.files[path] = bytes(data)
        self.modes[path] = mode if mode is not None else self.modes.get(path, DEFAULT_MODE)


# --------------------------------------------------------------------------------------------
# Opening a remote from a --host value
# --------------------------------------------------------------------------------------------


def open_remote(
    host: str,
    *,
    known_hosts: Path | None = None,
    accept_host_key: str | None = None,
    identity: Path | None = None,
    password: str | None = None,
    sudo_password: str | None = None,
    connect_timeout: float = 10,
    passphrase_prompt: Callable[[str], str] | None = None,
    ssh_config: Path | None = None,
) -> ShellRemote:
    """``--host`` value to a connected Remote: "local" is this machine, anything else is
    ``[user@]host[:port]`` or an ~/.ssh/config alias. paramiko is imported only here, so
    ``--host local`` and the other commands never pay for it."""
    if host == "local":
        return LocalRemote(sudo_password=sudo_password)
    from wizard import ssh

    target = ssh.parse_target(host, ssh_config=ssh_config)
    return ssh.SshRemote.connect(
        target,
        known_hosts=known_hosts if known_hosts is not None else ssh.default_known_hosts(),
        accept_host_key=accept_host_key,
        identity=identity,
        password=password,
        sudo_password=sudo_password,
        connect_timeout=connect_timeout,
        passphrase_prompt=passphrase_prompt,
    )
