"""The spec's vocabulary: the enums, ``Backend``, ``Problem`` and the default values.

Every layer above names these (``ProxyKind`` keys the proxies' registry, ``Layout`` the
render, ``Problem`` the validation messages). They live apart from ``DeploySpec`` because the
value rules in ``wizard.model.checks`` need them while ``DeploySpec.problems()`` needs those
rules: this module is the bottom of the package, so neither imports the other in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DEFAULT_PATH = "/socket.io/"
DEFAULT_PING_INTERVAL_MS = 25_000
DEFAULT_PING_TIMEOUT_MS = 20_000
MAX_TEXT = 253  # longest DNS name; also a sane cap for paths and file names
MAX_BACKENDS = 64  # more is a typo or a hostile file, not a deployment


class ProxyKind(StrEnum):
    NGINX = "nginx"
    APACHE = "apache"
    CADDY = "caddy"
    NODE = "node"
    HAPROXY = "haproxy"
    TRAEFIK = "traefik"


# Every proxy's name, for the flags' help and hints ("nginx|apache|..."): from the enum, so
# a new one is never missed.
PROXY_NAMES = "|".join(kind.value for kind in ProxyKind)


class Scope(StrEnum):
    ALL = "all"  # the whole site goes to the backend (the docs' first nginx example)
    SOCKETIO = "socketio"  # only the Socket.IO path is proxied; the proxy serves a static root


class Layout(StrEnum):
    SITE = "site"  # what a real host includes: conf.d file, vhost, site block, proxy.js
    FULL = "full"  # a complete main config, like the docs' examples


@dataclass(frozen=True)
class Problem:
    """One invalid value: which field, and what is wrong with it (and what would be right)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class Backend:
    """One Socket.IO server the proxy forwards to."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self}"


def shown(value: str) -> str:
    """A value quoted for a message, cut to 40 characters (a hostile file can hold anything)."""
    return repr(value if len(value) <= 40 else value[:37] + "...")
