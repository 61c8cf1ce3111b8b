"""The wizard as people use it (issue 14): no accidental deploys, no stale "Deployed", every
warning before anything changes, the palette's step actions, radio choices that read without
colour — at 80x24 (a classic SSH terminal) and 120x40.

Driven with the keyboard (Textual's Pilot) over an ``InMemoryRemote``: the deploy transaction
is the real one, only the host is a fake, so "nothing was written" is read off its files.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from textual.command import CommandList, CommandPalette
from textual.widgets import Button, Checkbox, Input, Static

from tests.test_tui_pilot import (
    DEST,
    deploy_and_confirm,
    memory_connector,
    nginx_remote,
    on_screen,
    replace_text,
    screen_text,
    sync,
    until,
)
from wizard.deploy import Outcome
from wizard.model import DeploySpec
from wizard.remote import InMemoryRemote
from wizard.tui import flow
from wizard.tui.app import SockwizardApp
from wizard.tui.screens.backends import BackendsScreen
from wizard.tui.screens.deploy import DeployScreen
from wizard.tui.screens.modals import ConfirmModal
from wizard.tui.screens.path import PathScreen
from wizard.tui.screens.preview import PreviewScreen
from wizard.tui.screens.target import TargetScreen
from wizard.tui.state import Connection, Mode, TargetChoice, TargetKind, WizardState
from wizard.tui.widgets.choice import Choice, Choices
from wizard.tui.widgets.stepper import StepLine, Stepper

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]
DEFAULT_SITE = "/etc/nginx/sites-enabled/default"
# What the detect script prints on a Debian host with nginx and its default site enabled.
DEBIAN_FACTS = "uid=0\nos=debian \nbin nginx /usr/sbin/nginx\ndest_dir=1\n@@version\n"


def debian_remote(default_site: bool = False) -> InMemoryRemote:
    """A Debian host with nginx (and its default site enabled, when asked)."""
    remote = nginx_remote()
    facts = DEBIAN_FACTS.replace("@@version", f"default_site {DEFAULT_SITE}\n@@version") \
        if default_site else DEBIAN_FACTS
    remote.on(r'echo "uid=', stdout=facts)
    if default_site:  # Debian's sites-enabled/default is a link to sites-available/default
        remote.on(r"^\[ -L .*readlink -- ", stdout="/etc/nginx/sites-available/default\n")
    # One host for every connection the test makes: Target closes the connection it replaces,
    # which would close the only remote (a real connector opens a new one each time).
    remote.close = lambda: None  # type: ignore[method-assign]
    return remote


def at_deploy(remote: InMemoryRemote, spec: DeploySpec | None = None) -> SockwizardApp:
    """The wizard on its Deploy step, connected to ``remote`` (as "this machine")."""
    choice = TargetChoice(kind=TargetKind.LOCAL)
    state = WizardState(spec=spec or DeploySpec(), target=choice,
                        connection=Connection(choice, remote, "127.0.0.1"))
    return SockwizardApp(state=state, start_at=6, connector=memory_connector(remote))


def text_of(widget: Any) -> str:
    return str(widget.render())


async def on_deploy(pilot: Any, app: SockwizardApp) -> DeployScreen:
    await until(pilot, "deploy step", on_screen(app, DeployScreen))
    screen = app.screen
    assert isinstance(screen, DeployScreen)
    await until(pilot, "the dry run", lambda: not screen.planning)
    return screen


# -- 3. ^n never deploys; Deploy asks, naming the host and the file ----------------------------


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_ctrl_n_never_deploys_and_deploy_asks_first(size: tuple[int, int]) -> None:
    remote = debian_remote()
    app = at_deploy(remote)
    async with app.run_test(size=size) as pilot:
        screen = await on_deploy(pilot, app)
        screen.query_one("#opt-probe", Checkbox).value = False  # no proxy on a fake host
        for _ in range(5):  # Enter, Enter, ^n x5 was how /etc got written before
            await pilot.press("ctrl+n")
            await pilot.pause()
        assert app.screen is screen and screen.deploy_result is None
        assert DEST not in remote.files, "^n deployed"
        assert screen.query_one("#next", Button).disabled
        assert len(app._notifications) == 1  # one "Nothing is deployed yet", not five
        # Deploy asks first, naming the host and the file; Cancel (the default) changes nothing.
        await pilot.press("d")
        await until(pilot, "the confirmation", on_screen(app, ConfirmModal))
        question = " ".join(text_of(s) for s in app.screen.query(Static).results(Static))
        assert DEST in question and "this machine" in question, question
        await pilot.press("enter")  # the focused button is Cancel
        await until(pilot, "back on the deploy step", lambda: app.screen is screen)
        assert DEST not in remote.files and screen.deploy_result is None
        await pilot.press("d")
        await until(pilot, "the confirmation", on_screen(app, ConfirmModal))
        await pilot.press("y")
        await until(pilot, "deploy result", lambda: screen.deploy_result is not None
                    and not screen.busy)
        assert DEST in remote.files
        assert not screen.query_one("#next", Button).disabled


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_target_remembers_the_last_choice(size: tuple[int, int]) -> None:
    app = SockwizardApp(start_at=5)
    async with app.run_test(size=size) as pilot:
        await until(pilot, "target step", on_screen(app, TargetScreen))
        await pilot.press("down", "down", "enter")  # the sandbox
        await pilot.press("escape")  # Back to the preview...
        await until(pilot, "preview", on_screen(app, PreviewScreen))
        await pilot.press("ctrl+n")  # ...and forward again
        await until(pilot, "target step", on_screen(app, TargetScreen))
        assert not app._notifications
        kind = app.screen.query_one("#kind", Choices)
        assert kind.pressed_button is not None and kind.pressed_button.id == "kind-sandbox"


# -- 5. every warning before anything changes -------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_the_dry_runs_warnings_are_shown_before_deploy(size: tuple[int, int]) -> None:
    """The default-site warning the CLI's --dry-run prints: on the step, and in the
    confirmation, before anything on the host changes."""
    remote = debian_remote(default_site=True)
    app = at_deploy(remote)
    async with app.run_test(size=size) as pilot:
        screen = await on_deploy(pilot, app)
        assert screen.planned is not None and screen.planned.outcome is Outcome.PLANNED
        notices = [text_of(s) for s in screen.query(".step-notice").results(Static)]
        assert any(DEFAULT_SITE in n for n in notices), notices
        # In the wizard's words: the step that sets a server name, not the CLI's flag.
        assert not any("--server-name" in n for n in notices), notices
        assert any("Server name (Backends & timeouts step)" in n for n in notices), notices
        await pilot.press("d")
        await until(pilot, "the confirmation", on_screen(app, ConfirmModal))
        question = " ".join(text_of(s) for s in app.screen.query(Static).results(Static))
        assert DEFAULT_SITE in question
        await pilot.press("n")
        assert not any(c.op in ("upload_temp_beside", "write_file_atomic", "rename", "remove") for c in remote.calls), remote.calls
        assert not any("@@sw renamed" in c.target for c in remote.calls)


# -- 2. an edit after a deploy drops it (and its mark) ----------------------------------------


async def back_to_backends_and_forward(pilot: Any, app: SockwizardApp,
                                       read_timeout: str | None) -> None:
    for kind in (TargetScreen, PreviewScreen, BackendsScreen):
        await pilot.press("escape")
        await until(pilot, kind.__name__, on_screen(app, kind))
    if read_timeout is not None:
        field = app.screen.query_one("#read_timeout", Input)
        field.focus()
        await replace_text(pilot, read_timeout)
    for kind in (PreviewScreen, TargetScreen, DeployScreen):  # type: ignore[assignment]
        await pilot.press("ctrl+n")
        await until(pilot, f"{kind.__name__} ({screen_text(app)})", on_screen(app, kind))


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_an_edit_after_a_deploy_drops_the_deploy_and_its_mark(
        size: tuple[int, int]) -> None:
    remote = debian_remote()
    app = at_deploy(remote)
    async with app.run_test(size=size) as pilot:
        screen = await on_deploy(pilot, app)
        screen.query_one("#opt-probe", Checkbox).value = False
        await deploy_and_confirm(pilot, app)
        await until(pilot, "deployed", lambda: screen.deploy_result is not None
                    and not screen.busy)
        assert screen.deploy_result is not None
        assert screen.deploy_result.outcome is Outcome.DEPLOYED
        assert screen.deployed_spec is not None and screen.deployed_spec.read_timeout == 60
        # Back and forward without an edit: still deployed, and marked so.
        await back_to_backends_and_forward(pilot, app, None)
        screen = app.screen  # type: ignore[assignment]
        assert isinstance(screen, DeployScreen)
        assert screen.deploy_result is not None and "Deployed" in text_of(
            screen.query_one("#deploy-result"))
        # Back, a new read timeout, forward: the deploy no longer describes the spec.
        await pilot.press("escape")
        await until(pilot, "target", on_screen(app, TargetScreen))
        await pilot.press("escape")
        await until(pilot, "preview", on_screen(app, PreviewScreen))
        await pilot.press("escape")
        await until(pilot, "backends", on_screen(app, BackendsScreen))
        step_list = text_of(app.screen.query_one(Stepper if size[0] >= 100 else StepLine))
        assert "✓7" in step_list.replace(" ", "") or "✓ 7" in step_list, step_list
        field = app.screen.query_one("#read_timeout", Input)
        field.focus()
        await replace_text(pilot, "90")
        await pilot.press("ctrl+n")
        await until(pilot, "preview", on_screen(app, PreviewScreen))
        step_list = text_of(app.screen.query_one(Stepper if size[0] >= 100 else StepLine))
        assert "○7" in step_list.replace(" ", ""), step_list
        for kind in (TargetScreen, DeployScreen):
            await pilot.press("ctrl+n")
            await until(pilot, kind.__name__, on_screen(app, kind))
        screen = await on_deploy(pilot, app)
        assert screen.deploy_result is None
        assert screen.query_one("#deploy-result").has_class("hidden")
        assert screen.query_one("#next", Button).disabled
        assert app.state.deploy_report is None and app.state.deployed_spec is None
        # The live file still has the old timeout: nothing claims otherwise any more.
        assert "proxy_read_timeout 60s;" in remote.files[DEST].decode()


def test_the_step_list_marks_kept_results_only() -> None:
    spec = DeploySpec()
    state = WizardState(spec=spec, deploy_report=object(), deployed_spec=spec)
    assert flow.done(state, 3) == {0, 1, 2, 6}
    assert flow.done(replace(state, deploy_report=None), 3) == {0, 1, 2}
    assert flow.done(WizardState(mode=Mode.DIAGNOSE), 2) == {0, 1}


# -- friction: the palette lists the step's own actions --------------------------------------


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_the_palette_lists_the_steps_actions(size: tuple[int, int]) -> None:
    app = at_deploy(debian_remote())
    async with app.run_test(size=size) as pilot:
        await on_deploy(pilot, app)
        await pilot.press("ctrl+p")
        await until(pilot, "palette", on_screen(app, CommandPalette))
        await pilot.press(*"rollback")
        commands = app.screen.query_one(CommandList)

        def prompts() -> list[str]:
            return [str(commands.get_option_at_index(i).prompt)
                    for i in range(commands.option_count)]

        await until(pilot, "the step's Rollback", lambda: any(
            "Restore the backup" in p for p in prompts()), timeout=10)


# -- friction: radio choices read without colour; Enter on a made choice goes on -------------


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_radio_choices_have_a_mark_and_enter_goes_on(size: tuple[int, int]) -> None:
    app = SockwizardApp(start_at=2)
    async with app.run_test(size=size) as pilot:
        await until(pilot, "path step", on_screen(app, PathScreen))
        marks = {b.id: text_of(b)[1] for b in app.screen.query(Choice).results(Choice)}
        assert marks["path-default"] == "●" and marks["path-custom"] == "○", marks
        await pilot.press("enter")  # Enter on the choice already made: the next step
        await until(pilot, "backends step", on_screen(app, BackendsScreen))


# -- friction: diagnose says when the config read and the probe disagree ---------------------

ANOTHER_PROXY = ("the config read shows no proxied route for /socket.io/, yet the probe got a "
                 "Socket.IO handshake: the URL may reach another proxy")


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_diagnose_shows_the_notes_not_nothing_to_fix(
        size: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """The wrong proxy chosen: no finding in its config, and the note ``sockwizard diagnose``
    prints (rules._path) — not "No findings: nothing to fix"."""
    from wizard.diagnose import Diagnosis
    from wizard.tui.screens import diagnose as screen_module
    from wizard.tui.screens.diagnose import FindingsScreen

    def diagnosed(*_: Any) -> Diagnosis:
        return Diagnosis("http://127.0.0.1:9", "/socket.io/", (), None, None,
                         notes=(ANOTHER_PROXY,))

    monkeypatch.setattr(screen_module, "diagnose_state", diagnosed)
    state = WizardState(mode=Mode.DIAGNOSE, probe_url="http://127.0.0.1:9",
                        target=TargetChoice(kind=TargetKind.NONE))
    app = SockwizardApp(state=state, start_at=3)
    async with app.run_test(size=size) as pilot:
        await until(pilot, "findings", lambda: isinstance(app.screen, FindingsScreen)
                    and getattr(app.screen, "diagnosis", None) is not None)
        await pilot.pause()
        shown = " ".join(text_of(s) for s in app.screen.query("#findings Static")
                         .results(Static))
        assert "may reach another proxy" in shown
        assert "nothing to fix" not in shown


# -- 2. the verdict judges what was deployed; friction: a hold reads in seconds --------------


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_the_verdict_reads_the_deployed_spec_and_times_in_seconds(
        size: tuple[int, int]) -> None:
    from wizard.deploy import DeployResult
    from wizard.errors import ExitCode
    from wizard.probe import ProbeReport, Stage
    from wizard.probe.wire import Handshake
    from wizard.tui.screens.verdict import VerdictScreen

    handshake = Handshake("sid", ("websocket",), 25000, 20000, 1_000_000, 4)
    report = ProbeReport("http://127.0.0.1:8080", "/socket.io/", True, "websocket", handshake,
                         (Stage("tcp", True, 0.4, "connected"),
                          Stage("hold", True, 50026.6, "held 50 s, 2 pings")), ())
    result = DeployResult(host="mem", outcome=Outcome.DEPLOYED, exit_code=ExitCode.OK,
                          title="Deployed", dest=DEST, probe=report)
    deployed = DeploySpec(read_timeout=60)
    state = WizardState(spec=replace(deployed, read_timeout=90), deployed_spec=deployed,
                        deploy_report=result)
    app = SockwizardApp(state=state, start_at=7)
    async with app.run_test(size=size) as pilot:
        await until(pilot, "verdict", lambda: isinstance(app.screen, VerdictScreen)
                    and app.screen.report is not None)
        await pilot.pause()
        handshake_text = text_of(app.screen.query_one("#handshake"))
        assert "read timeout (60 s)" in handshake_text, handshake_text
        table = app.screen.query_one("#stages")
        cells = [str(c) for c in table.get_row("hold")]  # type: ignore[attr-defined]
        assert "50.0 s" in cells, cells


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_toasts_do_not_stack_or_outlive_their_step(size: tuple[int, int]) -> None:
    app = SockwizardApp(start_at=3)
    async with app.run_test(size=size) as pilot:
        await until(pilot, "backends", on_screen(app, BackendsScreen))
        field = app.screen.query_one("#read_timeout", Input)
        field.focus()
        await replace_text(pilot, "10")  # below pingInterval + pingTimeout: refused
        for _ in range(3):
            await pilot.press("ctrl+n")
            await pilot.pause()
        assert len(app._notifications) == 1
        await pilot.press("escape")
        await until(pilot, "path step", on_screen(app, PathScreen))
        assert not app._notifications


def test_cli_words_become_the_wizards() -> None:
    from wizard.tui.words import for_tui

    assert for_tui("The connection is still up; run the command again.") == \
        "The connection is still up; try again."
    assert "--layout full" not in for_tui("deploy a whole Caddyfile with --layout full.")
    assert for_tui("--dest-dir stays") == "--dest-dir stays"  # a longer flag is left alone


def test_the_deploy_question_says_when_there_is_no_file_to_back_up(tmp_path: Any) -> None:
    # The question promised a backup of "the current file" when there was none (a first
    # deploy): it says what happens instead. The dry run is the real one, on this machine.
    from wizard.deploy import DeployOptions, apply
    from wizard.remote import LocalRemote
    from wizard.tui.calls import deploy_question

    dest = tmp_path / "conf.d" / "sockwizard.conf"
    dest.parent.mkdir()
    options = DeployOptions(dest=str(dest), validate_cmd="true", reload_cmd="true",
                            backup_dir=str(tmp_path / "backups"), state_dir=tmp_path / "state",
                            probe_url="http://127.0.0.1:1", dry_run=True)
    spec = DeploySpec()

    first = deploy_question(spec, "this machine", apply(LocalRemote(), spec, options))
    assert "There is no file there yet: it is removed again" in first, first
    assert "backed up" not in first
    dest.write_text("# the host's own\n")
    later = deploy_question(spec, "this machine", apply(LocalRemote(), spec, options))
    assert "The current file is backed up first" in later, later
