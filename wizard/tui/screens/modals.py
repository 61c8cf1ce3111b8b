"""The wizard's dialogs: an error, an unknown host key, a file path, a yes/no confirmation.

Each is a typed ``ModalScreen`` (posting's confirmation modals are the model): the caller
awaits ``push_screen_wait`` and gets a bool or a Path back. The error modal is what
``SockwizardApp.show_error`` opens for errors with evidence worth reading (a checker's output).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, TypeVar

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from wizard.tui.widgets.code_view import CodeView

R = TypeVar("R")

BUTTON_ROWS = 3  # a button's height, before the first layout has measured one
MIN_BODY_ROWS = 3  # below this a dialog's body is clipped rather than squeezed further


class Dialog(ModalScreen[R]):
    """The frame every dialog here shares: a bordered box titled ``dialog_title``, the body,
    a row of buttons; ``FOCUS`` takes the focus when it opens (the safe choice). Subclasses
    write ``compose_body`` and ``compose_buttons`` (and no ``on_mount``: Textual would run
    both)."""

    CSS_PATH = "modals.tcss"
    FOCUS = "#ok"

    def __init__(self, dialog_title: str, classes: str) -> None:
        super().__init__(classes=f"modal {classes}")
        self.dialog_title = dialog_title

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            dialog.border_title = self.dialog_title
            # The body scrolls and the buttons are docked (modals.tcss): however long a diff or
            # an error, the question's answers stay on a 24-line screen.
            with VerticalScroll(id="dialog-body"):
                yield from self.compose_body()
            with Horizontal(classes="buttons"):
                yield from self.compose_buttons()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def compose_buttons(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.query_one(self.FOCUS).focus()

    def on_resize(self, event: events.Resize) -> None:
        # A body of height auto never shrinks inside a dialog that met its max-height: it is
        # clipped, and a long diff hid the question and the buttons on a 24-line screen. So
        # the body gets what the dialog's max-height leaves once its frame and buttons are in.
        dialog = self.query_one("#dialog")
        buttons = self.query_one(".buttons")
        limit = dialog.styles.max_height
        room = event.size.height if limit is None else int(limit.resolve(event.size, event.size))
        frame = (dialog.styles.gutter.height + buttons.styles.margin.height
                 + max(buttons.outer_size.height, BUTTON_ROWS))
        self.query_one("#dialog-body").styles.max_height = max(room - frame, MIN_BODY_ROWS)


class ErrorModal(Dialog[None]):
    """What happened (title), the evidence (detail), what to do next (hint)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter", "close", "Close"),
    ]

    def __init__(self, title: str, hint: str = "", detail: str = "") -> None:
        super().__init__("Error", "error-modal")
        self._title = title
        self._hint = hint
        self._detail = detail

    def compose_body(self) -> ComposeResult:
        yield Static(self._title, id="error-title", markup=False)
        if self._detail:
            yield CodeView(self._detail.rstrip(), "text", line_numbers=False, id="error-detail")
        if self._hint:
            yield Static(self._hint, id="error-hint", markup=False)

    def compose_buttons(self) -> ComposeResult:
        yield Button("OK", id="ok", variant="error", action="screen.close")

    def action_close(self) -> None:
        self.dismiss(None)


class HostKeyModal(Dialog[bool]):
    """First connection to a host: show its SHA256 fingerprint; True records and trusts it."""

    FOCUS = "#refuse"  # the safe choice is the default

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "refuse", "Refuse"),
        Binding("y", "accept", "Trust and connect"),
    ]

    def __init__(self, host: str, key_type: str, fingerprint: str, known_hosts: str) -> None:
        super().__init__("Unknown host key", "hostkey-modal")
        self.host = host
        self.key_type = key_type
        self.fingerprint = fingerprint
        self.known_hosts = known_hosts

    def compose_body(self) -> ComposeResult:
        yield Static(f"This is the first connection to {self.host}. It presents this key:",
                     markup=False)
        yield Static(f"{self.key_type}\n{self.fingerprint}", id="fingerprint", markup=False)
        yield Static(
            "Compare it with the host's own (run there: ssh-keygen -lf "
            "/etc/ssh/ssh_host_ed25519_key.pub). Trusting it adds one line to "
            f"{self.known_hosts}; a different key later will be refused.",
            classes="muted", markup=False)

    def compose_buttons(self) -> ComposeResult:
        yield Button("Refuse", id="refuse", action="screen.refuse")
        yield Button("Trust and connect", id="accept", variant="warning", action="screen.accept")

    def action_accept(self) -> None:
        self.dismiss(True)

    def action_refuse(self) -> None:
        self.dismiss(False)


class PathPrompt(Dialog[Path | None]):
    """Ask for a file path (save config, save spec); None when cancelled."""

    FOCUS = "#path"

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, default: str, *, action: str = "Save") -> None:
        super().__init__(title, "path-modal")
        self._default = default
        self._action = action

    def compose_body(self) -> ComposeResult:
        yield Label("File")
        yield Input(self._default, id="path", select_on_focus=False)

    def compose_buttons(self) -> ComposeResult:
        yield Button("Cancel", id="cancel", action="screen.cancel")
        yield Button(self._action, id="ok", variant="primary", action="screen.finish")

    def action_finish(self) -> None:
        value = self.query_one("#path", Input).value.strip()
        self.dismiss(Path(value).expanduser() if value else None)

    @on(Input.Submitted, "#path")
    def _submitted(self) -> None:
        self.action_finish()

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmModal(Dialog[bool]):
    """A yes/no question about something that changes a host (e.g. a manual rollback)."""

    FOCUS = "#no"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "no", "No"),
        Binding("y", "yes", "Yes"),
    ]

    def __init__(self, title: str, question: str, yes: str = "Yes") -> None:
        super().__init__(title, "confirm-modal")
        self._question = question
        self._yes = yes

    def compose_body(self) -> ComposeResult:
        yield Static(self._question, id="question", markup=False)

    def compose_buttons(self) -> ComposeResult:
        yield Button("Cancel", id="no", action="screen.no")
        yield Button(self._yes, id="yes", variant="warning", action="screen.yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class FixModal(ConfirmModal):
    """"Apply this fix": the question naming the host and the file(s), then the diff (it
    scrolls: the question stays in view on a short screen)."""

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

    def compose_body(self) -> ComposeResult:
        yield Static(self._question, id="fix-question", markup=False)
        yield CodeView(self.diff.rstrip(), "diff", line_numbers=False, id="fix-diff")
