"""nginx: an http-context file for conf.d/ (site) or a whole nginx.conf (full)."""

import re

from wizard.proxies.base import DefaultSite, ProxyProfile, SiteInclude, by_layout, one_daemon
from wizard.proxies.causes import CauseFixes, mebibytes
from wizard.proxies.fixes import Fix, Fixes, FixSite, TimeoutFix, insert_after, replace_at

# ---- diagnose side: the fixes diagnose prints (wizard.proxies.fixes); the config lines in
# them come rendered from templates/nginx/_macros.j2, these words say where they go.


def _fix_route(site: FixSite) -> str:
    return Fix(f"In the server block {site.server} add (before any catch-all location):\n"
               + site.route_lines, [insert_after(site.server_at, site.route_lines)])


_PLAIN = re.compile(r"[A-Za-z0-9._-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")


def _fix_rewrite(site: FixSite) -> str:
    target = site.upstream_text if site.upstream_text is not None else "proxy_pass …;"
    bare = target.split("://", 1)
    fixed = target
    if len(bare) == 2:
        host = bare[1].split("/", 1)[0].rstrip(";")
        # Config text going into a line to paste: only a plain upstream name or host[:port].
        scheme = bare[0].rsplit(" ", 1)[-1]
        ok = scheme in ("http", "https") and _PLAIN.fullmatch(host)
        fixed = f"proxy_pass {scheme}://{host};" if ok else "proxy_pass http://UPSTREAM;"
    return Fix(f"Keep the path: replace {site.upstream} with `{fixed}` (proxy_pass without a URI "
               f"passes {site.path} unchanged), or set the server's path to "
               f"{site.upstream_path}.",
               [replace_at(site.upstream_at, fixed) if "UPSTREAM" not in fixed else None])


def _fix_sticky(site: FixSite) -> str:
    if site.affinity:  # its line is not known: printed only
        return f"In {site.backends_where} replace `{site.affinity};` with:\n{site.sticky_lines}"
    return Fix(f"In {site.backends_where} add:\n{site.sticky_lines}",
               [insert_after(site.backends_at, site.sticky_lines)])


def _fix_timeout(fix: TimeoutFix) -> str:
    # One directive for one: adding proxy_send_timeout beside an existing one, nginx -t refuses.
    return fix.replace_or_add(f"In {fix.site.route} add", fix.site.route_at)


FIXES = Fixes(route=_fix_route, rewrite=_fix_rewrite, sticky=_fix_sticky, timeout=_fix_timeout)

CAUSES = CauseFixes(
    # $http_host is the client's Host header as sent, port included ($host drops it).
    keep_host=lambda where: (f"Replace {where} with:\n    proxy_set_header Host $http_host;\n"
                             "(or add `proxy_set_header X-Forwarded-Host $http_host;`)"),
    keep_proto=lambda where: (f"Replace {where} with:\n"
                              "    proxy_set_header X-Forwarded-Proto $scheme;"),
    body_limit=lambda size, where: (f"Set {where} to at least the server's maxPayload:\n"
                                    f"    client_max_body_size {mebibytes(size)}m;"),
    real_ip=("    set_real_ip_from <each address of the tier in front>;\n"
             "    real_ip_header X-Forwarded-For;\n    real_ip_recursive on;"),
)

PROFILE = ProxyProfile(
    kind="nginx",
    title="nginx",
    when_to_pick="The most common choice: fast, and the Socket.IO docs' first example.",
    templates=by_layout("nginx/site.conf.j2", "nginx/full.conf.j2"),
    default_dest=by_layout("/etc/nginx/conf.d/sockwizard.conf", "/etc/nginx/nginx.conf"),
    binary="nginx",
    version_cmd="nginx -v",
    # nginx -t checks the whole tree that includes the file, not the file alone.
    validate_cmd=by_layout("nginx -t", "nginx -t -c {config}"),
    # -c: nginx finds the master's pid through the config's own `pid` directive.
    reload_cmd=by_layout("nginx -s reload", "nginx -s reload -c {config}"),
    install_hint="apt-get install nginx   (RHEL: dnf install nginx)",
    syntax="nginx",
    # ---- deploy side
    **one_daemon("nginx"),
    systemd_reload={"*": "systemctl reload-or-restart nginx"},
    reload_without_systemd=True,
    validate_before_rename=False,
    default_site_check=lambda port, layout: [
        f"grep -ElsR '^[[:space:]]*listen[^;#]*\\b{port}\\b[^;#]*default_server' "
        "/etc/nginx/sites-enabled /etc/nginx/conf.d 2>/dev/null | while IFS= read -r f; do "
        'case $f in *sockwizard*) ;; *) echo "default_site $f" ;; esac; done'],
    unshadow_how="rm /etc/nginx/sites-enabled/default",
    # Inside the http block: a relative include is relative to /etc/nginx.
    site_includes=(SiteInclude(
        site_dir="/etc/nginx/conf.d", main_config="/etc/nginx/nginx.conf",
        present=r"(?m)^\s*include\s+(/etc/nginx/)?conf\.d/\*(\.conf)?\s*;",
        line="\tinclude /etc/nginx/conf.d/*.conf;", after=r"^\s*http\s*\{\s*(#.*)?$"),),
    site_dir_check=None,
    default_sites=(DefaultSite(path="/etc/nginx/sites-enabled/default"),),
    reload_drop_warning="",
    # `always`: the 502 of a dead backend carries it too (that is the answer we wait for).
    marker_anchor=r"^(?P<indent>\s*)server\s*\{\s*$",
    marker_line='{indent}    add_header {header} "{cid}" always;\n',
    # nginx's master starts the new workers, sleeps 100 ms ("allow new processes to start",
    # in ngx_master_process_cycle), and only then tells the old ones to stop accepting.
    # Measured: old and new answers interleave for 50-200 ms, with runs of up to 17 new
    # answers in a row. So "settled" means every answer carried the new id this long.
    settle_quiet=0.25,
    # ---- diagnose side
    display_name="nginx",
    fixes=FIXES,

    # ---- tui side
    sticky_how="an upstream with `hash $remote_addr consistent` (same client address, "
               "same backend)",
    own_settings=("proxy_buffering",),
    own_settings_note="On is nginx's default; off is common advice for long-polling "
                      "(responses reach clients at once).",
    causes=CAUSES,

    # ---- sandbox side
    fault_edits={
        "no-upgrade": ((r"^[ \t]*proxy_set_header (Upgrade|Connection) .*\n", ""),),
        "no-sticky": ((r"^[ \t]*hash \$remote_addr consistent;\n", ""),
                      (r"^# Several Socket.IO servers: each client must stick.*\n", "")),
    },
)
