"""Per-proxy main configs for the sandbox: ``SETUPS[kind]`` writes one into the prefix.

Called by ``wizard.sandbox.run.start_sandbox``. Each setup writes a main config whose site
file is a placeholder answering 503 (the deploy replaces it with the rendered config) and says
how to run, validate and reload that proxy inside the prefix, on a loopback port, without root.
"""

from __future__ import annotations

import os
import shlex
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wizard.errors import MissingTool
from wizard.model import DeploySpec, ProxyKind
from wizard.proxies import profile
from wizard.sandbox.procs import LOOPBACK, free_port

APACHE_MODULE_DIRS = ("/usr/lib/apache2/modules", "/usr/lib64/httpd/modules",
                      "/usr/lib/httpd/modules", "/usr/local/apache2/modules")
NGINX_TEMPS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


@dataclass(frozen=True)
class ProxySetup:
    """How to run, check and reload one proxy living in the prefix."""

    site: Path
    run: list[str]
    validate_cmd: str
    reload_cmd: str
    env: dict[str, str] | None = None
    stop_signal: int = signal.SIGTERM
    extra_port: int | None = None  # Caddy's admin API must be up too
    main_config: Path | None = None  # what diagnose --config reads (the proxy's main file)


def _nginx(prefix: Path, port: int, binary: str, spec: DeploySpec) -> ProxySetup:
    for name in NGINX_TEMPS:
        (prefix / "temp" / name).mkdir(parents=True, exist_ok=True)
    (prefix / "logs").mkdir(exist_ok=True)
    (prefix / "sites").mkdir(exist_ok=True)
    temps = "\n".join(f"    {n}_temp_path {prefix / 'temp' / n};" for n in NGINX_TEMPS)
    (prefix / "nginx.conf").write_text(f"""# sockwizard sandbox: nginx under {prefix}
worker_processes 1;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'logs' / 'error.log'} notice;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix / 'logs' / 'access.log'};
{temps}
    include {prefix / 'sites'}/*.conf;
}}
""")
    site = prefix / "sites" / "sockwizard.conf"
    site.write_text(f"server {{ listen {LOOPBACK}:{port}; return 503 \"sandbox starting\\n\"; }}\n")
    base = [binary, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-e", "stderr"]
    return ProxySetup(site, [*base, "-g", "daemon off;"], shlex.join([*base, "-t"]),
                      shlex.join([*base, "-s", "reload"]), main_config=prefix / "nginx.conf")


def _apache(prefix: Path, port: int, binary: str, spec: DeploySpec) -> ProxySetup:
    module_dir = next((d for d in APACHE_MODULE_DIRS if Path(d, "mod_proxy.so").is_file()), None)
    if module_dir is None:
        raise MissingTool("Apache's modules (mod_proxy.so) were not found.",
                          profile(spec.proxy).install_hint)
    for sub in ("logs", "run", "sites"):
        (prefix / sub).mkdir(exist_ok=True)
    loads = "\n".join(f"LoadModule {m}_module {module_dir}/mod_{m}.so"
                      for m in ["mpm_event", "authz_core", *profile(spec.proxy).modules(spec)]
                      if Path(module_dir, f"mod_{m}.so").is_file())
    (prefix / "httpd.conf").write_text(f"""# sockwizard sandbox: Apache under {prefix}
ServerRoot "{prefix}"
PidFile "{prefix / 'httpd.pid'}"
DefaultRuntimeDir "{prefix / 'run'}"
Mutex file:{prefix / 'run'} default
ServerName {LOOPBACK}
{loads}
Listen {LOOPBACK}:{port}
ErrorLog "{prefix / 'logs' / 'error.log'}"
LogLevel warn
StartServers 1
GracefulShutdownTimeout 3
IncludeOptional "{prefix / 'sites'}/*.conf"
""")
    site = prefix / "sites" / "sockwizard.conf"
    site.write_text("# placeholder: the sandbox deploy replaces this file\n")
    base = [binary, "-d", str(prefix), "-f", str(prefix / "httpd.conf")]
    env = dict(os.environ, APACHE_RUN_DIR=str(prefix / "run"))
    prefix_env = f"env APACHE_RUN_DIR={shlex.quote(str(prefix / 'run'))} "
    return ProxySetup(site, [*base, "-DFOREGROUND"], prefix_env + shlex.join([*base, "-t"]),
                      prefix_env + shlex.join([*base, "-k", "graceful"]), env=env,
                      stop_signal=signal.SIGTERM, main_config=prefix / "httpd.conf")


def _caddy(prefix: Path, port: int, binary: str, spec: DeploySpec) -> ProxySetup:
    for sub in ("config", "data", "sites"):
        (prefix / sub).mkdir(exist_ok=True)
    admin = free_port()
    (prefix / "Caddyfile").write_text(f"""# sockwizard sandbox: Caddy under {prefix}
{{
	admin {LOOPBACK}:{admin}
	auto_https off
}}

import {prefix / 'sites'}/*
""")
    site = prefix / "sites" / "sockwizard.caddy"
    site.write_text(f"http://{LOOPBACK}:{port} {{\n\tbind {LOOPBACK}\n\trespond \"sandbox "
                    "starting\" 503\n}\n")
    env_vars = {"XDG_CONFIG_HOME": str(prefix / "config"), "XDG_DATA_HOME": str(prefix / "data"),
                "HOME": str(prefix)}
    cfg = ["--config", str(prefix / "Caddyfile"), "--adapter", "caddyfile"]
    env_prefix = "env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env_vars.items()) + " "
    return ProxySetup(
        site, [binary, "run", *cfg], env_prefix + shlex.join([binary, "validate", *cfg]),
        env_prefix + shlex.join([binary, "reload", *cfg, "--address", f"{LOOPBACK}:{admin}",
                                 "--force"]),
        env=dict(os.environ, **env_vars), extra_port=admin, main_config=prefix / "Caddyfile")


# Restarts proxy.js on SIGHUP ("reload" for a node proxy), stops it on SIGTERM.
SUPERVISOR_JS = r"""'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const [script, pidfile] = process.argv.slice(2);
let child = null;
function start() {
  child = spawn(process.execPath, [script], { stdio: 'inherit' });
}
function stop(then) {
  const c = child;
  if (!c || c.exitCode !== null) { then(); return; }
  const killer = setTimeout(() => c.kill('SIGKILL'), 2000);
  c.once('exit', () => { clearTimeout(killer); then(); });
  c.kill('SIGTERM');
}
process.on('SIGHUP', () => stop(start));
process.on('SIGTERM', () => stop(() => process.exit(0)));
process.on('SIGINT', () => stop(() => process.exit(0)));
fs.writeFileSync(pidfile, String(process.pid) + '\n');
start();
"""


def _node(prefix: Path, port: int, binary: str, spec: DeploySpec) -> ProxySetup:
    (prefix / "supervise.js").write_text(SUPERVISOR_JS)
    site = prefix / "proxy.js"
    site.write_text(
        "'use strict';\nrequire('http').createServer((req, res) => { res.writeHead(503); "
        f"res.end('sandbox starting\\n'); }}).listen({port}, '{LOOPBACK}');\n"
        "process.on('SIGTERM', () => process.exit(0));\n")
    pidfile = prefix / "supervise.pid"
    return ProxySetup(site, [binary, str(prefix / "supervise.js"), str(site), str(pidfile)],
                      shlex.join([binary, "--check", str(site)]),
                      f"kill -HUP \"$(cat {shlex.quote(str(pidfile))})\"", main_config=site)


def _haproxy(prefix: Path, port: int, binary: str, spec: DeploySpec) -> ProxySetup:
    # Master-worker in the foreground: SIGUSR2 makes the master re-read every -f (the site
    # layout's conf dir included) and start new workers, as `systemctl reload haproxy` does.
    (prefix / "conf.d").mkdir(exist_ok=True)
    (prefix / "haproxy.cfg").write_text(f"""# sockwizard sandbox: HAProxy under {prefix}
defaults
    mode http
    timeout connect 5s
    timeout client 50s
    timeout server 50s
""")
    site = prefix / "conf.d" / "sockwizard.cfg"
    site.write_text(f"frontend sandbox\n    bind {LOOPBACK}:{port}\n    http-request return "
                    "status 503 content-type text/plain string \"sandbox starting\"\n")
    pidfile = prefix / "haproxy.pid"
    files = ["-f", str(prefix / "haproxy.cfg"), "-f", str(prefix / "conf.d")]
    return ProxySetup(site, [binary, "-W", "-db", *files, "-p", str(pidfile)],
                      shlex.join([binary, "-c", "-q", *files]),
                      f"kill -USR2 \"$(cat {shlex.quote(str(pidfile))})\"",
                      main_config=prefix / "haproxy.cfg")


def _traefik(prefix: Path, port: int, binary: str, spec: DeploySpec) -> ProxySetup:
    from wizard.proxies.traefik import check_script

    for sub in ("dynamic", "logs"):
        (prefix / sub).mkdir(exist_ok=True)
    admin = free_port()
    # Its own static file (Traefik would otherwise read ./traefik.yml or /etc/traefik's and
    # ignore flags); the API on its own loopback port, no telemetry.
    (prefix / "traefik.yml").write_text(f"""# sockwizard sandbox: Traefik under {prefix}
global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  web:
    address: "{LOOPBACK}:{port}"
    asDefault: true
  traefik:
    address: "{LOOPBACK}:{admin}"
api:
  insecure: true
log:
  filePath: "{prefix / 'logs' / 'traefik.log'}"
providers:
  file:
    directory: "{prefix / 'dynamic'}"
    watch: true
""")
    site = prefix / "dynamic" / "sockwizard.yml"
    site.write_text("# placeholder: the sandbox deploy replaces this file\n")
    # The checker keeps {config}: the deploy checks the uploaded temp file with it before the
    # rename (the watched directory never holds a refused file), the same as on a host.
    return ProxySetup(site, [binary, f"--configFile={prefix / 'traefik.yml'}"],
                      check_script(binary, static=False),
                      f"touch {shlex.quote(str(site))}", extra_port=admin,
                      main_config=prefix / "traefik.yml")


# Every kind has its own main config (tests/test_deploy_registry.py checks that none is
# missing): no kind falls through to another's.
SETUPS: dict[ProxyKind, Callable[[Path, int, str, DeploySpec], ProxySetup]] = {
    ProxyKind.NGINX: _nginx,
    ProxyKind.APACHE: _apache,
    ProxyKind.CADDY: _caddy,
    ProxyKind.NODE: _node,
    ProxyKind.HAPROXY: _haproxy,
    ProxyKind.TRAEFIK: _traefik,
}
