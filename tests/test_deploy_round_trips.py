"""Issue #15 item 1, the SSH side: one deploy costs at most ``ssh_turns.BUDGET`` SSH channels
and round trips, counted on the wire against the rig's real sshd (``ssh_turns.TurnRelay``).

A changed config, an unchanged one and a config the checker refuses, each through a relay that
counts the client's turns (round trips it waited for) and paramiko's channel opens. The HTTP
side (settle + probe) is not on this connection and is counted elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests import rig
from tests.ssh_turns import BUDGET, ChannelCounter, TurnRelay, count_channels
from tests.test_deploy_ssh import Site, make_site  # noqa: F401  (the fixture)
from wizard.deploy import Outcome
from wizard.errors import ExitCode
from wizard.model import ProxyKind
from wizard.remote.ssh import internals

pytestmark = [pytest.mark.needs_root, pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def relayed(make_site: Callable[..., Site], sshd: rig.SshdInstance,  # noqa: F811
            tmp_path: Path) -> Iterator[tuple[Site, TurnRelay]]:
    site = make_site(ProxyKind.NGINX)
    relay = TurnRelay((sshd.host, sshd.port))
    yield site, relay
    relay.close()


def deploy_counted(site: Site, relay: TurnRelay, tmp_path: Path, **kw: object
                   ) -> tuple[object, ChannelCounter, int]:
    known = relay.known_hosts(site.sshd.known_hosts, tmp_path)
    with count_channels() as counter:
        result = site.deploy(target=f"{site.user}@127.0.0.1:{relay.port}",
                             connect={"known_hosts": known}, **kw)  # type: ignore[arg-type]
    assert len(relay.turns) == 1, relay.turns
    turns = relay.count()
    relay.turns.clear()
    relay.ended.clear()
    print(f"\nchannels={len(counter.channels)} {counter.channels} execs={len(counter.commands)} "
          f"sftp={len(counter.subsystems)} turns={turns}")
    for c in counter.commands:
        print("  exec:", c[:160].replace("\n", "; "))
    return result, counter, turns


def within_budget(case: str, counter: ChannelCounter, turns: int) -> None:
    # Channels that ran something: the one spare channel opened ahead (wizard.remote.ssh.
    # channels) costs no round trip and is not counted.
    used = len(counter.commands) + len(counter.subsystems)
    commands, round_trips = BUDGET[case]
    assert used <= commands, (case, counter.commands, counter.subsystems)
    assert len(counter.channels) <= used + 1, counter.channels
    assert turns <= round_trips, (case, turns, counter.commands)


def test_changed_config_within_budget(relayed: tuple[Site, TurnRelay], tmp_path: Path) -> None:
    site, relay = relayed
    changed = replace(site.spec, ping_timeout_ms=site.spec.ping_timeout_ms + 1000)
    result, counter, turns = deploy_counted(site, relay, tmp_path,
                                            spec=changed)
    assert (result.outcome, result.exit_code) == (Outcome.DEPLOYED, ExitCode.OK), \
        result.message()  # type: ignore[attr-defined]
    site.assert_serving()
    within_budget("changed", counter, turns)


def test_unchanged_config_within_budget(relayed: tuple[Site, TurnRelay], tmp_path: Path) -> None:
    site, relay = relayed
    result, counter, turns = deploy_counted(site, relay, tmp_path)
    assert result.outcome is Outcome.UNCHANGED, result.message()  # type: ignore[attr-defined]
    within_budget("unchanged", counter, turns)


def test_refused_config_within_budget(relayed: tuple[Site, TurnRelay], tmp_path: Path) -> None:
    site, relay = relayed
    before = site.config()
    bad = replace(site.spec, tls_cert="/nonexistent/sockwizard-test.pem",
                  tls_key="/nonexistent/sockwizard-test.key", tls_port=rig.free_port())
    result, counter, turns = deploy_counted(site, relay, tmp_path, spec=bad)
    assert (result.outcome, result.exit_code) == (   # type: ignore[attr-defined]
        Outcome.ROLLED_BACK, ExitCode.VALIDATE_ROLLED_BACK), result.message()  # type: ignore[attr-defined]
    assert site.config() == before
    site.assert_serving()
    within_budget("refused", counter, turns)


def test_without_paramiko_internals_the_public_path_still_deploys(
        relayed: tuple[Site, TurnRelay], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As if a paramiko release had renamed every private wizard.remote.ssh uses (internals.py):
    paramiko's own auth, exec_command, channels opened after auth; the same deploy."""
    monkeypatch.setattr(internals, "NEEDS", {
        feature: tuple((owner, name + "_renamed") for owner, name in needs)
        for feature, needs in internals.NEEDS.items()})
    monkeypatch.setattr(internals, "SUPPORT", internals.detect())
    assert not any(vars(internals.SUPPORT).values())
    site, relay = relayed
    before = site.config()
    changed = replace(site.spec, ping_timeout_ms=site.spec.ping_timeout_ms + 1000)
    result, counter, _ = deploy_counted(site, relay, tmp_path, spec=changed)
    assert (result.outcome, result.exit_code) == (Outcome.DEPLOYED, ExitCode.OK), \
        result.message()  # type: ignore[attr-defined]
    assert site.config() != before
    site.assert_serving()
    # Every command through Channel.exec_command, in a channel paramiko opened itself.
    assert len(counter.commands) == BUDGET["changed"][0]
    assert len(counter.channels) >= len(counter.commands)


def test_apache_changed_config_within_the_same_budget(
        make_site: Callable[..., Site], sshd: rig.SshdInstance, tmp_path: Path) -> None:  # noqa: F811
    """Apache's module list (``<checker> -D DUMP_MODULES``, under sudo) rides on the detect
    exchange (``gather.riding``): an Apache deploy costs the commands an nginx one does."""
    site = make_site(ProxyKind.APACHE)
    relay = TurnRelay((sshd.host, sshd.port))
    try:
        changed = replace(site.spec, ping_timeout_ms=site.spec.ping_timeout_ms + 1000)
        result, counter, turns = deploy_counted(site, relay, tmp_path, spec=changed)
    finally:
        relay.close()
    assert (result.outcome, result.exit_code) == (Outcome.DEPLOYED, ExitCode.OK), \
        result.message()  # type: ignore[attr-defined]
    site.assert_serving()
    assert not any("DUMP_MODULES" in c and "@@sw" not in c for c in counter.commands), \
        counter.commands  # not asked apart
    within_budget("changed", counter, turns)
