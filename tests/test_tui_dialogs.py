"""The dialogs (``wizard.tui.screens.modals``), clicked with Textual's Pilot: each button runs
its dialog's action (``Button(action=...)``) and the caller gets the answer it stands for; the
safe choice has the focus when the dialog opens."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.app import App
from textual.screen import ModalScreen

from tests.test_tui_pilot import sync, until
from wizard.tui.app import CSS_VARIABLES
from wizard.tui.screens.modals import (
    ConfirmModal,
    ErrorModal,
    FixModal,
    HostKeyModal,
    PathPrompt,
)


class _Caller(App[None]):
    """Opens the dialogs one after the other and keeps what each answers; the wizard's own CSS
    variables, as the dialogs' stylesheet uses them."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[Any] = []

    def get_css_variables(self) -> dict[str, str]:
        variables = super().get_css_variables()
        return {**variables, **{name: value.format_map(variables)
                                for name, value in CSS_VARIABLES.items()}}


def _confirm() -> ModalScreen[Any]:
    return ConfirmModal("Roll back", "Put the previous config back?", yes="Roll back")


def _host_key() -> ModalScreen[Any]:
    return HostKeyModal("web1", "ssh-ed25519", "SHA256:abc", "/root/.ssh/known_hosts")


def _path() -> ModalScreen[Any]:
    return PathPrompt("Save config", "/tmp/sockwizard.conf")


def _fix() -> ModalScreen[Any]:
    return FixModal("web1", ["/etc/nginx/nginx.conf"], "--- a\n+++ b\n")


CASES: list[tuple[Callable[[], ModalScreen[Any]], str, str, Any]] = [
    (_confirm, "#no", "#yes", True),
    (_confirm, "#no", "#no", False),
    (_host_key, "#refuse", "#accept", True),
    (_host_key, "#refuse", "#refuse", False),
    (_path, "#path", "#ok", Path("/tmp/sockwizard.conf")),
    (_path, "#path", "#cancel", None),
    (_fix, "#no", "#yes", True),
    (_fix, "#no", "#no", False),
    (lambda: ErrorModal("It broke", "Try again.", "details"), "#ok", "#ok", None),
]


@sync
async def test_each_button_answers() -> None:
    app = _Caller()
    async with app.run_test(size=(100, 30)) as pilot:
        for make, focused, button, answer in CASES:
            dialog = make()
            what = f"{type(dialog).__name__} {button}"
            app.push_screen(dialog, app.answers.append)
            await until(pilot, what, lambda d=dialog: app.screen is d, timeout=20)
            await pilot.pause()
            assert app.focused is dialog.query_one(focused), what
            app.answers.clear()
            await pilot.click(button)
            await until(pilot, f"the answer to {what}", lambda: bool(app.answers), timeout=20)
            assert app.answers == [answer], what
