"""A host over SSH: :class:`SshRemote`, one paramiko connection and one SFTP session per host.

``wizard.remote.connect.open_remote`` builds it for every ``--host`` that is not ``local``; the
TUI calls :func:`probe_host_key` to show a fingerprint in a trust modal before anything is
recorded. Failures during commands and file operations are translated here (``_guard``) into
the ``wizard.errors`` family: callers only ever see ConnectionFailed (and its HostKeyUnknown /
HostKeyChanged / SudoPasswordRequired children), RemoteCommandFailed and BadInput.

One connection and one SFTP session per host serve every step; exec channels are cheap after
the first one.
"""

from __future__ import annotations

import contextlib
import hashlib
import select
import stat as stat_mod
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import paramiko
from paramiko.sftp import CMD_EXTENDED

from wizard.errors import ConnectionFailed, NotStarted, SockwizardError
from wizard.remote import inline
from wizard.remote.base import MAX_OUTPUT, FileStat, RawResult, short_command, too_much_output
from wizard.remote.shell import ShellRemote
from wizard.remote.ssh import channels, internals
from wizard.remote.ssh.hostkeys import default_known_hosts, fingerprint
from wizard.remote.ssh.target import SshTarget
from wizard.remote.ssh.transport import QuickTransport, connect_sock, handshake
from wizard.remote.sudo import SudoMode
from wizard.remote.timeouts import ClientDeadline

_LOST_HINT = (
    "The SSH connection dropped (network, sshd restarted, or the host went down). Check the "
    "host and run the command again."
)


EARLY_CHANNEL_WAIT_S = 5.0  # its confirmation follows USERAUTH_SUCCESS on the wire
# How recent a spare channel's confirmation must be to carry a command fed on stdin: the link
# was alive then, so a failure to start is as rare as on a channel opened now.
FRESH_CHANNEL_S = 0.5

class SshRemote(ShellRemote):
    """A host over one paramiko connection; build it with :meth:`connect`."""

    def __init__(
        self,
        client: paramiko.SSHClient,
        target: SshTarget,
        *,
        sudo_password: str | None = None,
        jump: SshRemote | None = None,
        io_timeout: float = 60,
    ) -> None:
        super().__init__(sudo_password=sudo_password)
        transport = client.get_transport()
        assert transport is not None
        self.target = target
        self.name = target.display
        self.user = target.user
        self._client = client
        self._transport = transport
        self._jump = jump
        self._io_timeout = io_timeout
        self._sftp: paramiko.SFTPClient | None = None
        self._spare = channels.SpareChannel(transport, io_timeout)
        if isinstance(transport, QuickTransport):  # the channel opened in the auth flight
            early = transport.take_early_channel()
            if early is not None:
                # An sshd that dropped it (none seen here) must not cost the first command
                # more than this: then it opens a channel of its own.
                self._spare.start(lambda t: early.wait(min(t, EARLY_CHANNEL_WAIT_S)))
        self._home: str | None = None
        if target.user == "root":
            self._sudo_mode = SudoMode.ROOT
        # Notices a dead peer during long idle periods (a TUI holding the connection).
        transport.set_keepalive(15)

    @classmethod
    def connect(
        cls,
        target: SshTarget,
        *,
        known_hosts: Path,
        accept_host_key: str | None = None,
        identity: Path | None = None,
        password: str | None = None,
        sudo_password: str | None = None,
        connect_timeout: float = 10,
        passphrase_prompt: Callable[[str], str] | None = None,
        tuned: bool = True,
    ) -> SshRemote:
        """Connect, check the host key against ``known_hosts``, authenticate.

        ``tuned=False`` drops TCP_NODELAY and the IGNORE answer (only for benchmarks).
        Raises ConnectionFailed (unreachable / auth), HostKeyUnknown, HostKeyChanged, BadInput.
        """
        jump: SshRemote | None = None
        try:
            if target.proxy_jump is not None:
                jump = cls.connect(
                    target.proxy_jump, known_hosts=known_hosts, accept_host_key=accept_host_key,
                    identity=identity, connect_timeout=connect_timeout,
                    passphrase_prompt=passphrase_prompt, tuned=tuned,
                )
            sock = connect_sock(target, connect_timeout, tuned=tuned, jump=jump)
            client = handshake(
                target, sock, known_hosts=known_hosts, accept_host_key=accept_host_key,
                identity=identity, password=password, connect_timeout=connect_timeout,
                passphrase_prompt=passphrase_prompt, tuned=tuned,
            )
        except BaseException:
            if jump is not None:
                jump.close()
            raise
        return cls(client, target, sudo_password=sudo_password, jump=jump)

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        self._spare.close()
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
            self._sftp = None
        self._client.close()
        if self._jump is not None:
            self._jump.close()
            self._jump = None

    @property
    def host_key_sha256(self) -> str | None:
        """The sha256 of the host key this connection verified (the warm path's key:
        ``wizard.deploy.warm``); None when there is none to show."""
        try:
            return hashlib.sha256(self._transport.get_remote_server_key().asbytes()).hexdigest()
        except Exception:  # not connected, or no key: the caller goes without
            return None

    @property
    def active(self) -> bool:
        return self._transport.is_active()

    # -- error boundary ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _guard(self, op: str) -> Iterator[None]:
        """Translate transport failures during ``op``; let file errors through to the caller
        (FileNotFoundError and PermissionError drive the sudo fallback)."""
        try:
            yield
        except (FileNotFoundError, PermissionError, SockwizardError):
            raise
        except TimeoutError as exc:
            if self._transport_died():
                raise self._lost(op, exc) from None
            raise ConnectionFailed(
                f"{self.name} stopped answering during {op} "
                f"(nothing for {self._io_timeout:g} s)", _LOST_HINT) from None
        except EOFError as exc:
            raise self._lost(op, exc) from None
        except paramiko.SSHException as exc:
            if self._transport_died():
                raise self._lost(op, exc) from None
            raise ConnectionFailed(f"SSH error on {self.name} during {op}: {exc}",
                                   "The connection is still up; run the command again.") from None
        except OSError as exc:
            if not self._transport_died():
                raise  # a filesystem error on the host; the file operation words it
            raise self._lost(op, exc) from None

    def _transport_died(self) -> bool:
        """True when the connection is gone. A channel closed without an exit status means the
        link died or the command was killed by a signal; paramiko closes the channels of a dead
        transport a moment before it clears ``active``, so give its thread that moment."""
        if self.active:
            self._transport.join(0.5)
        return not self.active

    def _lost(self, op: str, exc: BaseException, *, started: bool = True) -> ConnectionFailed:
        kind = ConnectionFailed if started else NotStarted
        return kind(f"Connection to {self.name} lost during {op}", _LOST_HINT,
                    detail=str(exc) or type(exc).__name__)

    # -- commands ------------------------------------------------------------------------------

    def _exec(self, command: str, *, timeout: float, stdin: bytes | None) -> RawResult:
        start = time.monotonic()
        deadline = start + timeout
        op = f"`{short_command(command)}`"
        with self._guard(op):
            if not self.active:
                raise self._lost(op, EOFError("connection already closed"), started=False)
            wait = min(timeout, self._io_timeout)
            # A command fed on stdin (a deploy's activation) gets a channel confirmed just now:
            # a link that died before it is then known not to have run it (NotStarted). The
            # spare qualifies when sshd confirmed it that recently (the early channel for a
            # warm deploy's one command, the one opened during detect for the activation):
            # a round trip saved; otherwise a fresh one is opened.
            spare = (self._spare.take(wait) if stdin is None
                     else self._spare.take_fresh(FRESH_CHANNEL_S))
            folded = inline.fold(command, stdin)
            if folded is not None:  # the bytes leave with the exec request
                command, stdin = folded, None
            try:
                chan = spare or self._transport.open_session(timeout=wait)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                # No exec request was sent: the command did not run.
                if self._transport_died():
                    raise self._lost(op, exc, started=False) from None
                raise
            try:
                self._spare.start()  # the next command's channel opens while this one runs
                chan.settimeout(max(timeout, 0.001))
                channels.send_exec(chan, command)
                try:
                    if stdin:
                        chan.sendall(stdin)
                    chan.shutdown_write()
                    out, err = self._collect(chan, deadline)
                    if channels.refused(chan):
                        raise paramiko.SSHException(f"{self.name} refused to run the command")
                except TimeoutError:
                    # Closing the channel does not stop the command (sshd sends no signal):
                    # the caller's host-side `timeout` does. An exit status that did arrive
                    # (a killed group whose escaped child holds stdout) says what happened.
                    status = chan.exit_status if chan.exit_status_ready() else None
                    raise ClientDeadline(exit_status=status) from None
                if not chan.status_event.wait(max(deadline - time.monotonic(), 0.001)):
                    raise ClientDeadline()
                status = chan.exit_status
            finally:
                chan.close()
            if status == -1 and self._transport_died():
                raise self._lost(op, EOFError("channel closed without an exit status"))
        return RawResult(status, out, err, time.monotonic() - start)

    def _collect(self, chan: paramiko.Channel, deadline: float) -> tuple[bytes, bytes]:
        """Read stdout and stderr until EOF, without letting either side's buffer stall, and
        at most ``MAX_OUTPUT`` bytes of both: a host that sends more (hostile, or a command
        gone wrong) fails the command, and the connection is closed, instead of filling this
        machine's memory."""
        out, err = bytearray(), bytearray()
        fd = chan.fileno()  # readable on stdout/stderr data, EOF and close
        while True:
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            if len(out) + len(err) > MAX_OUTPUT:
                # The whole connection goes: the host is still sending on this channel, and
                # paramiko would give its number to the next channel before sshd's close
                # came (seen: that next command found the connection dead, now and then).
                self._transport.close()
                raise too_much_output(self.name, MAX_OUTPUT, "the connection was closed")
            if chan.eof_received or chan.closed:
                if not (chan.recv_ready() or chan.recv_stderr_ready()):
                    return bytes(out), bytes(err)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            select.select([fd], [], [], remaining)

    # -- TCP reachability ----------------------------------------------------------------------

    def tcp_check(self, host: str, port: int, timeout: float = 3.0) -> bool | str:
        """A direct-tcpip channel on this connection: sshd connects to ``host:port`` for us,
        so a host name from a config never reaches a shell on either side."""
        op = f"a TCP check of {host}:{port}"
        try:
            with self._guard(op):
                if not self.active:
                    raise self._lost(op, EOFError("connection already closed"))
                try:
                    chan = self.open_direct(host, port, timeout)
                except paramiko.ChannelException as exc:  # sshd's answer: not a lost link
                    if exc.code == paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
                        return ("not checked: the SSH server forbids TCP forwarding "
                                "(AllowTcpForwarding no)")
                    text = str(exc.text or "").strip()[:200]
                    if exc.code == paramiko.common.OPEN_FAILED_CONNECT_FAILED and \
                            (not text or "refused" in text.lower()):
                        return "refused"
                    return f"failed ({text or exc.code})"
                chan.close()
                return True
        except ConnectionFailed:
            if not self.active:
                raise
            return f"no answer within {timeout:g} s"  # open_channel's own timeout

    def open_direct(self, host: str, port: int, timeout: float) -> paramiko.Channel:
        """A direct-tcpip channel: sshd connects to ``host:port`` for us (a TCP check, or the
        next hop of a ProxyJump). Raises what paramiko raises; callers word it."""
        return self._transport.open_channel(
            "direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)

    # -- SFTP primitives -------------------------------------------------------------------

    def _sftp_client(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            with self._guard("opening SFTP"):
                sftp = self._client.open_sftp()
                sftp.get_channel().settimeout(self._io_timeout)  # type: ignore[union-attr]
                self._sftp = sftp
        return self._sftp

    def _d_read(self, path: str, limit: int) -> bytes:
        sftp = self._sftp_client()
        with self._guard(f"reading {path}"), sftp.open(path, "rb") as handle:
            return handle.read(limit)

    def _d_stat(self, path: str) -> FileStat:
        sftp = self._sftp_client()
        with self._guard(f"stat {path}"):
            attrs = sftp.stat(path)
        return FileStat(stat_mod.S_IMODE(attrs.st_mode or 0), attrs.st_size or 0,
                        float(attrs.st_mtime or 0), attrs.st_uid or 0, attrs.st_gid or 0)

    def _d_readlink(self, path: str) -> str | None:
        sftp = self._sftp_client()
        with self._guard(f"inspecting {path}"):
            if not stat_mod.S_ISLNK(sftp.lstat(path).st_mode or 0):
                return None
            return sftp.readlink(path)

    def _d_create(self, path: str, data: bytes, mode: int) -> None:
        sftp = self._sftp_client()
        with self._guard(f"uploading {path}"), sftp.open(path, "wbx") as handle:
            handle.chmod(mode)  # before any content lands
            handle.write(data)
            handle.flush()
            self._fsync(sftp, handle)

    @staticmethod
    def _fsync(sftp: paramiko.SFTPClient, handle: paramiko.SFTPFile) -> None:
        # OpenSSH's fsync@openssh.com extension (paramiko has no public call for it); a server
        # without it answers with an error we ignore: the rename is still atomic.
        if not internals.SUPPORT.sftp_fsync:
            return
        with contextlib.suppress(OSError):
            cast(Any, sftp)._request(CMD_EXTENDED, "fsync@openssh.com", handle.handle)

    def _d_chown(self, path: str, uid: int, gid: int) -> None:
        sftp = self._sftp_client()
        with self._guard(f"chown {path}"):
            sftp.chown(path, uid, gid)

    def _d_rename(self, src: str, dst: str) -> None:
        sftp = self._sftp_client()
        with self._guard(f"renaming {src}"):
            sftp.posix_rename(src, dst)

    def _d_remove(self, path: str) -> None:
        sftp = self._sftp_client()
        with self._guard(f"removing {path}"):
            sftp.remove(path)

    def _d_sync_dir(self, directory: str) -> None:
        """SFTP cannot fsync a directory; the temp file itself was fsynced before the rename."""

    def _staging_dir(self) -> str:
        if self._home is None:
            sftp = self._sftp_client()
            with self._guard("finding the home directory"):
                self._home = sftp.normalize(".")
        return self._home



def probe_host_key(
    target: SshTarget, timeout: float = 10, *, known_hosts: Path | None = None
) -> tuple[str, str]:
    """The host's key type and SHA256 fingerprint, from a key exchange without logging in.

    The TUI shows them before the user trusts the host; pass the fingerprint back as
    ``accept_host_key`` to record it. A ProxyJump hop must itself be trusted already.
    """
    jump: SshRemote | None = None
    transport: paramiko.Transport | None = None
    try:
        if target.proxy_jump is not None:
            jump = SshRemote.connect(
                target.proxy_jump, connect_timeout=timeout,
                known_hosts=known_hosts if known_hosts is not None else default_known_hosts(),
            )
        sock = connect_sock(target, timeout, tuned=True, jump=jump)
        transport = QuickTransport(cast(Any, sock))
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
        return key.get_name(), fingerprint(key)
    except SockwizardError:
        raise
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise ConnectionFailed(
            f"SSH handshake with {target.known_hosts_name} failed: {exc or type(exc).__name__}",
            "Check that an SSH server listens on that port.",
        ) from None
    finally:
        if transport is not None:
            transport.close()
        if jump is not None:
            jump.close()
