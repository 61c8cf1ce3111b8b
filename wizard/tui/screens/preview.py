"""Step 5: the generated config (``wizard.render``), highlighted, with the path snippets, the
spec as TOML, and — once a host is connected — a diff against the file on the host."""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static, TabbedContent, TabPane

from wizard.model import Layout
from wizard.proxies import profile
from wizard.render import Rendered, path_snippets, render
from wizard.spec_file import dump_spec
from wizard.tui.calls import apply_on, deploy_options
from wizard.tui.screens.base import StepScreen
from wizard.tui.widgets.code_view import CodeView


class PreviewScreen(StepScreen):

    CSS_PATH = "forms.tcss"
    NEXT_LABEL = "Choose target"
    BODY_SCROLLS = False

    BINDINGS: ClassVar[list[BindingType]] = [
        *StepScreen.BINDINGS,
        Binding("s", "app.save_config", "Save config"),
        Binding("w", "app.save_spec", "Save spec"),
        Binding("c", "copy_config", "Copy"),
    ]

    @property
    def rendered(self) -> Rendered:
        return render(self.state.spec)

    @property
    def dest(self) -> str:
        conn = self.state.connection
        return conn.choice.dest if conn and conn.choice.dest else self.rendered.dest

    def compose_body(self) -> ComposeResult:
        spec = self.state.spec
        rendered = self.rendered
        prof = profile(spec.proxy)
        layout = "a file to include" if spec.layout is Layout.SITE else "a complete main config"
        yield Static(f"{prof.title}: {layout}, {len(rendered.text.splitlines())} lines. "
                     f"It goes to {self.dest} on the host.", id="preview-summary",
                     markup=False)
        with TabbedContent(id="preview-tabs"):
            with TabPane("Config", id="tab-config"):
                yield CodeView(rendered.text, rendered.syntax, id="config")
            with TabPane("Server & client", id="tab-snippets"):
                if spec.path_is_custom:
                    with TabbedContent(id="preview-snippets"):
                        for i, snippet in enumerate(path_snippets(spec)):
                            with TabPane(snippet.title, id=f"psnippet-{i}"):
                                yield CodeView(snippet.code, snippet.language,
                                               line_numbers=False)
                else:
                    yield Static("Default path /socket.io/: the Socket.IO server and clients "
                                 "need no `path` setting.", classes="muted")
            if self.state.connection is not None:
                with TabPane("Diff on host", id="tab-diff"):
                    yield CodeView("Reading the file on the host…", "text", id="diff")
            with TabPane("Spec (TOML)", id="tab-spec"):
                yield CodeView(dump_spec(spec), "toml", id="spec-toml")

    def on_mount(self) -> None:
        self.query_one("#config", CodeView).focus()
        if self.state.connection is not None:
            self._load_diff()

    @work(exclusive=True, exit_on_error=False)
    async def _load_diff(self) -> None:
        """The deploy's own dry run: it detects where the file goes on this host, reads it
        and diffs it, changing nothing."""
        planned = await self.in_thread(apply_on, self.state, deploy_options(self.state,
                                                                            dry_run=True))
        diff = planned.diff or (f"No change: {planned.dest} on the host already has exactly "
                                "this config.\n" if planned.ok else planned.message())
        self.query_one("#diff", CodeView).show(diff, "diff" if planned.diff else "text")

    def action_copy_config(self) -> None:
        self.app.copy_to_clipboard(self.rendered.text)
        self.notify("The config is on the clipboard (if your terminal allows it).",
                    title="Copied")
