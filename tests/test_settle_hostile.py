"""``settle_http`` against a hostile answer: every request ends at its deadline, the body is
never read (issue #10's hardening, for the settle the sandbox and the rollback use).

tests/hostile_server.py (its own process) plays the attacks on a plain ``GET {path}``: an
endless chunked body, a Content-Length of 10^18, headers dripped one every 0.2 s, a status
line dripped a byte every 0.5 s. Each settle is given 2 s and must give up with words within
its deadline plus one request's slack — not after the attack's own 60 s, and without reading
gigabytes into memory (the process's peak RSS is checked too).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator

import pytest

from tests.hostile_server import HostileServer, running
from wizard.deploy import settle_http

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 2.0
SLACK = 2.0  # the request in flight at the deadline, a thread wake-up on two shared cores


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with running() as hostile:
        yield hostile


@pytest.mark.parametrize("mode", ["giant-chunked", "giant-length", "huge-chunk",
                                  "drip-headers", "drip-handshake"])
def test_a_hostile_answer_ends_at_the_deadline(server: HostileServer, mode: str) -> None:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    result = settle_http(server.url(), f"/{mode}+settle/", "c0ffee", 0.0, TIMEOUT)
    took = time.monotonic() - started
    assert not result.ok
    assert took < TIMEOUT + SLACK, (took, result.detail)
    assert result.detail  # words, never a traceback
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 64, grown_mb


def test_the_healthy_control_is_read(server: HostileServer) -> None:
    """The same server outside its attacks answers; without a marker expected, it settles."""
    result = settle_http(server.url(), "/healthy+settle/", None, 0.0, TIMEOUT)
    assert result.ok and result.answers >= 1, result.detail
