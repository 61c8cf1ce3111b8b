"""The deploy's HTTP budget (issue #15, item 1): settle and probe on ONE connection.

A real deploy over the rig's sshd into a real nginx in front of the rig's Node socket.io
server, with the probe URL pointed at a counting relay (tests/relay.py) in front of nginx. The
relay sees every HTTP connection the settle and the probe open, and the request/answer
exchanges on them. Budget when the new config is live at the first answer: one connection;
on it the polling handshake (which carries the config marker, so it is also the settle), the
WebSocket upgrade, ``2probe``+``5``+``40`` answered by ``3probe`` and the CONNECT answer, and
the close frame's exchange: 4 exchanges as the relay counts them, 3 waited for.

To make "live at the first answer" certain, the reload command here also waits until nginx's
old worker generation has stopped accepting (the deploy itself does not wait: an old worker's
answer costs it one more connection, tested below with a fake).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from tests import rig, test_deploy_ssh
from tests.relay import Relay
from tests.test_deploy_ssh import Site
from wizard.deploy import Outcome
from wizard.deploy.settle import open_probe_live
from wizard.errors import ExitCode
from wizard.model import ProxyKind
from wizard.render import render

pytestmark = [pytest.mark.needs_root, pytest.mark.slow, pytest.mark.timeout(120)]

make_site = test_deploy_ssh.make_site  # the fixture, shared

CONNECTIONS = 1
EXCHANGES = 4  # handshake, upgrade, 2probe/5/40 -> 3probe/40, close



def wait_old_workers(site: Site) -> str:
    """A shell line that returns once every nginx worker alive now has exited (at most 10 s):
    after it, only the new generation accepts. Polls, no fixed sleep."""
    assert site.inst.daemon is not None
    master = site.inst.daemon.pid
    old = "|".join(str(pid) for pid in rig.children_of(master))
    return (f"for i in $(seq 200); do ps --ppid {master} -o pid= | grep -qwE '{old}' "
            "|| break; sleep 0.05; done")


@pytest.fixture
def site(make_site: Callable[..., Site]) -> Site:
    return make_site(ProxyKind.NGINX)


@pytest.fixture
def relay(site: Site) -> Iterator[Relay]:
    with Relay(("127.0.0.1", site.inst.port)) as r:
        yield r


def test_settle_and_probe_use_one_http_connection(site: Site, relay: Relay) -> None:
    result = site.deploy(replace(site.spec, read_timeout=90),
                         probe_url=f"http://127.0.0.1:{relay.port}",
                         reload_cmd=f"{site.inst.reload_cmd} && {wait_old_workers(site)}")
    assert (result.outcome, result.exit_code) == (Outcome.DEPLOYED, ExitCode.OK), \
        result.message()
    assert site.steps()["settle"] == "ok" and site.steps()["probe"] == "ok"
    assert result.probe is not None and result.probe.transport == "websocket"
    counts = relay.counts
    assert counts.connections == CONNECTIONS, counts
    assert counts.round_trips <= EXCHANGES, counts
    websocket = result.probe.stage("websocket")
    assert websocket is not None and websocket.data.get("reused") is True


def test_a_broken_new_config_still_rolls_back_through_the_relay(site: Site,
                                                                 relay: Relay) -> None:
    """One connection must not cost a guarantee: a dead backend still fails the probe."""
    before = site.config()
    site.backend.stop()
    result = site.deploy(replace(site.spec, read_timeout=91),
                         probe_url=f"http://127.0.0.1:{relay.port}")
    assert result.exit_code == ExitCode.PROBE_ROLLED_BACK, result.message()
    assert site.config() == before


@pytest.mark.parametrize("keepalive", ["keepalive_timeout 0;", ""], ids=["close", "keep-alive"])
def test_the_upgrade_reuses_the_connection_only_when_http_allows(
        keepalive: str, node_backend: Callable[..., rig.NodeBackend],
        proxy_factory: rig.ProxyFactory) -> None:
    """nginx with ``keepalive_timeout 0`` answers ``Connection: close``: the upgrade goes on a
    new connection and the probe still passes; with keep-alive, one connection."""
    backend = node_backend()
    port = rig.free_port()
    spec = test_deploy_ssh.spec_for(ProxyKind.NGINX, port, backend.port)
    inst = proxy_factory.from_site(ProxyKind.NGINX, render(spec).text, port=port,
                                   extra_http=keepalive)
    inst.start()
    with Relay(("127.0.0.1", port)) as relay:
        report = open_probe_live(f"http://127.0.0.1:{relay.port}", "/socket.io/", 5.0,
                                 connect_to=None, expect_marker=None).finish()
        assert report.ok and report.transport == "websocket", report.findings
        websocket = report.stage("websocket")
        assert websocket is not None
        assert websocket.data.get("reused") is (not keepalive)
        assert relay.counts.connections == (2 if keepalive else 1)
