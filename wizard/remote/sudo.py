"""How privileged commands run on a host: the one-round-trip host probe, sudo wrapping, refusals.

``wizard.remote.shell.ShellRemote`` probes each host once (:data:`HOST_PROBE`: root? passwordless
sudo? sudo at all? GNU timeout?), wraps privileged commands with :func:`sudo_wrap`, and turns
sudo's own refusal into ``SudoPasswordRequired`` with :func:`check_sudo_refusal`;
``wizard.remote.memory.InMemoryRemote`` raises the same error with the same :data:`SUDO_HINT`.
Pure string work: nothing here runs a command.
"""

from __future__ import annotations

import shlex
from enum import Enum

from wizard.errors import SudoPasswordRequired
from wizard.remote.base import CommandResult
from wizard.remote.timeouts import guarded


class SudoMode(Enum):
    """How privileged commands run on a host; probed once per connection, on first use."""

    ROOT = "root"  # already uid 0: run as is
    NOPASSWD = "nopasswd"  # `sudo -n` works
    PASSWORD = "password"  # sudo asks for a password
    MISSING = "missing"  # no sudo binary
    # sudo is there, not tried yet (HOST_PROBE_UNTRIED): the first privileged command runs
    # with `sudo -n` and its outcome says NOPASSWD, or PASSWORD (refused, nothing ran).
    UNTRIED = "sudo"


# One round trip per connection answers "root? passwordless sudo? sudo at all?" and "is there a
# GNU timeout to kill a command's process group on the host?" (the sudo word comes last).
# LC_ALL=C keeps sudo's and timeout's messages in English so the checks below can read them.
# Every process here is CPU on each host of a fleet (bench/bench_hostcpu.py): `case $(…)`
# instead of `| head` runs one program, not two; the login shell's own $EUID (bash, zsh)
# saves running `id`, which is the fallback elsewhere (dash).
def _host_probe(*, try_sudo: bool) -> str:
    present = SudoMode.PASSWORD if try_sudo else SudoMode.UNTRIED
    return (
        "case $(LC_ALL=C timeout --version 2>/dev/null) in "
        "*'GNU coreutils'*) echo 'timeout (GNU coreutils)' ;; esac; "
        'if [ "${EUID:-$(id -u)}" -eq 0 ]; then echo root; '
        + ("elif LC_ALL=C sudo -n true >/dev/null 2>&1; then echo nopasswd; " if try_sudo else "")
        + f"elif command -v sudo >/dev/null 2>&1; then echo {present.value}; "
        "else echo missing; fi"
    )


HOST_PROBE = _host_probe(try_sudo=True)
SUDO_PROBE = HOST_PROBE  # the name callers knew
# Without a sudo password to offer, `sudo -n true` only tells early what the first `sudo -n`
# command tells anyway (a refusal: SudoPasswordRequired, and nothing ran); it costs a whole
# sudo (sudoers, PAM, a fork, `true`: ~7 ms of each host's CPU) per connection.
HOST_PROBE_UNTRIED = _host_probe(try_sudo=False)


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


SUDO_HINT = (
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
        raise SudoPasswordRequired(f"sudo on {host} needs a password for {user}", SUDO_HINT)
