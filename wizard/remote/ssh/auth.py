"""Who we are to sshd: keys, ssh-agent and passwords, offered in the order OpenSSH users expect.

``wizard.remote.ssh.transport.handshake`` hands :class:`AuthOrder` to paramiko and, on failure,
lists what it ``tried`` (never a secret). A passphrase is asked for only when a key needs one, and
once per prompt function and key file content: key files are read once per process
(:mod:`.filecache`), since a fleet connects to every host from its own thread.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import paramiko
from paramiko.auth_strategy import AuthSource, AuthStrategy, InMemoryPrivateKey, Password

from wizard.errors import BadInput
from wizard.remote.ssh.filecache import FileCache
from wizard.remote.ssh.hostkeys import fingerprint

DEFAULT_KEY_NAMES = ("id_ed25519", "id_ecdsa", "id_rsa")


def _parse_key(path: Path) -> paramiko.PKey:
    return paramiko.PKey.from_path(path)


def _cert_beside(path: Path) -> tuple[Path, ...]:
    return (path.with_name(path.name + "-cert.pub"),)


# Keys without a passphrase, parsed once per file content per process (loading an RSA key
# validates it: milliseconds per connect). A key that needs a passphrase raises here and is
# never cached: each connect asks for it again, as before. paramiko also loads a certificate
# beside the key (KEY-cert.pub), so that file's bytes count too.
KEYS = FileCache(_parse_key, _cert_beside)


class _WrongPassphrase(Exception):
    pass


def _unlock(path: Path, prompt: Callable[[str], str]) -> paramiko.PKey:
    passphrase = prompt(f"Passphrase for {path}: ")
    # paramiko 5 passes it straight to cryptography, which wants bytes (the stubs say str);
    # other versions encode it themselves.
    for secret in (passphrase.encode(), passphrase):
        try:
            return paramiko.PKey.from_path(path, cast(Any, secret))
        except TypeError:
            continue
        except (paramiko.SSHException, OSError, ValueError):
            break
    raise _WrongPassphrase


# Keys unlocked with a passphrase, per prompt function: a fleet's 50 threads share the CLI's
# one prompt, so the user is asked once (the others wait for the answer) and the key is
# decrypted once (bcrypt KDF), instead of 50 prompts at once. Another prompt function (another
# caller) asks again; a wrong answer is not kept. Weak keys: nothing outlives its prompt.
_UNLOCKED: weakref.WeakKeyDictionary[Callable[[str], str], FileCache[paramiko.PKey]] = (
    weakref.WeakKeyDictionary())
_UNLOCKED_LOCK = threading.Lock()


def _unlock_once(path: Path, prompt: Callable[[str], str]) -> paramiko.PKey:
    try:
        with _UNLOCKED_LOCK:
            cache = _UNLOCKED.get(prompt)
            if cache is None:
                ref = weakref.ref(prompt)
                cache = FileCache(lambda p: _unlock(p, ref() or _prompt_gone), _cert_beside)
                _UNLOCKED[prompt] = cache
    except TypeError:  # a callable that cannot be weakly referenced or hashed: no caching
        return _unlock(path, prompt)
    return cache.get(path)


def _prompt_gone(_: str) -> str:  # pragma: no cover - the caller holds its prompt during get()
    raise _WrongPassphrase


class AuthOrder(AuthStrategy):
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
            return KEYS.get(path)
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
        try:
            return _unlock_once(path, self.passphrase_prompt)
        except _WrongPassphrase:
            self.tried.append(f"key {path} (wrong passphrase)")
        except OSError as exc:  # removed or replaced by a directory since is_file()
            self.tried.append(f"key {path} (unreadable: {exc})")
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
