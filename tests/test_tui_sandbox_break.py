"""The TUI's "Break the sandbox" (issue #14): on the Deploy step with the sandbox target, the
command palette's "Break the sandbox: no-sticky" starts a real sandbox with the fault, shows what
a real client saw and diagnose's finding with its fix; "Deploy the fix" runs the guarded
transaction into it. Leaving the app stops it all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Static

from wizard.model import Backend, DeploySpec
from wizard.tui.app import SockwizardApp
from wizard.tui.screens.deploy import DeployScreen
from wizard.tui.state import WizardState

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def own_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def test_break_the_sandbox_from_the_palette_then_fix_it() -> None:
    asyncio.run(break_then_fix())


async def until(pilot: Any, what: str, done: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.1)


async def break_then_fix() -> None:
    spec = DeploySpec(backends=(Backend("app1", 3000), Backend("app2", 3000)))
    app = SockwizardApp(state=WizardState(spec=spec), start_at=5)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, "target", lambda: type(app.screen).__name__ == "TargetScreen")
        await pilot.press("down", "down", "enter", "ctrl+n")  # "A sandbox here"
        await until(pilot, "deploy", lambda: isinstance(app.screen, DeployScreen))
        screen = app.screen
        assert isinstance(screen, DeployScreen)
        commands = {title: run for title, _help, run in screen.palette_commands()}
        assert {"Break the sandbox: timeout", "Break the sandbox: no-upgrade",
                "Break the sandbox: path"} <= set(commands)
        commands["Break the sandbox: no-sticky"]()
        await until(pilot, "the break", lambda: screen.sandbox is not None and not screen.busy
                    and bool(screen.query(".deploy-evidence")))
        text = str(screen.query(".deploy-evidence").first(Static).render())
        assert 'polling sessions got 400 "Session ID unknown"' in text
        assert "no-sticky-sessions" in text and "hash $remote_addr consistent;" in text
        box = screen.sandbox
        assert box is not None and box.fault is not None
        fixes = {title: run for title, _help, run in screen.palette_commands()}
        fixes["Deploy the fix"]()
        await until(pilot, "the fix", lambda: screen.deploy_result is not None
                    and not screen.busy)
        assert screen.deploy_result is not None and screen.deploy_result.ok
        assert box.affinity is not None and box.affinity.unknown_session == 0
    assert not box.procs and not box.prefix.exists()
