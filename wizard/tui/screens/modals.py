"""The wizard's dialogs: an error, an unknown host key, a file path, a yes/no confirmation.

Each is a typed ``ModalScreen`` (posting's confirmation modals are the model): the caller
awaits ``push_screen_wait`` and gets a bool or a Path back. The error modal is what
``SockwizardApp.show_error`` opens for errors with evidence worth reading (a checker's output).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from wizard.tui.widgets.code_view import CodeView


class ErrorModal(ModalScreen[None]):
    """What happened (title), the evidence (detail), what to do next (hint)."""

    CSS_PATH = "modals.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter", "close", "Close"),
    ]

    def __init__(self, title: str, hint: str = "", detail: str = "") -> None:
        super().__init__(classes="modal error-modal")
        self._title = title
        self._hint = hint
        self._detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            dialog.border_title = "Error"
            yield Static(self._title, id="error-title", markup=False)
            if self._detail:
                yield CodeView(self._detail.rstrip(), "text", line_numbers=False,
                               id="error-detail")
            if self._hint:
                yield Static(self._hint, id="error-hint", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("OK", id="ok", variant="error")

    def on_mount(self) -> None:
        self.query_one("#ok", Button).focus()

    def action_close(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        self.dismiss(None)


class HostKeyModal(ModalScreen[bool]):
    """First connection to a host: show its SHA256 fingerprint; True records and trusts it."""

    CSS_PATH = "modals.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "refuse", "Refuse"),
        Binding("y", "accept", "Trust and connect"),
    ]

    def __init__(self, host: str, key_type: str, fingerprint: str, known_hosts: str) -> None:
        super().__init__(classes="modal hostkey-modal")
        self.host = host
        self.key_type = key_type
        self.fingerprint = fingerprint
        self.known_hosts = known_hosts

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            dialog.border_title = "Unknown host key"
            yield Static(f"This is the first connection to {self.host}. It presents this key:",
                         markup=False)
            yield Static(f"{self.key_type}\n{self.fingerprint}", id="fingerprint", markup=False)
            yield Static(
                "Compare it with the host's own (run there: ssh-keygen -lf "
                "/etc/ssh/ssh_host_ed25519_key.pub). Trusting it adds one line to "
                f"{self.known_hosts}; a different key later will be refused.",
                classes="muted", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Refuse", id="refuse")
                yield Button("Trust and connect", id="accept", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#refuse", Button).focus()  # the safe choice is the default

    def action_accept(self) -> None:
        self.dismiss(True)

    def action_refuse(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#accept")
    def _accept(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#refuse")
    def _refuse(self) -> None:
        self.dismiss(False)


class PathPrompt(ModalScreen[Path | None]):
    """Ask for a file path (save config, save spec); None when cancelled."""

    CSS_PATH = "modals.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, default: str, *, action: str = "Save") -> None:
        super().__init__(classes="modal path-modal")
        self._title = title
        self._default = default
        self._action = action

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            dialog.border_title = self._title
            yield Label("File")
            yield Input(self._default, id="path", select_on_focus=False)
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button(self._action, id="ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    def _finish(self) -> None:
        value = self.query_one("#path", Input).value.strip()
        self.dismiss(Path(value).expanduser() if value else None)

    @on(Input.Submitted, "#path")
    def _submitted(self) -> None:
        self._finish()

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        self._finish()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmModal(ModalScreen[bool]):
    """A yes/no question about something that changes a host (e.g. a manual rollback)."""

    CSS_PATH = "modals.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "no", "No"),
        Binding("y", "yes", "Yes"),
    ]

    def __init__(self, title: str, question: str, yes: str = "Yes") -> None:
        super().__init__(classes="modal confirm-modal")
        self._title = title
        self._question = question
        self._yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            dialog.border_title = self._title
            with VerticalScroll():
                yield Static(self._question, markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="no")
                yield Button(self._yes, id="yes", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#yes")
    def _yes_pressed(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def _no_pressed(self) -> None:
        self.dismiss(False)


class FixModal(ConfirmModal):
    """"Apply this fix": the diff first, then a question naming the host and the file(s)."""

    def __init__(self, host: str, files: list[str], diff: str) -> None:
        names = ", ".join(files)
        super().__init__("Apply this fix", f"Apply this change to {names} on {host}? It goes "
                         "through the guarded deploy: backup, validate in place, reload, probe, "
                         "and the previous file back byte for byte if any step fails.",
                         yes="Apply this fix")
        self.add_class("fix-modal")
        self.host = host
        self.files = files
        self.diff = diff

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            dialog.border_title = self._title
            yield CodeView(self.diff.rstrip(), "diff", line_numbers=False, id="fix-diff")
            yield Static(self._question, id="fix-question", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="no")
                yield Button(self._yes, id="yes", variant="warning")
