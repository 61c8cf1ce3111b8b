"""The Backends step's per-proxy parts and timeout words come from the registry and the one
heartbeat rule, not from branches in the TUI (issue #11: a fifth proxy changes its own module,
not a screen)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from textual.widgets import Checkbox, Input

from tests.test_tui_pilot import SIZE, field_message, on_screen, replace_text, sync, tab_to, until
from wizard.heartbeat import Grade, Heartbeat
from wizard.model import DeploySpec, ProxyKind
from wizard.proxies import PROFILES
from wizard.tui.app import SockwizardApp
from wizard.tui.screens import backends
from wizard.tui.screens.backends import BackendsScreen, safe_words
from wizard.tui.state import WizardState

TUI = Path(backends.__file__).resolve().parent.parent


def test_no_per_proxy_branch_in_the_tui() -> None:
    """Per-proxy wording and settings are read from wizard.proxies, never branched on."""
    for path in TUI.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\bis (not )?ProxyKind\.|==\s*ProxyKind\.", text), path


def test_every_profile_says_what_the_form_needs() -> None:
    widgets = set(backends._TEXT_FIELDS) | set(backends._CHECKBOXES)
    for kind, prof in PROFILES.items():
        assert prof.sticky_how, kind
        assert set(prof.own_settings) <= widgets, kind  # each own setting has a widget
        assert prof.own_settings or prof.own_settings_note, kind  # the panel is never empty
        assert all(hasattr(DeploySpec(), name) for name in prof.own_settings), kind


@pytest.mark.parametrize("kind", list(ProxyKind))
@sync
async def test_backends_shows_exactly_the_proxys_own_settings(kind: ProxyKind) -> None:
    state = WizardState(spec=replace(DeploySpec(), proxy=kind))
    app = SockwizardApp(state=state, start_at=3)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "backends step", on_screen(app, BackendsScreen))
        shown = {w.id for w in app.screen.query("#proxy-panel Input, #proxy-panel Checkbox")
                 .results() if isinstance(w, Input | Checkbox)}
        assert shown == set(PROFILES[kind].own_settings)


@pytest.mark.parametrize(("interval", "timeout", "words"), [
    (25000, 5000, "✓ at least 31 s; 60 s leaves headroom"),
    (25000, 20000, "✓ at least 46 s; 60 s leaves headroom"),
    (50000, 30000, "✓ at least 81 s; 100 s leaves headroom"),
    (58000, 1500, "✓ at least 60 s; 75 s leaves headroom"),
])
def test_safe_words_are_the_heartbeat_rules(interval: int, timeout: int, words: str) -> None:
    hb = Heartbeat(interval, timeout)
    assert safe_words(hb).replace("\n", " ") == words
    assert hb.grade(hb.minimum_s()) is Grade.SAFE and hb.grade(hb.minimum_s() - 1) is not Grade.SAFE
    assert hb.suggest_s() > hb.minimum_s()


@sync
async def test_the_form_gives_the_minimum_and_the_suggestion() -> None:
    app = SockwizardApp(start_at=3)

    def message() -> str:
        return field_message(app, "field-read_timeout").replace("\n", " ")

    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "backends step", on_screen(app, BackendsScreen))
        assert message() == "✓ at least 46 s; 60 s leaves headroom"
        await tab_to(pilot, "#ping_timeout_ms")
        await replace_text(pilot, "5000")
        assert message() == "✓ at least 31 s; 60 s leaves headroom"
