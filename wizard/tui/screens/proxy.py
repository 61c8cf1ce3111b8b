"""Step 2: which proxy (each with its one line from the profiles), and what file to generate."""

from __future__ import annotations

from dataclasses import replace

from textual import on
from textual.app import ComposeResult
from textual.content import Content
from textual.widgets import OptionList, RadioSet
from textual.widgets.option_list import Option

from wizard.model import Layout, ProxyKind
from wizard.proxies import PROFILES
from wizard.tui.screens.base import StepScreen
from wizard.tui.state import Next, WizardState
from wizard.tui.widgets.choice import Choice, Choices
from wizard.tui.widgets.options import spaced

_LAYOUT_LABELS = {
    # At most 72 characters: the radio buttons get no more on an 80-column terminal.
    Layout.SITE: "A file to include (conf.d, vhost, site block, proxy.js, dynamic file)",
    Layout.FULL: "A complete main config (nginx.conf, Caddyfile, haproxy.cfg, traefik.yml)",
}


class ProxyScreen(StepScreen):
    STEP_HELP = "Which reverse proxy sits in front of your Socket.IO server?"

    def compose_body(self) -> ComposeResult:
        options = []
        for kind, prof in PROFILES.items():  # the registry's order
            prompt = Content.assemble((prof.title, "bold"), "\n",
                                      (prof.when_to_pick, "$text-muted"))
            options.append(Option(prompt, id=kind.value))
        proxies = OptionList(*spaced(options), id="proxies")
        proxies.border_title = "Proxy"
        yield proxies
        with Choices(id="layout") as layout:
            layout.border_title = "What to generate"
            for value, label in _LAYOUT_LABELS.items():
                yield Choice(label, value=self.state.spec.layout is value,
                                  id=f"layout-{value.value}")

    def on_mount(self) -> None:
        proxies = self.query_one("#proxies", OptionList)
        proxies.highlighted = proxies.get_option_index(self.state.spec.proxy.value)
        proxies.focus()

    @on(OptionList.OptionSelected, "#proxies")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        # The option the event names, not the highlight now (keys typed right after Enter
        # may have moved it before this message is handled).
        self.dismiss(Next(self._picked(event.option.id)))

    def _picked(self, kind_id: str | None = None) -> WizardState:
        if kind_id is None:
            proxies = self.query_one("#proxies", OptionList)
            index = proxies.highlighted
            if index is not None:
                kind_id = proxies.get_option_at_index(index).id
        kind = ProxyKind(kind_id) if kind_id else self.state.spec.proxy
        pressed = self.query_one("#layout", RadioSet).pressed_button
        layout = Layout.FULL if pressed is not None and pressed.id == "layout-full" else Layout.SITE
        return replace(self.state, spec=replace(self.state.spec, proxy=kind, layout=layout))

    def answer(self) -> WizardState | None:
        return self._picked()

    def back_state(self) -> WizardState:
        return self._picked()
