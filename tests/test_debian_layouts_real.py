"""Deploy into Debian's own layouts with Debian's own tools, as on a Debian or Ubuntu host:
Apache's /etc/apache2 (sites-available/sites-enabled, mods-enabled) with the real a2enmod,
a2ensite, a2dissite and apache2ctl; nginx's /etc/nginx (conf.d, sites-enabled/default) with
`nginx -s reload`; Caddy's /etc/caddy/Caddyfile (its placeholder `:80` site, `import sites/`)
with `caddy reload` — no systemd, as in a container. The rest of the suite runs the
proxies from rig directories with --dest/--validate-cmd/--reload-cmd overrides; this is the
path detection takes on its own.

This machine's /etc must not change, so everything runs in private mount and network
namespaces (unshare): a copy of /etc/apache2, /etc/nginx or /etc/caddy is bound over the real one (Apache's
envvars point its run, lock and log directories into the test's temp dir; nginx gets a private
/run and the test's log and temp dirs), /var/backups is a temp dir, /run/systemd is hidden
(apache2ctl would hand start/graceful to systemctl), and the namespace's own loopback carries
the proxy on port 80 and the Node socket.io server on 3000. sockwizard runs inside with
``--host local``, as it would on such a host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import rig

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ("deploy", "--proxy", "apache", "--backend", "127.0.0.1:3000", "--host", "local",
          "--settle-timeout", "4")


@dataclass
class DebianHost:
    """The namespaces (entered through the holder's pid) and the copy of /etc/apache2."""

    tmp: Path
    holder: rig.Daemon
    etc_name: str  # apache2, nginx or caddy

    @property
    def etc(self) -> Path:
        return self.tmp / f"etc-{self.etc_name}"  # what /etc/<etc_name> is inside

    def run(self, *argv: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", "-t", str(self.holder.pid), "-m", "-n", "--", *argv],
                              capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=ROOT)

    def sockwizard(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT),
               "XDG_STATE_HOME": str(self.tmp / "state")}
        return self.run(sys.executable, "-m", "wizard", *args, env=env, timeout=120)

    def wait_for_socketio(self, timeout: float = 10) -> None:
        """After a reload by hand: until a probe through the proxy passes."""
        deadline = time.monotonic() + timeout
        while self.sockwizard("probe", "http://127.0.0.1/").returncode != 0:
            assert time.monotonic() < deadline, "the reloaded proxy never served Socket.IO"
            time.sleep(0.1)

    def files(self, sub: str) -> set[str]:
        return {p.name for p in (self.etc / sub).iterdir()}

    def sites_enabled(self) -> set[str]:
        return {p.name for p in (self.etc / "sites-enabled").iterdir()}

    def mods_enabled(self) -> set[str]:
        return {p.name for p in (self.etc / "mods-enabled").iterdir()}


def _start_namespaces(tmp_path: Path, mounts: list[str]) -> rig.Daemon:
    """A process in new mount and network namespaces (unshare) that ran ``mounts`` (shell
    lines) and waits; ``nsenter -t PID`` joins it. The namespaces end with it."""
    setup = "; ".join(["set -e", *mounts, "ip link set lo up", "echo READY",
                       "exec sleep 100000"])
    holder = rig.Daemon("debian-ns", ["unshare", "--mount", "--net", "--", "sh", "-c", setup])
    try:
        holder.wait_line(r"^READY$", timeout=15)
    except rig.RigError:
        holder.stop()
        if "Operation not permitted" in holder.output():  # e.g. an unprivileged container
            pytest.skip("this machine does not let root create mount/network namespaces")
        raise
    return holder


def _start_node(host: DebianHost) -> rig.Daemon:
    node = rig.Daemon("debian-node", [
        "nsenter", "-t", str(host.holder.pid), "-m", "-n", "--", "node",
        str(rig.NODE_DIR / "server.js"), "--port=3000", "--host=127.0.0.1"],
        cwd=rig.NODE_DIR, env=rig.node_env())
    node.wait_line(r"^READY 3000$", timeout=15)
    return node


@contextlib.contextmanager
def _running(host: DebianHost, start: tuple[str, ...], stop: tuple[str, ...] | None, *,
             ready: str | None = None, env: dict[str, str] | None = None
             ) -> Iterator[DebianHost]:
    """The proxy and the Node server inside ``host``'s namespaces, stopped (namespaces too)
    whatever happens. ``start`` daemonizes and ``stop`` stops it; or, with ``ready`` (a line
    to wait for) and no ``stop``, ``start`` runs in the foreground."""
    stops: list[Callable[[], object]] = [host.holder.stop]
    try:
        if ready is None:
            started = host.run(*start)
            assert started.returncode == 0, started.stderr
            assert stop is not None
            stops.append(lambda: host.run(*stop))
        else:
            proxy = rig.Daemon(f"debian-{start[0]}", ["nsenter", "-t", str(host.holder.pid),
                                                      "-m", "-n", "--", *start], env=env)
            stops.append(proxy.stop)
            proxy.wait_line(ready, timeout=15)
        stops.append(_start_node(host).stop)
        yield host
    finally:
        for stop_one in reversed(stops):
            stop_one()


def _need(*tools: str) -> None:
    for tool in ("unshare", "nsenter", "ip", *tools):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup --test installs it)")


@pytest.fixture
def debian_host(tmp_path: Path, npm_ready: None) -> Iterator[DebianHost]:
    _need("apache2ctl", "a2enmod", "a2ensite")
    etc = tmp_path / "etc-apache2"
    shutil.copytree("/etc/apache2", etc, symlinks=True)
    for name in ("run", "lock", "log", "backups", "state"):
        (tmp_path / name).mkdir()
    with (etc / "envvars").open("a") as envvars:
        envvars.write(f"\n# sockwizard test: this Apache writes only under {tmp_path}\n"
                      f"export APACHE_RUN_DIR={tmp_path}/run\n"
                      f"export APACHE_PID_FILE={tmp_path}/run/apache2.pid\n"
                      f"export APACHE_LOCK_DIR={tmp_path}/lock\n"
                      f"export APACHE_LOG_DIR={tmp_path}/log\n")
    # a2ensite/a2dismod record their work in /var/lib/apache2: a copy, too.
    shutil.copytree("/var/lib/apache2", tmp_path / "lib-apache2", symlinks=True)
    holder = _start_namespaces(tmp_path, [
        f"mount --bind {etc} /etc/apache2", f"mount --bind {tmp_path}/backups /var/backups",
        f"mount --bind {tmp_path}/lib-apache2 /var/lib/apache2",
        "if [ -d /run/systemd ]; then mount -t tmpfs none /run/systemd; fi"])
    with _running(DebianHost(tmp_path, holder, "apache2"), ("apache2ctl", "start"),
                  ("apache2ctl", "-k", "stop")) as host:
        yield host


@pytest.fixture
def debian_nginx(tmp_path: Path, npm_ready: None) -> Iterator[DebianHost]:
    """Debian's nginx as installed: nginx.conf including conf.d/*.conf and sites-enabled/*,
    the default site (listen 80 default_server), reloaded with `nginx -s reload`. A private
    /run holds its pid file; its logs and temp dirs are the test's."""
    _need("nginx")
    etc = tmp_path / "etc-nginx"
    shutil.copytree("/etc/nginx", etc, symlinks=True)
    for name in ("log", "lib", "backups", "state"):
        (tmp_path / name).mkdir()
    holder = _start_namespaces(tmp_path, [
        f"mount --bind {etc} /etc/nginx", f"mount --bind {tmp_path}/backups /var/backups",
        f"mount --bind {tmp_path}/log /var/log/nginx", f"mount --bind {tmp_path}/lib /var/lib/nginx",
        "mount -t tmpfs none /run"])
    with _running(DebianHost(tmp_path, holder, "nginx"), ("nginx",),
                  ("nginx", "-s", "stop")) as host:
        yield host


@pytest.fixture
def debian_caddy(tmp_path: Path, npm_ready: None) -> Iterator[DebianHost]:
    """Debian's Caddy as installed: /etc/caddy/Caddyfile with its `:80 { file_server }`
    placeholder, run in the foreground (`caddy run`, as its systemd unit would), reloaded
    through its admin API on the namespace's own localhost:2019."""
    _need("caddy")
    etc = tmp_path / "etc-caddy"
    shutil.copytree("/etc/caddy", etc, symlinks=True)
    for name in ("backups", "state", "home"):
        (tmp_path / name).mkdir()
    holder = _start_namespaces(tmp_path, [
        f"mount --bind {etc} /etc/caddy", f"mount --bind {tmp_path}/backups /var/backups",
        "mount -t tmpfs none /run"])
    # `caddy start` would leave a daemon holding the test's pipes: run it in the foreground.
    with _running(DebianHost(tmp_path, holder, "caddy"), ("caddy", "run", "--adapter",
                  "caddyfile", "--config", "/etc/caddy/Caddyfile"), None,
                  ready=r"serving initial configuration",
                  env={**os.environ, "HOME": str(tmp_path / "home"),
                       "XDG_CONFIG_HOME": str(tmp_path / "home"),
                       "XDG_DATA_HOME": str(tmp_path / "home")}) as host:
        yield host


def test_deploy_uses_a2enmod_a2ensite_and_rolls_back_past_a_shadowing_default_site(
        debian_host: DebianHost) -> None:
    host = debian_host
    mods_before = host.mods_enabled()
    assert "000-default.conf" in host.sites_enabled()  # Debian's default site, as installed

    # 1. The default site answers port 80 for requests that name no server: without
    #    --disable-default-site (or --server-name) the deploy stops before changing anything.
    first = host.sockwizard(*DEPLOY)
    assert first.returncode == 2, first.stderr
    assert "000-default.conf answers port 80 first" in first.stderr
    assert "--disable-default-site" in first.stderr and "Nothing was changed" in first.stderr
    assert "sockwizard.conf" not in host.sites_enabled()
    assert host.mods_enabled() == mods_before
    assert not (host.etc / "sites-available" / "sockwizard.conf").exists()

    # 2. With the default site disabled (Debian's own tool), the same deploy goes through.
    off = host.run("a2dissite", "-q", "000-default")
    assert off.returncode == 0, off.stderr
    second = host.sockwizard(*DEPLOY)
    assert second.returncode == 0, second.stderr
    assert "probe" in second.stderr and "websocket" in second.stderr
    link = host.etc / "sites-enabled" / "sockwizard.conf"
    assert link.is_symlink() and os.readlink(link) == "../sites-available/sockwizard.conf"
    assert {"proxy.load", "proxy_http.load", "headers.load"} <= host.mods_enabled()
    assert host.mods_enabled() - mods_before <= {"proxy.load", "proxy.conf", "proxy_http.load",
                                                 "headers.load"}

    # A Socket.IO client through the namespace's Apache, on WebSocket.
    probe = host.sockwizard("probe", "http://127.0.0.1/")
    assert probe.returncode == 0, probe.stdout + probe.stderr

    # 3. Rollback takes the site away with a2dissite and reloads a sound config; it does
    #    not probe a Socket.IO route it has just removed.
    back = host.sockwizard("rollback", "--host", "local")
    assert back.returncode == 0, back.stderr
    assert "sockwizard.conf" not in host.sites_enabled()
    assert host.run("apache2ctl", "-t").returncode == 0

    # 4. Deployed again, a rollback (which removes the file: it was new) that fails its
    #    validation puts the file back *and enabled*: the site works as before, nothing lost.
    third = host.sockwizard(*DEPLOY)
    assert third.returncode == 0, third.stderr
    refused = host.sockwizard("rollback", "--host", "local", "--validate-cmd", "false")
    assert refused.returncode == 4, refused.stderr
    assert link.is_symlink(), "the restored site was left disabled"
    again = host.sockwizard("probe", "http://127.0.0.1/")
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_refused_config_also_takes_back_the_modules_it_enabled(
        debian_host: DebianHost) -> None:
    """A typo in the certificate path: Debian's a2enmod enables ssl (and the proxy modules),
    apache2ctl -t refuses the file, and the host is left exactly as it was: the old file and
    the old set of enabled modules."""
    host = debian_host
    mods_before = host.mods_enabled()
    sites_before = host.sites_enabled()
    result = host.sockwizard(*DEPLOY, "--server-name", "chat.example.test",
                             "--tls-cert", "/etc/ssl/certs/no-such-cert.pem",
                             "--tls-key", "/etc/ssl/private/no-such-key.pem")
    assert result.returncode == 4, result.stderr
    assert "a2enmod -q" in result.stderr and "ssl" in result.stderr  # it did enable them
    assert "no-such-cert.pem" in result.stderr  # the checker's own words
    assert "disabled again (a2dismod -q -f" in result.stderr
    assert host.mods_enabled() == mods_before
    assert host.sites_enabled() == sites_before
    assert not (host.etc / "sites-available" / "sockwizard.conf").exists()
    assert host.run("apache2ctl", "-t").returncode == 0


def test_debian_nginx_default_site_then_deploy_and_rollback(debian_nginx: DebianHost) -> None:
    """The same walk on Debian's nginx: the conf.d file, the default site that answers first
    for requests naming no server (the deploy stops and names it), then a deploy once that
    site is disabled, and a rollback that removes the file without probing."""
    host = debian_nginx
    deploy = ("deploy", "--proxy", "nginx", "--backend", "127.0.0.1:3000", "--host", "local",
              "--settle-timeout", "4")
    first = host.sockwizard(*deploy)
    assert first.returncode == 2, first.stderr
    assert "/etc/nginx/sites-enabled/default answers port 80 first" in first.stderr
    assert "--disable-default-site" in first.stderr
    assert "sockwizard.conf" not in host.files("conf.d")

    off = host.run("rm", "/etc/nginx/sites-enabled/default")
    assert off.returncode == 0, off.stderr
    second = host.sockwizard(*deploy)
    assert second.returncode == 0, second.stderr
    assert "nginx -s reload" in second.stderr
    assert "sockwizard.conf" in host.files("conf.d")
    probe = host.sockwizard("probe", "http://127.0.0.1/")
    assert probe.returncode == 0, probe.stdout + probe.stderr

    back = host.sockwizard("rollback", "--host", "local")
    assert back.returncode == 0, back.stderr
    assert "removed it, as it did not exist before" in back.stderr
    assert "sockwizard.conf" not in host.files("conf.d")
    assert host.run("nginx", "-t").returncode == 0


def test_debian_caddy_import_placeholder_site_then_deploy_and_rollback(
        debian_caddy: DebianHost) -> None:
    """Debian's Caddyfile neither imports a sites directory nor leaves port 80 free: each is
    named before anything changes, and once both are fixed by hand the deploy goes through,
    reloading over the admin API (the flags that fix them: tests/test_stock_hosts_real.py)."""
    host = debian_caddy
    deploy = ("deploy", "--proxy", "caddy", "--backend", "127.0.0.1:3000", "--host", "local",
              "--settle-timeout", "4")
    caddyfile = host.etc / "Caddyfile"
    site = host.etc / "sites" / "sockwizard.caddy"

    refused = host.sockwizard(*deploy)
    assert refused.returncode == 2, refused.stderr
    assert "/etc/caddy/Caddyfile does not load /etc/caddy/sites/" in refused.stderr
    assert "import sites/*.caddy" in refused.stderr  # what to add, word for word
    assert "--edit-main-config" in refused.stderr
    assert not site.exists()

    caddyfile.write_text(caddyfile.read_text() + "\nimport sites/*.caddy\n")
    shadowed = host.sockwizard(*deploy)
    assert shadowed.returncode == 2, shadowed.stderr
    assert "/etc/caddy/Caddyfile answers port 80 first" in shadowed.stderr
    assert "--disable-default-site" in shadowed.stderr
    assert "--edit-main-config" not in shadowed.stderr
    assert not site.exists()

    caddyfile.write_text("import sites/*.caddy\n")  # the placeholder :80 site removed
    ok = host.sockwizard(*deploy)
    assert ok.returncode == 0, ok.stderr
    assert "caddy reload" in ok.stderr and site.exists()
    probe = host.sockwizard("probe", "http://127.0.0.1/")
    assert probe.returncode == 0, probe.stdout + probe.stderr

    back = host.sockwizard("rollback", "--host", "local")
    assert back.returncode == 0, back.stderr
    assert "no route left to probe" in back.stderr
    assert not site.exists()


def test_diagnose_names_the_default_site_that_hides_a_socketio_route(
        debian_nginx: DebianHost) -> None:
    """The classic "I added my config but nginx serves its default page": a Socket.IO route
    in conf.d, and Debian's default site catching the requests (a deploy kept with
    --no-rollback leaves exactly that). diagnose reads the live config (nginx -T) and says
    where the route is, which block answers instead, and what to do; after that advice it
    finds nothing."""
    host = debian_nginx
    # An explicit --dest: sockwizard puts the file where told (no default-site check).
    kept = host.sockwizard("deploy", "--proxy", "nginx", "--backend", "127.0.0.1:3000",
                           "--host", "local", "--settle-timeout", "3", "--no-rollback",
                           "--dest", "/etc/nginx/conf.d/sockwizard.conf")
    assert kept.returncode == 1, kept.stderr
    diagnose = ("diagnose", "http://127.0.0.1/", "--host", "local", "--proxy", "nginx")
    found = host.sockwizard(*diagnose)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "path-mismatch" in found.stdout
    assert "already exists at" in found.stdout and "conf.d/sockwizard.conf" in found.stdout
    assert "/etc/nginx/sites-enabled/default" in found.stdout  # the block that answers

    assert host.run("rm", "/etc/nginx/sites-enabled/default").returncode == 0
    assert host.run("nginx", "-s", "reload").returncode == 0
    host.wait_for_socketio()  # nginx's old workers may answer for a moment
    clean = host.sockwizard(*diagnose)
    assert clean.returncode == 0, clean.stdout + clean.stderr


def test_diagnose_names_apaches_default_vhost_that_hides_the_route(
        debian_host: DebianHost) -> None:
    """The same on Apache: 000-default is the first <VirtualHost *:80> and answers requests
    naming no ServerName, so the vhost with the ProxyPass never sees them."""
    host = debian_host
    # An explicit --dest: put where told, enabled by hand (no default-site check).
    mods = host.run("a2enmod", "-q", "proxy", "proxy_http", "headers")
    assert mods.returncode == 0, mods.stderr
    kept = host.sockwizard(*DEPLOY[:-2], "--settle-timeout", "3", "--no-rollback",
                           "--dest", "/etc/apache2/sites-enabled/sockwizard.conf")
    assert kept.returncode == 1, kept.stderr
    diagnose = ("diagnose", "http://127.0.0.1/", "--host", "local", "--proxy", "apache")
    found = host.sockwizard(*diagnose)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "already exists at" in found.stdout
    assert "sites-enabled/sockwizard.conf" in found.stdout
    assert "sites-enabled/000-default.conf" in found.stdout  # the vhost that answers

    assert host.run("a2dissite", "-q", "000-default").returncode == 0
    assert host.run("apache2ctl", "-k", "graceful").returncode == 0
    host.wait_for_socketio()
    clean = host.sockwizard(*diagnose)
    assert clean.returncode == 0, clean.stdout + clean.stderr


def test_diagnose_points_at_caddys_placeholder_site(debian_caddy: DebianHost) -> None:
    """Debian's `:80 { file_server }` placeholder answers instead of an imported site: the
    diagnosis says the file server at that line handles the path, not the imported
    reverse_proxy."""
    host = debian_caddy
    caddyfile = host.etc / "Caddyfile"
    caddyfile.write_text(caddyfile.read_text() + "\nimport sites/*.caddy\n")
    kept = host.sockwizard("deploy", "--proxy", "caddy", "--backend", "127.0.0.1:3000",
                           "--host", "local", "--settle-timeout", "3", "--no-rollback",
                           "--dest", "/etc/caddy/sites/sockwizard.caddy")
    assert kept.returncode == 1, kept.stderr
    found = host.sockwizard("diagnose", "http://127.0.0.1/", "--host", "local",
                            "--proxy", "caddy")
    assert found.returncode == 1, found.stdout + found.stderr
    route = next(line for line in found.stdout.splitlines() if "route:" in line)
    assert "/etc/caddy/Caddyfile:" in route and "file_server" in route, route


@pytest.mark.parametrize("proxy", ["apache", "nginx"])
def test_a_named_site_deploys_beside_the_default_site_without_dns(
        proxy: str, request: pytest.FixtureRequest) -> None:
    """With --server-name the default site no longer matters (requests for the name reach
    the new config), and the name needs no DNS: the settle and the probe connect to the host
    that was changed and send the name as the Host header (nothing resolves
    chat.example.test in these namespaces)."""
    host: DebianHost = request.getfixturevalue("debian_host" if proxy == "apache"
                                               else "debian_nginx")
    result = host.sockwizard("deploy", "--proxy", proxy, "--backend", "127.0.0.1:3000",
                             "--host", "local", "--settle-timeout", "4",
                             "--server-name", "chat.example.test")
    assert result.returncode == 0, result.stderr
    assert "already answers requests" not in result.stderr  # no default-site warning
    assert "X-Sockwizard-Config" in result.stderr  # the settle saw the new config answer
    assert "Socket.IO connected on websocket" in result.stderr
