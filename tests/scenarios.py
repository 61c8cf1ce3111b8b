"""The render scenarios every proxy is checked in: golden files, real checkers, real traffic."""

from __future__ import annotations

from dataclasses import replace

from wizard.model import Backend, DeploySpec, Layout, ProxyKind, Scope

TLS_CERT = "/etc/sockwizard-test/cert.pem"
TLS_KEY = "/etc/sockwizard-test/key.pem"
TLS_PEM = "/etc/sockwizard-test/site.pem"  # certificate and key in one file (HAProxy)

SCENARIOS: dict[str, DeploySpec] = {
    "default": DeploySpec(),
    "custom-path": DeploySpec(path="/my-custom-path/"),
    "scope-socketio": DeploySpec(scope=Scope.SOCKETIO, static_root="/var/www/html"),
    "sticky": DeploySpec(backends=(Backend("127.0.0.1", 3001), Backend("127.0.0.1", 3002))),
    "tls": DeploySpec(server_name="chat.example.com", tls_cert=TLS_CERT, tls_key=TLS_KEY),
}

# Per-proxy extras: what only that proxy has.
EXTRA: dict[ProxyKind, dict[str, DeploySpec]] = {
    ProxyKind.NGINX: {"no-buffering": DeploySpec(proxy_buffering=False, read_timeout=120, send_timeout=120,
                                                 ping_interval_ms=60_000)},
    ProxyKind.APACHE: {"legacy-2.4.41": DeploySpec(apache_version="2.4.41")},
    ProxyKind.CADDY: {"rewrite-to-socket.io": DeploySpec(path="/my-custom-path/",
                                                        server_path="/socket.io/"),
                      "stream-close-delay": DeploySpec(stream_close_delay=300)},
    ProxyKind.NODE: {},
    ProxyKind.HAPROXY: {"tls": DeploySpec(server_name="chat.example.com", tls_cert=TLS_PEM,
                                          tls_key=TLS_PEM),
                        "rewrite-to-socket.io": DeploySpec(path="/my-custom-path/",
                                                           server_path="/socket.io/")},
    ProxyKind.TRAEFIK: {"rewrite-to-socket.io": DeploySpec(path="/my-custom-path/",
                                                          server_path="/socket.io/")},
}

EXTENSIONS = {ProxyKind.NGINX: "conf", ProxyKind.APACHE: "conf", ProxyKind.CADDY: "caddy",
              ProxyKind.NODE: "js", ProxyKind.HAPROXY: "cfg", ProxyKind.TRAEFIK: "yml"}


def cases(layouts: tuple[Layout, ...] = (Layout.SITE, Layout.FULL)
          ) -> list[tuple[str, DeploySpec]]:
    """(id, spec) for every proxy x scenario x layout."""
    out = []
    for kind in ProxyKind:
        named = {**SCENARIOS, **EXTRA[kind]}
        for name, spec in named.items():
            for layout in layouts:
                if kind is ProxyKind.NODE and layout is Layout.FULL:
                    continue  # proxy.js is the whole config in both layouts
                out.append((f"{kind.value}-{name}-{layout.value}",
                            replace(spec, proxy=kind, layout=layout)))
    return out
