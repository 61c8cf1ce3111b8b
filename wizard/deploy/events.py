"""The deploy's progress, as small frozen events.

Emitted by the transaction (``wizard.deploy.context``) through an ``EventSink``; the CLI
(``wizard.commands.deploy``) prints them on stderr, the TUI turns them into messages. Events
flow one way, out of the deploy: nothing here knows who listens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal


class Step(StrEnum):
    CONNECT = "connect"
    DETECT = "detect"
    DIFF = "diff"
    BACKUP = "backup"
    PREPARE = "prepare"
    UPLOAD = "upload"
    RENAME = "rename"
    VALIDATE = "validate"
    RELOAD = "reload"
    SETTLE = "settle"
    PROBE = "probe"
    RESTORE = "restore"
    RECHECK = "recheck"  # validate the restored config
    RERELOAD = "reload-old"
    DONE = "done"


StepStatus = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True)
class StepStarted:
    host: str
    step: Step
    title: str


@dataclass(frozen=True)
class StepFinished:
    """One finished step: what it did, how long it took, and the tool's own output.

    ``resolution``: the step of the clock that timed it, in seconds, when that was the host's
    (a deploy's activation script, ``wizard.deploy.hostclock``); 0.0: this machine's clock.
    ``wait``: for the step that ran the activation script, the rest of the client's wait for
    its answer — the round trip, SSH starting it, the wait — beside the steps' own spans."""

    host: str
    step: Step
    status: StepStatus
    seconds: float
    detail: str = ""
    output: str = ""
    resolution: float = 0.0
    wait: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step.value, "status": self.status,
                "ms": round(self.seconds * 1000, 1), "detail": self.detail,
                "output": self.output,
                "resolution_ms": round(self.resolution * 1000, 6) if self.resolution else None,
                "wait_ms": round(self.wait * 1000, 1) if self.wait is not None else None}

    def coarse_time(self) -> str | None:
        """The time in words when the clock that took it counts in steps of 1 ms or more:
        "< 10 ms" under one step, else "20±10 ms" (whole ms from a second on) — never a
        false "0.0 ms". At most 9 characters: the TUI's time column."""
        if self.resolution < 0.001 or self.status == "skipped":
            return None
        tick = f"{self.resolution * 1000:.0f}"
        if self.seconds < self.resolution:
            return f"< {tick} ms"
        ms = f"{self.seconds * 1000:.0f}"
        return f"{ms}±{tick} ms" if self.seconds < 1 else f"{ms} ms"


@dataclass(frozen=True)
class Notice:
    """A warning or note that does not stop the deploy (e.g. "this reload drops WebSockets")."""

    host: str
    step: Step
    level: Literal["warning", "info"]
    text: str


DeployEvent = StepStarted | StepFinished | Notice
EventSink = Callable[[DeployEvent], None]


def ignore(event: DeployEvent) -> None:
    """The default sink."""
