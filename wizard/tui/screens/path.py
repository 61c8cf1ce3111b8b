"""Step 3: the Socket.IO path (default or custom), what the proxy forwards, and the matching
server/client ``path`` settings (``wizard.render.snippets``) shown live when the path is custom."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, RadioSet, Static, TabbedContent, TabPane

from wizard.model import DEFAULT_PATH, DeploySpec, Scope
from wizard.render import path_snippets
from wizard.tui.screens.shared import SpecFormScreen
from wizard.tui.widgets.choice import Choice, Choices
from wizard.tui.widgets.code_view import CodeView
from wizard.tui.widgets.field import Field, check_raw, problem_for

_FIELDS = ("path", "server_path", "static_root")


def _short_title(title: str) -> str:
    """"Server (Node.js, socket.io)" -> "Server (Node.js)": tab labels must fit a column."""
    head, _, rest = title.partition(" (")
    return f"{head} ({rest.split(',')[0].split(' /')[0].rstrip(')')})" if rest else head


class PathScreen(SpecFormScreen):
    FORM_TITLE = "Path & scope"
    STEP_HELP = ("Clients, proxy and server must agree on the Socket.IO path. Keep the default "
                 "unless another app already owns /socket.io/.")

    def compose_body(self) -> ComposeResult:
        spec = self.state.spec
        custom = spec.path_is_custom
        with Horizontal(id="columns"):
            with Vertical(classes="column", id="path-left"):
                with Choices(id="path-kind") as kind:
                    kind.border_title = "Path"
                    yield Choice(f"Default {DEFAULT_PATH}", value=not custom,
                                      id="path-default")
                    yield Choice("Custom path", value=custom, id="path-custom")
                with Vertical(id="custom-panel", classes="panel") as panel:
                    panel.border_title = "Custom path"
                    yield Field("Path clients connect to",
                                Input(spec.path, id="path", validators=[self._check("path")]),
                                hint="Starts and ends with /, e.g. /chat/socket.io/",
                                id="field-path")
                    yield Field("Server path, if the proxy rewrites",
                                Input(spec.server_path or "", id="server_path",
                                      placeholder="same as above",
                                      validators=[self._check("server_path")]),
                                hint="Empty: the same path. Set /socket.io/ to keep the "
                                     "server on its default.",
                                id="field-server_path")
                with Choices(id="scope") as scope:
                    scope.border_title = "What the proxy forwards"
                    yield Choice("Everything (pages too)",
                                      value=spec.scope is Scope.ALL, id="scope-all")
                    yield Choice("Only the Socket.IO path",
                                      value=spec.scope is Scope.SOCKETIO, id="scope-socketio")
                with Vertical(id="static-panel", classes="panel") as static:
                    static.border_title = "Static files"
                    yield Field("Directory the proxy serves itself", Input(
                        spec.static_root, id="static_root",
                        validators=[self._check("static_root")]), id="field-static_root")
            with Vertical(id="snippets-panel", classes="panel column") as snippets:
                snippets.border_title = "Server and client settings"
                yield Static(id="snippets-note", classes="muted")
                with TabbedContent(id="snippets"):
                    for i, snippet in enumerate(path_snippets(spec)):
                        with TabPane(_short_title(snippet.title), id=f"snippet-{i}"):
                            yield CodeView(snippet.code, snippet.language, line_numbers=False,
                                           id=f"snippet-code-{i}")

    def on_mount(self) -> None:
        self._refresh()
        self.query_one("#path-kind", RadioSet).focus()

    # -- form ---------------------------------------------------------------------------

    def _custom(self) -> bool:
        pressed = self.query_one("#path-kind", RadioSet).pressed_button
        return pressed is not None and pressed.id == "path-custom"

    def _scope(self) -> Scope:
        pressed = self.query_one("#scope", RadioSet).pressed_button
        return Scope.SOCKETIO if pressed is not None and pressed.id == "scope-socketio" \
            else Scope.ALL

    def raw(self) -> dict[str, Any]:
        value = {name: self.query_one(f"#{name}", Input).value.strip() for name in _FIELDS}
        raw: dict[str, Any] = {"scope": self._scope().value}
        if self._custom():
            raw["path"] = value["path"]
            raw["server_path"] = value["server_path"] or None
        else:
            raw["path"], raw["server_path"] = DEFAULT_PATH, None
        if raw["scope"] == Scope.SOCKETIO.value:
            raw["static_root"] = value["static_root"]
        return raw

    def _refresh(self) -> DeploySpec | None:
        custom = self._custom()
        socketio_only = self._scope() is Scope.SOCKETIO
        self.query_one("#custom-panel").set_class(not custom, "hidden")
        self.query_one("#static-panel").set_class(not socketio_only, "hidden")
        spec, problems = check_raw(self.raw(), self.state.spec)
        for name in _FIELDS:
            self.query_one(f"#field-{name}", Field).set_problem(problem_for(problems, name))
        self._show_snippets(spec)
        self.set_status("" if spec else "Fix the fields marked in red.")
        return spec

    def _show_snippets(self, spec: DeploySpec | None) -> None:
        note = self.query_one("#snippets-note", Static)
        tabs = self.query_one("#snippets", TabbedContent)
        if spec is None:
            note.update("The settings appear here once the path is valid.")
            tabs.display = False
            return
        if not spec.path_is_custom:
            note.update("Default path: the Socket.IO server and clients need no `path` setting.")
            tabs.display = False
            return
        note.update("Set these in your server and clients, or they get 404s:")
        tabs.display = True
        for i, snippet in enumerate(path_snippets(spec)):
            self.query_one(f"#snippet-code-{i}", CodeView).show(snippet.code, snippet.language)

    @on(RadioSet.Changed)
    @on(Input.Changed)
    def _changed(self) -> None:
        self._refresh()

    # -- answers -----------------------------------------------------------------------

