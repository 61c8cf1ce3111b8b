"""HAProxy (2.6 on Debian 12): a frontend + backend for a conf dir (site) or a whole haproxy.cfg.

HAProxy 2.6 has no include directive. Debian's unit runs ``haproxy -Ws -f $CONFIG ...
$EXTRAOPTS`` (``/etc/default/haproxy`` sets both), and ``-f`` also takes a directory (its
``*.cfg`` files, hidden ones skipped, in C-locale order). So the *site* layout is one file in
``/etc/haproxy/conf.d/`` that the host loads with a second ``-f``. When /etc/default/haproxy
does not pass it, ``--edit-main-config`` adds it (``site_includes``: the ``EXTRAOPTS`` line,
or ``-f`` appended to the one there) and the deploy restarts HAProxy once, since a reload
keeps the master's old arguments. RHEL's unit passes ``-f $CFGDIR`` (conf.d) itself, and has
no /etc/default/haproxy: nothing to edit there. The file has no
``defaults`` section of its own (it would change the defaults of every file loaded after it):
its frontend and backend set every timeout they depend on.

Facts measured here (2.6.12): after the 101 the connection is a tunnel and ``timeout tunnel``
is its idle limit (without it ``timeout client``/``server`` apply: Debian's stock 50 s);
``bind … ssl crt F`` wants the key inside F or in ``F.key`` (the whole name plus ``.key``).
"""

from wizard.model import Layout
from wizard.proxies.base import LineExtension, ProxyProfile, SiteInclude, by_layout, one_daemon
from wizard.proxies.causes import CauseFixes
from wizard.proxies.fixes import Fixes, FixSite, TimeoutFix, listed

CONF_DIR = "/etc/haproxy/conf.d"
MAIN = "/etc/haproxy/haproxy.cfg"
DEFAULTS = "/etc/default/haproxy"  # read by Debian's unit (EnvironmentFile)

# ---- diagnose side: the fixes diagnose prints (wizard.proxies.fixes); the config lines in
# them come rendered from templates/haproxy/_macros.j2, these words say where they go.


def _fix_route(site: FixSite) -> str:
    return (f"In the frontend {site.server} add, before any other use_backend, and a backend "
            f"`socketio` with the Socket.IO servers:\n{site.route_lines}")


def _fix_rewrite(site: FixSite) -> str:
    return (f"{site.upstream} changes the path before it reaches the server: remove that "
            f"`http-request replace-path`/`set-path` so {site.path} is forwarded unchanged, or "
            f"set the server's path to {site.upstream_path}.")


def _fix_sticky(site: FixSite) -> str:
    return (f"In {site.backends_where} insert HAProxy's own cookie (one `cookie` value per "
            f"server; `balance source` also sticks, unless every client comes through one "
            f"front proxy or NAT address):\n{site.sticky_lines}\nand send the WebSocket "
            "upgrade to this same backend (no `use_backend … if is_websocket` of its own).")


def _fix_timeout(fix: TimeoutFix) -> str:
    where = listed(fix.existing, "not set")
    return (f"In {fix.site.backends_where} set (now: {fix.directive} at {where}); "
            f"`timeout tunnel` is the WebSocket's idle limit after the upgrade:\n{fix.lines}")


FIXES = Fixes(route=_fix_route, rewrite=_fix_rewrite, sticky=_fix_sticky, timeout=_fix_timeout)

# HAProxy passes the client's Host (with its port) unchanged and has no request-body limit by
# default; X-Forwarded-Proto is set by a rule in the frontend.
CAUSES = CauseFixes(
    keep_host=lambda where: (f"Delete {where}: HAProxy passes the client's Host (port "
                             "included) unchanged by default."),
    keep_proto=lambda where: (f"Replace {where} with, in the frontend:\n"
                              "    http-request set-header X-Forwarded-Proto https if { ssl_fc }\n"
                              "    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }"),
    body_limit=None,
    # `balance source` sees the front tier's addresses, not the clients': use a cookie instead.
    real_ip=("    cookie SERVERID insert indirect nocache\nin the backend, with `cookie s1`, "
             "`cookie s2`, ... on its servers (a cookie does not depend on the client's address)"),
)

PROFILE = ProxyProfile(
    kind="haproxy",
    title="HAProxy",
    when_to_pick="A load balancer first: cookie stickiness and health checks for a cluster.",
    templates=by_layout("haproxy/site.cfg.j2", "haproxy/full.cfg.j2"),
    default_dest=by_layout(f"{CONF_DIR}/sockwizard.cfg", MAIN),
    binary="haproxy",
    version_cmd="haproxy -v",
    # -c checks the files as the service loads them: the main config, then the conf dir.
    validate_cmd=by_layout(f"haproxy -c -q -f {MAIN} -f {CONF_DIR}", "haproxy -c -q -f {config}"),
    # Without systemd there is no generic reload: the master socket or -sf need the pid and
    # argv of the running master, which only the host's own tooling knows (--reload-cmd).
    reload_cmd=by_layout("systemctl reload haproxy"),
    install_hint="apt-get install haproxy   (RHEL: dnf install haproxy)",
    syntax="haproxy",
    # ---- deploy side
    **one_daemon("haproxy"),
    systemd_reload={"*": "systemctl reload-or-restart haproxy"},
    reload_without_systemd=False,
    validate_before_rename=False,
    # The frontend owns its port: another frontend binding it too gets half the connections
    # (SO_REUSEPORT), so any other `bind` on the port in the main config is a shadow.
    default_site_check=lambda port, layout: [
        f"grep -Els '^[[:space:]]*bind[[:space:]]+[^#]*:{port}\\b' {MAIN} 2>/dev/null | "
        "sed 's/^/default_site /'"] if layout is Layout.SITE else [],
    unshadow_how=f"remove the other frontend's `bind` on that port from {MAIN}",
    # Debian's unit runs `haproxy -Ws -f $CONFIG -p $PIDFILE $EXTRAOPTS`, both from
    # /etc/default/haproxy (a drop-in overriding ExecStart is not seen here). Its own
    # default EXTRAOPTS is "-S /run/haproxy-master.sock": the added line keeps it. The
    # master re-executes itself with its first arguments on a reload: restart once.
    site_includes=(SiteInclude(
        site_dir=CONF_DIR, main_config=DEFAULTS,
        present=r"(?m)^\s*(CONFIG|EXTRAOPTS)=.*-f\s+/etc/haproxy/conf\.d/?([\"\s]|$)",
        line=f'EXTRAOPTS="-S /run/haproxy-master.sock -f {CONF_DIR}"',
        extend=LineExtension(sets=r"\s*EXTRAOPTS=",
                             form=r'(?P<head>\s*EXTRAOPTS="[^"$`\\]*?)(?P<tail>\s*"\s*)',
                             insert=f" -f {CONF_DIR}"),
        restart_cmd="systemctl restart haproxy"),),
    site_dir_check=None,
    default_sites=(),  # stock haproxy.cfg has no frontend; another one's bind: by hand
    reload_drop_warning="",
    # `http-after-response`: HAProxy's own error answers (503 without a server) carry it too.
    marker_anchor=r"^(?P<indent>\s*)frontend\s+\S+\s*$",
    marker_line='{indent}    http-after-response set-header {header} "{cid}"\n',
    # Measured (2.6.12, master-worker SIGUSR2 as systemd's reload sends): new connections got
    # the new config 0.14 s after the signal and not one old answer after the first new one
    # (647 requests); the old worker keeps live WebSockets until they close.
    settle_quiet=0.0,
    # ---- diagnose side
    display_name="HAProxy",
    fixes=FIXES,
    # ---- tui side
    sticky_how="a SERVERID cookie HAProxy inserts (`cookie … insert`, one value per server)",
    own_settings_note="Nothing extra: timeout tunnel and timeout server follow the read timeout.",
    causes=CAUSES,
)
