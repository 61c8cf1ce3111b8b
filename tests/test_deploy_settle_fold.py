"""The deploy settles on the probe's own handshake (issue #15, item 1), fast, with fakes.

``LiveChecks.open_probe`` opens a probe (connect + polling handshake); the deploy goes on with
the first one whose handshake carries the new config's marker and finishes it on the same
connection; an older config's handshake costs one more opening, never a separate settle
request. The real thing (one connection counted through a relay in front of nginx):
tests/test_deploy_http_budget.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests import test_deploy_marker_probe
from tests.test_deploy_marker_probe import marked_report
from tests.test_deploy_unit import OLD, SPEC, Host
from wizard.deploy import LiveChecks, Outcome, SettleResult, Step, StepFinished
from wizard.deploy.marker import HEADER
from wizard.errors import ExitCode
from wizard.probe import ProbeReport, Stage
from wizard.probe.wire import HttpResponse

OLD_ID = "0ld0ld0ld0ld"


@dataclass
class Pending:
    """One opened probe: its handshake answer's marker (None: no answer at all)."""

    marker: str | None
    upgrade_marker: str | None
    ok: bool = True
    stages: list[Stage] = field(default_factory=list)
    finished: bool = False
    closed: bool = False

    def first_answer(self) -> HttpResponse | None:
        if self.marker is None:
            return None
        return HttpResponse(200, "OK", ((HEADER, self.marker),), b"")

    def finish(self) -> ProbeReport:
        self.finished = True
        return marked_report(self.ok, self.marker, self.upgrade_marker)

    def close(self) -> None:
        self.closed = True


@dataclass
class Checks:
    """``answers``: per opening, "old", "new", "none" (no answer), or "split" (the new
    handshake, then an upgrade answered by the old config on a new connection)."""

    answers: list[str]
    new_ok: bool = True
    opened: list[Pending] = field(default_factory=list)
    settles: int = 0
    probes: int = 0

    def checks(self) -> LiveChecks:
        return LiveChecks(settle=self.settle, probe=self.probe, open_probe=self.open_probe)

    def open_probe(self, url: str, path: str, timeout: float, *, connect_to: str | None,
                   expect_marker: str | None) -> Pending:
        kind = self.answers[min(len(self.opened), len(self.answers) - 1)]
        new = expect_marker
        pending = {"old": Pending(OLD_ID, None, stages=[Stage("tcp", True, 1.0, "")]),
                   "none": Pending(None, None, stages=[Stage("tcp", False, 1.0, "refused")]),
                   "new": Pending(new, new, ok=self.new_ok),
                   "split": Pending(new, OLD_ID)}[kind]
        self.opened.append(pending)
        return pending

    def settle(self, url: str, path: str, config_id: str | None, quiet: float,
               timeout: float, *, connect_to: str | None = None) -> SettleResult:
        self.settles += 1
        return SettleResult(True, 0.0, 1, "ok")

    def probe(self, url: str, path: str, timeout: float, *,
              connect_to: str | None = None) -> ProbeReport:
        self.probes += 1
        return marked_report(True, self.opened[-1].marker, self.opened[-1].marker)


host = test_deploy_marker_probe.host  # the fixture, shared


def deploy(host: Host, checks: Checks, **kw: Any) -> Any:
    from wizard.deploy import apply
    from wizard.remote import LocalRemote

    return apply(LocalRemote(), SPEC, host.options(**kw), on_event=host.events.append,
                 checks=checks.checks())


def test_the_first_new_handshake_is_the_settle_and_the_probe_goes_on_with_it(
        host: Host) -> None:
    checks = Checks(["new"])
    result = deploy(host, checks)
    assert (result.outcome, result.exit_code) == (Outcome.DEPLOYED, ExitCode.OK)
    assert len(checks.opened) == 1 and checks.opened[0].finished
    assert checks.settles == 0 and checks.probes == 0  # no request of its own
    settle = [e for e in host.events if isinstance(e, StepFinished) and e.step is Step.SETTLE]
    assert settle[0].detail == f"HTTP 200 with {HEADER}: {result.config_id} after 1 answer(s)"


def test_old_worker_handshakes_are_closed_unfinished_and_retried(host: Host) -> None:
    checks = Checks(["old", "none", "old", "new"])
    result = deploy(host, checks)
    assert result.exit_code == ExitCode.OK, result.message()
    assert [p.finished for p in checks.opened] == [False, False, False, True]
    assert all(p.closed for p in checks.opened[:3])


def test_an_upgrade_from_an_old_config_is_not_trusted(host: Host) -> None:
    """The upgrade went over a new connection (the kept one was closed) to an old worker: the
    deploy probes again rather than pass on it."""
    checks = Checks(["split", "new"])
    result = deploy(host, checks)
    assert result.exit_code == ExitCode.OK, result.message()
    assert checks.probes == 1


def test_a_failing_probe_on_the_settled_connection_rolls_back(host: Host) -> None:
    checks = Checks(["old", "new"], new_ok=False)
    result = deploy(host, checks)
    assert result.exit_code == ExitCode.PROBE_ROLLED_BACK
    assert host.dest.read_bytes() == OLD


def test_never_the_new_config_fails_the_settle_and_rolls_back(host: Host) -> None:
    checks = Checks(["old"])
    result = deploy(host, checks, settle_timeout=0.3)
    assert result.exit_code != ExitCode.OK and host.dest.read_bytes() == OLD
    assert "did not serve the new config" in result.message()
    assert not any(p.finished for p in checks.opened)
