"""Step 7: run the guarded deploy (``wizard.deploy.apply``) over the open connection.

On arrival a dry run (the same transaction with ``dry_run=True``: detect and diff, nothing
changed) fills the Diff and Plan tabs, and its warnings (e.g. a default site that shadows the
new one) are listed before anything changes. "Deploy" (the button or ``d``, never Next) asks
for a confirmation naming the host and the file, then runs the transaction in a thread worker;
its events become rows (spinner, then ✓/✗ and time, the checker's output under a failure), and
the result says plainly whether the host was rolled back. When the dry run found that the
host's stock config needs a change beside the site (the main config's include line, the
default site disabled: ``DeployResult.needs``), Deploy first shows that change (its diff) and
asks; yes runs with those flags (``wizard.deploy.consent``), as the CLI's
``--edit-main-config`` / ``--disable-default-site`` do. Rollback restores the backup this
deploy made, through the same core call ``sockwizard rollback`` uses. The History tab lists
the host's last few deploys and rollbacks of the file (``wizard.deploy.host_history``, the
plain function behind ``sockwizard history``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import Button, Checkbox, DataTable, Static, TabbedContent, TabPane

from wizard.deploy import (
    DEFAULT_BACKUP_DIR,
    DeployEvent,
    DeployOptions,
    DeployResult,
    Notice,
    Outcome,
    consent,
    host_history,
    rollback_result,
)
from wizard.errors import SockwizardError
from wizard.sandbox import FAULT_TITLES, Fault, Sandbox, start_sandbox
from wizard.sandbox.breaks import apply_fix, break_report
from wizard.tui.calls import apply_on, deploy_options, deploy_question, locked
from wizard.tui.messages import DeployEventSeen
from wizard.tui.screens.base import StepScreen
from wizard.tui.screens.modals import ConfirmModal
from wizard.tui.services import Services
from wizard.tui.state import Next, TargetKind, WizardState
from wizard.tui.widgets.code_view import CodeView
from wizard.tui.widgets.deploy_log import DeployLog, result_content
from wizard.tui.words import for_tui


class DeployScreen(StepScreen):

    CSS_PATH = "results.tcss"
    NEXT_LABEL = "Probe & verdict"
    BODY_SCROLLS = False

    BINDINGS: ClassVar[list[BindingType]] = [
        *StepScreen.BINDINGS,
        Binding("d", "deploy", "Deploy"),
        Binding("r", "rollback", "Rollback"),
    ]

    def __init__(self, state: WizardState, index: int, services: Services) -> None:
        super().__init__(state, index, services)
        self.deploy_result: DeployResult | None = None
        self.planned: DeployResult | None = None  # the dry run's result (dest, warnings)
        self.busy = False
        self.planning = False
        self.sandbox: Sandbox | None = state.sandbox
        self.deployed_spec = state.deployed_spec

    @property
    def where(self) -> str:
        """The host, as the user knows it: "this machine" rather than the remote's "local"."""
        if self.state.target.kind is TargetKind.LOCAL:
            return "this machine"
        conn = self.state.connection
        return conn.remote.name if conn else "?"

    @property
    def in_sandbox(self) -> bool:
        return self.state.target.kind is TargetKind.SANDBOX

    def compose_body(self) -> ComposeResult:
        where = self.where
        if self.in_sandbox:
            yield Static(Content.assemble(
                ("Start a throwaway ", "$text-muted"), (self.state.spec.proxy.value, "bold"),
                (f" and {len(self.state.spec.backends)} demo Socket.IO server(s), one per "
                 "backend, on free loopback ports, then run the same guarded deploy into it "
                 "(your balancing too): back up, upload, validate, rename, reload, probe"
                 + (", and prove affinity" if self.state.spec.sticky else "")
                 + ". Everything is removed when you leave.", "$text-muted")),
                id="deploy-summary")
        else:
            yield Static(Content.assemble(
            ("Deploy the ", "$text-muted"), (self.state.spec.proxy.value, "bold"),
            (" config to ", "$text-muted"), (where, "bold"),
            (": back up, upload beside the target, validate, rename, reload, probe — and put "
             "the old file back if any of it fails.", "$text-muted")), id="deploy-summary")
        with Horizontal(id="deploy-options", classes="hidden" if self.in_sandbox else ""):
            yield Checkbox("Probe through the proxy after the reload", True, id="opt-probe",
                           compact=True)
            yield Checkbox("Roll back on failure", True, id="opt-rollback", compact=True)
        yield Static(id="deploy-result", classes="hidden")
        with TabbedContent(id="deploy-tabs"):
            with TabPane("Steps", id="tab-steps"):
                yield DeployLog(id="deploy-log")
            with TabPane("Diff", id="tab-diff"):
                yield CodeView("Reading the file on the host…", "text", id="deploy-diff")
            with TabPane("Plan", id="tab-plan"):
                yield CodeView("Detecting what the host has…", "text", line_numbers=False,
                               id="deploy-plan")
            with TabPane("History", id="tab-history"):
                yield DataTable(id="deploy-history", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="deploy-actions"):
            yield Button("Deploy", id="deploy", variant="success", compact=True)
            yield Button("Rollback", id="rollback", variant="warning", compact=True,
                         disabled=True, action="screen.rollback")
            yield Static(id="deploy-status", classes="muted")

    def on_mount(self) -> None:
        self.query_one("#deploy", Button).focus()
        earlier = self.state.deploy_report
        if isinstance(earlier, DeployResult):
            # Back from the verdict: show what happened (and keep Rollback possible).
            log = self.query_one(DeployLog)
            for step in earlier.steps:
                log.handle(step)
            self._show_result(earlier)
            self._show_plan(earlier)
            return
        self.query_one("#next", Button).disabled = True  # until something was deployed
        self.query_one(DeployLog).mount(Static(
            "Press Deploy (d) to run the steps. The Diff and Plan tabs show what will change.",
            classes="muted"))
        if self.in_sandbox:
            for view in self.query("#deploy-diff, #deploy-plan").results(CodeView):
                view.show("The sandbox starts from a placeholder site; the diff appears here "
                          "after the deploy.", "text")
            return
        self.planning = True  # until the dry run below has read the host
        self.plan()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Grey out Deploy while something runs, and Rollback until there is one to do."""
        if action == "deploy":
            return None if (self.busy or self.planning) else True
        if action == "rollback":
            buttons = self.query("#rollback").results(Button)
            return None if any(b.disabled for b in buttons) else True
        return super().check_action(action, parameters)

    # -- options ---------------------------------------------------------------------------

    def options(self, *, dry_run: bool = False) -> DeployOptions:
        return deploy_options(self.state, dry_run=dry_run,
                              probe=self.query_one("#opt-probe", Checkbox).value,
                              rollback=self.query_one("#opt-rollback", Checkbox).value)

    # -- the dry run -------------------------------------------------------------------------

    @work(exclusive=True, group="plan", exit_on_error=False)
    async def plan(self) -> None:
        self.planning = True
        self.query_one("#deploy", Button).disabled = True
        self.set_status("Reading the host…")
        try:
            planned = await self.in_thread(apply_on, self.state, self.options(dry_run=True),
                                           self._notice_from_thread)
        finally:
            self.planning = False
            self.refresh_bindings()
            deploy = self.query_one("#deploy", Button)
            deploy.disabled = self.busy
            if not self.busy:
                deploy.focus()
            self.set_status("")
        self.planned = planned
        self._show_plan(planned)
        if planned.outcome is not Outcome.PLANNED:  # could not even detect: say why
            self._show_result(planned, deployed=False)
        self.show_history(planned.dest)

    def _notice_from_thread(self, event: DeployEvent) -> None:
        """The dry run's sink: its warnings and notes (a default site that would shadow the
        new config, a missing marker...) are shown before Deploy; its step rows are not (they
        would read as if something had been deployed)."""
        if isinstance(event, Notice):
            self.post_message(DeployEventSeen(event))

    # -- the host's last entries -------------------------------------------------------------

    HISTORY_ROWS = 5

    @work(exclusive=True, group="history", exit_on_error=False)
    async def show_history(self, dest: str | None) -> None:
        """The host's last few deploys and rollbacks of this file (``sockwizard history``)."""
        conn = self.state.connection
        table = self.query_one("#deploy-history", DataTable)
        if conn is None or self.in_sandbox:
            return
        try:
            records = await self.in_thread(locked, conn, host_history, conn.remote,
                                           DEFAULT_BACKUP_DIR, dest=dest,
                                           limit=self.HISTORY_ROWS)
            rows = [r.row() for r in reversed(records)]  # newest first
            if not rows:
                rows = [("", "", "no deploy recorded for this file yet", "", "", "")]
        except SockwizardError as exc:
            rows = [("", "", f"could not read the history: {exc.title}", "", "", "")]
        table.clear(columns=True)
        table.add_columns("id", "time", "what", "file", "config", "who")
        table.add_rows(rows)

    def _show_plan(self, result: DeployResult) -> None:
        diff = result.diff or "No change: the host already has exactly this config.\n"
        self.query_one("#deploy-diff", CodeView).show(diff, "diff")
        plan = "\n".join(str(item) for item in result.plan) or "(no plan: see the result)"
        self.query_one("#deploy-plan", CodeView).show(plan, "text")

    # -- the deploy --------------------------------------------------------------------------

    def action_next(self) -> None:
        """Go on to the verdict once something was deployed. Never deploys: that takes the
        Deploy button (or ``d``) and, on a real host, a confirmation."""
        if self.busy or self.planning:
            return
        if self.deploy_result is None or self.deploy_result.outcome is Outcome.PLANNED:
            self.app.clear_notifications()  # ^n five times: one toast, not five
            self.notify("Nothing is deployed yet: press Deploy (d) first.",
                        title="Not deployed", severity="warning", timeout=4)
            self.query_one("#deploy", Button).focus()
            return
        self.dismiss(Next(self.back_state()))

    def back_state(self) -> WizardState:
        """Back keeps what was deployed (the wizard drops it if the spec is then edited)."""
        if self.deploy_result is None or self.deploy_result.outcome is Outcome.PLANNED:
            return replace(self.state, sandbox=self.sandbox)
        return replace(self.state, deploy_report=self.deploy_result, sandbox=self.sandbox,
                       deployed_spec=self.deployed_spec)

    def action_deploy(self) -> None:
        if self.planning:
            self.notify("Still reading the host; Deploy is ready in a moment.", timeout=3)
        elif not self.busy:
            self.deploy()

    @work(exclusive=True, group="deploy", exit_on_error=False)
    async def deploy(self) -> None:
        options = self.options()
        needs = self.planned.needs if self.planned is not None else ()
        if not self.in_sandbox:
            # One confirmation names the host and the file and, when the host's stock config
            # must change too (--edit-main-config / --disable-default-site), shows that diff.
            question = for_tui(deploy_question(self.state.spec, self.where, self.planned))
            if needs:
                assert self.planned is not None
                question += ("\n\nBesides the site file, this deploy has to change the host's "
                             "own config (backed up, validated with the site, undone on any "
                             f"failure and by a rollback):\n\n{self.planned.needs_text}")
            sure = await self.app.push_screen_wait(ConfirmModal(
                f"Deploy to {self.where}", question,
                yes="Change and deploy" if needs else "Deploy"))
            if not sure:
                self.set_status("Not deployed.")
                return
            if needs:
                options = consent(options, needs)
        self.deployed_spec = self.state.spec
        log = self.query_one(DeployLog)
        log.clear()
        self.query_one("#deploy-tabs", TabbedContent).active = "tab-steps"
        self._set_busy(True)
        try:
            if self.in_sandbox:
                result = await self._deploy_sandbox()
            else:
                result = await self.in_thread(apply_on, self.state, options,
                                              self._event_from_thread)
        finally:
            self._set_busy(False)
        self._show_result(result)
        self._show_plan(result)
        self.show_history(result.dest)

    async def _deploy_sandbox(self) -> DeployResult:
        """``wizard.sandbox.start_sandbox``: the proxy and backend start, then the same
        transaction runs into them. A sandbox from an earlier try is stopped first."""
        old, self.sandbox = self.sandbox, None
        if old is not None:
            self.set_status("Stopping the previous sandbox…")
            await self.in_thread(old.stop)
            self.services.forget_sandbox(old)
        self.set_status("Starting the sandbox…")
        box = await self.in_thread(start_sandbox, self.state.spec.proxy, self.state.spec,
                                   on_event=self._event_from_thread)
        self.sandbox = box
        self.services.adopt_sandbox(box)
        # What the sandbox put in place of the spec's addresses, and the affinity proof.
        self.query_one(DeployLog).mount(Static(
            Content.assemble(("sandbox\n", "bold $text-muted"), "\n".join(box.summary_lines())),
            classes="deploy-evidence"))
        assert box.result is not None
        return box.result

    def _event_from_thread(self, event: DeployEvent) -> None:
        """The deploy's sink: runs in the worker thread, so it only posts the event."""
        self.post_message(DeployEventSeen(event))

    def on_deploy_event_seen(self, message: DeployEventSeen) -> None:
        self.query_one(DeployLog).handle(message.event)

    def _set_busy(self, running: bool) -> None:
        self.busy = running
        self.refresh_bindings()
        self.query_one("#deploy", Button).disabled = running
        self.query_one("#rollback", Button).disabled = True
        for box in self.query(Checkbox).results(Checkbox):
            box.disabled = running
        self.set_status("Deploying…" if running else "")

    def show_result(self, result: DeployResult) -> None:
        """Show a finished deploy (also used to replay a recorded one in tests)."""
        self._show_result(result)

    def _show_result(self, result: DeployResult, *, deployed: bool = True) -> None:
        """The banner; ``deployed`` False for a dry run that failed (nothing to go on with)."""
        if deployed:
            self.deploy_result = result
        self.add_class("-has-result")
        banner = self.query_one("#deploy-result", Static)
        banner.update(result_content(result))
        banner.remove_class("hidden")
        banner.set_class(result.outcome in (Outcome.DEPLOYED, Outcome.UNCHANGED), "-ok")
        banner.set_class(result.outcome in (Outcome.ROLLED_BACK, Outcome.KEPT), "-rolled-back")
        banner.set_class(result.outcome in (Outcome.FAILED, Outcome.ROLLBACK_FAILED), "-failed")
        self.query_one("#rollback", Button).disabled = not (
            result.outcome in (Outcome.DEPLOYED, Outcome.KEPT) and result.id is not None
            and self.state.connection is not None)
        self.refresh_bindings()
        self.query_one("#next", Button).disabled = self.deploy_result is None \
            or self.deploy_result.outcome is Outcome.PLANNED
        if result.detail and result.outcome not in (Outcome.DEPLOYED, Outcome.UNCHANGED):
            self.query_one(DeployLog).mount(Static(
                Content.assemble(("evidence\n", "bold $text-muted"), result.detail),
                classes="deploy-evidence"))

    # -- manual rollback ----------------------------------------------------------------------

    @work(exclusive=True, group="deploy", exit_on_error=False)
    async def action_rollback(self) -> None:
        result = self.deploy_result
        if result is None or result.id is None or self.busy or self.state.connection is None:
            return
        question = (f"Put the previous config back on {result.host} from {result.backup}, "
                    "validate it and reload the proxy?" if result.backup is not None else
                    f"This deploy created {result.dest} on {result.host}: remove it (and what "
                    "the deploy set up for it), validate the rest and reload the proxy?")
        sure = await self.app.push_screen_wait(ConfirmModal("Roll back", question,
                                                            yes="Roll back"))
        if not sure:
            return
        log = self.query_one(DeployLog)
        self._set_busy(True)
        try:
            conn = self.state.connection
            assert conn is not None
            restored = await self.in_thread(locked, conn, rollback_result, conn.remote,
                                            result, on_event=self._event_from_thread,
                                            probe_host=conn.host_name)
        finally:
            self._set_busy(False)
        log.scroll_end()
        self._show_result(restored)
        self.show_history(restored.dest)

    # Not Button(action=...): that path asks check_action, which greys out Deploy while the
    # host is read; a press then must still say why (action_deploy's notice).
    @on(Button.Pressed, "#deploy")
    def _deploy_pressed(self) -> None:
        self.action_deploy()

    def palette_commands(self) -> list[tuple[str, str, Any]]:
        commands = [("Deploy", "Run the guarded deploy on the target", self.action_deploy),
                    ("Rollback", "Restore the backup this deploy made", self.action_rollback)]
        if self.in_sandbox:  # `sockwizard sandbox --break FAULT [--fix]`
            commands += [(f"Break the sandbox: {fault.value}", title,
                          lambda fault=fault: self.break_sandbox(fault))
                         for fault, title in FAULT_TITLES.items()]
            if self.sandbox is not None and self.sandbox.fault is not None:
                commands.append(("Deploy the fix", "Deploy the config that fixes the sandbox's "
                                 "fault with the guarded transaction", self.fix_sandbox))
        return commands

    @work(exclusive=True, group="deploy", exit_on_error=False)
    async def break_sandbox(self, fault: Fault) -> None:
        """A sandbox started with ``fault`` deployed on purpose: a real client's symptom and
        diagnose's findings with their fix, in the log (``wizard.sandbox.breaks``)."""
        log = self.query_one(DeployLog)
        log.clear()
        self._set_busy(True)
        try:
            old, self.sandbox = self.sandbox, None
            if old is not None:
                await self.in_thread(old.stop)
                self.services.forget_sandbox(old)
            self.set_status(f"Starting a sandbox with the {fault.value} fault…")
            box = await self.in_thread(start_sandbox, self.state.spec.proxy, self.state.spec,
                                       fault=fault)
            self.sandbox = box
            self.services.adopt_sandbox(box)
            self.set_status("A real client, then diagnose…")
            text = await self.in_thread(break_report, box)
        finally:
            self._set_busy(False)
        log.mount(Static(Content.assemble(("broken on purpose\n", "bold $text-muted"), text),
                         classes="deploy-evidence", markup=False))

    @work(exclusive=True, group="deploy", exit_on_error=False)
    async def fix_sandbox(self) -> None:
        box = self.sandbox
        if box is None or box.fault is None:
            return
        self.query_one(DeployLog).clear()
        self._set_busy(True)
        try:
            result = await self.in_thread(apply_fix, box, self._event_from_thread)
        finally:
            self._set_busy(False)
        self._show_result(result)

