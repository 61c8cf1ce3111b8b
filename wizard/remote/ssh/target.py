"""Where to connect: ``[user@]host[:port]`` and ~/.ssh/config resolved into an :class:`SshTarget`.

``wizard.remote.connect`` parses every ``--host`` value here before connecting (and to learn the
address a probe uses); the TUI's Target step lists the config's hosts with
:func:`config_host_names`. Values from the command line win over the config, as with ``ssh``;
user and host names are checked strictly, since they end up in known_hosts and messages.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from wizard.errors import BadInput
from wizard.remote.local import local_user
from wizard.remote.ssh.filecache import FileCache

DEFAULT_PORT = 22

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



def default_ssh_config() -> Path:
    return Path.home() / ".ssh" / "config"


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


def _parse_ssh_config(path: Path) -> paramiko.SSHConfig:
    return paramiko.SSHConfig.from_path(str(path))


# Parsed once per file content per process: an inventory of N hosts resolves N targets.
# SSHConfig.lookup only reads the parsed config (it copies what it returns), so one parse is
# shared by every thread.
SSH_CONFIGS = FileCache(_parse_ssh_config)


def _load_ssh_config(path: Path) -> paramiko.SSHConfig:
    if not path.is_file():
        return paramiko.SSHConfig()
    try:
        return SSH_CONFIGS.get(path)
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
    login = user or opts.get("user") or default_user or local_user()
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


def config_host_names(path: Path | None = None) -> list[str]:
    """The concrete ``Host`` names in ~/.ssh/config (patterns with * or ? are left out)."""
    config_path = path or default_ssh_config()
    if not config_path.is_file():
        return []
    try:
        names = SSH_CONFIGS.get(config_path).get_hostnames()
    except Exception:  # a broken config: connecting will report it properly
        return []
    return sorted(n for n in names if not any(c in n for c in "*?!"))
