"""The one "transport close" rule: the model, the probe's --hold finding, diagnose and the TUI
gauge give the same minimum and the same suggestion for a table of ping settings (the first
round of work had three formulas: 31 s, 40 s and 60 s for pingInterval 25 s + pingTimeout 5 s)."""

from __future__ import annotations

import re

import pytest

from wizard.diagnose import Ping, grade_timeout, suggested_timeout
from wizard.heartbeat import Grade, Heartbeat
from wizard.model import smallest_safe_timeout, timeout_problem
from wizard.probe import HoldResult, hold_finding
from wizard.probe.wire import Handshake

TABLE = [  # interval ms, timeout ms, minimum s, suggestion s
    (25000, 20000, 46, 60),  # socket.io's defaults
    (25000, 5000, 31, 60),  # python-socketio's defaults: the case with three answers
    (5000, 2000, 8, 60),
    (50000, 20000, 71, 90),
    (120000, 60000, 181, 225),
    (25500, 20000, 46, 60),  # a fractional sum: strictly greater, whole seconds
]


def hold(idle: float) -> HoldResult:
    return HoldResult("websocket", 120, idle, 0, (), True, idle, idle, "closed", "certain")


@pytest.mark.parametrize(("interval", "timeout", "minimum", "suggest"), TABLE)
def test_every_consumer_gives_the_heartbeat_answer(interval: int, timeout: int, minimum: int,
                                                   suggest: int) -> None:
    beat = Heartbeat(interval, timeout)
    assert (beat.minimum_s(), beat.suggest_s()) == (minimum, suggest)
    # the model (the CLI's and the Backends form's check)
    assert smallest_safe_timeout(interval, timeout) == minimum
    assert timeout_problem("read_timeout", minimum, interval, timeout) is None
    why = timeout_problem("read_timeout", minimum - 1, interval, timeout)
    assert why is not None and f"at least {minimum} s" in why
    assert (f"({suggest} s leaves headroom)" in why) == (suggest > minimum)
    # diagnose's fix texts
    assert suggested_timeout(Ping(interval, timeout, live=True)) == suggest
    # the probe's --hold finding
    hs = Handshake(sid="x", upgrades=("websocket",), ping_interval_ms=interval,
                   ping_timeout_ms=timeout, max_payload=1_000_000, eio_version=4)
    finding = hold_finding(hs, hold(interval / 1000 * 0.5))
    assert finding is not None
    assert re.search(rf"\be\.g\. to {suggest} s\b", finding.fix), finding.fix
    # the grades diagnose and the gauge show
    for seconds, grade in ((interval / 1000, Grade.CERTAIN), (beat.sum_s, Grade.AT_RISK),
                           (minimum, Grade.SAFE)):
        assert beat.grade(seconds) is grade
        assert grade_timeout(seconds, Ping(interval, timeout, live=True)) == \
            (None if grade is Grade.SAFE else grade.value)
