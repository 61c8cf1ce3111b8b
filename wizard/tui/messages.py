"""What worker threads tell the UI: message dataclasses, posted from the thread with
``post_message`` and handled on the UI thread by the screen they were posted to.

Textual's workers guide: most of Textual is not thread-safe, ``post_message`` is. So code that
runs in a thread worker (the deploy's event sink, the probe's stage callback) never queries or
changes a widget; it posts one of these, and the screen's handler updates the widgets.
``screens.base.run_in_thread`` waits until the screen has handled what the thread posted
before the awaiting step goes on, so rows never arrive after the result they lead to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:  # for the annotations only: a screen importing this pulls in no core
    from wizard.deploy import DeployEvent
    from wizard.probe import Stage


@dataclass
class StageSeen(Message, bubble=False):
    """The probe (or the diagnosis's probe) finished a stage: a row for the stage table."""

    stage: Stage


@dataclass
class DeployEventSeen(Message, bubble=False):
    """The deploy, a sandbox start or a rollback reports a step: a row for the deploy log."""

    event: DeployEvent
