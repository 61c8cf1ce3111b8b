"""sockwizard against a real Debian 12 host with systemd: the VM lane of issue #13.

The guest (tests/vm.py, built by scripts/vm-image) has apt's nginx, apache2, caddy and nodejs
(no npm), a sudo user `admin` and a Socket.IO backend unit on 127.0.0.1:3000. Every deploy here
is what a new user types: `--proxy --backend [--server-name] --host admin@…` with a key and a
known_hosts file — no --dest/--validate-cmd/--reload-cmd: detection, sudo, systemctl and the
stock package configs are the real ones. The probes come from outside, through the forwarded
port 80. One VM boot serves the whole lane (the session fixture `vm`); each test first makes its
proxy the one running (`vm.use_proxy`) and does not depend on another test having run. Each
test shares its deploys between its checks (a boot and every sockwizard run cost seconds of
TCG): deploy + no-op, a dead-backend deploy restored, a second config, `rollback --to` the
first (and, for Caddy's edited Caddyfile, a plain rollback back to the stock tree).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest

from tests import rig
from tests import vm as lane
from tests.vm import NO_SERVER_NAME, Vm
from wizard.errors import ExitCode

pytestmark = [pytest.mark.vm, pytest.mark.needs_root, pytest.mark.slow,
              pytest.mark.timeout(1500)]  # the first test also builds the image and boots

EDIT, DISABLE = "--edit-main-config", "--disable-default-site"


@pytest.fixture(autouse=True)
def _timed(vm: Vm, request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test's share of the lane's minutes, by kind of call (tests/vm_timing.py)."""
    vm.clock.begin(request.node.name)
    yield
    vm.clock.report()


def _full_cycle(vm: Vm, kind: str, *flags: str, dead_backend: bool = True,
                in_use: bool = False, read: str = "") -> tuple[dict[str, object], str]:
    """The first deploy's report, and the text of the file at `read` once the cycle rolled
    back to it (read with the last look). `in_use`: the test made `kind` the running proxy
    just before (one round trip less)."""
    first = lane.check_deploy_serves_and_is_idempotent(vm, kind, *flags, in_use=in_use)
    if dead_backend:
        lane.check_dead_backend_restores_everything(vm, kind, *flags)
    return first, lane.check_history_and_rollback_to(vm, kind, first, *flags, read=read)


# What a rollback to "before the first deploy" does not take away (yet): sockwizard's upload
# directory (kept for the next deploy) and the site directory the first deploy made.
_KEPT_AFTER_ROLLBACK = {"caddy": ("/etc/caddy/.sockwizard-tmp", "/etc/caddy/sites")}


def _back_to_stock(vm: Vm, kind: str, dest: str, stock: dict[str, str]) -> None:
    """A plain rollback undoes the one deploy left: the stock tree, byte for byte (the main
    config's include line and the default site come back as they were)."""
    done = vm.sockwizard("rollback", "--dest", dest)
    assert done.returncode == ExitCode.OK, done.stderr
    kept = _KEPT_AFTER_ROLLBACK.get(kind, ())
    tree, active = vm.state(kind)
    assert {p: v for p, v in tree.items() if not p.startswith(kept) or p in stock} == stock
    assert active == "active"


def _stock(vm: Vm, kind: str) -> dict[str, str]:
    """`kind` made the proxy running on :80, and its stock config tree: one round trip."""
    return vm.tree(*lane.CONFIG_DIRS[kind], first=vm.use_proxy_cmd(kind))


def _refused_before_any_change(vm: Vm, kind: str, before: dict[str, str], *flags: str) -> str:
    """A deploy that needs a stock-host flag it was not given: exit 2, nothing changed
    (`before`: the tree just now), the unit still active. Returns stderr."""
    done = vm.deploy(kind, NO_SERVER_NAME, *flags)
    assert done.returncode == ExitCode.BAD_INPUT, done.stderr
    assert "Nothing was changed" in done.stderr
    assert vm.state(kind) == (before, "active")
    return done.stderr


def test_nginx_with_server_name_and_a_stopped_proxy_started_by_the_deploy(vm: Vm) -> None:
    """Installed but stopped (a fresh install with the unit disabled, or stopped by hand): the
    default reload is `systemctl reload-or-restart`, so the cycle's first deploy starts it and
    probes it (check_deploy_serves_and_is_idempotent asserts it deployed and the unit active)."""
    assert vm.stop_proxies(then="systemctl is-active nginx || true").strip() != "active"
    _full_cycle(vm, "nginx", in_use=True)


def test_apache_without_server_name_disables_the_default_site_in_the_transaction(
        vm: Vm) -> None:
    stock = _stock(vm, "apache")
    assert "/etc/apache2/sites-enabled/000-default.conf" in stock
    err = _refused_before_any_change(vm, "apache", stock)
    assert DISABLE in err and "000-default.conf" in err
    first, _ = _full_cycle(vm, "apache", NO_SERVER_NAME, DISABLE, in_use=True)
    # The tree the cycle ended with: the first deploy's, asserted equal byte for byte.
    tree = first[lane.AS_DEPLOYED]
    assert isinstance(tree, dict) and "/etc/apache2/sites-enabled/000-default.conf" not in tree


def test_caddy_on_the_stock_caddyfile_edits_it_only_when_asked(vm: Vm) -> None:
    stock = _stock(vm, "caddy")
    err = _refused_before_any_change(vm, "caddy", stock)
    assert EDIT in err and "/etc/caddy/Caddyfile" in err and "import" in err
    # The stock :80 file_server still answers whatever the request names.
    status, _ = rig.http_get(f"http://{vm.address}:80", headers={"Host": "other.test"})
    assert status == 200
    first, caddyfile = _full_cycle(vm, "caddy", NO_SERVER_NAME, EDIT, DISABLE, in_use=True,
                                   read="/etc/caddy/Caddyfile")
    assert "import sites/" in caddyfile or "import /etc/caddy/sites/" in caddyfile, caddyfile
    _back_to_stock(vm, "caddy", str(first["dest"]), stock)


def test_node_without_npm_runs_as_an_enabled_unit_that_survives_restart_and_reboot(
        vm: Vm) -> None:
    # A first deploy that fails its probe leaves nothing it created (dir, modules, unit). The
    # round trip that stops the backend also checks there is no npm (root's PATH, sbin too).
    no_npm = "{ ! command -v npm || { echo 'the image must have no npm'; exit 1; }; }"
    with vm.dead_backend(*lane.CONFIG_DIRS["node"],
                         first=f"{no_npm} && {vm.use_proxy_cmd('node')}") as seen:
        report = lane.deploy_report(vm, "node")
        assert (report["exit_code"], report["outcome"]) == \
            (ExitCode.PROBE_ROLLED_BACK, "rolled back"), report["stderr"]
    assert seen.after[0] == seen.before  # the stock tree
    # (That was the dead backend of this test: the cycle need not pay for another one.)
    first, _ = _full_cycle(vm, "node", dead_backend=False, in_use=True)
    unit = lane.UNITS["node"]
    # One round trip: enabled, how systemd runs it, and who its main process runs as.
    enabled, show, user = vm.run(
        f"systemctl is-enabled {unit}; echo ==; systemctl show -p User -p DynamicUser "
        f"-p AmbientCapabilities {unit}; echo ==; "
        f"ps -o user= -p \"$(systemctl show -p MainPID --value {unit})\"", check=False
    ).stdout.split("==\n")
    assert enabled.strip() == "enabled"
    assert "DynamicUser=yes" in show and "cap_net_bind_service" in show, show
    assert user.strip() not in ("", "root"), user
    with vm.clock.measure("wait", "node proxy: restart until it answers"):
        vm.wait_active(unit, timeout=30, first=f"systemctl restart {unit}")
        rig.wait_for("the node proxy to answer after a restart",
                     lambda: vm.handshake()[0] == 200, timeout=30, interval=0.5)
    vm.timings["reboot"] = vm.reboot()
    with vm.clock.measure("wait", "node proxy: after the reboot until it answers"):
        # Active again by itself (enabled), and still the first deploy's config.
        text = vm.wait_active(unit, timeout=60, then=f"cat {shlex.quote(str(first['dest']))}")
        rig.wait_for("the node proxy to answer after a reboot",
                     lambda: vm.handshake()[0] == 200, timeout=60, interval=1.0)
    assert first["config_id"] in text
    assert lane.websocket_roundtrip(vm) == {"from": "outside", "server": "vm-backend"}
