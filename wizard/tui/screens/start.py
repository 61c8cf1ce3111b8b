"""Step 1: what to do — deploy a new config, diagnose a live host, or load a saved spec."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Input, OptionList
from textual.widgets.option_list import Option

from wizard.tui.screens.base import StepScreen
from wizard.tui.state import Mode, Next
from wizard.tui.widgets.field import Field
from wizard.tui.widgets.options import spaced

DEFAULT_SPEC_FILE = "sockwizard.toml"

_CHOICES = (
    ("deploy", "Deploy a new config",
     "Pick a proxy, generate its config, deploy it here or over SSH, and probe it."),
    ("diagnose", "Diagnose a live host",
     'Probe a Socket.IO URL, read the proxy config over SSH, and explain "transport close".'),
    ("load", "Load a saved spec (TOML)",
     "Continue from a spec saved by sockwizard (the file `render --spec` reads)."),
)


def _option(key: str, title: str, line: str) -> Option:
    prompt = Content.assemble((title, "bold"), "\n", (line, "$text-muted"))
    return Option(prompt, id=key)


class StartScreen(StepScreen):
    STEP_HELP = ("Put a Socket.IO server behind nginx, Apache, Caddy, HAProxy, Traefik or "
                 "http-proxy — then deploy the config and prove it works.")
    SHOW_BACK = False
    # The menu is the control: Enter or a click on a choice moves on. (Without a Button the
    # first screen also paints ~15 ms sooner: Button's default CSS alone takes 4 ms to parse.)
    SHOW_NEXT = False

    def compose_body(self) -> ComposeResult:
        options = OptionList(*spaced(_option(*c) for c in _CHOICES), id="start-options")
        options.border_title = "What would you like to do?"
        yield options

    def _add_load_panel(self) -> None:
        """The (hidden) spec-file field, mounted once the menu has been painted: the first
        screen does not wait for it (an Input is one of the dearer widgets to set up)."""
        panel = Vertical(Field("Spec file (TOML)", Input(self._default_file(), id="spec-file"),
                               hint="Enter loads it and continues with its settings."),
                         id="load-panel", classes="panel hidden")
        panel.border_title = "Load a spec"
        self.query_one("#body").mount(panel)

    def _default_file(self) -> str:
        source = self.state.spec_source
        return str(source) if source else DEFAULT_SPEC_FILE

    def on_mount(self) -> None:
        options = self.query_one("#start-options", OptionList)
        options.highlighted = options.get_option_index(
            "diagnose" if self.state.mode is Mode.DIAGNOSE else "deploy")
        options.focus()
        self.call_after_refresh(self._add_load_panel)

    def _choice(self) -> str:
        options = self.query_one("#start-options", OptionList)
        if options.highlighted is None:
            return "deploy"
        return options.get_option_at_index(options.highlighted).id or "deploy"

    @on(OptionList.OptionSelected, "#start-options")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        # The option the event names, not the highlight now: keys typed right after Enter
        # may already have moved it by the time this message is handled.
        self._go(event.option.id or "deploy")

    def action_next(self) -> None:
        self._go(self._choice())

    def _go(self, choice: str) -> None:
        if choice == "load":
            if not self.query("#load-panel"):  # chosen within ms of the first paint
                self.call_after_refresh(self._go, choice)
                return
            panel = self.query_one("#load-panel")
            if panel.has_class("hidden"):
                panel.remove_class("hidden")
                self.query_one("#spec-file", Input).focus()
                return
            self._load(self.query_one("#spec-file", Input).value)
            return
        mode = Mode.DIAGNOSE if choice == "diagnose" else Mode.DEPLOY
        self.dismiss(Next(replace(self.state, mode=mode)))

    @on(Input.Submitted, "#spec-file")
    def _submitted(self, event: Input.Submitted) -> None:
        self._load(event.value)

    @work(exclusive=True, exit_on_error=False)
    async def _load(self, text: str) -> None:
        from wizard.spec_file import load_spec  # tomllib and json: not worth it before asked

        path = Path(text.strip() or DEFAULT_SPEC_FILE).expanduser()
        self.set_status(f"Loading {path}…")
        try:
            spec = await self.in_thread(load_spec, path)
        finally:
            self.set_status("")
        self.app.notify(f"Loaded {path}", title="Spec loaded")
        self.dismiss(Next(replace(self.state, mode=Mode.DEPLOY, spec=spec, spec_source=path)))
