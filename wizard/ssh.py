"""SSH the way OpenSSH users expect, on paramiko: targets, host keys, auth, and ``SshRemote``.

``wizard.remote.open_remote`` (the CLI's ``--host``) and the deploy transaction reach a host
through :class:`SshRemote`; the TUI calls :func:`probe_host_key` to show a fingerprint in a
trust modal before anything is recorded. Every paramiko and socket exception is translated here,
at this one boundary, into the ``wizard.errors`` family: callers only ever see ConnectionFailed
(and its HostKeyUnknown / HostKeyChanged / SudoPasswordRequired children), RemoteCommandFailed
and BadInput.

Decisions, measured on loopback (see the report in the PR and shared/TESTBED.md):

* One connection and one SFTP session per host for every step; exec channels are cheap after
  the first one.
* We open the TCP socket ourselves with ``TCP_NODELAY``: paramiko writes a packet in pieces, and
  with Nagle on every channel request waits for the peer's delayed ACK (~40 ms each).
* sshd sends a ``hostkeys-00@openssh.com`` global request right after auth that wants no reply;
  with nothing to send, our ACK is delayed and sshd's Nagle holds the first channel's open
  confirmation behind it (~45 ms). :class:`_QuickTransport` answers it with ``SSH_MSG_IGNORE``.
* Host keys: only the given known_hosts file counts. An unknown key is refused with its SHA256
  fingerprint unless the caller passes that exact fingerprint (then it is appended to the file);
  a changed key is always refused. There is no auto-add.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import os
import re
import select
import socket
import stat as stat_mod
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import paramiko
from paramiko.auth_strategy import (
    AuthFailure,
    AuthSource,
    AuthStrategy,
    InMemoryPrivateKey,
    Password,
)
from paramiko.common import cMSG_IGNORE
from paramiko.message import Message
from paramiko.sftp import CMD_EXTENDED

from wizard.errors import (
    BadInput,
    ConnectionFailed,
    HostKeyChanged,
    HostKeyUnknown,
    SockwizardError,
)
from wizard.remote import (
    ClientDeadline,
    FileStat,
    RawResult,
    ShellRemote,
    SudoMode,
    short_command,
)

DEFAULT_PORT = 22
DEFAULT_KEY_NAMES = ("id_ed25519", "id_ecdsa", "id_rsa")

# What a user name / host name may contain. Stricter than OpenSSH on purpose: these strings end
# up in known_hosts lines, log lines and error messages, so anything a shell or a config parser
# could read as syntax (whitespace, ; quotes $ ` \ newline) is refused outright.
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})")
_IPV6_RE = re.compile(r"[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*(?:%[A-Za-z0-9_.-]+)?")
_HOSTILE = {
    " ": "a space", "\t": "a tab", "\n": "a newline", "\r": "a carriage return", ";": "';'",
    "'": "a quote", '"': "a quote", "`": "a backquote", "$": "'$'", "\\": "a backslash",
}


def default_known_hosts() -> Path:
    return Path.home() / ".ssh" / "known_hosts"


def default_ssh_config() -> Path:
    return Path.home() / ".ssh" / "config"


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SshTarget:
    """Where to connect, resolved from ``[user@]host[:port]`` and ~/.ssh/config."""

    host: str  # the real host name or address (HostName), never bracketed
    port: int = DEFAULT_PORT
    user: str = "root"
    identity_files: tuple[Path, ...] = ()  # IdentityFile lines from ssh config
    proxy_jump: SshTarget | None = None  # the last hop before this host (chains nest)
    alias: str = ""  # what the user typed
    proxy_command: str | None = None  # ProxyCommand from ssh config, already expanded

    @property
    def known_hosts_name(self) -> str:
        """The host's name in known_hosts: ``host`` on port 22, ``[host]:port`` otherwise."""
        return self.host if self.port == DEFAULT_PORT else f"[{self.host}]:{self.port}"

    @property
    def display(self) -> str:
        """``user@host:port`` (IPv6 in brackets), as progress lines and errors show it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"


def parse_target(
    text: str, *, ssh_config: Path | None = None, default_user: str | None = None
) -> SshTarget:
    """``[user@]host[:port]``, ``user@[v6addr]:port``, ``ssh://…`` or an ~/.ssh/config alias.

    Values from the command line win over the config (as with ``ssh``); the config supplies
    HostName, User, Port, IdentityFile, ProxyJump (chains too) and ProxyCommand. Raises BadInput
    for anything malformed or hostile.
    """
    user, host, port = _split_target(text)
    config = _load_ssh_config(ssh_config if ssh_config is not None else default_ssh_config())
    return _resolve(text, user, host, port, config, default_user, depth=0)


def _bad_target(text: str, why: str) -> BadInput:
    return BadInput(
        f"Invalid SSH target {text!r}: {why}",
        "Use [USER@]HOST[:PORT] (IPv6 as [ADDR]:PORT) or a Host alias from ~/.ssh/config.",
    )


def _split_target(text: str) -> tuple[str | None, str, int | None]:
    raw = text
    for ch, what in _HOSTILE.items():
        if ch in raw:
            raise _bad_target(text, f"it contains {what}")
    if raw.startswith("ssh://"):
        raw = raw[len("ssh://"):].rstrip("/")
    if not raw:
        raise _bad_target(text, "it is empty")
    user: str | None = None
    if "@" in raw:
        user, _, raw = raw.rpartition("@")
        _check_user(text, user)
    port_text: str | None = None
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise _bad_target(text, "'[' without ']'")
        host, rest = raw[1:end], raw[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise _bad_target(text, f"unexpected {rest!r} after ']'")
            port_text = rest[1:]
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
    else:
        host = raw  # a name, or a bare IPv6 address (several colons, no port)
    _check_host(text, host)
    port = _parse_port(text, port_text) if port_text is not None else None
    return user, host, port


def _parse_port(text: str, value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise _bad_target(text, f"port {value!r} is not a number from 1 to 65535")
    return int(value)


def _check_user(text: str, user: str) -> None:
    if not _USER_RE.fullmatch(user):
        raise _bad_target(text, f"user name {user!r} is not a plain login name")


def _check_host(text: str, host: str) -> None:
    if not host:
        raise _bad_target(text, "no host name")
    if ":" in host:
        if not _IPV6_RE.fullmatch(host):
            raise _bad_target(text, f"{host!r} is not an IPv6 address")
    elif not _HOSTNAME_RE.fullmatch(host):
        raise _bad_target(text, f"host name {host!r} has characters a host name cannot have")


def _load_ssh_config(path: Path) -> paramiko.SSHConfig:
    if not path.is_file():
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_path(str(path))
    except Exception as exc:  # paramiko raises assorted types for a broken config
        raise BadInput(f"Cannot read the SSH config {path}: {exc}",
                       "Fix the file (ssh -G HOST shows what OpenSSH makes of it).") from exc


def _lookup(config: paramiko.SSHConfig, text: str, host: str) -> dict[str, Any]:
    try:
        return dict(config.lookup(host))
    except Exception as exc:  # Match exec, bad tokens, ...
        raise BadInput(f"Cannot apply ~/.ssh/config to {text!r}: {exc}") from exc


def _resolve(
    text: str,
    user: str | None,
    host: str,
    port: int | None,
    config: paramiko.SSHConfig,
    default_user: str | None,
    *,
    depth: int,
    jump_override: SshTarget | None = None,
    in_chain: bool = False,
) -> SshTarget:
    if depth > 8:
        raise _bad_target(text, "ProxyJump chain is too long (a loop?)")
    opts = _lookup(config, text, host)
    real_host = str(opts.get("hostname", host))
    _check_host(text, real_host)
    login = user or opts.get("user") or default_user or _local_user()
    _check_user(text, str(login))
    if port is None:
        port = _parse_port(text, str(opts.get("port", DEFAULT_PORT)))
    identities = tuple(Path(os.path.expanduser(str(p))) for p in opts.get("identityfile", []))
    proxy_command = opts.get("proxycommand")
    jump = jump_override
    jump_spec = opts.get("proxyjump")
    if not in_chain and jump_spec and str(jump_spec).lower() != "none":
        jump = _resolve_chain(text, str(jump_spec), config, depth)
    return SshTarget(
        host=real_host,
        port=port,
        user=str(login),
        identity_files=identities,
        proxy_jump=jump,
        alias=text,
        proxy_command=str(proxy_command) if proxy_command and jump is None else None,
    )


def _resolve_chain(text: str, spec: str, config: paramiko.SSHConfig, depth: int) -> SshTarget:
    """``ProxyJump a,b``: connect to a, through it to b, through b to the target. A hop's own
    ProxyJump is ignored (the chain says it all), which also rules out loops."""
    previous: SshTarget | None = None
    for hop in spec.split(","):
        user, host, port = _split_target(hop.strip())
        previous = _resolve(hop, user, host, port, config, None, depth=depth + 1,
                            jump_override=previous, in_chain=True)
    assert previous is not None
    return previous


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "root"


# --------------------------------------------------------------------------------------------
# Host keys
# --------------------------------------------------------------------------------------------


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:…`` fingerprint: base64 of sha256 of the key blob, no padding."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _normal_fingerprint(value: str) -> str:
    value = value.strip().rstrip("=")
    return value if value.startswith("SHA256:") else f"SHA256:{value}"


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko only for a host absent from known_hosts: refuse with the fingerprint,
    unless it is exactly the one the user vouched for; then record it and go on."""

    def __init__(self, known_hosts: Path, accept: str | None) -> None:
        self.known_hosts = known_hosts
        self.accept = _normal_fingerprint(accept) if accept else None

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        fp = fingerprint(key)
        if self.accept != fp:
            raise HostKeyUnknown(hostname, key.get_name(), fp, str(self.known_hosts))
        record_host_key(self.known_hosts, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)


def record_host_key(known_hosts: Path, hostname: str, key: paramiko.PKey) -> None:
    """Append one plain ``name type base64`` line, keeping every other line (comments, hashed
    entries) as it was — paramiko's save_host_keys would rewrite the whole file."""
    line = f"{hostname} {key.get_name()} {key.get_base64()}\n".encode()
    try:
        known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(known_hosts, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise BadInput(f"Cannot record the host key in {known_hosts}: {exc.strerror or exc}",
                       "Pass a writable file with --known-hosts.") from exc


def _load_known_hosts(client: paramiko.SSHClient, known_hosts: Path) -> None:
    if not known_hosts.exists():
        return
    try:
        client.load_host_keys(str(known_hosts))
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise BadInput(f"Cannot read known_hosts file {known_hosts}: {exc}",
                       "Fix or remove the broken line, or pass another file with --known-hosts.",
                       ) from exc


# --------------------------------------------------------------------------------------------
# Sockets and the transport
# --------------------------------------------------------------------------------------------


class _QuickTransport(paramiko.Transport):
    """A client transport that answers sshd's post-auth ``hostkeys-00@openssh.com`` (want-reply
    false) with SSH_MSG_IGNORE, so our ACK leaves at once and sshd's Nagle does not hold the
    first channel-open confirmation for a delayed-ACK period (~45 ms, measured)."""

    def _parse_global_request(self, m: Message) -> None:
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


def _open_socket(host: str, port: int, timeout: float, *, nodelay: bool) -> socket.socket:
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


# --------------------------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------------------------


class _AuthOrder(AuthStrategy):
    """Explicit identity, ssh-config IdentityFiles, ssh-agent, default keys, then password.

    Sources are produced lazily, so a passphrase is only asked for when the key before it was
    refused. ``tried`` lists what was offered (never a secret) for the failure message.
    """

    def __init__(
        self,
        user: str,
        *,
        identity: Path | None,
        config_identities: tuple[Path, ...],
        password: str | None,
        passphrase_prompt: Callable[[str], str] | None,
    ) -> None:
        super().__init__(ssh_config=paramiko.SSHConfig())
        self.user = user
        self.identity = identity
        self.config_identities = config_identities
        self.__password = password
        self.passphrase_prompt = passphrase_prompt
        self.tried: list[str] = []
        self._agent: paramiko.Agent | None = None

    def get_sources(self) -> Iterator[AuthSource]:
        seen: set[str] = set()

        def fresh(key: paramiko.PKey) -> bool:
            fp = fingerprint(key)
            if fp in seen:
                return False
            seen.add(fp)
            return True

        if self.identity is not None and not self.identity.is_file():
            raise BadInput(f"Identity file {self.identity} not found",
                           "Pass the private key file with --identity.")
        explicit = [self.identity] if self.identity is not None else []
        for path in [*explicit, *self.config_identities]:
            key = self._load(path)
            if key is not None and fresh(key):
                self.tried.append(f"key {path}")
                yield InMemoryPrivateKey(self.user, key)
        agent_keys = self._agent_keys()
        for agent_key in agent_keys:
            if fresh(agent_key):
                yield InMemoryPrivateKey(self.user, agent_key)
        self.tried.append(f"ssh-agent ({len(agent_keys)} key{'s' * (len(agent_keys) != 1)})"
                          if agent_keys else "ssh-agent (none running)")
        defaults = [Path.home() / ".ssh" / n for n in DEFAULT_KEY_NAMES]
        for path in defaults:
            if path.is_file() and path not in explicit and path not in self.config_identities:
                key = self._load(path)
                if key is not None and fresh(key):
                    self.tried.append(f"key {path}")
                    yield InMemoryPrivateKey(self.user, key)
        if self.__password is not None:
            self.tried.append("password")
            password = self.__password
            yield Password(self.user, lambda: password)

    def _load(self, path: Path) -> paramiko.PKey | None:
        if not path.is_file():
            return None
        try:
            return paramiko.PKey.from_path(path)
        except (paramiko.PasswordRequiredException, TypeError):
            # paramiko 4+ hands OpenSSH-format keys to cryptography, which says "encrypted, no
            # password" with a TypeError; older formats raise PasswordRequiredException.
            pass
        except (paramiko.SSHException, OSError, ValueError) as exc:
            self.tried.append(f"key {path} (unreadable: {exc})")
            return None
        if self.passphrase_prompt is None:
            self.tried.append(f"key {path} (skipped: it needs a passphrase)")
            return None
        passphrase = self.passphrase_prompt(f"Passphrase for {path}: ")
        # paramiko 5 passes it straight to cryptography, which wants bytes (the stubs say str);
        # other versions encode it themselves.
        for secret in (passphrase.encode(), passphrase):
            try:
                return paramiko.PKey.from_path(path, cast(Any, secret))
            except TypeError:
                continue
            except (paramiko.SSHException, OSError, ValueError):
                break
        self.tried.append(f"key {path} (wrong passphrase)")
        return None

    def _agent_keys(self) -> tuple[paramiko.PKey, ...]:
        if not os.environ.get("SSH_AUTH_SOCK"):
            return ()
        try:
            self._agent = paramiko.Agent()
            return tuple(self._agent.get_keys())
        except (paramiko.SSHException, OSError):
            return ()

    def close(self) -> None:
        if self._agent is not None:
            self._agent.close()
            self._agent = None


# --------------------------------------------------------------------------------------------
# SshRemote
# --------------------------------------------------------------------------------------------


_LOST_HINT = (
    "The SSH connection dropped (network, sshd restarted, or the host went down). Check the "
    "host and run the command again."
)


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
            sock = _connect_sock(target, connect_timeout, tuned=tuned, jump=jump)
            client = _handshake(
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
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
            self._sftp = None
        self._client.close()
        if self._jump is not None:
            self._jump.close()
            self._jump = None

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

    def _lost(self, op: str, exc: BaseException) -> ConnectionFailed:
        return ConnectionFailed(f"Connection to {self.name} lost during {op}", _LOST_HINT,
                                detail=str(exc) or type(exc).__name__)

    # -- commands ------------------------------------------------------------------------------

    def _exec(self, command: str, *, timeout: float, stdin: bytes | None) -> RawResult:
        start = time.monotonic()
        deadline = start + timeout
        op = f"`{short_command(command)}`"
        with self._guard(op):
            if not self.active:
                raise self._lost(op, EOFError("connection already closed"))
            chan = self._transport.open_session(timeout=min(timeout, self._io_timeout))
            try:
                chan.settimeout(max(timeout, 0.001))
                chan.exec_command(command)
                try:
                    if stdin:
                        chan.sendall(stdin)
                    chan.shutdown_write()
                    out, err = self._collect(chan, deadline)
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
        """Read stdout and stderr until EOF, without letting either side's buffer stall."""
        out, err = bytearray(), bytearray()
        fd = chan.fileno()  # readable on stdout/stderr data, EOF and close
        while True:
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
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
                    chan = self._transport.open_channel(
                        "direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
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

    # -- SFTP primitives -------------------------------------------------------------------

    def _sftp_client(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            with self._guard("opening SFTP"):
                sftp = self._client.open_sftp()
                sftp.get_channel().settimeout(self._io_timeout)  # type: ignore[union-attr]
                self._sftp = sftp
        return self._sftp

    def _d_read(self, path: str) -> bytes:
        sftp = self._sftp_client()
        with self._guard(f"reading {path}"), sftp.open(path, "rb") as handle:
            return handle.read()

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


def _connect_sock(
    target: SshTarget, timeout: float, *, tuned: bool, jump: SshRemote | None
) -> socket.socket | paramiko.Channel | paramiko.ProxyCommand:
    if jump is not None:
        try:
            return jump._transport.open_channel(
                "direct-tcpip", (target.host, target.port), ("127.0.0.1", 0), timeout=timeout
            )
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
    return _open_socket(target.host, target.port, timeout, nodelay=tuned)


def _handshake(
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
    auth = _AuthOrder(target.user, identity=identity, config_identities=target.identity_files,
                      password=password, passphrase_prompt=passphrase_prompt)
    try:
        _load_known_hosts(client, known_hosts)
        client.set_missing_host_key_policy(_HostKeyPolicy(known_hosts, accept_host_key))
        client.connect(
            target.host,
            port=target.port,
            username=target.user,
            sock=cast(Any, sock),
            timeout=connect_timeout,
            banner_timeout=connect_timeout,
            auth_timeout=connect_timeout,
            channel_timeout=connect_timeout,
            transport_factory=cast(Any, _QuickTransport) if tuned else None,
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
    exc: BaseException, target: SshTarget, known_hosts: Path, auth: _AuthOrder
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


# --------------------------------------------------------------------------------------------
# Probing a host key (TUI trust modal)
# --------------------------------------------------------------------------------------------


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
        sock = _connect_sock(target, timeout, tuned=True, jump=jump)
        transport = _QuickTransport(cast(Any, sock))
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


__all__ = [
    "SshRemote",
    "SshTarget",
    "default_known_hosts",
    "fingerprint",
    "parse_target",
    "probe_host_key",
    "record_host_key",
]
