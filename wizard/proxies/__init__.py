"""The supported proxies, by kind."""

from wizard.model import ProxyKind
from wizard.proxies import apache, caddy, haproxy, nginx, node, traefik
from wizard.proxies.base import ProxyProfile

PROFILES: dict[ProxyKind, ProxyProfile] = {
    ProxyKind.NGINX: nginx.PROFILE,
    ProxyKind.APACHE: apache.PROFILE,
    ProxyKind.NODE: node.PROFILE,
    ProxyKind.CADDY: caddy.PROFILE,
    ProxyKind.HAPROXY: haproxy.PROFILE,
    ProxyKind.TRAEFIK: traefik.PROFILE,
}


def profile(kind: ProxyKind) -> ProxyProfile:
    return PROFILES[kind]


__all__ = ["PROFILES", "ProxyProfile", "profile"]
