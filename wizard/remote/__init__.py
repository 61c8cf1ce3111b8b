"""The one seam between sockwizard and the host it changes: run a command, read and write files.

``wizard.deploy`` (the guarded transaction), ``wizard.diagnose``, ``sockwizard sandbox``,
``--host local`` and the TUI talk to a host through the :class:`Remote` protocol and never learn
which implementation they hold. The package, in the order its modules import each other:

* :mod:`.base` — the protocol and its values (CommandResult, FileStat, RawResult).
* :mod:`.timeouts` — GNU ``timeout`` on the host kills a timed-out command's process group.
* :mod:`.sudo` — the one-round-trip host probe and how privileged commands are wrapped.
* :mod:`.shell` — :class:`ShellRemote`, the transport-independent half of the real hosts.
* :mod:`.local` — :class:`LocalRemote`, this machine.
* :mod:`.memory` — :class:`InMemoryRemote`, the test double.
* :mod:`.connect` — :func:`open_remote`, the one place a connection is opened (:class:`Opening`:
  the same, on a thread, while the caller prepares).
* :mod:`.ssh` — paramiko, and only there: :class:`SshRemote`, targets, host keys, auth.

The SSH names (``SshRemote``, ``parse_target``, ...) are exported here too, but loaded on first
use, so that importing ``wizard.remote`` (every command does) never imports paramiko.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wizard.remote.base import (
    DEFAULT_MODE,
    MAX_PATH_CHARS,
    TEMP_MARKER,
    CommandResult,
    FileStat,
    RawResult,
    Remote,
    path_problem,
    short_command,
    temp_path_beside,
)
from wizard.remote.connect import (
    LOCAL,
    LOOPBACK,
    ConnectOptions,
    ConnectSettings,
    Opening,
    host_address,
    open_host,
    open_remote,
)
from wizard.remote.local import LocalRemote, local_tcp_check, local_user
from wizard.remote.memory import Handler, InMemoryRemote, RemoteCall, RunRequest
from wizard.remote.shell import ShellRemote
from wizard.remote.sudo import (
    HOST_PROBE,
    SUDO_HINT,
    SUDO_PROBE,
    SudoMode,
    check_sudo_refusal,
    parse_sudo_probe,
    parse_timeout_probe,
    sudo_wrap,
)
from wizard.remote.timeouts import (
    CLIENT_SLACK,
    ClientDeadline,
    CommandTimedOut,
    guarded,
    guarded_var,
)

if TYPE_CHECKING:
    from wizard.remote.ssh import (
        SshRemote,
        SshTarget,
        config_host_names,
        default_known_hosts,
        default_ssh_config,
        fingerprint,
        parse_target,
        probe_host_key,
        record_host_key,
    )

# Loaded from wizard.remote.ssh on first access (PEP 562), which is when paramiko is imported.
_SSH_NAMES = frozenset({
    "SshRemote", "SshTarget", "config_host_names", "default_known_hosts", "default_ssh_config",
    "fingerprint", "parse_target", "probe_host_key", "record_host_key",
})


def __getattr__(name: str) -> object:
    if name in _SSH_NAMES:
        from wizard.remote import ssh

        return getattr(ssh, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CLIENT_SLACK",
    "DEFAULT_MODE",
    "HOST_PROBE",
    "LOCAL",
    "LOOPBACK",
    "MAX_PATH_CHARS",
    "SUDO_HINT",
    "SUDO_PROBE",
    "TEMP_MARKER",
    "ClientDeadline",
    "CommandResult",
    "CommandTimedOut",
    "ConnectOptions",
    "ConnectSettings",
    "FileStat",
    "Handler",
    "InMemoryRemote",
    "LocalRemote",
    "Opening",
    "RawResult",
    "Remote",
    "RemoteCall",
    "RunRequest",
    "ShellRemote",
    "SshRemote",
    "SshTarget",
    "SudoMode",
    "check_sudo_refusal",
    "config_host_names",
    "default_known_hosts",
    "default_ssh_config",
    "fingerprint",
    "guarded",
    "guarded_var",
    "host_address",
    "local_tcp_check",
    "local_user",
    "open_host",
    "open_remote",
    "parse_sudo_probe",
    "parse_target",
    "parse_timeout_probe",
    "path_problem",
    "probe_host_key",
    "record_host_key",
    "short_command",
    "sudo_wrap",
    "temp_path_beside",
]
