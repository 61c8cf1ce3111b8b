"""Host keys the OpenSSH way: only the given known_hosts file counts, and there is no auto-add.

An unknown key is refused with its SHA256 fingerprint (``HostKeyUnknown``) unless the caller
passes that exact fingerprint, which is then appended to the file; a changed key is always
refused (``HostKeyChanged``, raised by ``wizard.remote.ssh.transport``). ``SshRemote.connect``
installs :class:`HostKeyPolicy`; ``probe_host_key`` (the TUI's trust modal) and
:mod:`~wizard.remote.ssh.auth` use :func:`fingerprint`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import paramiko

from wizard.errors import BadInput, HostKeyUnknown
from wizard.remote.ssh.filecache import FileCache


def default_known_hosts() -> Path:
    return Path.home() / ".ssh" / "known_hosts"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:…`` fingerprint: base64 of sha256 of the key blob, no padding."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _normal_fingerprint(value: str) -> str:
    value = value.strip().rstrip("=")
    return value if value.startswith("SHA256:") else f"SHA256:{value}"


class HostKeyPolicy(paramiko.MissingHostKeyPolicy):
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


def _parse_known_hosts(path: Path) -> paramiko.HostKeys:
    return paramiko.HostKeys(str(path))


# One parse per file content per process (see filecache): the fleet connects from many threads.
KNOWN_HOSTS = FileCache(_parse_known_hosts)


def load_known_hosts(client: paramiko.SSHClient, known_hosts: Path, name: str) -> None:
    """Give ``client`` the known_hosts entries for ``name`` (``host`` or ``[host]:port``).

    paramiko's connect checks the server key with ``get_host_keys().get(name)`` — the same
    ``HostKeys.lookup`` run here on the cached parse — so copying just that host's keys, in
    file order (the first of a type wins, as in lookup), keeps the check exactly as strict:
    no entry -> :class:`HostKeyPolicy` (unknown), another key -> BadHostKeyException (changed).
    """
    if not known_hosts.exists():
        return
    try:
        parsed = KNOWN_HOSTS.get(known_hosts)
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise BadInput(f"Cannot read known_hosts file {known_hosts}: {exc}",
                       "Fix or remove the broken line, or pass another file with --known-hosts.",
                       ) from exc
    keys = parsed.lookup(name)
    if keys is None:
        return
    ours = client.get_host_keys()
    for key_type in dict.fromkeys(keys.keys()):
        ours.add(name, key_type, keys[key_type])
