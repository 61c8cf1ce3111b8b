"""Screenshots from real runs, for the README: ``scripts/screenshots.py`` writes these too.

Nothing here is recorded or staged: each picture is the wizard doing the real thing on this
machine, through the same keys a user presses.

- ``live-07-sandbox-deploy`` / ``live-08-sandbox-verdict`` (the hero): two backends, the
  sandbox runs two demo servers behind a real nginx with the rendered stickiness, the real
  transaction deploys into it, the verdict probes it; also at 80x24 (a classic SSH terminal).
- ``live-07b-rollback``: a real rollback. A sandbox whose servers listen on another path than
  the config forwards (``--break path``); the wizard deploys to "this machine" with the
  overrides aimed at that sandbox: the probe gets a 404 and the previous file is restored.
- ``live-10-diagnosis``: the Diagnose flow on a sandbox broken with ``--break no-sticky``,
  reading its live nginx config and probing it.
- ``browser-verdict.png``: ``sockwizard serve`` in headless Chromium, walked to the sandbox
  verdict (tests/browser.py).

Needs nginx (and for the PNG chromium + chromedriver), like the tests.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from textual.pilot import Pilot  # noqa: E402

from wizard.model import Backend, DeploySpec, ProxyKind  # noqa: E402
from wizard.remote import LocalRemote  # noqa: E402
from wizard.sandbox import Fault, Sandbox, start_sandbox  # noqa: E402
from wizard.tui.app import SockwizardApp  # noqa: E402
from wizard.tui.screens.deploy import DeployScreen  # noqa: E402
from wizard.tui.state import Connection, Mode, TargetChoice, TargetKind, WizardState  # noqa: E402

OUT = ROOT / "screenshots"
BIG, SMALL = (120, 40), (80, 24)
TWO = DeploySpec(backends=(Backend("10.0.0.11", 3000), Backend("10.0.0.12", 3000)))


async def until(pilot: Pilot[Any], done: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out on {pilot.app.screen!r}")
        await pilot.pause(0.1)
    await pilot.pause(0.3)


def named(pilot: Pilot[Any], name: str) -> Callable[[], bool]:
    return lambda: type(pilot.app.screen).__name__ == name


async def press_deploy(pilot: Pilot[Any]) -> DeployScreen:
    """``d`` on the Deploy step, confirming if the wizard asks (a real host)."""
    screen = pilot.app.screen
    assert isinstance(screen, DeployScreen)
    await pilot.press("d")
    for _ in range(20):
        await pilot.pause(0.1)
        if pilot.app.screen is not screen:  # a confirmation naming the host and file
            await pilot.press("y")  # the confirmation's Yes (Cancel has the focus)
    await until(pilot, lambda: screen.deploy_result is not None and not screen.busy)
    return screen


def shot(app: SockwizardApp, name: str) -> None:
    app.save_screenshot(f"{name}.svg", str(OUT))
    print(f"wrote screenshots/{name}.svg")


async def sandbox_flow(size: tuple[int, int], suffix: str) -> None:
    app = SockwizardApp(state=WizardState(spec=TWO), start_at=5)
    async with app.run_test(size=size) as pilot:
        await until(pilot, named(pilot, "TargetScreen"))
        await pilot.press("down", "down", "enter", "ctrl+n")  # "A sandbox here"
        await until(pilot, named(pilot, "DeployScreen"))
        screen = await press_deploy(pilot)
        await pilot.pause(0.5)
        shot(app, f"live-07-sandbox-deploy{suffix}")
        assert screen.deploy_result is not None and screen.deploy_result.ok
        await pilot.press("ctrl+n")
        await until(pilot, lambda: getattr(app.screen, "report", None) is not None)
        shot(app, f"live-08-sandbox-verdict{suffix}")


def local(box: Sandbox, **kw: Any) -> Connection:
    assert box.setup is not None
    choice = TargetChoice(kind=TargetKind.LOCAL, dest=str(box.setup.site),
                          validate_cmd=box.setup.validate_cmd, reload_cmd=box.setup.reload_cmd,
                          probe_url=box.url, **kw)
    return Connection(choice, LocalRemote(), "127.0.0.1")


async def rollback() -> None:
    box = start_sandbox(ProxyKind.NGINX, DeploySpec(), fault=Fault.PATH)
    try:
        assert box.fault is not None
        conn = local(box)
        state = WizardState(spec=box.fault.spec, target=conn.choice, connection=conn)
        app = SockwizardApp(state=state, start_at=6)
        async with app.run_test(size=BIG) as pilot:
            await until(pilot, lambda: isinstance(app.screen, DeployScreen)
                        and not app.screen.planning)
            screen = await press_deploy(pilot)
            assert screen.deploy_result is not None and not screen.deploy_result.ok
            await pilot.pause(0.5)
            shot(app, "live-07b-rollback")
    finally:
        box.stop()


async def diagnosis() -> None:
    box = start_sandbox(ProxyKind.NGINX, DeploySpec(), fault=Fault.NO_STICKY)
    try:
        assert box.setup is not None
        conn = local(box)
        state = WizardState(mode=Mode.DIAGNOSE, spec=box.spec, probe_url=box.url,
                            probe_path=box.path, config_path=str(box.setup.main_config),
                            target=conn.choice, connection=conn)
        app = SockwizardApp(state=state, start_at=3)
        async with app.run_test(size=BIG) as pilot:
            await until(pilot, lambda: getattr(app.screen, "diagnosis", None) is not None)
            await pilot.pause(0.5)
            shot(app, "live-10-diagnosis")
    finally:
        box.stop()


def browser() -> None:
    from tests.browser import Browser, served, walk_to_sandbox_verdict

    with served() as (url, _server):
        page = Browser(1200, 760)
        try:
            page.open(url)
            walk_to_sandbox_verdict(page)
            page.screenshot(OUT / "browser-verdict.png")
            print("wrote screenshots/browser-verdict.png")
        finally:
            page.close()


def main() -> int:
    OUT.mkdir(exist_ok=True)
    os.environ.setdefault("XDG_STATE_HOME", tempfile.mkdtemp(prefix="sockwizard-shots-"))
    asyncio.run(sandbox_flow(BIG, ""))
    asyncio.run(sandbox_flow(SMALL, "-80x24"))
    asyncio.run(rollback())
    asyncio.run(diagnosis())
    browser()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
