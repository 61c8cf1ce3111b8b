"""The one place a connection to a host is opened: ``--host`` value -> connected Remote.

The CLI's commands (through ``wizard.deploy``), the deploy transaction's reconnect and the TUI's
connector (``wizard.tui.services.default_connector``) all call :func:`open_remote` (or
:func:`open_host` with a settings object). ``local`` is this machine; anything else is
``[user@]host[:port]`` or an ~/.ssh/config alias, reached over SSH. paramiko is imported only
when an SSH host is opened, so ``--host local`` and the other commands never pay for it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from wizard.remote.local import LocalRemote
from wizard.remote.shell import ShellRemote

LOCAL = "local"  # the --host value for this machine
LOOPBACK = "127.0.0.1"  # how a probe reaches a proxy on this machine


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
    ``[user@]host[:port]`` or an ~/.ssh/config alias. Raises ConnectionFailed (and its
    HostKeyUnknown / HostKeyChanged children) or BadInput."""
    if host == LOCAL:
        return LocalRemote(sudo_password=sudo_password)
    from wizard.remote import ssh

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


class ConnectSettings(Protocol):
    """How to reach hosts, as the caller collected it (``wizard.deploy.ConnectOptions``)."""

    @property
    def known_hosts(self) -> Path | None: ...
    @property
    def accept_host_key(self) -> str | None: ...
    @property
    def identity(self) -> Path | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def sudo_password(self) -> str | None: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def passphrase_prompt(self) -> Callable[[str], str] | None: ...
    @property
    def ssh_config(self) -> Path | None: ...


def open_host(host: str, settings: ConnectSettings) -> ShellRemote:
    """:func:`open_remote` with the options in one object (what the commands hold)."""
    return open_remote(
        host, known_hosts=settings.known_hosts, accept_host_key=settings.accept_host_key,
        identity=settings.identity, password=settings.password,
        sudo_password=settings.sudo_password, connect_timeout=settings.connect_timeout,
        passphrase_prompt=settings.passphrase_prompt, ssh_config=settings.ssh_config)


def host_address(host: str, *, ssh_config: Path | None = None) -> str:
    """The address a probe uses to reach ``host``'s proxy: loopback for ``local``, else the
    real host name the SSH target resolves to (HostName from ~/.ssh/config)."""
    if host == LOCAL:
        return LOOPBACK
    from wizard.remote import ssh

    return ssh.parse_target(host, ssh_config=ssh_config).host
