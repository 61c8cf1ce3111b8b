"""nginx: an http-context file for conf.d/ (site) or a whole nginx.conf (full)."""

from wizard.model import Layout
from wizard.proxies.base import ProxyProfile

PROFILE = ProxyProfile(
    kind="nginx",
    title="nginx",
    when_to_pick="The most common choice: fast, and the Socket.IO docs' first example.",
    templates={Layout.SITE: "nginx/site.conf.j2", Layout.FULL: "nginx/full.conf.j2"},
    default_dest={Layout.SITE: "/etc/nginx/conf.d/sockwizard.conf",
                  Layout.FULL: "/etc/nginx/nginx.conf"},
    binary="nginx",
    version_cmd="nginx -v",
    # nginx -t checks the whole tree that includes the file, not the file alone.
    validate_cmd={Layout.SITE: "nginx -t", Layout.FULL: "nginx -t -c {config}"},
    reload_cmd="nginx -s reload",
    install_hint="apt-get install nginx   (RHEL: dnf install nginx)",
    # ---- deploy side
    daemon_binaries=("nginx",),
    control_binaries=(),
    stand_ins=(),
    alt_site_dest={},
    modules_query=None,
    systemd_reload={"*": "systemctl reload nginx"},
    reload_without_systemd=True,
    site_enabling=None,
    default_site_check=lambda port, layout: [
        f"grep -ElsR '^[[:space:]]*listen[^;#]*\\b{port}\\b[^;#]*default_server' "
        "/etc/nginx/sites-enabled /etc/nginx/conf.d 2>/dev/null | grep -v sockwizard | "
        "sed 's/^/default_site /'"],
    unshadow_how="rm /etc/nginx/sites-enabled/default",
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
)
