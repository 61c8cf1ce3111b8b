"""From a target to an authenticated paramiko client: the socket, the transport, the handshake.

``SshRemote.connect`` and ``probe_host_key`` (``wizard.remote.ssh.remote``) call these. Every
paramiko and socket exception of a connect is translated here into the ``wizard.errors`` family.

Decisions, measured on loopback (see shared/TESTBED.md):

* We open the TCP socket ourselves with ``TCP_NODELAY``: paramiko writes a packet in pieces, and
  with Nagle on every channel request waits for the peer's delayed ACK (~40 ms each).
* sshd sends a ``hostkeys-00@openssh.com`` global request right after auth that wants no reply;
  with nothing to send, our ACK is delayed and sshd's Nagle holds the first channel's open
  confirmation behind it (~45 ms). :class:`QuickTransport` answers it with ``SSH_MSG_IGNORE``.
* :class:`QuickTransport` authenticates in one flight and opens the first session channel in
  the same flight (:mod:`.pipeline`): two round trips fewer per connect.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import paramiko
from paramiko.auth_handler import AuthHandler
from paramiko.auth_strategy import AuthFailure
from paramiko.common import MSG_UNIMPLEMENTED, cMSG_IGNORE
from paramiko.message import Message

from wizard.errors import ConnectionFailed, HostKeyChanged, SockwizardError
from wizard.remote.ssh import internals
from wizard.remote.ssh.auth import AuthOrder
from wizard.remote.ssh.hostkeys import HostKeyPolicy, fingerprint, load_known_hosts
from wizard.remote.ssh.pipeline import EarlyChannel, PipelinedAuthHandler
from wizard.remote.ssh.target import SshTarget

if TYPE_CHECKING:
    from wizard.remote.ssh.remote import SshRemote

# paramiko logs a failed handshake's traceback from its transport thread ("Exception (client):
# Error reading SSH protocol banner" and the stack); with no handler anywhere, logging's last
# resort printed it on stderr above our own words for the same failure. With a NullHandler on
# its logger it stays off stderr; a program that configures logging still gets the records.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class QuickTransport(paramiko.Transport):
    """A client transport without idle round trips (each part off when paramiko lacks what it
    needs, see :mod:`.internals`):

    * auth in one flight, and the first session channel opened in it (:mod:`.pipeline`);
    * sshd's post-auth ``hostkeys-00@openssh.com`` (want-reply false) answered with
      SSH_MSG_IGNORE, so our ACK leaves at once and sshd's Nagle does not hold the first
      channel-open confirmation for a delayed-ACK period (~45 ms, measured).
    """

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        self._auth: AuthHandler | None = None
        self.early_channel: EarlyChannel | None = None
        super().__init__(sock, *args, **kwargs)
        # sshd's answer to an early CHANNEL_OPEN behind a failed auth: expected, not worth
        # paramiko's "Oops, unhandled type" warning on the user's terminal.
        table = getattr(self, "_handler_table", None)
        self._early_ok = isinstance(table, dict)
        if isinstance(table, dict):
            table[MSG_UNIMPLEMENTED] = self._parse_unimplemented

    # paramiko's auth_* methods make a fresh ``AuthHandler(self)`` for every attempt: swap in
    # the pipelined one there, whichever method (key, agent key, password, keyboard-interactive).
    @property
    def auth_handler(self) -> AuthHandler | None:
        return self._auth

    @auth_handler.setter
    def auth_handler(self, handler: AuthHandler | None) -> None:
        if type(handler) is AuthHandler and internals.SUPPORT.pipelined_auth:
            handler = PipelinedAuthHandler(self)
        self._auth = handler

    def open_early_channel(self) -> Message | None:
        """The CHANNEL_OPEN to send behind a USERAUTH_REQUEST (PipelinedAuthHandler holds
        ``self.lock``), or None: one is on its way, paramiko lacks the internals, or the server
        is not OpenSSH (see :mod:`.pipeline`)."""
        if (self.early_channel is not None or not self._early_ok
                or not internals.SUPPORT.early_channel or self.server_mode
                or not self.remote_version.startswith("SSH-2.0-OpenSSH_")):
            return None
        self.early_channel = EarlyChannel(self)
        return self.early_channel.message

    def abandon_early_channel(self) -> None:
        early, self.early_channel = self.early_channel, None
        if early is not None:
            early.abandon()

    def take_early_channel(self) -> EarlyChannel | None:
        """The channel opened with the successful auth, once (``SshRemote`` adopts it)."""
        early, self.early_channel = self.early_channel, None
        return early

    def _parse_unimplemented(self, m: Message) -> None:
        m.get_int()  # the sequence number of the packet sshd did not take: nothing to do

    def _parse_global_request(self, m: Message) -> None:
        if not internals.SUPPORT.ignore_reply:
            cast(Any, super())._parse_global_request(m)
            return
        m.get_text()
        want_reply = m.get_boolean()
        m.rewind()
        # paramiko's own handler (private in the stubs) rejects/ignores the request as before.
        cast(Any, super())._parse_global_request(m)
        if not want_reply and not self.server_mode:
            ignore = Message()
            ignore.add_byte(cMSG_IGNORE)
            ignore.add_string(b"")
            # Already on the transport thread, where paramiko sends its own replies this way.
            cast(Any, self)._send_message(ignore)


def open_socket(host: str, port: int, timeout: float, *, nodelay: bool) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectionFailed(
            f"Cannot resolve host name {host}: {exc.strerror}",
            "Check the spelling, DNS, or the HostName in ~/.ssh/config.",
        ) from exc
    reasons: list[str] = []
    for family, kind, proto, _, addr in infos:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.connect(addr)
            return sock
        except TimeoutError:
            reasons.append(f"no answer within {timeout:g} s")
        except ConnectionRefusedError:
            reasons.append("connection refused")
        except OSError as exc:
            reasons.append(exc.strerror or str(exc))
        sock.close()
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    raise ConnectionFailed(
        f"Cannot reach {where} ({'; '.join(dict.fromkeys(reasons)) or 'no address'})",
        "Check the host name and port, that sshd is running there, and that no firewall drops "
        "the connection.",
    )


def connect_sock(
    target: SshTarget, timeout: float, *, tuned: bool, jump: SshRemote | None
) -> socket.socket | paramiko.Channel | paramiko.ProxyCommand:
    if jump is not None:
        try:
            return jump.open_direct(target.host, target.port, timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectionFailed(
                f"Cannot reach {target.host}:{target.port} through {jump.name}: {exc}",
                "Check that the jump host can reach the target (ssh -J works the same way).",
            ) from None
    if target.proxy_command:
        try:
            return paramiko.ProxyCommand(target.proxy_command)
        except (paramiko.SSHException, OSError) as exc:
            raise ConnectionFailed(f"ProxyCommand for {target.alias} failed: {exc}") from None
    return open_socket(target.host, target.port, timeout, nodelay=tuned)


def handshake(
    target: SshTarget,
    sock: socket.socket | paramiko.Channel | paramiko.ProxyCommand,
    *,
    known_hosts: Path,
    accept_host_key: str | None,
    identity: Path | None,
    password: str | None,
    connect_timeout: float,
    passphrase_prompt: Callable[[str], str] | None,
    tuned: bool,
) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    auth = AuthOrder(target.user, identity=identity, config_identities=target.identity_files,
                      password=password, passphrase_prompt=passphrase_prompt)
    try:
        load_known_hosts(client, known_hosts, target.known_hosts_name)
        client.set_missing_host_key_policy(HostKeyPolicy(known_hosts, accept_host_key))
        client.connect(
            target.host,
            port=target.port,
            username=target.user,
            sock=cast(Any, sock),
            timeout=connect_timeout,
            banner_timeout=connect_timeout,
            auth_timeout=connect_timeout,
            channel_timeout=connect_timeout,
            transport_factory=cast(Any, QuickTransport) if tuned else None,
            auth_strategy=auth,
        )
        return client
    except BaseException as exc:
        client.close()
        with contextlib.suppress(Exception):
            sock.close()
        raise _translate_connect_error(exc, target, known_hosts, auth) from None
    finally:
        auth.close()


def _translate_connect_error(
    exc: BaseException, target: SshTarget, known_hosts: Path, auth: AuthOrder
) -> BaseException:
    if isinstance(exc, SockwizardError) or not isinstance(exc, Exception):
        return exc
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyChanged(target.known_hosts_name, exc.key.get_name(), fingerprint(exc.key),
                              str(known_hosts))
    if isinstance(exc, paramiko.AuthenticationException):
        tried = ", ".join(auth.tried) or "nothing (no key, agent or password available)"
        failure = f"\n{exc.result}" if isinstance(exc, AuthFailure) else f" {exc}"
        return ConnectionFailed(
            f"Authentication failed for {target.user}@{target.host}",
            f"Tried: {tried}. Check the user name, pass the right key with --identity or load it "
            "into ssh-agent, or use --password-stdin if the host allows passwords.",
            detail=f"Server answers:{failure}",
        )
    where = target.known_hosts_name
    return ConnectionFailed(
        f"SSH handshake with {where} failed: {exc or type(exc).__name__}",
        "Check that an SSH server (not another service) listens on that port and that it "
        "accepts modern algorithms (ed25519/ecdsa/rsa-sha2).",
    )
