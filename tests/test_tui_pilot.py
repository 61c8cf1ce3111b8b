"""The TUI driven with the keyboard only (Textual's Pilot), against the core it sits on.

Fast flows run over an ``InMemoryRemote`` (the deploy transaction is the real one; only the
host is a fake) and probe a real Node socket.io server; the slow ones use the real sshd +
nginx + Node fixtures from tests/rig.py: the host-key modal, the sudo password, and one whole
deploy that ends with a passing probe through the new config. Waiting is always "until the
screen shows it" with a deadline, never a timed assertion.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import re
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from textual.dom import DOMNode
from textual.pilot import Pilot
from textual.widgets import Button, Checkbox, DataTable, Footer, Header, Input, Static

from tests import rig
from wizard.deploy import DeployResult, Outcome
from wizard.deploy.marker import HEADER
from wizard.model import ProxyKind
from wizard.remote import CommandResult, InMemoryRemote, RunRequest
from wizard.tui import flow
from wizard.tui.app import SockwizardApp, default_connector
from wizard.tui.screens.backends import BackendsScreen
from wizard.tui.screens.deploy import DeployScreen
from wizard.tui.screens.diagnose import FindingsScreen
from wizard.tui.screens.modals import ConfirmModal, HostKeyModal
from wizard.tui.screens.path import PathScreen
from wizard.tui.screens.preview import PreviewScreen
from wizard.tui.screens.proxy import ProxyScreen
from wizard.tui.screens.start import StartScreen
from wizard.tui.screens.target import TargetScreen
from wizard.tui.screens.verdict import VerdictScreen
from wizard.tui.state import Connection, Mode, TargetChoice, WizardState
from wizard.tui.widgets.deploy_log import StepRow
from wizard.tui.widgets.field import Field

SIZE = (110, 40)
DEST = "/etc/nginx/conf.d/sockwizard.conf"


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Local backup copies go to a temp state dir, not the user's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


# -- helpers ------------------------------------------------------------------------------


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test with asyncio.run (no pytest asyncio plugin is needed); the fixtures
    are still requested by name (functools.wraps keeps the signature)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def until(pilot: Pilot[Any], what: str, predicate: Callable[[], bool],
                timeout: float = 60.0) -> None:
    """Let the app run until ``predicate()`` holds; fail with ``what`` after ``timeout``."""
    waited = 0.0
    while not predicate():
        if waited > timeout:
            raise AssertionError(f"timed out waiting for: {what}")
        await pilot.pause(0.05)
        waited += 0.05


async def type_text(pilot: Pilot[Any], text: str) -> None:
    await pilot.press(*text)


async def replace_text(pilot: Pilot[Any], text: str) -> None:
    """In the focused Input: go to the start, delete everything, type ``text``."""
    await pilot.press("home", "ctrl+k")
    await type_text(pilot, text)


async def tab_to(pilot: Pilot[Any], selector: str, limit: int = 60) -> None:
    """Press Tab until the focused widget matches ``selector``."""
    for _ in range(limit):
        focused = pilot.app.focused
        if focused is not None and focused in list(pilot.app.screen.query(selector)):
            return
        await pilot.press("tab")
    raise AssertionError(f"Tab never reached {selector}")


def on_screen(app: SockwizardApp, kind: type) -> Callable[[], bool]:
    return lambda: isinstance(app.screen, kind)


def nginx_remote(validate_ok: bool = True, backed_up: tuple[bytes, ...] = ()) -> InMemoryRemote:
    """A fake host where every command works, and the activation script (rename + nginx -t)
    passes or fails like nginx does. ``backed_up``: the old bytes of the files its backup
    copies (the script prints each copy's sha256 first); a new site has none."""
    remote = InMemoryRemote(name="mem")
    remote.on(r".", exit_status=0)
    # The host-side checks before the deploy: the destination is a plain file, the lock is free.
    remote.on(r"readlink -f", stdout=f"real={DEST}\ntype=file 644\n")
    remote.on(r"@@sw locked", stdout="@@sw locked\n")

    backups = "".join(f"@@sw backup {hashlib.sha256(b).hexdigest()}\n" for b in backed_up)

    def activate(req: RunRequest) -> CommandResult:
        # The real script renames the temp file over the target first (the fake does too),
        # then runs the checker and, when it refuses, puts the old file back.
        moved = re.search(r"mv -f -- (\S+) (\S+) \|\|", req.command)
        assert moved is not None, req.command
        if req.input is not None:  # the new bytes come on the script's stdin (upload_lines)
            remote.files[moved.group(1)] = req.input.encode("utf-8", "surrogateescape")
        if validate_ok:
            remote.files[moved.group(2)] = remote.files.pop(moved.group(1))
            return CommandResult(req.command, 0, backups + "@@sw start 000001\n"
                                 "@@sw uploaded 000002\n"
                                 "@@sw renamed 1\n@@sw validated 0 2\n"
                                 "nginx: configuration file /etc/nginx/nginx.conf test is "
                                 "successful\n", "", 0.0)
        remote.files.pop(moved.group(1))
        return CommandResult(req.command, 91, "@@sw start 000001\n@@sw uploaded 000002\n"
                             "@@sw renamed 1\n@@sw validated 1 2\n"
                             "nginx: [emerg] unknown directive \"proxy_pass_x\" in "
                             f"{DEST}:17\nnginx: configuration file /etc/nginx/nginx.conf "
                             "test failed\n", "", 0.0)

    remote.on(r"@@sw renamed", activate)
    return remote


def memory_connector(remote: InMemoryRemote) -> Any:
    def connect(choice: TargetChoice, *, accept_host_key: str | None,
                sudo_password: str | None) -> Connection:
        return Connection(choice, remote, "127.0.0.1")

    return connect


def screen_text(app: SockwizardApp) -> str:
    """Everything the current screen says (for assertion messages: an error modal's text)."""
    return " | ".join(str(w.render()) for w in app.screen.query(Static).results(Static))


def field_message(app: SockwizardApp, field_id: str) -> str:
    return str(app.screen.query_one(f"#{field_id} .field-message", Static).render())


async def walk_to_target(pilot: Pilot[Any], app: SockwizardApp, backend: str,
                         listen: str | None = None) -> None:
    """Start -> nginx -> default path -> backends (typed) -> preview -> target."""
    await pilot.press("enter")  # Start: "Deploy a new config"
    await until(pilot, "proxy step", on_screen(app, ProxyScreen))
    await pilot.press("enter")  # nginx is first
    await until(pilot, "path step", on_screen(app, PathScreen))
    await pilot.press("ctrl+n")
    await until(pilot, "backends step", on_screen(app, BackendsScreen))
    await replace_text(pilot, backend)  # the first backend field has the focus
    if listen is not None:
        await tab_to(pilot, "#listen")
        await replace_text(pilot, listen)
    await pilot.press("ctrl+n")
    await until(pilot, "preview step", on_screen(app, PreviewScreen))
    await pilot.press("ctrl+n")
    await until(pilot, "target step", on_screen(app, TargetScreen))


async def deploy_and_confirm(pilot: Pilot[Any], app: SockwizardApp) -> None:
    """Press Deploy (d) and confirm the modal that names the host and the file (y)."""
    await pilot.press("d")
    await until(pilot, "the deploy confirmation", on_screen(app, ConfirmModal))
    await pilot.press("y")


async def deployed(pilot: Pilot[Any], app: SockwizardApp,
                   outcome: Outcome = Outcome.DEPLOYED) -> tuple[DeployScreen, DeployResult]:
    """On the way to the Deploy step: wait for it and its dry run, deploy, confirm; the
    screen and its result, which must have ``outcome``."""
    await until(pilot, "deploy step", on_screen(app, DeployScreen))
    screen = app.screen
    assert isinstance(screen, DeployScreen)
    await until(pilot, "the dry run", lambda: not screen.planning)
    await deploy_and_confirm(pilot, app)
    await until(pilot, "deploy result", lambda: screen.deploy_result is not None
                and not screen.busy, timeout=120)
    result = screen.deploy_result
    assert result is not None and result.outcome is outcome, result.message()
    return screen, result


async def rolled_back(pilot: Pilot[Any], app: SockwizardApp, screen: DeployScreen,
                      result: DeployResult) -> str:
    """Rollback (r) on the Deploy step, confirmed (y); its result must be ok. Returns the
    question the confirmation asked."""
    await pilot.press("r")
    await until(pilot, "confirmation", on_screen(app, ConfirmModal))
    await pilot.pause()
    question = str(app.screen.query_one("#question", Static).render())
    await pilot.press("y")
    await until(pilot, "rollback result", lambda: screen.deploy_result is not result
                and not screen.busy, timeout=120)
    undone = screen.deploy_result
    assert undone is not None and undone.ok, undone.message() if undone else None
    return question


async def fill_overrides(pilot: Pilot[Any], dest: str, validate: str, reload: str,
                         probe_url: str = "") -> None:
    await tab_to(pilot, "CollapsibleTitle")
    await pilot.press("enter")  # open "Overrides"
    for selector, value in (("#dest", dest), ("#validate_cmd", validate),
                            ("#reload_cmd", reload), ("#probe_url", probe_url)):
        if value:
            await tab_to(pilot, selector)
            await replace_text(pilot, value)


# -- fast flows over an in-memory host ------------------------------------------------------


@sync
async def test_keyboard_flow_deploys_and_probes(node_backend: Any) -> None:
    backend = node_backend(ping_interval=1000, ping_timeout=1000)
    remote = nginx_remote()
    app = SockwizardApp(connector=memory_connector(remote))
    async with app.run_test(size=SIZE) as pilot:
        await walk_to_target(pilot, app, backend.address)
        await fill_overrides(pilot, DEST, "nginx -t", "nginx -s reload", backend.url)
        await pilot.press("ctrl+n")  # "This machine" is selected: connect
        await until(pilot, "deploy step", on_screen(app, DeployScreen))
        screen = app.screen
        assert isinstance(screen, DeployScreen)
        await tab_to(pilot, "#opt-probe")  # the fake host has no proxy to settle on:
        await pilot.press("space")  # the verdict step probes the backend instead
        await until(pilot, "the dry run", lambda: not screen.planning)
        await deploy_and_confirm(pilot, app)
        await until(pilot, "deploy result", lambda: screen.deploy_result is not None
                    and not screen.busy)
        result = screen.deploy_result
        assert result is not None and result.outcome is Outcome.DEPLOYED, result
        # The file on the "host" is the rendered config with its marker header.
        assert HEADER in remote.files[DEST].decode()
        assert f"proxy_pass http://{backend.address};" in remote.files[DEST].decode()
        banner = str(screen.query_one("#deploy-result", Static).render())
        assert "Deployed" in banner
        await pilot.press("ctrl+n")
        await until(pilot, "verdict step", on_screen(app, VerdictScreen))
        verdict = app.screen
        assert isinstance(verdict, VerdictScreen)
        await until(pilot, "probe report", lambda: verdict.report is not None)
        assert verdict.report is not None and verdict.report.ok, verdict.report
        assert verdict.report.transport == "websocket"
        table = verdict.query_one("#stages", DataTable)
        # the browser stages (a same-origin page, Firefox's Connection header) run too
        assert [str(k.value) for k in table.rows] == ["tcp", "polling", "websocket", "origin",
                                                      "firefox", "socketio"]
        assert "works end to end" in str(verdict.query_one("#verdict", Static).render())
        # Hold test: longer than the live pingInterval + pingTimeout (1 s + 1 s) + 5 s.
        assert verdict.hold_seconds == 7
        first = verdict.report
        await pilot.press("h")
        await until(pilot, "hold result", lambda: verdict.report is not first
                    and verdict.report is not None)
        hold = verdict.report.stage("hold") if verdict.report else None
        assert hold is not None and hold.ok, hold
        assert verdict.report is not None and verdict.report.hold is not None
        assert verdict.report.hold.pings >= 2 and not verdict.report.hold.dropped
        await pilot.press("ctrl+n")  # Finish
        await until(pilot, "app exit", lambda: app.return_code is not None)
    assert app.return_code == 0


@sync
async def test_bad_read_timeout_is_explained_and_blocks_next() -> None:
    app = SockwizardApp(start_at=3)  # the Backends step
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "backends step", on_screen(app, BackendsScreen))
        await tab_to(pilot, "#read_timeout")
        await replace_text(pilot, "30")
        message = field_message(app, "field-read_timeout")
        assert "30 s is not greater than pingInterval + pingTimeout" in message
        assert "Use at least 46 s" in message
        assert app.screen.query_one("#read_timeout", Input).has_class("-invalid")
        await pilot.press("ctrl+n")
        assert isinstance(app.screen, BackendsScreen)  # refused: still here
        # Raising the server's ping settings moves the bar: 60 s is no longer enough.
        await replace_text(pilot, "60")
        await tab_to(pilot, "#ping_interval_ms")
        await replace_text(pilot, "50000")
        assert "Use at least 71 s" in field_message(app, "field-read_timeout")
        await tab_to(pilot, "#read_timeout")
        await replace_text(pilot, "90")
        assert field_message(app, "field-read_timeout").startswith("✓")
        # The send timeout is held to the same rule, next to its own field.
        assert "Use at least 71 s" in field_message(app, "field-send_timeout")
        await pilot.press("ctrl+n")
        assert isinstance(app.screen, BackendsScreen)
        await tab_to(pilot, "#send_timeout")
        await replace_text(pilot, "90")
        await pilot.press("ctrl+n")
        await until(pilot, "preview step", on_screen(app, PreviewScreen))
        assert app.state.spec.read_timeout == 90
        assert app.state.spec.ping_interval_ms == 50000
        assert "proxy_read_timeout 90s;" in app.screen.query_one("#config").code


@sync
async def test_mouse_works_too() -> None:
    """Every step can also be clicked through: options, radio buttons, Back and Next."""
    app = SockwizardApp()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "start", lambda: app.screen.query("#start-options").first() is not None)
        await pilot.click("#start-options", offset=(5, 1))  # "Deploy a new config"
        await until(pilot, "proxy step", on_screen(app, ProxyScreen))
        await pilot.click("#next")
        await until(pilot, "path step", on_screen(app, PathScreen))
        await pilot.click("#path-custom")
        assert not app.screen.query_one("#custom-panel").has_class("hidden")
        await pilot.click("#back")
        await until(pilot, "proxy step again", on_screen(app, ProxyScreen))


@sync
async def test_two_backends_explain_sticky_sessions() -> None:
    app = SockwizardApp(start_at=3)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "backends step", on_screen(app, BackendsScreen))
        await replace_text(pilot, "127.0.0.1:3001")
        await tab_to(pilot, "#add-backend")
        await pilot.press("enter")
        await until(pilot, "a second backend row", lambda: len(app.screen.query(".backend")) == 2)
        await replace_text(pilot, "127.0.0.1:3002")  # the new row has the focus
        note = str(app.screen.query_one("#sticky-note", Static).render())
        assert "sticky sessions" in note and "hash $remote_addr consistent" in note
        await pilot.press("ctrl+n")
        await until(pilot, "preview step", on_screen(app, PreviewScreen))
        assert "upstream socketio_nodes" in app.screen.query_one("#config").code


@sync
async def test_custom_path_shows_matching_snippets() -> None:
    app = SockwizardApp(start_at=2)  # Path & scope
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "path step", on_screen(app, PathScreen))
        await pilot.press("down", "enter")  # "Custom path"
        await tab_to(pilot, "#path")
        await replace_text(pilot, "/chat")
        assert "must start and end with '/'" in field_message(app, "field-path")
        await type_text(pilot, "/")
        server = app.screen.query_one("#snippet-code-0").code
        assert 'path: "/chat/"' in server
        await pilot.press("ctrl+n")
        await until(pilot, "backends step", on_screen(app, BackendsScreen))
        assert app.state.spec.path == "/chat/"


@sync
async def test_validation_failure_is_rolled_back_and_shown() -> None:
    remote = nginx_remote(validate_ok=False)
    app = SockwizardApp(connector=memory_connector(remote))
    async with app.run_test(size=SIZE) as pilot:
        await walk_to_target(pilot, app, "127.0.0.1:3000")
        await fill_overrides(pilot, DEST, "nginx -t", "nginx -s reload")
        await pilot.press("ctrl+n")
        screen, _ = await deployed(pilot, app, Outcome.ROLLED_BACK)
        banner = str(screen.query_one("#deploy-result", Static).render())
        assert "ROLLED BACK" in banner and "Validation failed" in banner
        failed = screen.query(".step-row.-failed")
        assert len(failed) == 1
        output = failed.first().query_one(".step-output").code
        assert 'unknown directive "proxy_pass_x"' in output
        assert DEST not in remote.files  # the new file never stayed


@sync
async def test_preview_diffs_against_the_file_on_a_known_host() -> None:
    """Back at the preview with a connected host: the deploy's dry run diffs the host's file."""
    from wizard.tui.state import WizardState

    remote = nginx_remote()
    remote.files[DEST] = b"server {\n    listen 80;\n    location / { proxy_pass http://old; }\n}\n"
    choice = TargetChoice(dest=DEST, validate_cmd="nginx -t", reload_cmd="nginx -s reload")
    state = WizardState(target=choice, connection=Connection(choice, remote, "127.0.0.1"))
    app = SockwizardApp(state=state, start_at=4)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "preview step", on_screen(app, PreviewScreen))
        diff_view = app.screen.query_one("#diff")
        await until(pilot, "the diff", lambda: diff_view.code.startswith("---"))
        assert "-    location / { proxy_pass http://old; }" in diff_view.code
        assert "+    location /socket.io/ {" in diff_view.code
        assert remote.files[DEST].startswith(b"server {")  # a dry run changes nothing


@sync
async def test_the_first_step_comes_first_and_the_backdrop_after_it() -> None:
    """Start-up order: the Start step is what gets painted first; the backdrop under it (seen
    for a frame between steps) gets its header and footer afterwards, and the hidden spec-file
    panel too. Each step's base on_mount runs once (Textual already calls every class's
    on_mount in the MRO; a super() call on top would run it twice)."""
    app = SockwizardApp()
    shown: list[str] = []
    app.step_shown = lambda: shown.append(type(app.screen).__name__)  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "start", on_screen(app, StartScreen))
        await until(pilot, "load panel", lambda: bool(app.screen.query("#load-panel")))
        assert app.screen.query_one("#load-panel").has_class("hidden")
        assert shown == ["StartScreen"]
        await pilot.press("enter")
        await until(pilot, "proxy step", on_screen(app, ProxyScreen))
        await until(pilot, "second step shown", lambda: len(shown) == 2)
        assert shown == ["StartScreen", "ProxyScreen"]
    app = SockwizardApp()  # the real step_shown this time: it dresses the backdrop
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "start", on_screen(app, StartScreen))
        backdrop = app.screen_stack[0]
        await until(pilot, "backdrop dressed", lambda: bool(backdrop.query(Header)))
        assert backdrop.query(Footer)


@sync
async def test_the_step_order_is_defined_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """flow.STEPS is the only list of steps: the wizard walks it, and the step list and title
    are drawn from it. A table with a renamed, moved step changes all three."""
    steps = (flow.Step("Start", "start:StartScreen"), flow.Step("Look first", "preview:PreviewScreen"),
             flow.Step("Proxy", "proxy:ProxyScreen"))
    monkeypatch.setitem(flow.STEPS, Mode.DEPLOY, steps)
    app = SockwizardApp(start_at=1)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "preview as step 2", on_screen(app, PreviewScreen))
        stepper = str(app.screen.query_one("#stepper", Static).render())
        assert stepper.splitlines() == ["✓ 1 Start", "● 2 Look first", "○ 3 Proxy"]
        assert str(app.screen.query_one("#step-title", Static).render()) == "2. Look first"
        await pilot.press("ctrl+n")
        await until(pilot, "proxy after preview", on_screen(app, ProxyScreen))
        assert str(app.screen.query_one("#step-title", Static).render()) == "3. Proxy"
    # And the real table is the one the app walks: the diagnose mode's second step.
    app = SockwizardApp(start_at=1, state=WizardState(mode=Mode.DIAGNOSE))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "target", on_screen(app, TargetScreen))
        assert str(app.screen.query_one("#stepper", Static).render()).splitlines() == [
            f"{mark} {i} {label}" for mark, i, label
            in zip("✓●○○", range(1, 5), flow.labels(Mode.DIAGNOSE), strict=True)]


@sync
async def test_worker_threads_never_touch_the_dom(node_backend: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Textual's DOM is not thread-safe: the deploy's event sink and the probe's stage
    callback run in worker threads and must only post messages. Every DOM query made off the
    UI thread during a deploy and a probe is recorded; there must be none, and the rows the
    threads reported are all there, in order, before the result."""
    ui_thread = threading.get_ident()
    off_thread: list[str] = []
    for name in ("query", "query_one", "query_children", "query_exactly_one"):
        original = getattr(DOMNode, name)

        def guarded(self: DOMNode, *args: Any, _original: Any = original, _name: str = name,
                    **kwargs: Any) -> Any:
            if threading.get_ident() != ui_thread:
                off_thread.append(f"{type(self).__name__}.{_name}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(DOMNode, name, guarded)
    backend = node_backend()
    choice = TargetChoice(dest=DEST, validate_cmd="nginx -t", reload_cmd="nginx -s reload",
                          probe_url=backend.url)
    state = WizardState(target=choice,
                        connection=Connection(choice, nginx_remote(), "127.0.0.1"))
    app = SockwizardApp(state=state, start_at=6)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "deploy step", on_screen(app, DeployScreen))
        screen = app.screen
        assert isinstance(screen, DeployScreen)
        await until(pilot, "the dry run", lambda: not screen.planning)
        screen.query_one("#opt-probe", Checkbox).value = False  # the fake host has no proxy
        await deploy_and_confirm(pilot, app)
        await until(pilot, "deploy result", lambda: screen.deploy_result is not None
                    and not screen.busy)
        result = screen.deploy_result
        assert result is not None and result.outcome is Outcome.DEPLOYED, result
        rows = list(screen.query(StepRow).results(StepRow))
        assert [r.step for r in rows] == [s.step for s in result.steps], result.steps
        assert all(r.finished for r in rows)
        await pilot.press("ctrl+n")
        await until(pilot, "verdict step", on_screen(app, VerdictScreen))
        verdict = app.screen
        assert isinstance(verdict, VerdictScreen)
        await until(pilot, "probe report", lambda: verdict.report is not None)
        assert verdict.report is not None and verdict.report.ok, verdict.report
        table = verdict.query_one("#stages", DataTable)
        assert [str(k.value) for k in table.rows] == [s.name for s in verdict.report.stages]
    assert off_thread == []


@sync
async def test_start_up_pauses_the_garbage_collector_until_the_first_step_is_up() -> None:
    """run_app pauses the cyclic GC for start-up; once the first step is painted and every
    step is imported (in a thread), the app freezes what exists and turns the GC back on. A
    GC left off would let cyclic garbage grow for the whole session."""
    app = SockwizardApp()
    app.gc_paused = True  # what run_app sets
    gc.disable()
    frozen_before = gc.get_freeze_count()
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, "start", on_screen(app, StartScreen))
            await until(pilot, "gc back on", gc.isenabled)
            assert gc.get_freeze_count() > frozen_before
            assert "wizard.tui.screens.deploy" in sys.modules
    finally:
        gc.unfreeze()  # this test process goes on: hand the frozen objects back to the GC
        gc.enable()


@sync
async def test_start_loads_a_saved_spec(tmp_path: Path) -> None:
    spec_file = tmp_path / "chat.toml"
    spec_file.write_text('proxy = "caddy"\npath = "/chat/"\nread_timeout = 75\n')
    app = SockwizardApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("down", "down", "enter")  # "Load a saved spec"
        await replace_text(pilot, str(spec_file))
        await pilot.press("enter")
        await until(pilot, "proxy step", on_screen(app, ProxyScreen))
        assert app.state.spec.proxy is ProxyKind.CADDY
        assert app.state.spec.read_timeout == 75
        assert app.state.spec_source == spec_file


@sync
async def test_a_bad_spec_file_is_reported_not_raised(tmp_path: Path) -> None:
    app = SockwizardApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("down", "down", "enter")
        await replace_text(pilot, str(tmp_path / "missing.toml"))
        await pilot.press("enter")
        await until(pilot, "an error toast", lambda: bool(app._notifications))
        note = next(iter(app._notifications))
        assert "does not exist" in note.title
        assert app.screen.query_one("#spec-file", Input)  # still on Start


@sync
async def test_save_spec_and_config_from_preview(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = SockwizardApp(start_at=4)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "preview step", on_screen(app, PreviewScreen))
        await pilot.press("w")
        await until(pilot, "path prompt", lambda: app.screen.query("#path").first() is not None
                    and not isinstance(app.screen, PreviewScreen))
        await replace_text(pilot, str(tmp_path / "mine.toml"))
        await pilot.press("enter")
        await until(pilot, "spec file", (tmp_path / "mine.toml").exists)
        await until(pilot, "back on preview", on_screen(app, PreviewScreen))
        await pilot.press("s")
        await until(pilot, "path prompt", lambda: not isinstance(app.screen, PreviewScreen))
        await pilot.press("enter")  # the default name, in the current directory
        await until(pilot, "config file", (tmp_path / "sockwizard.conf").exists)
    assert 'proxy = "nginx"' in (tmp_path / "mine.toml").read_text()
    assert "proxy_http_version 1.1;" in (tmp_path / "sockwizard.conf").read_text()


@sync
async def test_diagnose_mode_without_host_access(node_backend: Any, plain_server: Any) -> None:
    backend = node_backend()
    app = SockwizardApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("down", "enter")  # "Diagnose a live host"
        await until(pilot, "target step", on_screen(app, TargetScreen))
        await pilot.press("down", "down", "enter")  # "No host access"
        await pilot.press("ctrl+n")
        await until(pilot, "url step", lambda: app.screen.query("#url").first() is not None)
        await type_text(pilot, "ftp://x")
        assert "not supported" in field_message(app, "field-url")
        await replace_text(pilot, backend.url)
        await pilot.press("enter")
        await until(pilot, "findings step", on_screen(app, FindingsScreen))
        findings = app.screen
        assert isinstance(findings, FindingsScreen)
        await until(pilot, "report", lambda: findings.report is not None)
        assert findings.report is not None and findings.report.ok
        assert "No findings" in str(findings.query_one("#findings Static").render())
        # A server that is not Socket.IO at that path: a finding with its fix.
        await pilot.press("escape")
        await until(pilot, "url step again", lambda: app.screen.query("#url").first() is not None)
        wrong = plain_server(mode="http", status=404, body="not here")
        await replace_text(pilot, wrong.url)
        await pilot.press("enter")
        await until(pilot, "findings step", on_screen(app, FindingsScreen))
        again = app.screen
        assert isinstance(again, FindingsScreen)
        await until(pilot, "report", lambda: again.report is not None)
        codes = [f.code for f in again.report.findings] if again.report else []
        assert "path-mismatch" in codes
        text = " ".join(str(s.render()) for s in again.query(".finding").results(Static))
        assert "path-mismatch" in text and "fix" in text
        # Finishing on a failed diagnosis exits 1, like `sockwizard diagnose`.
        await until(pilot, "diagnosis", lambda: getattr(again, "diagnosis", None) is not None)
        await pilot.press("ctrl+n")
        await until(pilot, "exit", lambda: app.return_value is not None)
    assert app.return_value == 1


@pytest.mark.slow
@sync
async def test_sandbox_target_deploys_and_probes_then_cleans_up() -> None:
    """"A sandbox here": the real proxy and a demo backend start, the same transaction runs
    into them, the verdict probes it, and leaving the app stops every process."""
    app = SockwizardApp()
    async with app.run_test(size=SIZE) as pilot:
        await walk_to_target(pilot, app, "127.0.0.1:3000")
        await pilot.press("down", "down", "enter")  # the sandbox
        await pilot.press("ctrl+n")
        await until(pilot, "deploy step", on_screen(app, DeployScreen))
        screen = app.screen
        assert isinstance(screen, DeployScreen)
        await pilot.press("d")
        await until(pilot, "sandbox deploy", lambda: screen.deploy_result is not None
                    and not screen.busy, timeout=120)
        result = screen.deploy_result
        assert result is not None and result.outcome is Outcome.DEPLOYED, result.message()
        box = screen.sandbox
        assert box is not None
        pids = [p.popen.pid for p in box.procs]
        assert pids and all(Path(f"/proc/{pid}").exists() for pid in pids)
        await pilot.press("ctrl+n")
        await until(pilot, "verdict", on_screen(app, VerdictScreen))
        verdict = app.screen
        assert isinstance(verdict, VerdictScreen)
        assert verdict.url == box.url
        await pilot.press("r")  # Retry: a fresh probe through the sandbox's proxy
        await until(pilot, "fresh probe", lambda: verdict.report is not None
                    and verdict.report is not result.probe and verdict.report.ok)
    assert not box.procs and not box.prefix.exists()  # stopped and removed on exit


def nginx_with_read_timeout(proxy_factory: Any, node_backend: Any, seconds: int) -> Any:
    """The rig's nginx, started, in front of a Node socket.io server, with
    `proxy_read_timeout {seconds}s` in its site file."""
    backend = node_backend()
    port = rig.free_port()
    site = rig.minimal_site(ProxyKind.NGINX, port, backend.address).replace(
        "proxy_http_version 1.1;",
        f"proxy_http_version 1.1;\n        proxy_read_timeout {seconds}s;")
    proxy = proxy_factory.from_site(ProxyKind.NGINX, site, port=port)
    return proxy.start()


async def diagnose_here(app: SockwizardApp, pilot: Pilot[Any], proxy: Any,
                        *keys: str) -> FindingsScreen:
    """From the first screen (``keys`` pick Diagnose): "This machine", the proxy's URL and
    main config; returns the findings step once its diagnosis is in."""
    await pilot.press(*keys)
    await until(pilot, "target step", on_screen(app, TargetScreen))
    await pilot.press("ctrl+n")  # "This machine" is the default
    await until(pilot, "url step", lambda: app.screen.query("#url").first() is not None)
    await type_text(pilot, proxy.url)
    await tab_to(pilot, "#config_path")
    await type_text(pilot, str(proxy.config_path))
    await pilot.press("enter")
    await until(pilot, "findings step", on_screen(app, FindingsScreen))
    screen = app.screen
    assert isinstance(screen, FindingsScreen)
    await until(pilot, "diagnosis", lambda: screen.diagnosis is not None)
    return screen


@pytest.mark.needs_root
@pytest.mark.slow
@sync
async def test_diagnose_reads_the_local_nginx_config(proxy_factory: Any,
                                                     node_backend: Any) -> None:
    """Diagnose on "this machine": the config says 20 s, the live handshake 25 s + 20 s."""
    proxy = nginx_with_read_timeout(proxy_factory, node_backend, 20)
    app = SockwizardApp()
    async with app.run_test(size=SIZE) as pilot:
        screen = await diagnose_here(app, pilot, proxy, "down", "enter")
        assert screen.diagnosis is not None
        codes = [f.code for f in screen.diagnosis.findings]
        assert codes[0] == "read-timeout-too-short", codes
        shown = " ".join(str(s.render()) for s in screen.query(".finding").results(Static))
        assert "proxy_read_timeout" in shown and "20" in shown
        table = screen.query_one("#stages", DataTable)
        assert "config" in [str(k.value) for k in table.rows]  # the config read, timed


# -- against the real sshd -------------------------------------------------------------------


async def ssh_target(pilot: Pilot[Any], user: str, sshd: Any) -> None:
    """On the Target step: pick SSH and type host, user, port and key."""
    await pilot.press("down", "enter")  # "A host over SSH"
    await tab_to(pilot, "#host")
    await type_text(pilot, rig.LOOPBACK)
    await tab_to(pilot, "#user")
    await type_text(pilot, user)
    await tab_to(pilot, "#port")
    await type_text(pilot, str(sshd.port))
    await tab_to(pilot, "#identity")
    await type_text(pilot, str(sshd.client_key(user)))


@pytest.mark.needs_root
@sync
async def test_unknown_host_key_modal_refuse_then_accept(sshd: Any, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    app = SockwizardApp(start_at=5, known_hosts=known, ssh_config=tmp_path / "none")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "target step", on_screen(app, TargetScreen))
        await ssh_target(pilot, rig.DEPLOY_USER, sshd)
        await pilot.press("ctrl+n")
        await until(pilot, "host key modal", on_screen(app, HostKeyModal))
        modal = app.screen
        assert isinstance(modal, HostKeyModal)
        assert modal.fingerprint == sshd.host_key_fingerprint
        assert sshd.host_key_fingerprint in str(modal.query_one("#fingerprint", Static).render())
        await pilot.press("n")  # refuse
        await until(pilot, "back on target", on_screen(app, TargetScreen))
        assert known.read_text() == ""  # nothing recorded
        await pilot.press("ctrl+n")
        await until(pilot, "host key modal", on_screen(app, HostKeyModal))
        await pilot.press("y")  # trust
        await until(pilot, "deploy step", on_screen(app, DeployScreen))
        assert f"[{rig.LOOPBACK}]:{sshd.port} ssh-ed25519" in known.read_text()
        assert app.screen.state.connection is not None


@pytest.mark.needs_root
@sync
async def test_sudo_password_is_asked_masked(sshd: Any, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(sshd.host_key_line + "\n")
    app = SockwizardApp(start_at=5, known_hosts=known, ssh_config=tmp_path / "none")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "target step", on_screen(app, TargetScreen))
        await ssh_target(pilot, rig.NOSUDO_USER, sshd)
        await pilot.press("ctrl+n")
        await until(pilot, "sudo field", lambda: not app.screen.query_one(
            "#sudo-panel").has_class("hidden"))
        password = app.screen.query_one("#sudo-password", Input)
        assert password.password and app.focused is password
        assert "needs a password" in field_message(app, "field-sudo")
        await type_text(pilot, "wrong-password")
        await pilot.press("enter")
        await until(pilot, "the refusal", lambda: not isinstance(app.screen, TargetScreen)
                    or "rejected" in field_message(app, "field-sudo"))
        assert isinstance(app.screen, TargetScreen), screen_text(app)
        await replace_text(pilot, rig.NOSUDO_PASSWORD)
        await pilot.press("enter")
        # The step once composed: app.screen is the new step a moment before its widgets.
        await until(pilot, "deploy step", lambda: isinstance(app.screen, DeployScreen)
                    and bool(app.screen.query("#deploy-summary")))
        assert rig.NOSUDO_PASSWORD not in app.screen.query_one("#deploy-summary",
                                                               Static).render().plain


@pytest.mark.needs_root
@pytest.mark.slow
@sync
async def test_full_flow_real_sshd_nginx_node(sshd: Any, proxy_factory: Any, node_backend: Any,
                                              tmp_path: Path) -> None:
    backend = node_backend()
    port = rig.free_port()
    # The host's current site already reaches the backend (a rollback is guarded like a
    # deploy: it would refuse to restore a config whose probe fails).
    proxy = proxy_factory.from_site(
        ProxyKind.NGINX, rig.minimal_site(ProxyKind.NGINX, port, backend.address), port=port)
    proxy.start()
    original = proxy.site_path.read_text()
    known = tmp_path / "known_hosts"
    known.write_text("")
    app = SockwizardApp(known_hosts=known, ssh_config=tmp_path / "none")
    async with app.run_test(size=SIZE) as pilot:
        await walk_to_target(pilot, app, backend.address, listen=f"127.0.0.1:{port}")
        # A deploy user with passwordless sudo, as on a real server (not root).
        await ssh_target(pilot, rig.DEPLOY_USER, sshd)
        await fill_overrides(pilot, str(proxy.site_path), proxy.validate_cmd, proxy.reload_cmd)
        await pilot.press("ctrl+n")
        await until(pilot, "host key modal", on_screen(app, HostKeyModal))
        await pilot.press("y")
        screen, result = await deployed(pilot, app)
        assert result.probe is not None and result.probe.ok
        steps = [str(r.step.value) for r in screen.query(".step-row.-ok")]
        for step in ("detect", "backup", "upload", "rename", "validate", "reload", "settle",
                     "probe"):
            assert step in steps
        times = [str(t.render()) for t in screen.query(".step-row.-ok .step-time")]
        assert all(re.fullmatch(r"\d+ ms|\d+\.\d s", t) for t in times), times
        assert f"proxy_pass http://{backend.address};" in proxy.site_path.read_text()
        await pilot.press("ctrl+n")
        await until(pilot, "verdict", on_screen(app, VerdictScreen))
        verdict = app.screen
        assert isinstance(verdict, VerdictScreen)
        assert verdict.report is not None and verdict.report.ok
        assert "works end to end" in str(verdict.query_one("#verdict", Static).render())
        assert "25000 ms" in str(verdict.query_one("#handshake", Static).render())
        status, body = rig.engineio_handshake(port)  # Socket.IO through the deployed nginx
        assert status == 200 and body.startswith("0{")
        # Back to the deploy step, which shows what happened, and undo it with Rollback.
        await pilot.press("escape")
        await until(pilot, "deploy step again", on_screen(app, DeployScreen))
        again = app.screen
        assert isinstance(again, DeployScreen)
        assert "Deployed" in str(again.query_one("#deploy-result", Static).render())
        await rolled_back(pilot, app, again, result)
    # The original site is back, byte for byte, and serving.
    assert proxy.site_path.read_text() == original
    assert "X-Sockwizard-Config" not in original
    assert rig.engineio_handshake(port)[0] == 200


def test_default_connector_is_real() -> None:
    """The app's default connector is the real one (LocalRemote / SshRemote), not a fake."""
    from wizard.remote import LocalRemote

    conn = default_connector()(TargetChoice(), accept_host_key=None, sudo_password=None)
    try:
        assert isinstance(conn.remote, LocalRemote)
        assert conn.remote.run("echo hi").stdout == "hi\n"
    finally:
        conn.close()


def test_field_widget_matches_the_model() -> None:
    """The messages under the fields are the model's own words (one source of truth)."""
    from wizard.model import DeploySpec, timeout_problem
    from wizard.tui.widgets.field import check_raw

    spec, problems = check_raw({"read_timeout": "30"}, DeploySpec())
    assert spec is None
    assert problems["read_timeout"] == timeout_problem("read_timeout", 30, 25000, 20000)
    assert isinstance(Field("x", Input()), Field)


@sync
async def test_the_deploy_step_shows_the_hosts_last_entries() -> None:
    """The History tab lists the host's index (here kept by the fake host from the lines the
    transaction's scripts append), newest first, failed deploys marked as such."""
    import shlex

    remote = nginx_remote(validate_ok=False)
    index: list[str] = []

    def append(req: RunRequest) -> CommandResult:
        index.extend(shlex.split(m)[0] for m in re.findall(r"printf '%s\\n' ('\{.*?\}') >&9",
                                                           req.command))
        return CommandResult(req.command, 0, "@@sw locked\n" * ("@@sw locked" in req.command),
                             "", 0.0)

    remote.on(r"tail -c \d+ --", lambda req: CommandResult(req.command, 0,
                                                           "\n".join(index), "", 0.0))
    remote.on(r">&9", append)  # an append also runs `tail -c 1`: checked first
    app = SockwizardApp(connector=memory_connector(remote))
    async with app.run_test(size=SIZE) as pilot:
        await walk_to_target(pilot, app, "127.0.0.1:3000")
        await fill_overrides(pilot, DEST, "nginx -t", "nginx -s reload")
        await pilot.press("ctrl+n")
        await until(pilot, "deploy step", on_screen(app, DeployScreen))
        screen = app.screen
        assert isinstance(screen, DeployScreen)
        await until(pilot, "the dry run", lambda: not screen.planning)
        table = screen.query_one("#deploy-history", DataTable)
        await until(pilot, "an empty history", lambda: table.row_count == 1)
        assert "no deploy recorded" in str(table.get_row_at(0))
        await deploy_and_confirm(pilot, app)
        await until(pilot, "deploy result", lambda: screen.deploy_result is not None
                    and not screen.busy)
        await until(pilot, "the history", lambda: "rolled back" in str(table.get_row_at(0)))
        row = table.get_row_at(0)
        assert row[2] == "failed, rolled back" and row[3] == DEST and len(index) == 2


@pytest.mark.needs_root
@pytest.mark.slow
@sync
async def test_rollback_after_a_first_deploy_removes_the_new_file(
        proxy_factory: Any, node_backend: Any, tmp_path: Path) -> None:
    # A first deploy makes no backup (no file was there): Rollback stayed greyed out after
    # the most common deploy of all. It now undoes it by its history id: the file goes.
    backend = node_backend()
    port = rig.free_port()
    proxy = proxy_factory.from_site(
        ProxyKind.NGINX, rig.minimal_site(ProxyKind.NGINX, port, backend.address), port=port)
    proxy.start()
    proxy.site_path.unlink()  # nginx runs with no site: the deploy writes a new file
    proxy.reload()
    app = SockwizardApp()
    async with app.run_test(size=SIZE) as pilot:
        await walk_to_target(pilot, app, backend.address, listen=f"127.0.0.1:{port}")
        await fill_overrides(pilot, str(proxy.site_path), proxy.validate_cmd, proxy.reload_cmd)
        await pilot.press("ctrl+n")  # "This machine"
        screen, result = await deployed(pilot, app)
        assert result.backup is None and proxy.site_path.exists()
        assert not screen.query_one("#rollback", Button).disabled
        question = await rolled_back(pilot, app, screen, result)
        assert f"This deploy created {proxy.site_path}" in question, question
    assert not proxy.site_path.exists()
