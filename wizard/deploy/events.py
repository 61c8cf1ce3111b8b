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
    """One finished step: what it did, how long it took, and the tool's own output."""

    host: str
    step: Step
    status: StepStatus
    seconds: float
    detail: str = ""
    output: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step.value, "status": self.status,
                "ms": round(self.seconds * 1000, 1), "detail": self.detail,
                "output": self.output}


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
