"""Diagnose mode, after Start and Target: the URL and path to probe, then the findings.

The URL is checked as you type by the probe's own parser (``calls.url_problem``), so the words
are the ones ``sockwizard probe`` prints. The findings step runs the diagnosis in a thread worker:
the live probe (stages fill in as they finish) and, when a host is connected, the proxy's
config read over the same connection, held against the live handshake. "Apply this fix" (when
a finding's fix is a config edit and a host is connected) shows the diff first, asks with the
host and the file named, then runs ``wizard.repair`` over the connection — the same guarded
transaction as ``sockwizard diagnose --apply`` — and shows the findings after.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, RadioSet, Static

from wizard.diagnose import Diagnosis, run_diagnosis
from wizard.errors import SockwizardError
from wizard.model import ProxyKind
from wizard.probe import ProbeOptions, ProbeReport, Stage
from wizard.proxies import PROFILES
from wizard.repair import Fixes, Repair, apply_fixes, plan_fixes, summary
from wizard.tui.calls import deploy_options, url_problem
from wizard.tui.screens.base import StepScreen
from wizard.tui.screens.modals import ErrorModal, FixModal
from wizard.tui.screens.shared import ProbeResultScreen
from wizard.tui.services import Services
from wizard.tui.state import TargetKind, WizardState
from wizard.tui.widgets.choice import Choice, Choices
from wizard.tui.widgets.field import Field, ModelCheck
from wizard.tui.widgets.probe_view import ProbeView
from wizard.tui.words import for_tui

_KINDS = tuple(PROFILES)  # every proxy with a reader (the registry test keeps them equal)


class DiagnoseUrlScreen(StepScreen):

    CSS_PATH = "results.tcss"
    NEXT_LABEL = "Diagnose"
    STEP_HELP = ("The address your clients use. sockwizard probes it stage by stage and, with "
                 "host access, reads the proxy's config too.")

    def compose_body(self) -> ComposeResult:
        state = self.state
        with Vertical(classes="panel") as panel:
            panel.border_title = "What to probe"
            yield Field("URL", Input(state.probe_url or "", id="url",
                                     placeholder="https://chat.example.com",
                                     validators=[ModelCheck(self._url_problem)]),
                        hint="http(s)://host[:port] — the proxy, as clients reach it.",
                        id="field-url")
            yield Field("Socket.IO path", Input(state.probe_path or state.spec.path, id="path",
                                                validators=[ModelCheck(self._url_problem)]),
                        id="field-path")
        if self.state.connection is not None:
            with Choices(id="proxy-kind") as kinds:
                how = "over SSH" if self.state.target.kind is TargetKind.SSH else "here"
                kinds.border_title = f"Which proxy serves it (its config is read {how})"
                for kind in _KINDS:
                    yield Choice(PROFILES[kind].title, value=state.spec.proxy is kind,
                                      id=f"kind-{kind.value}")
            with Vertical(classes="panel") as config:
                config.border_title = "Config"
                yield Field("Main config file on the host (optional)",
                            Input(state.config_path or "", id="config_path",
                                  placeholder="found from the proxy's own defaults"),
                            id="field-config_path")

    def on_mount(self) -> None:
        self.query_one("#url", Input).focus()

    def _url_problem(self, _value: str) -> str | None:
        if not self.is_mounted:
            return None
        url = self.query_one("#url", Input).value
        if not url.strip():
            return "Which URL? e.g. https://chat.example.com"
        return url_problem(url, self.query_one("#path", Input).value)

    @on(Input.Changed)
    def _changed(self) -> None:
        self.query_one("#field-url", Field).set_problem(self._url_problem(""))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_next()

    def _kind(self) -> ProxyKind:
        sets = list(self.query("#proxy-kind").results(RadioSet))
        pressed = sets[0].pressed_button if sets else None
        if pressed is None or not pressed.id:
            return self.state.spec.proxy
        return ProxyKind(pressed.id.removeprefix("kind-"))

    def _values(self) -> WizardState:
        config = [i.value.strip() for i in self.query("#config_path").results(Input)]
        return replace(self.state, probe_url=self.query_one("#url", Input).value.strip(),
                       probe_path=self.query_one("#path", Input).value.strip() or None,
                       config_path=(config[0] if config else "") or None,
                       spec=replace(self.state.spec, proxy=self._kind()))

    def answer(self) -> WizardState | None:
        why = self._url_problem("")
        self.query_one("#field-url", Field).set_problem(why)
        return None if why else self._values()

    def back_state(self) -> WizardState:
        return self._values()


def diagnose_state(state: WizardState, options: ProbeOptions,
                   on_stage: Callable[[Stage], None]) -> Diagnosis:
    """``wizard.diagnose.run_diagnosis`` for this state: the probe, and the proxy's config
    read over the connection (when there is one) while the probe runs."""
    conn = state.connection
    url = state.probe_url or ""
    if conn is None:
        return run_diagnosis(url, options, on_stage=on_stage)
    with conn.lock:
        return run_diagnosis(url, options, remote=conn.remote, proxy=state.spec.proxy,
                             config_path=state.config_path, on_stage=on_stage)


def fixes_for(state: WizardState, diagnosis: Diagnosis) -> Fixes:
    """``wizard.repair.plan_fixes`` over the state's connection: the diff "Apply this fix"
    shows, against the files as they are now."""
    conn = state.connection
    assert conn is not None, "Apply this fix is offered only with host access"
    with conn.lock:
        return plan_fixes(diagnosis, conn.remote, state.spec.proxy)


def apply_fixes_for(state: WizardState, fixes: Fixes, options: ProbeOptions) -> Repair:
    """``wizard.repair.apply_fixes`` over the state's connection, with the Target step's
    overrides (validate, reload): the guarded deploy, then the diagnosis again."""
    conn = state.connection
    assert conn is not None
    with conn.lock:
        return apply_fixes(fixes, conn.remote, deploy_options(state), options,
                           config_path=state.config_path, probe_host=conn.host_name,
                           host=conn.remote.name)


class FindingsScreen(ProbeResultScreen):
    NEXT_LABEL = "Finish"
    STEP_HELP = "What the probe saw, and what to change — most serious first."

    BINDINGS: ClassVar[list[BindingType]] = [
        *ProbeResultScreen.BINDINGS,
        Binding("n", "new", "Start over"),
        Binding("f", "apply_fix", "Apply this fix"),
    ]

    def __init__(self, state: WizardState, index: int, services: Services) -> None:
        super().__init__(state, index, services)
        self.report: ProbeReport | None = None
        self.diagnosis: Diagnosis | None = None
        self.repair: Repair | None = None

    @property
    def hold_seconds(self) -> int:
        interval_ms, timeout_ms = self.state.spec.ping_interval_ms, self.state.spec.ping_timeout_ms
        if self.report is not None and self.report.handshake is not None:
            hs = self.report.handshake
            interval_ms, timeout_ms = hs.ping_interval_ms, hs.ping_timeout_ms
        return math.ceil((interval_ms + timeout_ms) / 1000) + 5

    def compose_body(self) -> ComposeResult:
        where = self.state.target.label
        yield Static(f"{self.state.probe_url}  (path {self.state.probe_path or '/socket.io/'}; "
                     f"host access: {where})", id="probe-url", markup=False)
        yield ProbeView(id="probe")
        with Horizontal(id="probe-actions"):
            yield Button("Retry", id="retry", compact=True, action="screen.retry")
            yield Button("Hold test", id="hold", compact=True, action="screen.hold")
            yield Button("Apply this fix", id="apply-fix", compact=True, disabled=True,
                         action="screen.apply_fix")
            yield Static(id="probe-status", classes="muted")

    def on_mount(self) -> None:
        self.run_diagnosis()

    def _options(self, hold: float = 0) -> ProbeOptions:
        return ProbeOptions(path=self.state.probe_path or "/socket.io/", hold=hold,
                            insecure=(self.state.probe_url or "").startswith("https://"))

    def fixable(self) -> bool:
        """A host is connected and some finding's fix is a config edit."""
        d = self.diagnosis
        return self.state.connection is not None and d is not None and \
            any(f.edits for f in d.findings)

    def _show(self, diagnosis: Diagnosis) -> None:
        view = self.query_one(ProbeView)
        self.diagnosis = diagnosis
        self.report = diagnosis.probe
        if diagnosis.probe is not None:
            view.show_report(diagnosis.probe, None, diagnosis.findings, diagnosis.checks,
                             diagnosis.notes)
        else:
            view.show_findings(diagnosis.findings, diagnosis.checks, diagnosis.notes)
        self._offer_fix()

    def _offer_fix(self) -> None:
        for button in self.query("#apply-fix").results(Button):  # none once dismissed
            button.disabled = not self.fixable()

    def _busy(self, busy: bool, what: str, hold: float = 0) -> None:
        super()._busy(busy, what, hold)
        if not busy:
            self._offer_fix()

    def action_apply_fix(self) -> None:
        if self.fixable():
            self.apply_fix()

    @work(exclusive=True, group="probe", exit_on_error=False)
    async def apply_fix(self) -> None:
        """The diff first, a confirmation naming the host and the file(s), then the guarded
        deploy and the findings after (``wizard.repair``, as ``diagnose --apply``)."""
        before, conn = self.diagnosis, self.state.connection
        assert before is not None and conn is not None
        status = self.query_one("#probe-status", Static)
        try:
            fixes = await self.in_thread(fixes_for, self.state, before)
        except SockwizardError as exc:
            status.update("Could not read the config files.")
            self.app.push_screen(ErrorModal(for_tui(exc.title), for_tui(exc.hint), exc.detail))
            return
        # What stops here gets its own dialog too: the status is one row, cut at 80 columns.
        if fixes.refused:
            check = fixes.refused[0]
            status.update(f"{check.command} refused the fix: nothing was changed.")
            self.app.push_screen(ErrorModal(
                f"{check.command} refused the fixed {check.file}: nothing was changed.",
                "The edit would break the config as this checker reads it: fix it by hand "
                "(the findings say what to change).", check.output[-2000:]))
            return
        if not fixes.plan.patches:
            why = "; ".join(f"{f.code}: {w}" for f, w in fixes.plan.printed if f.edits)
            status.update("No config edit to make.")
            self.app.notify(why or "The findings' fixes are not edits of a file.",
                            title="No config edit to make", timeout=10, markup=False)
            return
        files = [p.file for p in fixes.plan.patches]
        if not await self.app.push_screen_wait(FixModal(conn.remote.name, files,
                                                        fixes.plan.diff)):
            return
        self._busy(True, f"Applying the fix to {', '.join(files)}…")
        try:
            repair = await self.in_thread(apply_fixes_for, self.state, fixes, self._options())
        finally:
            self._busy(False, "")
        self.repair = repair
        if repair.after is not None:
            self._show(repair.after)
        # The findings above are the "after"; the status line (one row beside the buttons)
        # says what the deploy did. A failed one opens its error: a rollback that failed
        # needs the user's attention, and one status line cut at 80 columns hid it.
        last = repair.results[-1] if repair.results else None
        status.update(f"{last.outcome.value}: {for_tui(last.title)}" if last is not None
                      else summary(repair).strip())
        failed = next((r for r in repair.results if not r.ok), None)
        if failed is not None:
            self.app.push_screen(ErrorModal(for_tui(failed.title), for_tui(failed.hint),
                                            failed.detail))

    @work(exclusive=True, group="probe", exit_on_error=False)
    async def run_diagnosis(self, hold: float = 0) -> None:
        view = self.query_one(ProbeView)
        what = (f"Holding an idle connection for {hold:g} s…" if hold
                else "Probing and reading the config…")
        view.reset(what)
        self._busy(True, what, hold)
        try:
            diagnosis = await self.in_thread(diagnose_state, self.state, self._options(hold),
                                             self._stage_seen)
        finally:
            self._busy(False, "")
        self._show(diagnosis)
        self.query_one("#hold", Button).label = f"Hold test ({self.hold_seconds} s)"

    def run_check(self, hold: float = 0) -> None:
        self.run_diagnosis(hold=hold)

    def verdict_ok(self) -> bool | None:
        diagnosis = getattr(self, "diagnosis", None)
        return None if diagnosis is None else bool(diagnosis.ok)
