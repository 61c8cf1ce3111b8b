"""The host-side kill: every command runs under GNU ``timeout -s KILL``, and what a timeout means.

``wizard.remote.shell.ShellRemote`` wraps each command with :func:`guarded` (inside sudo, by way
of ``wizard.remote.sudo.sudo_wrap``, so it can kill root's children): when the timeout runs out,
the host kills the command's whole process group, even when the link is dead. The client's own
deadline is :data:`CLIENT_SLACK` seconds later; the transports signal it with
:class:`ClientDeadline`, and the caller sees :class:`CommandTimedOut` either way, saying whether
the group is known to be killed. Whether a host has GNU ``timeout`` at all is probed once per
connection (``wizard.remote.sudo.HOST_PROBE``); without it (busybox) the client can only close
the channel.
"""

from __future__ import annotations

import shlex

from wizard.errors import RemoteCommandFailed
from wizard.remote.base import short_command

# The client waits this much longer than the host-side kill before it gives up on the channel
# (a dead link, a host too busy to answer): the host's own `timeout` needs no channel.
CLIENT_SLACK = 3
# What a command GNU timeout SIGKILLed reports (the kill reaches `timeout` itself, which is in
# the group it signals): 137 from a shell or sudo, -1 over SSH when `timeout` was exec'd by the
# login shell (sshd sends exit-signal, not exit-status).
KILLED_STATUSES = (128 + 9, -1)


def guarded(command: str, timeout: float) -> str:
    """``command`` under GNU ``timeout``, which SIGKILLs its whole process group after
    ``timeout`` seconds; the host does it even when the link is dead.

    KILL at once, not TERM then ``-k`` KILL: timeout exits as soon as its own child (the
    ``sh``) dies of the TERM, and never sends the KILL to a grandchild that ignored the TERM
    (measured: a ``trap '' TERM`` subshell survived ``timeout -k``).
    """
    return f"{_killer(timeout)} sh -c {shlex.quote(command)}"


def guarded_var(name: str, timeout: float) -> str:
    """:func:`guarded` for a script held in the shell variable ``name`` (sent once, run by
    either of two branches)."""
    if not name.isidentifier() or not name.isascii():
        raise ValueError(f"not a shell variable name: {name!r}")
    return f'{_killer(timeout)} sh -c "${name}"'


def _killer(timeout: float) -> str:
    return f"timeout -s KILL {max(timeout, 0.01):.3f}"



class ClientDeadline(Exception):  # noqa: N818 - a signal between _exec and its caller
    """``_exec``'s own deadline passed. ``killed_here``: the client killed the process tree
    itself (LocalRemote); ``exit_status``: what the host reported before the output ended."""

    def __init__(self, *, killed_here: bool = False, exit_status: int | None = None) -> None:
        super().__init__("deadline")
        self.killed_here = killed_here
        self.exit_status = exit_status



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
