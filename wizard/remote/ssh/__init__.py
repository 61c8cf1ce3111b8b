"""SSH the way OpenSSH users expect, on paramiko — the only package that imports paramiko.

``wizard.remote`` re-exports these names lazily (importing ``wizard.remote`` does not load
paramiko); ``wizard.remote.connect.open_remote`` is how the rest of sockwizard connects.

* :mod:`.target` — ``[user@]host[:port]`` / ~/.ssh/config -> :class:`SshTarget` (ProxyJump too).
* :mod:`.filecache` — known_hosts, keys and ssh config parsed once per file content per process.
* :mod:`.hostkeys` — known_hosts, fingerprints, the refuse-unless-vouched-for policy.
* :mod:`.auth` — keys, ssh-agent, passphrases, password, in OpenSSH's order.
* :mod:`.transport` — the TCP_NODELAY socket, the quick transport, the handshake.
* :mod:`.pipeline` — auth and the first session channel in one flight (two round trips fewer).
* :mod:`.channels` — channels opened one ahead, exec requests sent without waiting.
* :mod:`.internals` — the paramiko privates the above use, checked once, with public fallbacks.
* :mod:`.remote` — :class:`SshRemote` (commands, SFTP) and :func:`probe_host_key`.
* :mod:`.lazy_invoke` — paramiko's ``invoke`` import deferred to a ``Match exec`` (~45 ms).
"""

from __future__ import annotations

from wizard.remote.ssh.lazy_invoke import defer_invoke

defer_invoke()  # before the first paramiko import below

# ruff: noqa: E402 - the imports below must follow defer_invoke()
from wizard.remote.ssh.hostkeys import default_known_hosts, fingerprint, record_host_key
from wizard.remote.ssh.remote import SshRemote, probe_host_key
from wizard.remote.ssh.target import (
    SshTarget,
    config_host_names,
    default_ssh_config,
    parse_target,
)

__all__ = [
    "SshRemote",
    "SshTarget",
    "config_host_names",
    "default_known_hosts",
    "default_ssh_config",
    "fingerprint",
    "parse_target",
    "probe_host_key",
    "record_host_key",
]
