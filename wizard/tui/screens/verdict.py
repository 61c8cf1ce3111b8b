"""Step 8: probe the deployed proxy (``wizard.probe.run_probe``) and show the verdict.

The stage table fills in live; Retry runs the probe again; Hold test keeps an idle connection
open for longer than pingInterval + pingTimeout, which reproduces a "transport close" caused
by a proxy timeout instead of predicting it.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Button, Static

from wizard.deploy import default_probe_url
from wizard.probe import ProbeOptions, ProbeReport, run_probe
from wizard.tui.screens.shared import ProbeResultScreen
from wizard.tui.services import Services
from wizard.tui.state import WizardState
from wizard.tui.widgets.probe_view import ProbeView


def probe_url(state: WizardState) -> str:
    """Where to probe the new config from here: the override, else what the deploy uses."""
    if state.sandbox is not None:
        return str(state.sandbox.url)
    if state.target.probe_url:
        return state.target.probe_url
    host = state.connection.host_name if state.connection else "127.0.0.1"
    return default_probe_url(state.spec, host)


def report_of(deploy_report: Any) -> ProbeReport | None:
    """The probe the deploy itself ran through the new config, when it kept one."""
    probe = getattr(deploy_report, "probe", None)
    return probe if isinstance(probe, ProbeReport) else None


class VerdictScreen(ProbeResultScreen):
    NEXT_LABEL = "Finish"
    STEP_HELP = "A live Socket.IO probe through the proxy: does WebSocket work end to end?"

    BINDINGS: ClassVar[list[BindingType]] = [
        *ProbeResultScreen.BINDINGS,
        Binding("n", "new", "New deploy"),
    ]

    def __init__(self, state: WizardState, index: int, services: Services) -> None:
        super().__init__(state, index, services)
        self.url = probe_url(state)
        self.report: ProbeReport | None = None
        # What was deployed, not the form: the verdict judges the live config.
        self.spec = state.deployed_spec or state.spec

    @property
    def hold_seconds(self) -> int:
        """Long enough to outlast pingInterval + pingTimeout (the live values once a probe
        read them), so a proxy timeout shorter than that shows as a drop."""
        total = self.spec.ping_sum_s
        if self.report is not None and self.report.handshake is not None:
            total = self.report.handshake.ping_sum_s
        return math.ceil(total) + 5

    def compose_body(self) -> ComposeResult:
        box = self.state.sandbox
        line = box.affinity_line() if box is not None else None
        yield Static(f"{self.url}  (path {self.spec.path})"
                     + (f"\nsandbox {line}" if line else ""), id="probe-url", markup=False)
        yield ProbeView(id="probe")
        with Horizontal(id="probe-actions"):
            yield Button("Retry", id="retry", compact=True, action="screen.retry")
            yield Button(f"Hold test ({self.hold_seconds} s)", id="hold", compact=True,
                         action="screen.hold")
            yield Static(id="probe-status", classes="muted")

    def on_mount(self) -> None:
        earlier = report_of(self.state.deploy_report)
        if earlier is not None:
            self.report = earlier
            self.query_one(ProbeView).show_report(earlier, self.spec)
            self._label_hold()
        else:
            self.probe()

    @work(exclusive=True, group="probe", exit_on_error=False)
    async def probe(self, hold: float = 0) -> None:
        view = self.query_one(ProbeView)
        what = f"Holding an idle connection for {hold:g} s…" if hold else "Probing…"
        view.reset(what)
        self._busy(True, what, hold)
        options = ProbeOptions(path=self.spec.path, hold=hold,
                               insecure=self.url.startswith("https://"))
        try:
            report = await self.in_thread(run_probe, self.url, options, self._stage_seen)
        finally:
            self._busy(False, "")
        self.report = report
        view.show_report(report, self.spec)
        self._label_hold()

    def _label_hold(self) -> None:
        self.query_one("#hold", Button).label = f"Hold test ({self.hold_seconds} s)"
        self.query_one("#hold", Button).refresh(layout=True)

    def run_check(self, hold: float = 0) -> None:
        self.probe(hold=hold)

    def verdict_ok(self) -> bool | None:
        if self.report is None:
            return None
        box = self.state.sandbox  # several backends: the affinity check is part of the verdict
        return self.report.ok and (box is None or bool(box.affinity_ok))

    def palette_commands(self) -> list[tuple[str, str, Any]]:
        return [
            ("Retry the probe", "Probe the proxy again", self.action_retry),
            ("Hold test", f"Keep an idle connection open for {self.hold_seconds} s",
             self.action_hold),
        ]
