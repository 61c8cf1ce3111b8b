"""The TUI's Deploy step on a stock host (issue #13, item 1): the dry run finds that the main
config does not load the site directory, so Deploy first shows that exact change (a diff) in
a confirmation; Cancel changes nothing, yes deploys with ``--edit-main-config``'s consent
(``wizard.deploy.consent``, the plain function behind it). Over the pilot's in-memory host."""

from __future__ import annotations

from textual.widgets import Static

from tests.test_tui_pilot import (
    DEST,
    SIZE,
    fill_overrides,
    memory_connector,
    nginx_remote,
    on_screen,
    sync,
    tab_to,
    until,
    walk_to_target,
)
from wizard.deploy import DeployOptions, Outcome, consent
from wizard.tui.app import SockwizardApp
from wizard.tui.screens.deploy import DeployScreen
from wizard.tui.screens.modals import ConfirmModal

MAIN = "/etc/nginx/nginx.conf"


def test_consent_sets_exactly_the_flags_asked() -> None:
    both = consent(DeployOptions(), ("--edit-main-config", "--disable-default-site"))
    assert both.edit_main_config and both.disable_default_site
    one = consent(DeployOptions(), ("--edit-main-config",))
    assert one.edit_main_config and not one.disable_default_site


@sync
async def test_deploy_shows_the_main_config_change_and_asks_first() -> None:
    main = b"events {\n}\nhttp {\n\tsendfile on;\n}\n"
    remote = nginx_remote(backed_up=(main,))  # the activation backs up the main config
    remote.files[MAIN] = main
    app = SockwizardApp(connector=memory_connector(remote))
    async with app.run_test(size=SIZE) as pilot:
        await walk_to_target(pilot, app, "127.0.0.1:3000")
        await fill_overrides(pilot, "", "nginx -t", "nginx -s reload")  # the default dest
        await pilot.press("ctrl+n")
        await until(pilot, "deploy step", on_screen(app, DeployScreen))
        screen = app.screen
        assert isinstance(screen, DeployScreen)
        await tab_to(pilot, "#opt-probe")  # the fake host has no proxy to probe
        await pilot.press("space")
        await until(pilot, "the dry run", lambda: not screen.planning)
        assert screen.planned is not None and screen.planned.needs == ("--edit-main-config",)

        await pilot.press("d")
        await until(pilot, "the question", on_screen(app, ConfirmModal))
        question = " ".join(str(w.render()) for w in app.screen.query(Static).results(Static))
        assert f"+++ {MAIN} (sockwizard)" in question
        assert "+\tinclude /etc/nginx/conf.d/*.conf;" in question
        await pilot.press("n")  # Cancel: nothing ran
        await until(pilot, "back", on_screen(app, DeployScreen))
        assert not any("@@sw renamed" in c for c in remote.commands)
        assert DEST not in remote.files

        await pilot.press("d")
        await until(pilot, "the question again", on_screen(app, ConfirmModal))
        await pilot.press("y")
        await until(pilot, "deploy result", lambda: screen.deploy_result is not None
                    and not screen.busy)
        assert screen.deploy_result is not None
        assert screen.deploy_result.outcome is Outcome.DEPLOYED, screen.deploy_result.title
        activation = next(c for c in remote.commands if "@@sw renamed" in c)
        assert "/etc/nginx/.nginx.conf.sockwizard-" in activation and f" {MAIN};" in activation
