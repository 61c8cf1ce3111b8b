"""The deploy transaction as it happens: one row per step, a spinner while it runs, then a
check, a cross or a dash with its time — and, under a failed step, the tool's own output.

Fed with ``wizard.deploy``'s events (``StepStarted`` / ``StepFinished`` / ``Notice``), which the
deploy screen receives in a worker thread and posts as ``messages.DeployEventSeen``; its handler
calls ``handle`` on the UI thread.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Static

from wizard.deploy import DeployEvent, DeployResult, Notice, Outcome, StepFinished, StepStarted
from wizard.tui.widgets.code_view import CodeView
from wizard.tui.widgets.spinner import Spinner
from wizard.tui.words import for_tui

MARKS = {"ok": ("✓", "bold $text-success"), "failed": ("✗", "bold $text-error"),
         "skipped": ("–", "$text-muted")}


def format_seconds(seconds: float) -> str:
    """``12 ms`` / ``1.4 s``: whole milliseconds below a second (steady for screenshots)."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


_OUTCOME_STYLE = {
    Outcome.DEPLOYED: ("✓ Deployed", "$text-success"),
    Outcome.UNCHANGED: ("= Unchanged", "$text-success"),
    Outcome.ROLLED_BACK: ("↺ ROLLED BACK", "$text-warning"),
    Outcome.KEPT: ("! KEPT (not rolled back)", "$text-warning"),
    Outcome.FAILED: ("✗ Failed", "$text-error"),
    Outcome.ROLLBACK_FAILED: ("✗ ROLLBACK FAILED", "$text-error"),
    Outcome.PLANNED: ("Planned", "$text-muted"),
}


def result_content(result: DeployResult) -> Content:
    """The deploy's outcome as one banner: the outcome's label and the title, the hint below."""
    label, style = _OUTCOME_STYLE.get(result.outcome, (result.outcome.value, "bold"))
    parts = [Content.assemble((label, f"bold reverse {style}"), "  ",
                              (for_tui(result.title), f"bold {style}"))]
    if result.hint:
        parts.append(Content.assemble(("next  ", "$text-accent"), for_tui(result.hint)))
    return Content("\n").join(parts)


class StepRow(Vertical):
    """One step: mark, name, title/detail, time; output below when it failed."""

    DEFAULT_CLASSES = "step-row"

    def __init__(self, event: StepStarted) -> None:
        super().__init__()
        self.step = event.step
        self.what = event.title
        self.finished = False
        self._ready = False
        self._final: StepFinished | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="step-line"):
            yield Spinner(classes="step-mark")
            yield Static(self.step.value, classes="step-name", markup=False)
            yield Static(self.what, classes="step-detail", markup=False)
            yield Static("", classes="step-time")

    def on_mount(self) -> None:
        self._ready = True
        if self._final is not None:
            self._show(self._final)

    def finish(self, event: StepFinished) -> None:
        """Record the end of the step (shown now, or as soon as the row is composed)."""
        self.finished = True
        self._final = event
        if self._ready:
            self._show(event)

    def _show(self, event: StepFinished) -> None:
        mark, style = MARKS.get(event.status, ("?", "bold"))
        spinner = self.query_one(Spinner)
        spinner.stop(mark)
        spinner.update(Content.styled(mark, style))
        self.add_class(f"-{event.status}")
        detail = event.detail or self.what
        self.query_one(".step-detail", Static).update(detail)
        if event.status != "skipped":
            self.query_one(".step-time", Static).update(event.coarse_time()
                                                        or format_seconds(event.seconds))
        if event.status == "failed" and event.output.strip():
            self.mount(CodeView(event.output.rstrip(), "text", line_numbers=False,
                                classes="step-output"))


class DeployLog(VerticalScroll):
    """The rows of one deploy; ``handle`` takes each event in order."""

    DEFAULT_CLASSES = "deploy-log"

    def clear(self) -> None:
        self.remove_children()

    def handle(self, event: DeployEvent) -> None:
        if isinstance(event, StepStarted):
            self.mount(StepRow(event))
        elif isinstance(event, StepFinished):
            row = self._open_row(event)
            if row is None:  # a step finished without a start event: show it anyway
                row = StepRow(StepStarted(event.host, event.step, event.detail))
                self.mount(row)
                row.finish(event)
            else:
                row.finish(event)
        elif isinstance(event, Notice):
            style = "$text-warning" if event.level == "warning" else "$text-accent"
            mark = "!" if event.level == "warning" else "i"
            self.mount(Static(Content.assemble((f"{mark} ", f"bold {style}"),
                                               (for_tui(event.text), style)),
                              classes="step-notice"))
        self.scroll_end(animate=False)

    def _open_row(self, event: StepFinished) -> StepRow | None:
        rows = [r for r in self.query(StepRow).results(StepRow)
                if r.step is event.step and not r.finished]
        return rows[-1] if rows else None
