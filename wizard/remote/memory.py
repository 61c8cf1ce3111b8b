"""The test double: :class:`InMemoryRemote`, a fake host in a dict.

Tests of the deploy transaction, the config readers and the TUI use it to reach every branch in
milliseconds (beside the real-sshd tests), and ``scripts/screenshots.py`` to stage a host. It
speaks the :class:`~wizard.remote.base.Remote` protocol and raises what the real ones raise.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from wizard.errors import ConnectionFailed, RemoteCommandFailed, SudoPasswordRequired
from wizard.remote.base import DEFAULT_MODE, ClosesOnExit, CommandResult, FileStat, temp_path_beside
from wizard.remote.sudo import SUDO_HINT


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
class InMemoryRemote(ClosesOnExit):
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
            raise SudoPasswordRequired(f"sudo on {self.name} needs a password", SUDO_HINT)
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
