"""A live view of one ``wizard.probe`` run: the stage table, the handshake, the findings.

Used by the deploy's verdict step and by the diagnose mode's findings step. Stages arrive one
by one from the probe's ``on_stage`` callback (called in a worker thread, which posts
``messages.StageSeen``; the screen's handler calls ``add_stage`` on the UI thread), then
``show_report`` fills in the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Static

from wizard.findings import Finding
from wizard.model import DeploySpec, timeout_problem
from wizard.probe import ProbeReport, Stage, format_ms

_SEVERITY = {"error": ("✗ error", "bold $text-error"),
             "warning": ("! warning", "bold $text-warning"),
             "info": ("i info", "bold $text-accent")}


def stage_cells(stage: Stage) -> tuple[Text, Text, Text, Text]:
    """One table row. Rich Text: DataTable measures it for the column widths."""
    mark = (Text("✓", style="bold green") if stage.ok else Text("–", style="dim")
            if stage.skipped else Text("✗", style="bold red"))
    ms = Text(format_ms(stage.ms), justify="right")
    return mark, Text(stage.name), ms, Text(stage.detail)


def verdict_line(report: ProbeReport) -> Content:
    if report.ok:
        return Content.styled("✓ Socket.IO works end to end over WebSocket", "bold $text-success")
    transport = report.transport or "none"
    return Content.styled(f"✗ Not working end to end (transport: {transport})",
                          "bold $text-error")


def handshake_lines(report: ProbeReport, spec: DeploySpec | None) -> Content:
    """The open packet's fields, and the proxy timeout held against the *live* ping values."""
    hs = report.handshake
    if hs is None:
        return Content.styled("No Engine.IO handshake was read.", "$text-muted")
    parts = [
        Content.assemble(("transport ", "$text-muted"), (report.transport or "none", "bold"),
                         ("   EIO ", "$text-muted"), str(hs.eio_version),
                         ("   upgrades ", "$text-muted"), ", ".join(hs.upgrades) or "none"),
        Content.assemble(("pingInterval ", "$text-muted"), (f"{hs.ping_interval_ms} ms", "bold"),
                         ("   pingTimeout ", "$text-muted"), (f"{hs.ping_timeout_ms} ms", "bold"),
                         ("   maxPayload ", "$text-muted"), str(hs.max_payload)),
    ]
    if spec is not None:
        why = timeout_problem("read_timeout", spec.read_timeout, hs.ping_interval_ms,
                              hs.ping_timeout_ms)
        if why is None:
            parts.append(Content.styled(
                f"✓ the proxy's read timeout ({spec.read_timeout} s) is above the live "
                f"pingInterval + pingTimeout ({hs.ping_sum_s:g} s)", "$text-success"))
        else:
            parts.append(Content.styled(f"✗ read timeout: {why}", "$text-error"))
    return Content("\n").join(parts)


def finding_content(finding: Finding) -> Content:
    label, style = _SEVERITY.get(finding.severity, (finding.severity, "bold"))
    return Content("\n").join([
        Content.assemble((label, style), "  ", (finding.title, "bold"), "  ",
                         (finding.code, "$text-muted")),
        Content.assemble(("evidence  ", "$text-muted"), finding.evidence),
        Content.assemble(("fix       ", "$text-accent"), finding.fix),
    ])


class ProbeView(Vertical):
    """Verdict line, stage table, handshake, findings."""

    DEFAULT_CLASSES = "probe-view"

    def compose(self) -> ComposeResult:
        yield Static(id="verdict")
        table: DataTable[Text] = DataTable(id="stages", cursor_type="row",
                                                    zebra_stripes=True)
        table.border_title = "Stages"
        yield table
        with Vertical(id="handshake-panel", classes="panel") as handshake:
            handshake.border_title = "Handshake"
            yield Static(id="handshake")
        with Vertical(id="findings-panel", classes="panel") as findings:
            findings.border_title = "Findings"
            yield Vertical(id="findings")

    def on_mount(self) -> None:
        table = self.query_one("#stages", DataTable)
        table.add_column("", key="ok", width=1)
        table.add_column("stage", key="stage", width=12)
        table.add_column(Text(f"{'time':>8}"), key="ms", width=8)
        table.add_column("what it saw", key="detail")

    def reset(self, what: str) -> None:
        self.query_one("#stages", DataTable).clear()
        self.query_one("#verdict", Static).update(Content.styled(what, "$text-muted"))
        self.query_one("#handshake", Static).update("")
        self.query_one("#findings", Vertical).remove_children()

    def add_stage(self, stage: Stage) -> None:
        table = self.query_one("#stages", DataTable)
        if stage.name in {str(k.value) for k in table.rows}:
            table.remove_row(stage.name)
        table.add_row(*stage_cells(stage), key=stage.name)

    def show_report(self, report: ProbeReport, spec: DeploySpec | None = None,
                    findings: Sequence[Finding] | None = None,
                    checks: Sequence[str] = (), notes: Sequence[str] = ()) -> None:
        """Fill in everything from a finished probe. ``findings`` replaces the probe's own
        (a diagnosis merges them with the config's); ``checks`` lists what was found fine,
        ``notes`` what the diagnosis could not reconcile (e.g. the config read and the probe
        disagree: the URL may reach another proxy than the one chosen)."""
        table = self.query_one("#stages", DataTable)
        shown = {str(k.value) for k in table.rows}
        for stage in report.stages:
            if stage.name not in shown:
                table.add_row(*stage_cells(stage), key=stage.name)
        self.query_one("#verdict", Static).update(verdict_line(report))
        self.query_one("#handshake", Static).update(handshake_lines(report, spec))
        self.show_findings(report.findings if findings is None else findings, checks, notes)

    def show_findings(self, findings: Sequence[Finding], checks: Sequence[str] = (),
                      notes: Sequence[str] = ()) -> None:
        box = self.query_one("#findings", Vertical)
        box.remove_children()
        widgets = [Static(finding_content(f), classes=f"finding -{f.severity}")
                   for f in findings]
        if not findings and notes:
            widgets.append(Static(Content.styled(
                "No findings in what was read — but the note below says it may not be what "
                "serves this URL.", "$text-warning")))
        elif not findings:
            widgets.append(Static(Content.styled("No findings: nothing to fix.",
                                                 "$text-success")))
        widgets += [Static(Content.assemble(("i note  ", "bold $text-warning"), note),
                           classes="finding -warning") for note in notes]
        if checks:
            widgets.append(Static(Content("\n").join(
                Content.assemble(("✓ ", "$text-success"), (c, "$text-muted")) for c in checks),
                classes="checks"))
        box.mount_all(widgets)
