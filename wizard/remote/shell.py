"""Everything of a real host that does not depend on the transport: :class:`ShellRemote`.

``wizard.remote.local.LocalRemote`` and ``wizard.remote.ssh.SshRemote`` subclass it and supply
command execution and *direct* file primitives (os calls, or SFTP).

The file operations carry the safety guarantee deploy relies on: a destination is never
half-written. New content goes to a temp file *beside* the target (same directory, so the same
filesystem), is flushed to disk, then renamed over the target in one step. When the login user
cannot write the directory, the content is staged in a directory the user can write and moved
beside the target with ``sudo install``, then renamed with ``sudo mv`` — same guarantee.
Privileged steps go through ``sudo -n`` (or ``sudo -S`` with a password the caller supplied);
when sudo wants a password nobody gave, :class:`~wizard.errors.SudoPasswordRequired` says so.

Every command runs under GNU ``timeout -s KILL`` on the host (``wizard.remote.timeouts``), probed
once per connection in the same round trip as the sudo mode; without it ``notes`` says so.
"""

from __future__ import annotations

import contextlib
import posixpath
import secrets
import shlex
import stat as stat_mod
from abc import abstractmethod

from wizard.errors import RemoteCommandFailed, SockwizardError, SudoPasswordRequired
from wizard.remote.base import (
    DEFAULT_MODE,
    MAX_FILE_BYTES,
    ClosesOnExit,
    CommandResult,
    FileStat,
    RawResult,
    temp_path_beside,
)
from wizard.remote.inline import FoldableInput
from wizard.remote.sudo import (
    HOST_PROBE,
    HOST_PROBE_UNTRIED,
    SUDO_HINT,
    SudoMode,
    check_sudo_refusal,
    parse_sudo_probe,
    parse_timeout_probe,
    sudo_wrap,
)
from wizard.remote.timeouts import (
    CLIENT_SLACK,
    KILLED_STATUSES,
    ClientDeadline,
    CommandTimedOut,
    guarded,
    guarded_var,
)

# Exit status our privileged helper scripts use for "no such file" (distinct from cat/stat's 1).
_ABSENT = 44


class ShellRemote(ClosesOnExit):
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
    def _d_read(self, path: str, limit: int) -> bytes:
        """At most ``limit`` bytes of the file (more than the caller keeps tells it is over)."""

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

    # -- commands ----------------------------------------------------------------------------

    def sudo_mode(self) -> SudoMode:
        """How this host runs privileged commands (probed once, then cached)."""
        self._probe_host()
        if self._sudo_mode is SudoMode.UNTRIED:  # learnt from a `sudo -n true` of its own
            with contextlib.suppress(SudoPasswordRequired):
                self._run_raw("true", sudo=True, timeout=30, stdin=None)
        assert self._sudo_mode is not None
        return self._sudo_mode

    def _probe_line(self) -> str:
        """With no password to offer, the first `sudo -n` command tells what `sudo -n true`
        would (HOST_PROBE_UNTRIED): one sudo fewer per connection."""
        return HOST_PROBE if self.__sudo_password is not None else HOST_PROBE_UNTRIED

    def _probe_host(self) -> None:
        """One round trip per connection, before the first command: sudo mode and GNU timeout."""
        if self._group_kill is not None:
            return
        probe = self._probe_line()
        try:
            raw = self._exec(probe, timeout=30, stdin=None)
        except ClientDeadline as exc:
            raise CommandTimedOut(self.name, probe, 30, killed=exc.killed_here,
                                  why="") from None
        self._note_probe(raw.stdout.decode("utf-8", "replace"))

    def _note_probe(self, stdout: str) -> None:
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
        # surrogateescape: a file's bytes handed over as ``input`` arrive exactly as they were.
        # Foldable: an SSH host may get it inside the command line (``wizard.remote.inline``).
        stdin = (FoldableInput(input.encode("utf-8", "surrogateescape")) if input is not None
                 else None)
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
        if not sudo and self._group_kill is None:
            folded = self._run_probing(command, timeout, stdin)
            if folded is not None:
                return folded
        self._probe_host()
        guard = bool(self._group_kill)
        if not sudo:
            line = f"exec {guarded(command, timeout)}" if guard else command
            return self._exec_guarded(line, command, timeout, guard, stdin)
        mode = self._sudo_mode
        if mode is SudoMode.MISSING:
            raise RemoteCommandFailed(
                f"{self.name} has no sudo and the login user is not root",
                "Install sudo on the host or connect as a user who can write the proxy config.",
            )
        password = self.__sudo_password
        if mode is SudoMode.PASSWORD and password is None:
            raise SudoPasswordRequired(f"sudo on {self.name} needs a password for {self.user}",
                                       SUDO_HINT)
        assert mode is not None
        untried = mode is SudoMode.UNTRIED  # no password given: `sudo -n`, as for NOPASSWD
        line = sudo_wrap(command, SudoMode.NOPASSWD if untried else mode,
                         with_password=password is not None, timeout=timeout if guard else None)
        if mode is SudoMode.PASSWORD and password is not None:
            stdin = password.encode() + b"\n" + (stdin or b"")
        raw = self._exec_guarded(line, command, timeout, guard, stdin)
        try:
            check_sudo_refusal(
                CommandResult(command, raw.exit_status, "",
                              raw.stderr.decode("utf-8", "replace"), 0),
                self.name,
                self.user,
            )
        except SudoPasswordRequired:
            if untried:  # sudo refused before running anything: it wants a password
                self._sudo_mode = SudoMode.PASSWORD
            raise
        if untried:
            self._sudo_mode = SudoMode.NOPASSWD
        return raw

    def _run_probing(self, command: str, timeout: float, stdin: bytes | None
                     ) -> RawResult | None:
        """The host probe and the first plain command in one channel (one round trip fewer
        per connection): the probe's answer, a random separator, then the command — under
        GNU ``timeout`` when the probe found it. None when the separator never came (the
        command did not run): the caller probes on its own, as before."""
        sep = f"@@sw-probed-{secrets.token_hex(6)}"
        # The command once, in a variable either branch runs: written into both branches it
        # was sent twice (a deploy's first command: 16 KB, 50 KB warm, twice the script).
        line = (f"p=$( {self._probe_line()} ); printf '%s\\n{sep}\\n' \"$p\"; "
                f"swc={shlex.quote(command)}; "
                f'case $p in *"GNU coreutils"*) exec {guarded_var("swc", timeout)} ;; '
                '*) exec sh -c "$swc" ;; esac')
        raw = self._exec_guarded(line, command, timeout, True, stdin)
        head, mark, out = raw.stdout.partition(f"\n{sep}\n".encode())
        if not mark:
            return None
        self._note_probe(head.decode("utf-8", "replace"))
        return RawResult(raw.exit_status, out, raw.stderr, raw.seconds)

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
            killed = exc.killed_here or (guard and exc.exit_status in KILLED_STATUSES)
            why = "" if killed else (
                f"sockwizard stopped waiting after {client_timeout:g} s and closed the channel; "
                f"the host's `timeout` kills the command's process group {timeout:g} s after "
                "its start even with the link down (check with ps on the host)."
                if guard else self.notes[-1] if self.notes else ""
            )
            raise CommandTimedOut(self.name, command, timeout, killed=killed, why=why) from None
        if guard and raw.exit_status in KILLED_STATUSES and raw.seconds >= timeout:
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

    def _sudo_output(self, test: str, path: str, command: str, what: str) -> bytes | None:
        """``command -- path`` as root, or None when ``[ test path ]`` fails (absent)."""
        q = shlex.quote(path)
        raw = self._sudo_script(f"[ {test} {q} ] || exit {_ABSENT}; exec {command} -- {q}", what,
                                allow_absent=True)
        return None if raw.exit_status == _ABSENT else raw.stdout

    def _fs_error(self, what: str, exc: OSError) -> RemoteCommandFailed:
        reason = exc.strerror or str(exc) or type(exc).__name__
        return RemoteCommandFailed(f"Could not {what} on {self.name}: {reason}")

    # -- files -------------------------------------------------------------------------------

    def read_file(self, path: str) -> bytes | None:
        # limit + 1 bytes at most, on either path: one byte over says "too large"
        data: bytes | None
        try:
            data = self._d_read(path, MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return None
        except PermissionError:
            data = self._sudo_output("-e", path, f"head -c {MAX_FILE_BYTES + 1}", f"read {path}")
        except OSError as exc:
            raise self._fs_error(f"read {path}", exc) from exc
        if data is not None and len(data) > MAX_FILE_BYTES:
            raise RemoteCommandFailed(
                f"{path} on {self.name} is larger than {MAX_FILE_BYTES // 2**20} MiB: not a "
                "file sockwizard reads (a proxy config, a backup, its history)",
                "Check the path, and whether it is a link to a device or a log; sockwizard "
                "read no more of it.")
        return data

    def stat(self, path: str) -> FileStat | None:
        try:
            return self._d_stat(path)
        except FileNotFoundError:
            return None
        except PermissionError:
            out = self._sudo_output("-e", path, "stat -L -c '%f %s %Y %u %g'", f"stat {path}")
            if out is None:
                return None
            mode_hex, size, mtime, uid, gid = out.decode().split()
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
                out = self._sudo_output("-L", current, "readlink", f"inspect {current}")
                target = None if out is None else out.decode().rstrip("\n")
            except OSError as exc:
                raise self._fs_error(f"inspect {current}", exc) from exc
            if target is None:
                return current
            current = posixpath.normpath(posixpath.join(posixpath.dirname(current), target))
        raise RemoteCommandFailed(f"Too many levels of symlinks at {path} on {self.name}")
