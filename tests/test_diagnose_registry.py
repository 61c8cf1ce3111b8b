"""Every proxy kind is complete on the diagnose side: a live-config reader registered by kind,
a display name and every fix writer (no kind falls through to another proxy's)."""

from __future__ import annotations

from dataclasses import fields

import pytest

from wizard.diagnose import READERS, Ping, grade_timeout, suggested_timeout
from wizard.heartbeat import Heartbeat
from wizard.model import ProxyKind
from wizard.proxies import PROFILES
from wizard.proxies.fixes import Fixes, FixSite, TimeoutFix


@pytest.mark.parametrize("kind", list(ProxyKind))
def test_every_kind_has_a_reader_and_its_fixes(kind: ProxyKind) -> None:
    assert callable(READERS[kind])
    prof = PROFILES[kind]
    assert prof.display_name
    site = FixSite("/socket.io/", ("127.0.0.1:3000", "127.0.0.1:3001"))
    for f in fields(Fixes):
        writer = getattr(prof.fixes, f.name)
        text = writer(TimeoutFix(75, "x", site)) if f.name == "timeout" else writer(site)
        assert text.strip(), f"{kind}: empty {f.name} fix"
    assert set(READERS) == set(ProxyKind) == set(PROFILES)


@pytest.mark.parametrize(("interval_ms", "timeout_ms"), [
    (25000, 20000), (25000, 5000), (50000, 20000), (5000, 2000), (120000, 60000)])
def test_diagnose_asks_the_heartbeat(interval_ms: int, timeout_ms: int) -> None:
    ping, beat = Ping(interval_ms, timeout_ms, live=True), Heartbeat(interval_ms, timeout_ms)
    assert suggested_timeout(ping) == beat.suggest_s() >= 60
    for seconds in (interval_ms / 1000, beat.sum_s, beat.minimum_s(), beat.suggest_s()):
        grade = beat.grade(seconds)
        assert grade_timeout(seconds, ping) == (None if grade.value == "safe" else grade.value)
