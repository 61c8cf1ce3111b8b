"""The dialogs (``wizard.tui.screens.modals``), clicked with Textual's Pilot: each button runs
its dialog's action (``Button(action=...)``) and the caller gets the answer it stands for; the
safe choice has the focus when the dialog opens."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.screen import ModalScreen
from textual.widgets import Button

from tests.test_tui_pilot import sync, until
from wizard.tui import app as app_module
from wizard.tui.app import CSS_VARIABLES, SockwizardApp
from wizard.tui.screens.modals import (
    ConfirmModal,
    ErrorModal,
    FixModal,
    HostKeyModal,
    PathPrompt,
)


class _Caller(App[None]):
    """Opens the dialogs one after the other and keeps what each answers; the wizard's own CSS
    variables, as the dialogs' stylesheet uses them, and its stylesheet (code blocks, fields)."""

    CSS_PATH = Path(app_module.__file__).with_name(str(SockwizardApp.CSS_PATH))

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


_LONG_DIFF = "--- a/etc/nginx/sites-enabled/app.conf\n+++ b/etc/nginx/sites-enabled/app.conf\n" + \
    "".join(f"-        proxy_read_timeout {n}s;\n+        proxy_read_timeout 60s;\n"
            for n in range(30))
_LONG_DETAIL = "".join(f"nginx: [emerg] line {n}: unknown directive\n" for n in range(40))
_LONG_PATH = "/etc/nginx/sites-available/" + "a-rather-long-site-name." * 4 + "conf"


@sync
@pytest.mark.parametrize("size", [(80, 24), (60, 16)])
async def test_a_dialog_full_of_text_keeps_its_buttons_and_words_on_screen(
        size: tuple[int, int]) -> None:
    # At 80x24 a fix's long diff pushed the question and both buttons below the dialog's edge:
    # the user saw neither what they were asked nor how to answer. Each dialog, full: every
    # button is where a click lands on it, and the question can be scrolled into view.
    app = _Caller()
    makers: list[tuple[Callable[[], ModalScreen[Any]], str]] = [
        (lambda: FixModal("web1", [_LONG_PATH], _LONG_DIFF), "#fix-question"),
        (lambda: ErrorModal("It broke", "Try again. " * 30, _LONG_DETAIL), "#error-hint"),
        (lambda: ConfirmModal("Roll back", "Put the previous config back? " * 40), None),
    ]
    async with app.run_test(size=size) as pilot:
        for make, words in makers:
            dialog = make()
            app.push_screen(dialog, app.answers.append)
            await until(pilot, type(dialog).__name__, lambda d=dialog: app.screen is d,
                        timeout=20)
            await pilot.pause()
            for button in dialog.query(Button):
                x, y = button.region.center
                assert button.region.bottom <= size[1], (type(dialog).__name__, button.id)
                assert dialog.get_widget_at(x, y)[0] is button, (type(dialog).__name__, button.id)
            if words is not None:
                question = dialog.query_one(words)
                question.scroll_visible(animate=False, immediate=True)
                await pilot.pause()
                x, y = question.region.x + 1, question.region.y
                assert dialog.get_widget_at(x, y)[0] is question, type(dialog).__name__
            dialog.dismiss(None)
            await pilot.pause()
