"""The one "transport close" rule: a proxy timeout held against the server's heartbeat.

Engine.IO keeps an idle connection alive with a ping every ``pingInterval`` that must be
answered within ``pingTimeout``; a proxy that sees no byte for longer than its read timeout
closes the connection, and clients report "transport close". So a proxy timeout is safe only
when it is strictly greater than ``pingInterval + pingTimeout``.

Everything that judges or suggests a timeout asks this module: the model's check of a spec,
the Backends form's gauge, the probe's ``--hold`` finding and every diagnose fix. No I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

# A suggestion never goes below nginx's own default (60 s), which is what the Socket.IO docs'
# reference configs rely on; above that, a quarter of headroom over the sum, rounded up to 5 s.
SUGGEST_FLOOR_S = 60
HEADROOM = 1.25


class Grade(StrEnum):
    """Where a proxy timeout falls against the heartbeat."""

    CERTAIN = "certain"  # <= pingInterval: every idle client is cut before its first ping
    AT_RISK = "at-risk"  # <= interval + timeout: cut whenever a pong is late
    SAFE = "safe"  # > interval + timeout


@dataclass(frozen=True)
class Heartbeat:
    """pingInterval and pingTimeout in milliseconds (as the handshake carries them)."""

    interval_ms: int
    timeout_ms: int

    @property
    def sum_ms(self) -> int:
        return self.interval_ms + self.timeout_ms

    @property
    def sum_s(self) -> float:
        return self.sum_ms / 1000

    def minimum_s(self) -> int:
        """The smallest whole number of seconds strictly greater than the sum."""
        return self.sum_ms // 1000 + 1

    def suggest_s(self) -> int:
        """The figure every piece of advice gives: headroom over the sum, never under 60 s."""
        return max(SUGGEST_FLOOR_S, math.ceil(self.sum_s * HEADROOM / 5) * 5)

    def grade(self, timeout_s: float) -> Grade:
        if timeout_s * 1000 <= self.interval_ms:
            return Grade.CERTAIN
        if timeout_s * 1000 <= self.sum_ms:
            return Grade.AT_RISK
        return Grade.SAFE
