"""Deploy into Debian's own HAProxy layout as detection finds it, with HAProxy's own tools.

Debian's package: /etc/haproxy/haproxy.cfg (global + defaults with 50 s client/server timeouts,
no frontend), /etc/default/haproxy read by the unit (`haproxy -Ws -f $CONFIG -p $PIDFILE
$EXTRAOPTS`). HAProxy 2.6 has no include, so sockwizard's site layout is
/etc/haproxy/conf.d/sockwizard.cfg loaded by a second `-f`: the deploy refuses while
/etc/default/haproxy does not pass it, and with --edit-main-config adds it in the same
transaction. No systemd here: in the first test the reload is the one the unit's would send,
SIGUSR2 to the master (--reload-cmd), to a master started with the conf dir already; the
``debian_haproxy_unit`` fixture (tests/test_stock_hosts_real.py) instead puts a stand-in
`systemctl` that runs Debian's unit's commands with /etc/default/haproxy's values, so the
restart the edit needs is the one detection plans.

As in test_debian_layouts_real.py (whose namespace helpers this uses): copies of /etc/haproxy
and /etc/default are bound over the real ones in private mount and network
namespaces, with a private /run; sockwizard runs inside with ``--host local``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_debian_layouts_real import DebianHost, _need, _running, _start_namespaces
from wizard.errors import ExitCode

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]

RELOAD = 'kill -USR2 "$(cat /run/haproxy.pid)"'


@pytest.fixture
def debian_haproxy(tmp_path: Path, npm_ready: None) -> Iterator[DebianHost]:
    _need("haproxy")
    etc = tmp_path / "etc-haproxy"
    shutil.copytree("/etc/haproxy", etc, symlinks=True)
    (etc / "conf.d").mkdir(exist_ok=True)  # what the second -f names must exist to start
    # The directory, not the file: a file mounted over cannot be renamed over (EBUSY).
    shutil.copytree("/etc/default", tmp_path / "etc-default", symlinks=True)
    for name in ("backups", "state"):
        (tmp_path / name).mkdir()
    holder = _start_namespaces(tmp_path, [
        f"mount --bind {etc} /etc/haproxy", f"mount --bind {tmp_path}/etc-default /etc/default",
        f"mount --bind {tmp_path}/backups /var/backups", "mount -t tmpfs none /run",
        "mkdir -p /run/haproxy"])
    # The unit's command line, in the foreground (-db) instead of -Ws under systemd.
    with _running(DebianHost(tmp_path, holder, "haproxy"), (
            "haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg", "-f",
            "/etc/haproxy/conf.d", "-p", "/run/haproxy.pid", "-S", "/run/haproxy-master.sock"),
            None, ready=r"New worker") as host:
        yield host


def test_debian_haproxy_conf_dir_then_deploy_and_probe_rollback(
        debian_haproxy: DebianHost) -> None:
    host = debian_haproxy
    deploy = ("deploy", "--proxy", "haproxy", "--backend", "127.0.0.1:3000", "--host",
              "local", "--settle-timeout", "4", "--reload-cmd", RELOAD)
    site = host.etc / "conf.d" / "sockwizard.cfg"

    default = host.tmp / "etc-default" / "haproxy"
    stock = default.read_bytes()
    refused = host.sockwizard(*deploy)
    assert refused.returncode == 2, refused.stderr
    assert "does not load /etc/haproxy/conf.d/" in refused.stderr
    assert "--edit-main-config" in refused.stderr
    assert '+EXTRAOPTS="-S /run/haproxy-master.sock -f /etc/haproxy/conf.d"' in refused.stderr
    assert not site.exists() and default.read_bytes() == stock

    ok = host.sockwizard(*deploy, "--edit-main-config")
    assert ok.returncode == 0, ok.stderr
    assert default.read_bytes() == \
        stock + b'EXTRAOPTS="-S /run/haproxy-master.sock -f /etc/haproxy/conf.d"\n'
    # Detected, not given: the destination and the checker of Debian's layout.
    assert "haproxy -c -q -f /etc/haproxy/haproxy.cfg -f /etc/haproxy/conf.d" in ok.stderr
    assert site.exists() and "timeout tunnel" in site.read_text()
    probe = host.sockwizard("probe", "http://127.0.0.1/")
    assert probe.returncode == 0, probe.stdout + probe.stderr
    deployed = site.read_bytes()

    # A backend where nothing listens: the live probe fails and the file comes back byte
    # for byte, reloaded, still serving.
    dead = host.sockwizard(*[a if a != "127.0.0.1:3000" else "127.0.0.1:3999" for a in deploy])
    assert dead.returncode == ExitCode.PROBE_ROLLED_BACK, dead.stderr
    assert "Rolled back" in dead.stderr
    assert site.read_bytes() == deployed
    host.wait_for_socketio()


# Debian's haproxy.service without systemd: its Environment= defaults, then
# /etc/default/haproxy's values (EnvironmentFile=), then ExecStart / ExecReload (the check,
# then SIGUSR2 to the master: it re-executes itself with its first arguments) / a restart.
UNIT = """#!/bin/sh
set -e
[ "$2" = haproxy ] || { echo "stand-in systemctl: only haproxy" >&2; exit 1; }
CONFIG=/etc/haproxy/haproxy.cfg PIDFILE=/run/haproxy.pid EXTRAOPTS="-S /run/haproxy-master.sock"
[ ! -f /etc/default/haproxy ] || . /etc/default/haproxy
stop() {
    [ -f "$PIDFILE" ] || return 0
    pid=$(cat "$PIDFILE"); kill "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done; rm -f "$PIDFILE"
}
start() { haproxy -W -D -f "$CONFIG" -p "$PIDFILE" $EXTRAOPTS </dev/null >/run/haproxy.log 2>&1; }
case "$1" in
    start) start ;;
    stop) stop ;;
    restart) haproxy -f "$CONFIG" -c -q $EXTRAOPTS; stop; start ;;
    reload) haproxy -f "$CONFIG" -c -q $EXTRAOPTS; kill -USR2 "$(cat "$PIDFILE")" ;;
    *) echo "stand-in systemctl: $1?" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def debian_haproxy_unit(tmp_path: Path, npm_ready: None) -> Iterator[DebianHost]:
    """Debian's HAProxy as installed (no conf.d; /etc/default/haproxy as shipped), started
    and reloaded as its unit would: detection sees systemd (/run/systemd/system) and runs the
    stand-in ``systemctl`` above."""
    _need("haproxy")
    etc = tmp_path / "etc-haproxy"
    shutil.copytree("/etc/haproxy", etc, symlinks=True)
    shutil.copytree("/etc/default", tmp_path / "etc-default", symlinks=True)
    unit = tmp_path / "systemctl"
    unit.write_text(UNIT)
    unit.chmod(0o755)
    for name in ("backups", "state"):
        (tmp_path / name).mkdir()
    holder = _start_namespaces(tmp_path, [
        f"mount --bind {etc} /etc/haproxy",
        f"mount --bind {tmp_path}/etc-default /etc/default",
        f"mount --bind {tmp_path}/backups /var/backups", "mount -t tmpfs none /run",
        "mkdir -p /run/haproxy /run/systemd/system",
        # Over the real one; or first in PATH (and detect's extra sbin) on a host without.
        f"if p=$(command -v systemctl); then mount --bind {unit} \"$p\"; else mount -t tmpfs "
        f"none /usr/local/sbin; cp {unit} /usr/local/sbin/systemctl; fi"])
    with _running(DebianHost(tmp_path, holder, "haproxy"), ("systemctl", "start", "haproxy"),
                  ("systemctl", "stop", "haproxy")) as host:
        yield host
