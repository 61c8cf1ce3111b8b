"""Node.js http-proxy: a runnable proxy.js (both layouts; it is the whole config)."""

from wizard.model import Layout
from wizard.proxies.base import ProxyProfile

PROFILE = ProxyProfile(
    kind="node",
    title="Node.js http-proxy",
    when_to_pick="A small proxy in JavaScript, when the rest of the stack is Node already.",
    templates={Layout.SITE: "node/proxy.js.j2", Layout.FULL: "node/proxy.js.j2"},
    default_dest={Layout.SITE: "/opt/sockwizard/proxy.js", Layout.FULL: "/opt/sockwizard/proxy.js"},
    binary="node",
    version_cmd="node --version",
    validate_cmd={Layout.SITE: "node --check {config}", Layout.FULL: "node --check {config}"},
    reload_cmd="systemctl restart sockwizard-proxy",
    install_hint="apt-get install nodejs npm && npm install http-proxy@1.18.1",
    reload_drops_websockets=lambda spec: True,
    # ---- deploy side

    # ---- diagnose side

    # ---- tui side
    sticky_how="a hash of the client address in proxy.js",
    own_settings_note="Nothing extra: proxy.js is the whole config.",
)
