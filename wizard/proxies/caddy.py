"""Caddy 2: a site block to import (site) or a whole Caddyfile (full)."""

from wizard.model import DeploySpec, Layout
from wizard.proxies.base import ProxyProfile


def _reload_drops_websockets(spec: DeploySpec) -> bool:
    # Without stream_close_delay (2.7+) every reload closes live WebSockets at once.
    return spec.stream_close_delay is None


PROFILE = ProxyProfile(
    kind="caddy",
    title="Caddy 2",
    when_to_pick="Automatic HTTPS and WebSockets with no extra config; a one-line reverse_proxy.",
    templates={Layout.SITE: "caddy/site.caddy.j2", Layout.FULL: "caddy/full.caddy.j2"},
    default_dest={Layout.SITE: "/etc/caddy/sites/sockwizard.caddy",
                  Layout.FULL: "/etc/caddy/Caddyfile"},
    binary="caddy",
    version_cmd="caddy version",
    validate_cmd={Layout.SITE: "caddy validate --adapter caddyfile --config /etc/caddy/Caddyfile",
                  Layout.FULL: "caddy validate --adapter caddyfile --config {config}"},
    reload_cmd="caddy reload --adapter caddyfile --config /etc/caddy/Caddyfile",
    install_hint="apt-get install caddy",
    reload_drops_websockets=_reload_drops_websockets,
    # ---- deploy side

    # ---- diagnose side

    # ---- tui side
    sticky_how="`lb_policy cookie` on reverse_proxy",
    own_settings=("stream_close_delay",),
)
