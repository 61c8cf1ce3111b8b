"""One error family for sockwizard.

Every error the user can see carries a short ``title`` (what happened) and a ``hint``
(what to do next), plus the process exit code the CLI maps it to. Third-party exceptions
(paramiko, OSError, socketio) are translated into these at one boundary per module, so the
CLI and the TUI only ever handle ``SockwizardError``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented process exit codes (README, "Exit codes")."""

    OK = 0
    FAILED = 1  # the command ran but its check failed (probe not on WebSocket, findings)
    BAD_INPUT = 2  # invalid flags or spec: nothing was changed
    CONNECTION = 3  # unreachable, auth failed, host key unknown/changed, sudo needs a password
    VALIDATE_ROLLED_BACK = 4  # the proxy's checker refused the new config; old one kept
    RELOAD_ROLLED_BACK = 5  # reload failed; previous config restored
    PROBE_ROLLED_BACK = 6  # live probe through the new config failed; previous config restored
    ROLLBACK_FAILED = 7  # restoring the previous config failed: the host needs attention
    INTERRUPTED = 130


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
        parts = [self.title]
        if self.detail:
            parts.append(self.detail.rstrip())
        if self.hint:
            parts.append(self.hint)
        return "\n".join(parts)


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


class HostKeyUnknown(ConnectionFailed):
    """The host's key is not in known_hosts; the fingerprint is shown so the user can check it."""

    def __init__(self, host: str, key_type: str, fingerprint: str, known_hosts: str) -> None:
        self.host = host
        self.key_type = key_type
        self.fingerprint = fingerprint
        self.known_hosts = known_hosts
        super().__init__(
            f"Unknown SSH host key for {host}: {key_type} {fingerprint}",
            "Check the fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then "
            f"run again with --accept-host-key {fingerprint} to record it in {known_hosts}.",
        )


class HostKeyChanged(ConnectionFailed):
    """The host presented a different key from the one recorded: possible interception."""

    def __init__(self, host: str, key_type: str, fingerprint: str, known_hosts: str) -> None:
        self.host = host
        self.key_type = key_type
        self.fingerprint = fingerprint
        self.known_hosts = known_hosts
        super().__init__(
            f"WARNING: the SSH host key for {host} HAS CHANGED (now {key_type} {fingerprint}).",
            "Someone could be intercepting the connection, or the host was reinstalled. "
            "Refusing to connect. If the change is expected, remove the old line from "
            f"{known_hosts} "
            f"(ssh-keygen -R '{host}' -f {known_hosts}) and check the new fingerprint.",
        )


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
