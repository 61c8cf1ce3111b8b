"""Apache httpd 2.4: a <VirtualHost> for sites-available/ (site) or a whole httpd.conf (full)."""

from wizard.model import DeploySpec, Layout
from wizard.proxies.base import ProxyProfile


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
    templates={Layout.SITE: "apache/site.conf.j2", Layout.FULL: "apache/full.conf.j2"},
    default_dest={Layout.SITE: "/etc/apache2/sites-available/sockwizard.conf",
                  Layout.FULL: "/usr/local/apache2/conf/httpd.conf"},
    binary="apache2",
    version_cmd="apache2 -v",
    validate_cmd={Layout.SITE: "apache2ctl -t", Layout.FULL: "apachectl -t -f {config}"},
    reload_cmd="apache2ctl -k graceful",
    install_hint="apt-get install apache2   (RHEL: dnf install httpd)",
    modules=needed_modules,
    # ---- deploy side

    # ---- diagnose side

    # ---- tui side
    sticky_how="a balancer with a SERVERID cookie (`stickysession`) for the http:// and "
               "ws:// routes",
    own_settings=("apache_version",),
)
