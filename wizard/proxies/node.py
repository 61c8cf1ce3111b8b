"""Node.js http-proxy: a runnable proxy.js (both layouts; it is the whole config)."""

import re

from wizard.proxies.base import ProxyProfile, by_layout, one_daemon
from wizard.proxies.causes import CauseFixes
from wizard.proxies.fixes import Edit, Fix, Fixes, FixSite, TimeoutFix, listed, replace_at

# ---- diagnose side: the fixes diagnose prints (wizard.proxies.fixes); the code in them
# comes rendered from templates/node/_macros.j2, these words say where it goes.


def _fix_route(site: FixSite) -> str:
    return (f"Route requests whose URL starts with {site.path} to proxy.web() and their "
            f"upgrades to proxy.ws() in {site.script}.")


def _fix_rewrite(site: FixSite) -> str:
    return (f"Forward {site.path} unchanged (do not rewrite req.url), or set the server's path "
            f"to {site.upstream_path}.")


def _fix_sticky(site: FixSite) -> str:
    return ("Pick the backend from a hash of the client address instead of spreading requests "
            f"({site.backends_where}):\n{site.sticky_lines}\n"
            "and pass { target: pickBackend(req) } to both proxy.web() and proxy.ws().")


def _fix_timeout(fix: TimeoutFix) -> str:
    ms = fix.seconds * 1000
    where = listed(fix.existing, "the createProxyServer options")
    # The edit raises the value on each line the reader found (`proxyTimeout: 3000`, or the
    # `const TIMEOUT_MS = 3000` it names) to the same ms as the words.
    edits: list[Edit | None] = [None] if not fix.existing else []
    for spot in fix.existing:
        raised = _VALUE.sub(lambda m: f"{m.group(1)}{ms}", spot.text, count=1)
        edits.append(replace_at(spot, raised) if raised != spot.text else None)
    return Fix(f"Raise both options in createProxyServer() ({where}) to {ms} ms:\n{fix.lines}",
               edits)


_VALUE = re.compile(r"((?:\b(?:proxyTimeout|timeout)\s*:\s*)|(?:^\s*(?:const|let|var)\s+\w+"
                    r"\s*=\s*))(\d+)\b")


FIXES = Fixes(route=_fix_route, rewrite=_fix_rewrite, sticky=_fix_sticky, timeout=_fix_timeout)

CAUSES = CauseFixes(
    # xfwd does not help: http-proxy adds X-Forwarded-Host to HTTP requests, not upgrades.
    keep_host=lambda where: (f"In the proxy options ({where}) remove `changeOrigin: true` "
                             "(http-proxy then passes the client's Host; `xfwd: true` does "
                             "not help: it adds X-Forwarded-Host to HTTP requests only, not "
                             "to WebSocket upgrades)."),
    # xfwd's X-Forwarded-Proto is ws/wss on upgrades (http-proxy 1.18, ws-incoming).
    keep_proto=lambda where: (f"In the proxy options ({where}) remove `xfwd: true`, or put "
                              "the page's scheme on upgrades:\n"
                              "    proxy.on('proxyReqWs', (proxyReq, req) => proxyReq.setHeader("
                              "\n      'X-Forwarded-Proto', req.socket.encrypted ? 'https' : "
                              "'http'));"),
    body_limit=None,  # http-proxy streams bodies through without a limit
    real_ip=("    const client = (req.headers['x-forwarded-for'] || '').split(',')[0].trim()"
             "\n        || req.socket.remoteAddress;   // hash this, not remoteAddress"),
)

PROFILE = ProxyProfile(
    kind="node",
    title="Node.js http-proxy",
    when_to_pick="A small proxy in JavaScript, when the rest of the stack is Node already.",
    templates=by_layout("node/proxy.js.j2"),
    default_dest=by_layout("/opt/sockwizard/proxy.js"),
    binary="node",
    version_cmd="node --version",
    validate_cmd=by_layout("node --check {config}"),
    reload_cmd=by_layout("systemctl restart sockwizard-proxy"),
    # http-proxy comes with sockwizard (wizard.deploy.vendor): no npm needed on the host.
    install_hint="apt-get install nodejs",
    syntax="javascript",
    reload_drops_websockets=lambda spec: True,
    # ---- deploy side
    **one_daemon("node"),
    systemd_reload={"*": "systemctl restart sockwizard-proxy"},
    reload_without_systemd=False,
    validate_before_rename=False,
    default_site_check=lambda port, layout: [],  # the proxy is its own only site
    unshadow_how="stop whatever else listens on that port",
    site_includes=(),  # the proxy is the whole config
    site_dir_check=None,
    default_sites=(),
    reload_drop_warning=("This restart closes every live WebSocket at once (the node proxy "
                         "restarts): clients will reconnect together."),
    marker_anchor=r"^(?P<indent>\s*)function handleRequest\(req, res\) \{\s*$",
    marker_line='{indent}  res.setHeader("{header}", "{cid}");\n',
    settle_quiet=0.0,  # a restarted node refuses until it listens
    # ---- diagnose side
    display_name="http-proxy",
    fixes=FIXES,
    standalone_check="node --check {config}",

    # ---- tui side
    sticky_how="a hash of the client address in proxy.js",
    own_settings_note="Nothing extra: proxy.js is the whole config.",
    causes=CAUSES,
)
