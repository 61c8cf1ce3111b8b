"""One error family for sockwizard, and the process exit codes it maps to.

Every error the user can see carries a short ``title`` (what happened) and a ``hint`` (what to
do next), plus the ``ExitCode`` the CLI returns for it. Third-party exceptions (paramiko,
OSError, socketio) are translated into these at one boundary per module, so the CLI and the TUI
only ever handle ``SockwizardError``; ``wizard.cli.main`` is the one place that turns one into
a process exit status.

The tree (exit code in brackets)::

    SockwizardError                 [1]  base: title, hint, detail
    ├── InvalidSpec                 [2]  the spec (flags, TOML, form) has problems, each named
    ├── BadInput                    [2]  a flag or file that cannot be used
    ├── ProbeFailed                 [2]  the probe could not start (bad URL...)
    ├── ConnectionFailed            [3]  unreachable, authentication
    │   ├── HostKeyUnknown          [3]  not in known_hosts: the fingerprint to check
    │   ├── HostKeyChanged          [3]  a different key than recorded: refuse
    │   └── SudoPasswordRequired    [3]  sudo -n refused
    ├── DeployFailed                [1, 4-7]  a deploy step failed; carries its own code
    ├── RemoteCommandFailed         [1]  a command on the host exited non-zero
    ├── MissingTool                 [1]  a local binary is missing
    ├── ConfigReadError             [1]  (wizard.diagnose) the live config could not be read
    └── SandboxError                [1]  (wizard.sandbox) the sandbox could not start

``ExitCode`` is the documented table: each member's docstring is its meaning, and the CLI's
``--help`` epilogs and the README's "Exit codes" table are generated from it
(``wizard.commands._print.exit_codes_epilog`` / ``exit_codes_markdown``; a test keeps the
README in step).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum


class ExitCode(IntEnum):
    """The documented process exit codes; each member's docstring is its meaning."""

    def __new__(cls, value: int, doc: str) -> ExitCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.__doc__ = doc
        return member

    OK = 0, ("ok: the command did what it says (deployed, restored, or nothing to change; "
             "--dry-run; the probe passed; no error finding)")
    FAILED = 1, ("the check failed (probe not on WebSocket, an error finding), or a deploy "
                 "stopped before changing anything (another deploy holds the file's lock) or "
                 "kept a failing config (--no-rollback)")
    BAD_INPUT = 2, ("bad input: every problem is listed, naming its flag; or nothing to roll "
                    "back; nothing was changed")
    CONNECTION = 3, ("cannot connect: unreachable, authentication, host key, sudo password; "
                     "or the connection dropped")
    VALIDATE_ROLLED_BACK = 4, "validation failed: the previous config was kept"
    RELOAD_ROLLED_BACK = 5, "reload failed: the previous config was restored and reloaded"
    PROBE_ROLLED_BACK = 6, "probe failed: the previous config was restored and reloaded"
    ROLLBACK_FAILED = 7, ("rollback failed: the host needs attention (the message says where "
                          "the backup is)")
    INTERRUPTED = 130, "interrupted (Ctrl-C)"

    @property
    def meaning(self) -> str:
        return self.__doc__ or ""

    @classmethod
    def most_serious(cls, codes: Iterable[ExitCode]) -> ExitCode:
        """One exit code for several hosts: the one that most needs a human (OK when none)."""
        present = set(codes)
        return next((c for c in _SEVERITY if c in present), cls.OK)


# Most serious first: a host that needs attention outranks a dropped connection, which
# outranks a config that was put back, which outranks a refusal that changed nothing.
_SEVERITY = (ExitCode.ROLLBACK_FAILED, ExitCode.CONNECTION, ExitCode.PROBE_ROLLED_BACK,
             ExitCode.RELOAD_ROLLED_BACK, ExitCode.VALIDATE_ROLLED_BACK, ExitCode.FAILED,
             ExitCode.BAD_INPUT)


def paragraph(title: str, detail: str, hint: str) -> str:
    """What happened, the evidence (if any), what to do: the one shape of every failure message
    (errors here, and a deploy's result in ``wizard.deploy.result``)."""
    parts = [title]
    if detail:
        parts.append(detail.rstrip())
    if hint:
        parts.append(hint)
    return "\n".join(parts)


class SockwizardError(Exception):
    """Base of every error sockwizard reports to a user."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, title: str, hint: str = "", *, detail: str = "") -> None:
        super().__init__(title)
        self.title = title
        self.hint = hint
        self.detail = detail  # e.g. the checker's own output

    def message(self) -> str:
        """One paragraph for stderr or a modal: what happened, evidence, what to do."""
        return paragraph(self.title, self.detail, self.hint)


class InvalidSpec(SockwizardError):
    """The spec (flags, TOML or form) has problems; each names its field."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, problems: list[object]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"Invalid input ({len(problems)} problem{'s' if len(problems) != 1 else ''}):",
            "Fix the values above and run the command again; nothing was written.",
            detail=lines,
        )


class BadInput(SockwizardError):
    """A flag or file the user gave cannot be used (not a spec field)."""

    exit_code = ExitCode.BAD_INPUT


class ConnectionFailed(SockwizardError):
    """The host could not be reached or would not let us in."""

    exit_code = ExitCode.CONNECTION


class NotStarted(ConnectionFailed):
    """The connection was gone before the command was sent: it certainly did not run (a
    deploy that had changed nothing yet can say so)."""


class HostKeyProblem(ConnectionFailed):
    """The host's key could not be trusted: the key it showed and the known_hosts file. Each
    kind of problem says it in its own words (:meth:`words`)."""

    def __init__(self, host: str, key_type: str, fingerprint: str, known_hosts: str) -> None:
        self.host = host
        self.key_type = key_type
        self.fingerprint = fingerprint
        self.known_hosts = known_hosts
        super().__init__(*self.words())

    def words(self) -> tuple[str, str]:
        """(title, hint)."""
        return f"SSH host key problem for {self.host}", ""


class HostKeyUnknown(HostKeyProblem):
    """The host's key is not in known_hosts; the fingerprint is shown so the user can check it."""

    def words(self) -> tuple[str, str]:
        return (f"Unknown SSH host key for {self.host}: {self.key_type} {self.fingerprint}",
                "Check the fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), "
                f"then run again with --accept-host-key {self.fingerprint} to record it in "
                f"{self.known_hosts}.")


class HostKeyChanged(HostKeyProblem):
    """The host presented a different key from the one recorded: possible interception."""

    def words(self) -> tuple[str, str]:
        return (f"WARNING: the SSH host key for {self.host} HAS CHANGED (now {self.key_type} "
                f"{self.fingerprint}).",
                "Someone could be intercepting the connection, or the host was reinstalled. "
                "Refusing to connect. If the change is expected, remove the old line from "
                f"{self.known_hosts} (ssh-keygen -R '{self.host}' -f {self.known_hosts}) and "
                "check the new fingerprint.")


class SudoPasswordRequired(ConnectionFailed):
    """sudo -n refused: the user must supply a sudo password or allow NOPASSWD."""


class RemoteCommandFailed(SockwizardError):
    """A command on the host exited non-zero (the output is in ``detail``)."""


class DeployFailed(SockwizardError):
    """A deploy step failed; ``exit_code`` says which and whether the rollback worked."""

    def __init__(self, title: str, hint: str = "", *, detail: str = "",
                 exit_code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(title, hint, detail=detail)
        self.exit_code = exit_code


class ProbeFailed(SockwizardError):
    """The probe could not run at all (bad URL...), as opposed to a probe that ran and failed."""

    exit_code = ExitCode.BAD_INPUT


class MissingTool(SockwizardError):
    """A binary sockwizard needs locally is missing; the hint gives the install command."""
