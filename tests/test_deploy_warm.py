"""Issue #15 item 1, the warm redeploy (``wizard.deploy.warm``): the host's facts from the last
deploy, confirmed by the host in the same command that activates.

Against the rig's real sshd and nginx, through the counting relay of
``test_deploy_round_trips``: a second deploy of a changed config goes warm and costs one command
less than the first (``ssh_turns.BUDGET["warm"]``), with the same result, history and backups
as a cold one; a host changed between the deploys (the file edited by hand, a detect fact
changed, a stale lock or a journal left) goes cold from the guard's answer and deploys right,
byte for byte; a corrupt or foreign cache entry is ignored.
"""

# ruff: noqa: F811  (make_site, relayed: the fixtures)
from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.ssh_turns import ChannelCounter, TurnRelay
from tests.test_deploy_round_trips import deploy_counted, relayed, within_budget  # noqa: F401
from tests.test_deploy_ssh import KINDS, Site, make_site  # noqa: F401
from wizard.deploy import (
    DeployEvent,
    Notice,
    Outcome,
    Step,
    StepFinished,
    StepStarted,
    history,
    hoststate,
    stamp,
)
from wizard.deploy.warm import COLD, CONFIRMED, LOST
from wizard.errors import ExitCode
from wizard.model import DeploySpec, ProxyKind
from wizard.render import render

pytestmark = [pytest.mark.needs_root, pytest.mark.slow, pytest.mark.timeout(180)]



def spec_n(site: Site, n: int) -> DeploySpec:
    return replace(site.spec, ping_timeout_ms=site.spec.ping_timeout_ms + 1000 * n)


def text_of(spec: DeploySpec) -> bytes:
    return stamp(spec.proxy, render(spec).text).text.encode()


def used(counter: ChannelCounter) -> int:
    return len(counter.commands) + len(counter.subsystems)


def detect_detail(site: Site) -> str:
    return next(e.detail for e in site.events
                if isinstance(e, StepFinished) and e.step.value == "detect")


def facts_files(site: Site) -> list[Path]:
    return sorted((site.work / "state" / "facts").glob("*.json"))


def deploy(site: Site, relay: TurnRelay, tmp_path: Path, spec: DeploySpec
           ) -> tuple[Any, ChannelCounter, int]:
    result, counter, turns = deploy_counted(site, relay, tmp_path, spec=spec)
    assert (result.outcome, result.exit_code) == (Outcome.DEPLOYED, ExitCode.OK), \
        result.message()
    assert site.config() == text_of(spec)
    site.assert_serving()
    return result, counter, turns


def first_deploy(site: Site, relay: TurnRelay, tmp_path: Path) -> int:
    """The cold first deploy; it leaves one warm entry (0600). Returns its command count."""
    _, counter, _ = deploy(site, relay, tmp_path, spec_n(site, 1))
    assert CONFIRMED not in detect_detail(site)
    [entry] = facts_files(site)
    assert entry.stat().st_mode & 0o777 == 0o600
    return used(counter)


def test_a_second_changed_deploy_is_warm_and_one_command_less(
        relayed: tuple[Site, TurnRelay], tmp_path: Path) -> None:
    site, relay = relayed
    cold = first_deploy(site, relay, tmp_path)
    before = site.config()
    result, counter, turns = deploy(site, relay, tmp_path, spec_n(site, 2))
    assert CONFIRMED in detect_detail(site)
    assert used(counter) == cold - 1, counter.commands
    within_budget("warm", counter, turns)
    # The same result, history and backups as a cold deploy's.
    assert site.steps() == {"connect": "ok", "detect": "ok", "diff": "ok", "backup": "ok",
                            "upload": "ok", "rename": "ok", "validate": "ok", "reload": "ok",
                            "settle": "ok", "probe": "ok", "done": "ok"}
    # The host's own step times, as a cold run's (they were all 0: clamped to the wait
    # measured after the one command had already answered).
    took = {e.step.value: e.seconds for e in site.events if isinstance(e, StepFinished)}
    assert took["validate"] >= 0.001 and took["reload"] >= 0.001, took  # nginx -t, -s reload
    assert Path(result.backup).read_bytes() == before
    assert Path(result.local_backup).read_bytes() == before
    records = history.parse((site.work / "backups" / "index.jsonl").read_text())
    assert [r.outcome for r in records] == ["deployed", "deployed"]
    assert records[-1].get("backup") == result.backup
    assert not Path(hoststate.lock_path(str(site.work / "backups"), str(site.inst.site_path))
                    ).exists()
    # ... and the third goes warm again, from the entry the second left.
    _, counter, _ = deploy(site, relay, tmp_path, spec_n(site, 3))
    assert CONFIRMED in detect_detail(site) and used(counter) == cold - 1


def edit_by_hand(site: Site) -> None:
    site.inst.site_path.write_bytes(site.config() + b"# edited by hand\n")


def fact_changed(site: Site) -> None:
    # The host's detect output no longer hashes as cached (a line the parser ignores, so
    # only the guard's sha256 of the facts tells: the target derived is the same).
    [entry] = facts_files(site)
    data = json.loads(entry.read_text())
    data["facts"] += "new_fact=1\n"
    entry.write_text(json.dumps(data))


def stale_lock(site: Site) -> None:
    lock = Path(hoststate.lock_path(str(site.work / "backups"), str(site.inst.site_path)))
    lock.mkdir(parents=True)
    (lock / "owner").write_text(f"pid=1 start=1 time={int(time.time())} "
                                "token=0123456789abcdef client=gone:1\n")


def journal_left(site: Site) -> None:
    # As a run killed after its rename leaves it (hoststate.journal_lines), for other bytes.
    journal = Path(hoststate.journal_path(str(site.work / "backups"), str(site.inst.site_path)))
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_text(json.dumps({"time": "20260101T000000Z", "dest": str(site.inst.site_path),
                                   "backup": None, "old_sha256": None,
                                   "new_sha256": "0" * 64, "config_id": None}) + "\n")


@pytest.mark.parametrize("change", [edit_by_hand, fact_changed, stale_lock, journal_left],
                         ids=["dest-edited", "fact-changed", "stale-lock", "journal-left"])
def test_a_host_changed_between_deploys_goes_cold_and_deploys_right(
        relayed: tuple[Site, TurnRelay], tmp_path: Path,
        change: Callable[[Site], None]) -> None:
    site, relay = relayed
    cold = first_deploy(site, relay, tmp_path)
    change(site)
    before = site.config()
    result, counter, _ = deploy(site, relay, tmp_path, spec_n(site, 2))
    assert CONFIRMED not in detect_detail(site)
    assert any(isinstance(e, Notice) and e.text == COLD for e in site.events)
    # The guard's answer was the detect answer: no extra command for having tried.
    assert used(counter) == cold, counter.commands
    # The backup is the file as it was on the host (the hand edit), byte for byte.
    assert Path(result.backup).read_bytes() == before
    assert Path(result.local_backup).read_bytes() == before
    records = history.parse((site.work / "backups" / "index.jsonl").read_text())
    assert [r.outcome for r in records] == ["deployed", "deployed"]


@pytest.mark.parametrize("garbage", [b"{not json", b"\xff" * 100, "foreign"],
                         ids=["corrupt", "binary", "foreign"])
def test_a_corrupt_or_foreign_cache_entry_is_ignored(
        relayed: tuple[Site, TurnRelay], tmp_path: Path, garbage: bytes | str) -> None:
    site, relay = relayed
    cold = first_deploy(site, relay, tmp_path)
    [entry] = facts_files(site)
    if garbage == "foreign":  # well-formed, but its bytes do not match their sha256
        data = json.loads(entry.read_text())
        data["deployed"] = base64.b64encode(b"something else\n").decode()
        entry.write_text(json.dumps(data))
    else:
        assert isinstance(garbage, bytes)
        entry.write_bytes(garbage)
    before = site.config()
    result, counter, _ = deploy(site, relay, tmp_path, spec_n(site, 2))
    assert CONFIRMED not in detect_detail(site) and used(counter) == cold
    assert Path(result.backup).read_bytes() == before


def test_a_link_cut_inside_the_warm_command_is_rolled_back_like_a_cold_one(
        make_site: Callable[..., Site]) -> None:
    """The cut lands after the guard passed (the lock is taken, and the reload is made slow
    so the cut lands inside the one command): the command's answer is lost, and the
    activation's handling takes it up — reconnect, the old bytes put back."""
    site = make_site(ProxyKind.NGINX)
    first = site.deploy(spec_n(site, 1))
    assert first.outcome is Outcome.DEPLOYED, first.message()
    before = site.config()
    options = site.options()
    lock = Path(hoststate.lock_path(options.backup_dir, str(site.inst.site_path)))
    killed: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        # The lock exists from the guard's pass to the release: it cannot be missed, as a
        # temp file renamed away within a millisecond could be under load.
        while not stop.wait(0.001):
            if lock.exists():
                killed.extend(site.sshd.kill_session_children())
                return

    watcher = threading.Thread(target=watch, daemon=True)

    def cut(event: DeployEvent) -> None:
        if isinstance(event, StepStarted) and event.step is Step.DETECT:
            watcher.start()

    try:
        # The sshd is shared with other tests: the watcher must not outlive this deploy.
        result = site.deploy(spec_n(site, 2), on_event=cut,
                             reload_cmd=f"sleep 2; {site.inst.reload_cmd}")
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join(5)
    assert killed, "the lock never appeared"
    assert result.exit_code == ExitCode.CONNECTION, result.message()
    assert detect_detail(site).endswith(LOST)
    assert site.config() == before
    again = site.deploy(spec_n(site, 3))  # the host is as the last deploy left it: warm
    assert again.outcome is Outcome.DEPLOYED, again.message()
    assert CONFIRMED in detect_detail(site) and site.config() == text_of(spec_n(site, 3))
    site.assert_serving()


@pytest.mark.parametrize("kind", KINDS, ids=[k.value for k in KINDS])
def test_every_proxy_redeploys_warm_and_right(kind: ProxyKind,
                                                      make_site: Callable[..., Site]) -> None:
    """Each proxy's second deploy of a changed config goes warm (Apache: with its module list
    asked again in the guard), is live and probed, and backs up the first one's bytes."""
    site = make_site(kind)
    for n in (1, 2):
        before = site.config()
        spec = replace(site.spec, read_timeout=site.spec.read_timeout + 10 * n)  # every proxy
        result = site.deploy(spec)
        assert (result.outcome, result.exit_code) == (Outcome.DEPLOYED, ExitCode.OK), \
            result.message() + "\n" + site.inst.log_text()[-2000:]
        assert site.config() == text_of(spec)
        assert result.backup is not None and Path(result.backup).read_bytes() == before
        site.assert_serving()
    assert CONFIRMED in detect_detail(site)


def test_apache_with_another_module_list_goes_cold(make_site: Callable[..., Site]) -> None:
    """The guard asks Apache's module list again: a list not as cached (a module the parser
    takes as enabled, so only the guard's sha256 tells) goes cold, and deploys right."""
    site = make_site(ProxyKind.APACHE)
    first = site.deploy(spec_n(site, 1))
    assert first.outcome is Outcome.DEPLOYED, first.message()
    [entry] = facts_files(site)
    data = json.loads(entry.read_text())
    assert "proxy_module" in data["modules"]
    data["modules"] += " sockwizard_test_module (shared)\n"
    entry.write_text(json.dumps(data))
    before = site.config()
    result = site.deploy(spec_n(site, 2))
    assert result.outcome is Outcome.DEPLOYED, result.message()
    assert CONFIRMED not in detect_detail(site)
    assert any(isinstance(e, Notice) and e.text == COLD for e in site.events)
    assert site.config() == text_of(spec_n(site, 2))
    assert result.backup is not None and Path(result.backup).read_bytes() == before
    site.assert_serving()
