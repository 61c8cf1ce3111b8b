"""Caddy 2: a site block to import (site) or a whole Caddyfile (full)."""

from wizard.model import DeploySpec, Layout
from wizard.proxies.base import DefaultSite, ProxyProfile, SiteInclude, by_layout, one_daemon
from wizard.proxies.causes import CauseFixes, mebibytes
from wizard.proxies.fixes import Fix, Fixes, FixSite, TimeoutFix, insert_after

# ---- diagnose side: the fixes diagnose prints (wizard.proxies.fixes); the config lines in
# them come rendered from templates/caddy/_macros.j2, these words say where they go.


def _fix_route(site: FixSite) -> str:
    return Fix(f"In the site block {site.server} add, before any catch-all `handle`:\n"
               + site.route_lines, [insert_after(site.server_at, site.route_lines)])


def _fix_rewrite(site: FixSite) -> str:
    stem = site.path.rstrip("/")
    return (f"`handle_path` strips {stem} before proxying. Use `handle {site.path}*` instead "
            f"(route at {site.route}), or keep handle_path and add inside it:\n"
            f"    rewrite * {stem}{{path}}\nor set the server's path to {site.upstream_path}.")


def _fix_sticky(site: FixSite) -> str:
    verb = f"replace `{site.affinity}` with" if site.affinity else "add"
    text = f"In the reverse_proxy block {site.backends_where} {verb}:\n{site.sticky_lines}"
    # The policy's own line is not known: only adding one to a block is an edit.
    return text if site.affinity else Fix(text, [insert_after(site.backends_at,
                                                              site.sticky_lines)])


def _fix_timeout(fix: TimeoutFix) -> str:
    return fix.replace_or_add(f"In the reverse_proxy block {fix.site.upstream} set",
                              fix.site.upstream_at)


FIXES = Fixes(route=_fix_route, rewrite=_fix_rewrite, sticky=_fix_sticky, timeout=_fix_timeout)

CAUSES = CauseFixes(
    keep_host=lambda where: (f"Delete {where}: reverse_proxy passes the client's Host "
                             "(port included) by default."),
    keep_proto=lambda where: (f"Delete {where}: reverse_proxy sets X-Forwarded-Proto to the "
                              "page's scheme by default."),
    body_limit=lambda size, where: (f"Set {where} to at least the server's maxPayload:\n"
                                    f"    request_body {{\n        max_size {mebibytes(size)}MiB\n"
                                    "    }"),
    real_ip=("    lb_policy client_ip_hash\nwith, in the global options block:\n"
             "    servers {\n        trusted_proxies static <each address of the tier in front>\n"
             "    }"),
)


def _reload_drops_websockets(spec: DeploySpec) -> bool:
    # Without stream_close_delay (2.7+) every reload closes live WebSockets at once.
    return spec.stream_close_delay is None


PROFILE = ProxyProfile(
    kind="caddy",
    title="Caddy 2",
    when_to_pick="Automatic HTTPS and WebSockets with no extra config; a one-line reverse_proxy.",
    templates=by_layout("caddy/site.caddy.j2", "caddy/full.caddy.j2"),
    default_dest=by_layout("/etc/caddy/sites/sockwizard.caddy", "/etc/caddy/Caddyfile"),
    binary="caddy",
    version_cmd="caddy version",
    validate_cmd=by_layout("caddy validate --adapter caddyfile --config /etc/caddy/Caddyfile",
                           "caddy validate --adapter caddyfile --config {config}"),
    reload_cmd=by_layout("caddy reload --adapter caddyfile --config /etc/caddy/Caddyfile",
                         "caddy reload --adapter caddyfile --config {config}"),
    install_hint="apt-get install caddy",
    syntax="caddyfile",
    reload_drops_websockets=_reload_drops_websockets,
    # ---- deploy side
    **one_daemon("caddy"),
    systemd_reload={"*": "systemctl reload-or-restart caddy"},
    reload_without_systemd=True,
    validate_before_rename=False,
    # Debian's Caddyfile ships a `:80 { file_server }` placeholder site: it, not an imported
    # site for the same port, answers (a whole Caddyfile replaces it).
    default_site_check=lambda port, layout: [
        f"grep -Eqs '^[[:space:]]*(http://)?:{port}[[:space:]]*\\{{' /etc/caddy/Caddyfile "
        "&& echo 'default_site /etc/caddy/Caddyfile'"] if layout is Layout.SITE else [],
    unshadow_how="delete the placeholder `:80 { ... }` block from the Caddyfile",
    # At the end: outside any block, after a global options block (which must come first).
    site_includes=(SiteInclude(
        site_dir="/etc/caddy/sites", main_config="/etc/caddy/Caddyfile",
        present=r"(?m)^\s*import\s+(/etc/caddy/)?sites/", line="import sites/*.caddy"),),
    site_dir_check=None,
    default_sites=(DefaultSite(path="/etc/caddy/Caddyfile",
                               block=r"^\s*(http://)?:{port}\s*\{{\s*$"),),
    reload_drop_warning=("This reload closes every live WebSocket at once (Caddy without "
                         "stream_close_delay): clients will reconnect together. With Caddy "
                         "2.7+, set --stream-close-delay to keep them open across reloads."),
    # A site block: an address at the start of a line (not the global `{` nor a `(snippet)`).
    marker_anchor=r"^(?![({#\s])\S[^{]*\{\s*$",
    marker_line='\theader {header} "{cid}"\n',
    settle_quiet=0.0,  # caddy reload is synchronous
    # ---- diagnose side
    display_name="Caddy",
    fixes=FIXES,
    standalone_check="caddy adapt --adapter caddyfile --config {config}",

    # ---- tui side
    sticky_how="`lb_policy cookie` on reverse_proxy",
    own_settings=("stream_close_delay",),
    causes=CAUSES,

    # ---- sandbox side (Caddy forwards upgrades by itself: no "no-upgrade" fault)
    fault_edits={
        "no-sticky": ((r"^[ \t]*# Several Socket.IO servers: a cookie.*\n", ""),
                      (r"^[ \t]*lb_policy cookie\n", "")),
    },
)
