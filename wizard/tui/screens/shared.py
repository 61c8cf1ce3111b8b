"""Step screens that share behaviour: the spec forms (path, backends) and the probe results
(verdict, diagnose findings). Real StepScreen subclasses, so their handlers and bindings here
are found through the MRO like any other. The probe's stage callback runs in a worker thread
and only posts ``messages.StageSeen``; the handler here adds the row on the UI thread."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, ClassVar

from textual.binding import Binding, BindingType
from textual.timer import Timer
from textual.widgets import Button, Static

from wizard.model import DeploySpec
from wizard.probe import Stage
from wizard.tui.messages import StageSeen
from wizard.tui.screens.base import StepScreen
from wizard.tui.state import Restart, WizardState
from wizard.tui.widgets.field import ModelCheck, check_raw, problem_for
from wizard.tui.widgets.probe_view import ProbeView


class SpecFormScreen(StepScreen):
    """A step whose fields build the spec; the model's messages sit next to the fields."""

    CSS_PATH = "forms.tcss"  # beside this file, parsed when first shown

    FORM_TITLE: ClassVar[str] = ""

    def raw(self) -> dict[str, Any]:
        raise NotImplementedError

    def _refresh(self) -> DeploySpec | None:
        raise NotImplementedError

    def answer(self) -> WizardState | None:
        spec = self._refresh()
        if spec is None:
            self.app.clear_notifications()  # one toast however often Next is pressed
            self.notify("Some values need fixing first (see the red messages).",
                        title=self.FORM_TITLE, severity="warning")
            return None
        return replace(self.state, spec=spec)

    def back_state(self) -> WizardState:
        spec, _ = check_raw(self.raw(), self.state.spec)
        return replace(self.state, spec=spec) if spec else self.state

    def _check(self, name: str) -> ModelCheck:
        """An Input validator that asks the model about the whole form, for field ``name``."""
        def problem(_value: str) -> str | None:
            if not self.is_mounted:
                return None
            return problem_for(check_raw(self.raw(), self.state.spec)[1], name)

        return ModelCheck(problem)


class ProbeResultScreen(StepScreen):
    """A step that shows a live probe (or diagnosis) with Retry and a hold test."""

    CSS_PATH = "results.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        *StepScreen.BINDINGS,
        Binding("r", "retry", "Retry"),
        Binding("h", "hold", "Hold test"),
    ]

    _hold_timer: Timer | None = None

    @property
    def hold_seconds(self) -> int:
        raise NotImplementedError

    def run_check(self, hold: float = 0) -> None:
        """Start the probe or diagnosis in a worker."""
        raise NotImplementedError

    def verdict_ok(self) -> bool | None:
        """True/False once a result is shown; None before."""
        raise NotImplementedError

    def _stage_seen(self, stage: Stage) -> None:
        """Called by the probe in its worker thread, so it only posts the stage."""
        self.post_message(StageSeen(stage))

    def on_stage_seen(self, message: StageSeen) -> None:
        self.query_one(ProbeView).add_stage(message.stage)

    def _busy(self, busy: bool, what: str, hold: float = 0) -> None:
        """Grey the actions while a probe runs; during a hold, count the seconds (a hold is
        long by design: the user sees it advance, and that a drop would end it early)."""
        for button in self.query("#probe-actions Button").results(Button):
            button.disabled = busy
        status = self.query_one("#probe-status", Static)
        status.update(what)
        if self._hold_timer is not None:
            self._hold_timer.stop()
            self._hold_timer = None
        if busy and hold:
            started = time.monotonic()

            # In the nav status and on the verdict line: the latter stays in view when the
            # body scrolls (80x24), where the actions row is below the fold.
            verdict = self.query_one("#verdict", Static)

            def tick() -> None:
                held = time.monotonic() - started
                text = (f"Holding an idle connection: {held:.0f} s of {hold:g} s, answering "
                        "the server's pings (a drop ends it early)…")
                status.update(text)
                verdict.update(text)

            tick()
            self._hold_timer = self.set_interval(1, tick)

    def action_retry(self) -> None:
        self.run_check()

    def action_hold(self) -> None:
        self.run_check(hold=self.hold_seconds)

    def action_new(self) -> None:
        self.dismiss(Restart(self.state))

    def answer(self) -> WizardState | None:
        return replace(self.state, verdict_ok=self.verdict_ok())
