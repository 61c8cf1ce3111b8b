"""Apache httpd 2.4: a <VirtualHost> for sites-available/ (site) or a whole httpd.conf (full)."""

from wizard.model import DeploySpec
from wizard.proxies.base import DefaultSite, ProxyProfile, SiteInclude, by_layout
from wizard.proxies.causes import CauseFixes
from wizard.proxies.fixes import (
    Edit,
    Fix,
    Fixes,
    FixSite,
    Spot,
    TimeoutFix,
    insert_after,
    listed,
    replace_at,
    worded,
)

# ---- diagnose side: the fixes diagnose prints (wizard.proxies.fixes); the config lines in
# them come rendered from templates/apache/_macros.j2, these words say where they go.


def _fix_route(site: FixSite) -> str:
    # Right after the <VirtualHost> line is above any `ProxyPass /` in it.
    return Fix(f"In {site.scope} ({site.server}) add, above any `ProxyPass /`:\n"
               f"{site.route_lines}", [insert_after(site.server_at, site.route_lines)])


def _fix_rewrite(site: FixSite) -> str:
    return (f"Make the target keep the path: {site.upstream} should forward {site.path} to "
            f"http://{site.backend}{site.path} (and the same for ProxyPassReverse), or "
            f"set the server's path to {site.upstream_path}.")


def _fix_sticky(site: FixSite) -> str:
    return (f"In {site.backends_where} give every member a route and pin clients with a cookie:\n"
            f"{site.sticky_lines}\n"
            "(mod_headers; with the ws:// rewrite recipe, give its balancer the same routes)")


def _fix_timeout(fix: TimeoutFix) -> str:
    lines = fix.lines
    edits: list[Edit | None] = _set_directives(fix.lines, fix.existing, fix.site.server_at)
    if fix.directive.endswith("timeout=)") or fix.directive == "timeout=":
        first = fix.existing[0] if fix.existing else None
        lines += f"\nand change timeout= on {worded(first)} to timeout={fix.seconds}"
        edits = [None]  # a ProxyPass parameter: printed only
    return Fix(f"In {fix.site.scope} set (now: {listed(fix.existing, 'not set')}):\n{lines}",
               edits)


def _set_directives(lines: str, existing: tuple[Spot, ...],
                    scope: Spot | None) -> list[Edit | None]:
    """Each directive line replaces the existing line of the same directive, or goes into the
    scope (the <VirtualHost>) when there is none."""
    edits: list[Edit | None] = []
    for line in lines.splitlines():
        name = line.split()[0].lower() if line.split() else ""
        same = next((e for e in existing if e.text.split()[:1]
                     and e.text.split()[0].lower() == name), None)
        edits.append(replace_at(same, line.strip()) if same is not None
                     else insert_after(scope, line))
    return edits


FIXES = Fixes(route=_fix_route, rewrite=_fix_rewrite, sticky=_fix_sticky, timeout=_fix_timeout)

CAUSES = CauseFixes(
    keep_host=lambda where: (f"Send the client's Host (with its port): in {where} add\n"
                             "    ProxyPreserveHost On"),
    keep_proto=lambda where: (f"Make {where} send the page's scheme:\n"
                              "    RequestHeader set X-Forwarded-Proto expr=%{REQUEST_SCHEME}"),
    # LimitRequestBody counts bytes; 0 would mean no limit at all.
    body_limit=lambda size, where: (f"Set {where} to at least the server's maxPayload:\n"
                                    f"    LimitRequestBody {size}"),
    real_ip=("    RemoteIPHeader X-Forwarded-For\n"
             "    RemoteIPTrustedProxy <each address of the tier in front>   (a2enmod remoteip)"),
)


def needed_modules(spec: DeploySpec) -> list[str]:
    """The modules the rendered config uses, in LoadModule order."""
    mods = ["proxy", "proxy_http", "headers"]
    legacy = not spec.apache_has_upgrade_param
    if spec.sticky or legacy or spec.tls:
        mods.append("rewrite")
    if spec.sticky or legacy:
        mods.append("proxy_wstunnel")
    if spec.sticky:
        mods += ["proxy_balancer", "lbmethod_byrequests", "slotmem_shm"]
    if spec.tls:
        mods += ["ssl", "socache_shmcb"]
    return mods


PROFILE = ProxyProfile(
    kind="apache",
    title="Apache HTTPD",
    when_to_pick="When Apache already serves the site: mod_proxy tunnels WebSockets since 2.4.47.",
    templates=by_layout("apache/site.conf.j2", "apache/full.conf.j2"),
    default_dest=by_layout("/etc/apache2/sites-available/sockwizard.conf",
                           "/usr/local/apache2/conf/httpd.conf"),
    binary="apache2",
    version_cmd="apache2 -v 2>&1 || httpd -v",
    validate_cmd=by_layout("apache2ctl -t", "apachectl -t -f {config}"),
    reload_cmd=by_layout("apache2ctl -k graceful", "apachectl -k graceful -f {config}"),
    install_hint="apt-get install apache2   (RHEL: dnf install httpd)",
    syntax="apache",
    modules=needed_modules,
    # ---- deploy side
    daemon_binaries=("apache2", "httpd"),
    control_binaries=("apache2ctl", "apachectl"),
    stand_ins=(("apache2ctl", "apachectl"), ("apache2ctl", "httpd")),
    alt_site_dest={"/etc/httpd/conf.d": "/etc/httpd/conf.d/sockwizard.conf"},  # RHEL: as is
    modules_query=" -D DUMP_MODULES",  # the same as apache2ctl -M, through any checker
    systemd_reload={"rhel": "systemctl reload-or-restart httpd",
                    "*": "systemctl reload-or-restart apache2"},
    reload_without_systemd=True,
    validate_before_rename=False,
    site_enabling=("/etc/apache2/sites-available", "a2ensite -q {site}", "a2dissite -q {site}"),
    # Apache hands a request naming no known ServerName to the first vhost of its port.
    default_site_check=lambda port, layout: [
        "for f in /etc/apache2/sites-enabled/000-default.conf "
        "/etc/apache2/sites-enabled/default-ssl.conf; do [ -e \"$f\" ] && "
        f"grep -qs ':{port}>' \"$f\" && echo \"default_site $f\"; done"],
    unshadow_how="a2dissite 000-default",
    site_includes=(
        SiteInclude(site_dir="/etc/apache2/sites-available",
                    main_config="/etc/apache2/apache2.conf",
                    present=r"(?im)^\s*Include(Optional)?\s+\"?(/etc/apache2/)?sites-enabled/"
                            r"\*(\.conf)?\"?\s*$",
                    line="IncludeOptional sites-enabled/*.conf"),
        SiteInclude(site_dir="/etc/httpd/conf.d", main_config="/etc/httpd/conf/httpd.conf",
                    present=r"(?im)^\s*Include(Optional)?\s+\"?(/etc/httpd/)?conf\.d/"
                            r"\*(\.conf)?\"?\s*$",
                    line="IncludeOptional conf.d/*.conf")),
    site_dir_check=None,
    default_sites=(
        DefaultSite(path="/etc/apache2/sites-enabled/000-default.conf",
                    off_cmd="a2dissite -q 000-default", on_cmd="a2ensite -q 000-default"),
        DefaultSite(path="/etc/apache2/sites-enabled/default-ssl.conf",
                    off_cmd="a2dissite -q default-ssl", on_cmd="a2ensite -q default-ssl")),
    reload_drop_warning="",
    marker_anchor=r"(?i)^(?P<indent>\s*)<VirtualHost\b[^>]*>\s*$",
    marker_line='{indent}    Header always set {header} "{cid}"\n',
    # A graceful restart never served an old answer in 60 tries.
    settle_quiet=0.0,
    # ---- diagnose side
    display_name="Apache",
    fixes=FIXES,

    # ---- tui side
    sticky_how="a balancer with a SERVERID cookie (`stickysession`) for the http:// and "
               "ws:// routes",
    own_settings=("apache_version",),
    causes=CAUSES,

    # ---- sandbox side
    fault_edits={
        # One backend: the upgrade parameter; several: the rewrite to the ws:// balancer.
        "no-upgrade": ((r" upgrade=websocket$", ""),
                       (r"^[ \t]*RewriteCond %\{HTTP:(Upgrade|Connection)\}.*\n", ""),
                       (r"^[ \t]*RewriteRule .*\[P,L\]\n", "")),
        "no-sticky": ((r"^[ \t]*ProxySet stickysession=SERVERID\n", ""),
                      (r'^[ \t]*Header add Set-Cookie "SERVERID=.*\n', ""),
                      (r"^[ \t]*# Several Socket.IO servers: a route cookie.*\n", ""),
                      (r"^[ \t]*# \(\"Session ID unknown\" otherwise\)\. WebSocket.*\n", "")),
    },
)
