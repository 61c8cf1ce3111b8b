"""The Diagnose findings step's "Apply this fix", driven with Textual's Pilot against a real nginx.

The real app on "this machine" (LocalRemote), the rig's nginx in front of a Node socket.io
server, with `proxy_read_timeout 3s` (an error finding whose fix is a config edit). The
overrides on the Target step give the rig's own checker and reload. Cancel first: the diff and
the question naming the host and the file are shown and nothing changes; then Apply: the guarded
deploy runs, the file on disk is the fixed one, and the findings shown afterwards no longer hold
read-timeout-too-short.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Button, Static

from tests import rig
from tests.test_tui_pilot import SIZE, on_screen, sync, tab_to, type_text, until
from wizard.model import ProxyKind
from wizard.tui.app import SockwizardApp
from wizard.tui.screens.diagnose import FindingsScreen
from wizard.tui.screens.modals import FixModal
from wizard.tui.screens.target import TargetScreen
from wizard.tui.state import Mode, TargetChoice, WizardState
from wizard.tui.widgets.code_view import CodeView


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.mark.needs_root
@pytest.mark.slow
@sync
async def test_apply_this_fix(proxy_factory: Any, node_backend: Any) -> None:
    backend = node_backend()
    port = rig.free_port()
    site = rig.minimal_site(ProxyKind.NGINX, port, backend.address).replace(
        "proxy_http_version 1.1;", "proxy_http_version 1.1;\n        proxy_read_timeout 3s;")
    proxy = proxy_factory.from_site(ProxyKind.NGINX, site, port=port)
    proxy.start()
    before = proxy.site_path.read_bytes()
    state = WizardState(mode=Mode.DIAGNOSE, target=TargetChoice(
        validate_cmd=proxy.validate_cmd, reload_cmd=proxy.reload_cmd))
    app = SockwizardApp(state=state)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")  # Diagnose (the state says so: it is selected)
        await until(pilot, "target step", on_screen(app, TargetScreen))
        await pilot.press("ctrl+n")  # "This machine"
        await until(pilot, "url step", lambda: app.screen.query("#url").first() is not None)
        await type_text(pilot, f"http://127.0.0.1:{port}")
        await tab_to(pilot, "#config_path")
        await type_text(pilot, str(proxy.config_path))
        await pilot.press("enter")
        await until(pilot, "findings step", on_screen(app, FindingsScreen))
        screen = app.screen
        assert isinstance(screen, FindingsScreen)
        await until(pilot, "diagnosis", lambda: screen.diagnosis is not None)
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
        assert "before: read-timeout-too-short" in status and "after:" in status
        assert button.disabled  # nothing left to fix
