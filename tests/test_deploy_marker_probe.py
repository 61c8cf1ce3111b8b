"""nginx keeps old workers answering for a moment after a reload: the deploy accepts only a
probe whose handshake and upgrade both came from the config it just loaded, and probes again
while an old worker answers (instead of sleeping out a fixed quiet period)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.test_deploy_unit import OLD, SPEC, Host
from wizard.deploy import LiveChecks, Outcome, SettleResult
from wizard.errors import ExitCode
from wizard.probe import ProbeReport, Stage


def marked_report(ok: bool, polling: str | None, websocket: str | None) -> ProbeReport:
    stages = (Stage("polling", True, 1.0, "", {"marker": polling}),
              Stage("websocket", ok, 1.0, "", {"status": 101 if ok else 400,
                                                "marker": websocket}))
    return ProbeReport(url="http://127.0.0.1:8080", path="/socket.io/", ok=ok,
                       transport="websocket" if ok else None, handshake=None, stages=stages,
                       findings=())


@dataclass
class OldWorkersFirst:
    """Two probes answered (at least partly) by the old config, then the new one."""

    new_ok: bool = True
    quiet_asked: list[float] = field(default_factory=list)
    probes: int = 0
    config_id: str | None = None

    def checks(self) -> LiveChecks:
        return LiveChecks(settle=self.settle, probe=self.probe)

    def settle(self, url: str, path: str, config_id: str | None, quiet: float,
               timeout: float, *, connect_to: str | None = None) -> SettleResult:
        self.config_id = config_id
        self.quiet_asked.append(quiet)
        return SettleResult(True, 0.001, 1, "ok")

    def probe(self, url: str, path: str, timeout: float, *,
              connect_to: str | None = None) -> ProbeReport:
        self.probes += 1
        new = self.config_id
        if self.probes == 1:
            return marked_report(True, "0ld0ld0ld0ld", "0ld0ld0ld0ld")
        if self.probes == 2:
            return marked_report(True, new, "0ld0ld0ld0ld")
        return marked_report(self.new_ok, new, new)


@pytest.fixture
def host(tmp_path: Path) -> Host:
    conf = tmp_path / "etc" / "conf.d"
    conf.mkdir(parents=True)
    (conf / "sockwizard.conf").write_bytes(OLD)
    return Host(tmp_path, conf / "sockwizard.conf")


def deploy(host: Host, checks: OldWorkersFirst) -> Any:
    from wizard.deploy import apply
    from wizard.remote import LocalRemote

    return apply(LocalRemote(), SPEC, host.options(), on_event=host.events.append,
                 checks=checks.checks())


def test_a_probe_through_old_workers_is_not_trusted(host: Host) -> None:
    checks = OldWorkersFirst()
    result = deploy(host, checks)
    assert (result.outcome, result.exit_code) == (Outcome.DEPLOYED, ExitCode.OK)
    assert checks.probes == 3 and checks.quiet_asked == [0.0]


def test_the_new_configs_failing_probe_still_rolls_back(host: Host) -> None:
    """Old workers passing must not hide a new config that breaks the upgrade."""
    checks = OldWorkersFirst(new_ok=False)
    result = deploy(host, checks)
    assert result.exit_code == ExitCode.PROBE_ROLLED_BACK
    assert host.dest.read_bytes() == OLD
