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

    # ---- diagnose side

    # ---- tui side
    sticky_how="an upstream with `hash $remote_addr consistent` (same client address, "
               "same backend)",
    own_settings=("proxy_buffering",),
    own_settings_note="On is nginx's default; off is common advice for long-polling "
                      "(responses reach clients at once).",
)
