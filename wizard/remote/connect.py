"""The one place a connection to a host is opened: ``--host`` value -> connected Remote.

The CLI's commands (through ``wizard.deploy``), the deploy transaction's reconnect and the TUI's
connector (``wizard.tui.services.default_connector``) all call :func:`open_remote` (or
:func:`open_host` with a settings object). ``local`` is this machine; anything else is
``[user@]host[:port]`` or an ~/.ssh/config alias, reached over SSH. paramiko is imported only
when an SSH host is opened, so ``--host local`` and the other commands never pay for it.
:class:`Opening` runs the same ``open_host`` on a thread of its own, so that a command can
import and render while the key exchange waits on the network (``deploy``, ``rollback`` and
``diagnose`` to one SSH host).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
    """How to reach hosts, as the caller collected it (:class:`ConnectOptions`)."""

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


@dataclass(frozen=True)
class ConnectOptions:
    """How to reach the hosts (the flags ``wizard.commands`` collect; see :func:`open_remote`)."""

    known_hosts: Path | None = None
    accept_host_key: str | None = None
    identity: Path | None = None
    password: str | None = field(default=None, repr=False)
    sudo_password: str | None = field(default=None, repr=False)
    connect_timeout: float = 10.0
    passphrase_prompt: Callable[[str], str] | None = None
    ssh_config: Path | None = None


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


class Opening:
    """``open_host`` on a thread of its own, started before the caller's own preparation.

    An SSH connect is three exchanges of the key exchange and auth, which leave this process
    idle; a deploy imports its stacks and renders its config meanwhile instead of before or
    after (~150 ms of a cold deploy at 100 ms RTT, bench/RESULTS.md). Only the thread's
    start moves: the connection, its checks and its errors are ``open_host``'s, raised by
    :meth:`remote` in the caller's thread as if it had connected there.
    """

    def __init__(self, host: str, settings: ConnectSettings) -> None:
        self.host = host
        self.settings = settings
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._remote: ShellRemote | None = None
        self._error: BaseException | None = None
        self._taken = False
        self._discarded = False
        if host != LOCAL:
            # paramiko first, here: imported on the thread it competed with the caller's own
            # imports for the GIL, and the first packet left ~25 ms later (measured).
            from wizard.remote import ssh  # noqa: F401
        self.started = time.monotonic()
        self.seconds: float | None = None  # how long the connect took, once it ended
        threading.Thread(target=self._open, name="sockwizard-connect", daemon=True).start()

    def _open(self) -> None:
        try:
            remote = open_host(self.host, self.settings)
        except BaseException as exc:  # raised again by remote(), in the caller's thread
            self._error = exc
        else:
            with self._lock:
                self._remote = remote
                close = self._discarded
            if close:
                remote.close()
        finally:
            self.seconds = time.monotonic() - self.started
            self._done.set()

    def remote(self) -> ShellRemote:
        """The open remote (once), or what ``open_host`` raised; waits for the connect."""
        self._done.wait()
        with self._lock:
            if self._taken or self._discarded:
                raise RuntimeError("this connection was already taken or discarded")
            self._taken = True
            remote, error = self._remote, self._error
        if error is not None:
            raise error
        assert remote is not None
        return remote

    def discard(self) -> None:
        """Not needed after all: closed now, or as soon as it is open."""
        with self._lock:
            if self._taken or self._discarded:
                return
            self._discarded = True
            remote = self._remote
        if remote is not None:
            remote.close()
