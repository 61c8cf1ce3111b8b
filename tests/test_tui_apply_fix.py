"""The Diagnose findings step's "Apply this fix", driven with Textual's Pilot against a real nginx.

The real app on "this machine" (LocalRemote), the rig's nginx in front of a Node socket.io
server, with `proxy_read_timeout 3s` (an error finding whose fix is a config edit). The
overrides on the Target step give the rig's own checker and reload. Cancel first: the diff and
the question naming the host and the file are shown and nothing changes; then Apply: the guarded
deploy runs, the file on disk is the fixed one, and the findings shown afterwards no longer hold
read-timeout-too-short.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Button, Static

from tests.test_tui_pilot import (
    SIZE,
    diagnose_here,
    nginx_with_read_timeout,
    on_screen,
    sync,
    until,
)
from wizard.tui.app import SockwizardApp
from wizard.tui.screens.diagnose import FindingsScreen
from wizard.tui.screens.modals import ErrorModal, FixModal
from wizard.tui.state import Mode, TargetChoice, WizardState
from wizard.tui.widgets.code_view import CodeView


@pytest.fixture
def timing_out(proxy_factory: Any, node_backend: Any) -> Any:
    """The rig's nginx with `proxy_read_timeout 3s`: an error finding whose fix is an edit."""
    return nginx_with_read_timeout(proxy_factory, node_backend, 3)


def diagnosing(proxy: Any, reload_cmd: str | None = None) -> SockwizardApp:
    """The wizard in Diagnose mode, the Target step's overrides set to the rig's checker and
    reload (``reload_cmd``: another)."""
    return SockwizardApp(state=WizardState(mode=Mode.DIAGNOSE, target=TargetChoice(
        validate_cmd=proxy.validate_cmd, reload_cmd=reload_cmd or proxy.reload_cmd)))


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.mark.needs_root
@pytest.mark.slow
@sync
async def test_apply_this_fix(timing_out: Any) -> None:
    proxy = timing_out
    before = proxy.site_path.read_bytes()
    app = diagnosing(proxy)
    async with app.run_test(size=SIZE) as pilot:
        # Diagnose is selected (the state says so)
        screen = await diagnose_here(app, pilot, proxy, "enter")
        assert screen.diagnosis is not None
        assert "read-timeout-too-short" in [f.code for f in screen.diagnosis.findings]
        button = screen.query_one("#apply-fix", Button)
        await until(pilot, "Apply this fix enabled", lambda: not button.disabled)

        # Cancel: the diff and the question are shown first; nothing changes.
        button.focus()  # the button (the row under the findings may be scrolled out of view)
        await pilot.press("enter")
        await until(pilot, "fix dialog", on_screen(app, FixModal))
        modal = app.screen
        assert isinstance(modal, FixModal)
        assert modal.files == [str(proxy.site_path)] and modal.host == "local"
        question = str(modal.query_one("#fix-question", Static).render())
        assert str(proxy.site_path) in question and "local" in question
        assert "-        proxy_read_timeout 3s;" in modal.diff
        assert "+        proxy_read_timeout 60s;" in modal.diff
        assert modal.query_one("#fix-diff", CodeView) is not None
        await pilot.press("escape")
        await until(pilot, "back on findings", on_screen(app, FindingsScreen))
        assert proxy.site_path.read_bytes() == before

        # Apply: the guarded deploy, then the findings after.
        await pilot.press("f")
        await until(pilot, "fix dialog", on_screen(app, FixModal))
        await pilot.press("y")
        await until(pilot, "repair", lambda: screen.repair is not None, timeout=90)
        repair = screen.repair
        assert repair is not None and repair.exit_code == 0, repair
        assert [r.outcome.value for r in repair.results] == ["deployed"]
        after = proxy.site_path.read_bytes()
        assert after == before.replace(b"proxy_read_timeout 3s;", b"proxy_read_timeout 60s;")
        assert screen.diagnosis is repair.after
        assert "read-timeout-too-short" not in [f.code for f in screen.diagnosis.findings]
        status = str(screen.query_one("#probe-status", Static).render())
        assert status.startswith("deployed: Deployed to local"), status
        assert not isinstance(app.screen, ErrorModal)
        assert button.disabled  # nothing left to fix


@pytest.mark.needs_root
@pytest.mark.slow
@sync
async def test_a_fix_that_fails_is_shown_in_its_own_dialog(timing_out: Any) -> None:
    # The outcome once went to the one status row beside the buttons, cut at 80 columns: a
    # fix rolled back (or a rollback that failed) looked like nothing had happened. A reload
    # that fails: the file is restored, and the error says so in a dialog of its own.
    proxy = timing_out
    before = proxy.site_path.read_bytes()
    # The reload refuses the fixed file and reloads the restored one: "rolled back".
    refuse = f"grep -q 'proxy_read_timeout 3s;' {shlex.quote(str(proxy.site_path))}"
    app = diagnosing(proxy, f"{refuse} && {proxy.reload_cmd}")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await diagnose_here(app, pilot, proxy, "enter")
        button = screen.query_one("#apply-fix", Button)
        await until(pilot, "Apply this fix enabled", lambda: not button.disabled)
        await pilot.press("f")
        await until(pilot, "fix dialog", on_screen(app, FixModal))
        await pilot.press("y")
        await until(pilot, "the error", on_screen(app, ErrorModal), timeout=90)
        await pilot.pause()  # its widgets composed
        repair = screen.repair
        assert repair is not None and [r.outcome.value for r in repair.results] == \
            ["rolled back"], repair
        title = str(app.screen.query_one("#error-title", Static).render())
        assert title == repair.results[0].title and "Reload failed" in title, title
        assert proxy.site_path.read_bytes() == before  # restored byte for byte
        await pilot.press("enter")
        await until(pilot, "back on findings", on_screen(app, FindingsScreen))
        status = str(screen.query_one("#probe-status", Static).render())
        assert status.startswith("rolled back: Reload failed"), status


@pytest.mark.needs_root
@pytest.mark.slow
@sync
async def test_a_file_changed_since_the_diagnosis_is_not_patched(timing_out: Any) -> None:
    # Someone edits the file between the diagnosis and "Apply this fix": the edit no longer
    # fits, nothing is asked or changed, and the reason is shown (a toast: the status row is
    # one line).
    proxy = timing_out
    app = diagnosing(proxy)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await diagnose_here(app, pilot, proxy, "enter")
        button = screen.query_one("#apply-fix", Button)
        await until(pilot, "Apply this fix enabled", lambda: not button.disabled)
        edited = proxy.site_path.read_bytes().replace(b"proxy_read_timeout 3s;",
                                                      b"proxy_read_timeout 4s;")
        proxy.site_path.write_bytes(edited)
        await pilot.press("f")
        await until(pilot, "the reason", lambda: any(
            n.title == "No config edit to make" for n in app._notifications))
        assert not isinstance(app.screen, FixModal)
        reasons = [n.message for n in app._notifications if n.title == "No config edit to make"]
        assert "read-timeout-too-short" in reasons[0], reasons
        assert proxy.site_path.read_bytes() == edited
