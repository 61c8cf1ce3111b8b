"""What every host looks like to sockwizard: the :class:`Remote` protocol and the values it returns.

``wizard.deploy`` (the guarded transaction), ``wizard.diagnose`` (the config readers),
``wizard.sandbox`` and the TUI hold a :class:`Remote` and never learn which implementation it is:

* ``wizard.remote.local.LocalRemote`` — this machine (``--host local``, the sandbox).
* ``wizard.remote.ssh.SshRemote`` — one paramiko connection (one SFTP session) per host.
* ``wizard.remote.memory.InMemoryRemote`` — the test double: a dict of files and canned answers.

The two real ones share ``wizard.remote.shell.ShellRemote``; ``wizard.remote.connect`` opens
one from a ``--host`` value. This module has no I/O and imports nothing of the others.
"""

from __future__ import annotations

import posixpath
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from wizard.errors import RemoteCommandFailed

# Temp files beside a target are named ".NAME.sockwizard-XXXXXXXX.tmp": hidden and not ending in
# .conf, so `include sites-enabled/*` (nginx), `IncludeOptional conf.d/*.conf` (Apache) and
# `import *.caddy` never pick one up while it waits for validation or the rename.
TEMP_MARKER = ".sockwizard-"
DEFAULT_MODE = 0o644


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
        out: the command's whole process group is killed then, on the host, sudo or not.
        ``input`` is the command's stdin; over SSH a small one travels inside the command line
        (``wizard.remote.inline``): never a secret."""
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



class ClosesOnExit(ABC):
    """``with remote:`` closes it: the context-manager half of :class:`Remote`, shared by the
    implementations."""

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


@dataclass(frozen=True)
class RawResult:
    """A finished command's exit status and raw output (bytes: files travel through sudo cat)."""

    exit_status: int
    stdout: bytes
    stderr: bytes
    seconds: float



def short_command(command: str, limit: int = 60) -> str:
    """A command on one line, cut to ``limit`` characters, for titles and progress lines."""
    line = " ".join(command.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


MAX_PATH_CHARS = 4096
# What ``read_file`` reads at most. Proxy configs, backups and the history index are far smaller;
# a host that points a config at /dev/zero or a huge file gets words, not this machine's memory.
MAX_FILE_BYTES = 16 * 2**20
# stdout + stderr of one command, read at most (a whole `nginx -T` of a big site is a few MB),
# over SSH and on this machine alike.
MAX_OUTPUT = 64 * 2**20


def too_much_output(name: str, limit: int, ended: str) -> RemoteCommandFailed:
    """What a command that printed more than ``limit`` (``MAX_OUTPUT``) bytes fails with;
    ``ended``: what was done about it ("the connection was closed")."""
    return RemoteCommandFailed(
        f"{name} sent more than {limit // 2**20} MiB of output for one command; "
        "sockwizard stopped reading it",
        "No command sockwizard runs prints that much: check what the host runs instead (a "
        f"login script, a wrapper around sudo or the proxy's checker); {ended}.")


def path_problem(path: str) -> str | None:
    """Why a path taken from a config or from the host must not go into a command, or None.
    (It is still shell-quoted; this refuses what quoting cannot make sensible.)"""
    if not path:
        return "an empty path"
    if len(path) > MAX_PATH_CHARS:
        return f"a path of {len(path)} characters (at most {MAX_PATH_CHARS})"
    if any(c in path for c in "\0\n\r"):
        return f"a path with a NUL or line break ({path[:60]!r})"
    if not path.startswith("/"):
        return f"a relative path ({path[:60]!r})"
    return None
