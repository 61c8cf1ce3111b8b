"""Deploy into Debian's own HAProxy layout as detection finds it, with HAProxy's own tools.

Debian's package: /etc/haproxy/haproxy.cfg (global + defaults with 50 s client/server timeouts,
no frontend), /etc/default/haproxy read by the unit (`haproxy -Ws -f $CONFIG -p $PIDFILE
$EXTRAOPTS`). HAProxy 2.6 has no include, so sockwizard's site layout is
/etc/haproxy/conf.d/sockwizard.cfg loaded by a second `-f`: the deploy refuses while
/etc/default/haproxy does not pass it, then goes through once it does. No systemd here, so the
reload is the one the unit's would send, SIGUSR2 to the master (--reload-cmd).

As in test_debian_layouts_real.py (whose namespace helpers this uses): copies of /etc/haproxy
and /etc/default/haproxy are bound over the real ones in private mount and network
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
    default = tmp_path / "default-haproxy"
    shutil.copy("/etc/default/haproxy", default)
    for name in ("backups", "state"):
        (tmp_path / name).mkdir()
    holder = _start_namespaces(tmp_path, [
        f"mount --bind {etc} /etc/haproxy", f"mount --bind {default} /etc/default/haproxy",
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

    refused = host.sockwizard(*deploy)
    assert refused.returncode == 2, refused.stderr
    assert "does not load /etc/haproxy/conf.d/" in refused.stderr
    assert 'EXTRAOPTS="-S /run/haproxy-master.sock -f /etc/haproxy/conf.d"' in refused.stderr
    assert not site.exists()

    default = host.tmp / "default-haproxy"
    default.write_text(default.read_text()
                       + 'EXTRAOPTS="-S /run/haproxy-master.sock -f /etc/haproxy/conf.d"\n')
    ok = host.sockwizard(*deploy)
    assert ok.returncode == 0, ok.stderr
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
