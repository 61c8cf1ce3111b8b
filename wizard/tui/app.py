"""The ``sockwizard`` TUI: one coroutine walks the steps, one handler shows every error.

``wizard.cli.main`` calls ``run_app()`` when no command is given. ``SockwizardApp.run_wizard``
is a worker that walks the mode's steps in ``flow.STEPS``, pushes one step screen at a time and
awaits its answer (Textual's ``push_screen_wait`` pattern); each step hands back a new
``WizardState``. Each screen is built with the state, its position and the app's ``Services``
(``services.py``): screens never import this module. Blocking calls (paramiko, the proxy's
checker, the probe) run in thread workers started by the screens, which reach the UI only by
posting ``messages``; any worker that fails lands in ``show_error`` — a titled notification
for a short problem, a modal when there is evidence to read (a checker's output, a host key),
never a traceback.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import signal
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.driver import Driver
from textual.screen import Screen
from textual.widgets import Footer, Header, Static
from textual.worker import Worker

from wizard.errors import ExitCode, InvalidSpec, SockwizardError
from wizard.tui.flow import STEPS, Step
from wizard.tui.screens.base import StepScreen, forward_worker_error, run_in_thread
from wizard.tui.services import Connector, Services, default_connector
from wizard.tui.state import Back, Mode, Next, Restart, WizardState, without_stale_results
from wizard.tui.words import for_tui

if TYPE_CHECKING:
    from wizard.sandbox import Sandbox

__all__ = ["Connector", "SockwizardApp", "default_connector", "run_app"]

DARK, LIGHT = "textual-dark", "textual-light"

# sockwizard's own CSS variables, named after what they are for and made from the theme's, so
# both themes work. Defined here rather than in wizard.tcss: a variable declared in one .tcss
# file is not seen by another, and each step screen brings its own file (CSS_PATH).
CSS_VARIABLES = {
    "sw-border": "{primary} 45%",
    "sw-border-focus": "{accent}",
    "sw-title": "{text-accent}",
    "sw-panel": "{surface}",
    "sw-muted": "{text-muted}",
    "sw-ok": "{text-success}",
    "sw-bad": "{text-error}",
    "sw-warn": "{text-warning}",
    "sw-stepper-width": "27",
}


def step_class(step: Step) -> type[StepScreen]:
    """A step's screen class, importing its module on first use.

    Not imported before the first screen: the deploy, diagnose and probe screens pull in the
    core (paramiko, pygments...) that it does not need. ``prefetch_steps`` imports them in a
    thread once the first step is up (or a step imports its own module when reached first).
    """
    screen: type[StepScreen] = getattr(importlib.import_module(step.module), step.class_name)
    return screen


def resume_gc() -> None:
    """End the start-up pause of the cyclic garbage collector.

    run_app (and the CLI, before importing Textual) turn it off: start-up allocates hundreds of
    thousands of long-lived objects (modules, classes, compiled patterns), and collecting them
    over and over cost ~14 ms before the first screen; later, each full collection walked them
    all again, 15-60 ms in the middle of a step change (measured with gc.callbacks). Once the
    first step is up and every step is imported, freeze what exists (it lives as long as the
    app) and turn collection back on for what comes next.
    """
    gc.freeze()
    gc.enable()


def prefetch_steps() -> None:
    """Import every step screen and warm the highlighter, in a thread, while the user reads
    the first step. Otherwise the first visit to a step waits for its imports (Pygments, the
    deploy core) and for Pygments to compile its lexers' patterns: tens of ms a step, more
    than the step's own compose."""
    for mode in Mode:
        for step in STEPS[mode]:
            step_class(step)
    importlib.import_module("wizard.tui.screens.modals")
    from wizard.tui.widgets.code_view import warm_lexers

    warm_lexers()


class Backdrop(Screen[None]):
    """The app's base screen, seen for a frame between two steps.

    It starts empty and gets its header and footer once the first step has been painted: the
    user waits for that step, not for a screen that lies under it (measured: ~15 ms of
    start-up).
    """

    def dress(self) -> None:
        if not self.children:
            self.mount_all([Header(icon="⇄"), Static("sockwizard", id="backdrop"), Footer()])


class SockwizardApp(App[int]):
    """The wizard. Arguments exist for tests and the screenshot script: where to start, with
    what state, and how to connect to a host."""

    CSS_PATH = "wizard.tcss"
    TITLE = "sockwizard"
    SUB_TITLE = "Socket.IO behind a reverse proxy"

    # Classes the screens get by the terminal's size (wizard.tcss): below 100 columns the step
    # list folds into one line above the step; below 30 lines the frame drops its spacing, so
    # 80x24 (a classic SSH terminal) gives the step's own content, not chrome, the room.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]  # noqa: RUF012 (as App has it)
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]  # noqa: RUF012

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+t", "toggle_dark", "Light/dark"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, *, state: WizardState | None = None, start_at: int = 0,
                 connector: Connector | None = None, known_hosts: Path | None = None,
                 ssh_config: Path | None = None, run_wizard: bool = True) -> None:
        super().__init__()
        self.state = state or WizardState()
        self.start_at = start_at
        self.known_hosts = known_hosts
        self.ssh_config = ssh_config
        self.connector = connector or default_connector(known_hosts, ssh_config)
        self._autostart = run_wizard
        self._sandboxes: list[Sandbox] = []  # by identity: a Sandbox is an unhashable dataclass
        self._prefetched = False
        # True when run_app paused the garbage collector for start-up (see resume_gc).
        self.gc_paused = False
        self.theme = DARK

    @property
    def services(self) -> Services:
        """What a step screen gets from the app (read when each screen is built)."""
        return Services(connector=self.connector, ssh_config=self.ssh_config,
                        step_shown=self.step_shown, adopt_sandbox=self.adopt_sandbox,
                        forget_sandbox=self.forget_sandbox)

    def get_css_variables(self) -> dict[str, str]:
        variables = super().get_css_variables()
        return {**variables, **{name: value.format_map(variables)
                                for name, value in CSS_VARIABLES.items()}}

    def get_driver_class(self) -> type[Driver]:
        """In a real Linux/macOS terminal, Textual's driver with one change: a read's keys
        reach the app together (``driver.BurstDriver``: why)."""
        driver = super().get_driver_class()
        # By name: importing the Linux driver on Windows would fail (termios).
        if (driver.__module__, driver.__name__) == ("textual.drivers.linux_driver",
                                                    "LinuxDriver"):
            from wizard.tui.driver import BurstDriver

            return BurstDriver
        return driver

    def get_default_screen(self) -> Screen[Any]:
        return Backdrop()

    def on_mount(self) -> None:
        if self._autostart:
            self.run_wizard()

    # -- the wizard --------------------------------------------------------------------------

    @work(exclusive=True, group="wizard", exit_on_error=False)
    async def run_wizard(self) -> None:
        index = self.start_at
        while True:
            steps = STEPS[self.state.mode]
            index = max(0, min(index, len(steps) - 1))
            screen = step_class(steps[index])(self.state, index, self.services)
            answer = await self.push_screen_wait(screen)
            if index > 0:
                # A toast is about the step it came from ("Nothing is deployed yet"): it
                # must not linger on the next one. Start's "Spec loaded" stays: it tells
                # what the next step shows.
                self._notifications.clear()
            if isinstance(answer, Restart):
                self._set_state(replace(answer.state, connection=None, deploy_report=None,
                                        deployed_spec=None, sandbox=None))
                index = 0
            elif isinstance(answer, Back):
                self._set_state(answer.state)
                index -= 1
            elif isinstance(answer, Next):
                self._set_state(answer.state)
                if index == len(steps) - 1:
                    break
                index += 1
        # Like the CLI: 1 when the verdict the user finished on was a failure.
        failed = self.state.verdict_ok is False
        self.exit(int(ExitCode.FAILED if failed else ExitCode.OK))

    def _set_state(self, state: WizardState) -> None:
        """Keep the latest state (palette commands read it); close a connection or stop a
        sandbox left behind (a sandbox stops in a thread: it waits for its processes).
        Results made for another spec or target are dropped (``without_stale_results``)."""
        old = self.state
        state = without_stale_results(old, state)
        if old.connection is not None and old.connection is not state.connection:
            old.connection.close()
        if old.sandbox is not None and old.sandbox is not state.sandbox:
            # Stays in _sandboxes: stopping twice is harmless, and exit stops it for sure.
            self.run_worker(old.sandbox.stop, thread=True, group="cleanup",
                            exit_on_error=False)
        self.state = state

    def adopt_sandbox(self, box: Sandbox) -> None:
        """Remember a sandbox a screen started, so it is stopped on exit whatever happens."""
        self._sandboxes.append(box)

    def forget_sandbox(self, box: Sandbox) -> None:
        self._sandboxes = [b for b in self._sandboxes if b is not box]

    def step_shown(self) -> None:
        """A step screen has been painted: time for work the first paint should not wait on."""
        backdrop = self.screen_stack[0]
        if isinstance(backdrop, Backdrop):
            backdrop.dress()
        if not self._prefetched:
            self._prefetched = True
            self.run_worker(self._prefetch, thread=True, group="prefetch", exit_on_error=False)

    def _prefetch(self) -> None:
        try:
            prefetch_steps()
        finally:
            if self.gc_paused:
                resume_gc()

    def current_step(self) -> StepScreen | None:
        screen = self.screen
        return screen if isinstance(screen, StepScreen) else None

    # -- the one error handler ------------------------------------------------------------

    def show_error(self, error: BaseException) -> None:
        """Every failure a user sees goes through here, titled, with what to do next."""
        from wizard.tui.screens.modals import ErrorModal

        if isinstance(error, SockwizardError):
            title, hint = for_tui(error.title), for_tui(error.hint)
            if error.detail or isinstance(error, InvalidSpec) or len(hint) > 160:
                self.push_screen(ErrorModal(title, hint, error.detail))
            else:
                self.notify(hint or " ", title=title, severity="error", timeout=10,
                            markup=False)
            return
        self.log.error(f"unexpected error: {error!r}")
        self.push_screen(ErrorModal(
            f"Unexpected error: {type(error).__name__}: {error}",
            "This is a bug in sockwizard. Nothing else was changed by this step; please report "
            "it with the steps that led here.",
        ))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        forward_worker_error(self, event)
        if event.worker.name == "run_wizard" and event.worker.is_finished \
                and event.worker.error is not None:
            self.start_at = 0
            self.run_wizard()  # an error must not leave the user on an empty screen

    # -- actions (footer keys, palette) -------------------------------------------------------

    def action_toggle_dark(self) -> None:
        self.theme = LIGHT if self.theme == DARK else DARK

    def action_save_config(self) -> None:
        self._save_config()

    def action_save_spec(self) -> None:
        self._save_spec()

    def action_start_over(self) -> None:
        step = self.current_step()
        if step is not None:
            step.dismiss(Restart(step.state))

    @work(exclusive=True, group="save", exit_on_error=False)
    async def _save_config(self) -> None:
        from wizard.render import render
        from wizard.tui.screens.modals import PathPrompt

        rendered = render(self.state.spec)
        path = await self.push_screen_wait(PathPrompt("Save the config", rendered.filename))
        if path is None:
            return
        await run_in_thread(self, write_text, path, rendered.text)
        self.notify(f"{path} ({len(rendered.text)} bytes)", title="Config saved")

    @work(exclusive=True, group="save", exit_on_error=False)
    async def _save_spec(self) -> None:
        from wizard.spec_file import dump_spec
        from wizard.tui.screens.modals import PathPrompt

        default = str(self.state.spec_source or "sockwizard.toml")
        path = await self.push_screen_wait(PathPrompt("Save the spec (TOML)", default))
        if path is None:
            return
        await run_in_thread(self, write_text, path, dump_spec(self.state.spec))
        self.state = replace(self.state, spec_source=path)
        self.notify(f"{path} — reuse it with `sockwizard render --spec {path}`",
                    title="Spec saved", markup=False)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield SystemCommand("Save config…", "Write the generated config to a file",
                            self.action_save_config)
        yield SystemCommand("Save spec…", "Write the settings as TOML (render --spec reads it)",
                            self.action_save_spec)
        yield SystemCommand("Start over", "Back to the first step (keeps the settings)",
                            self.action_start_over)
        yield SystemCommand("Toggle light/dark", "Switch between the light and dark theme",
                            self.action_toggle_dark)
        # ``screen`` is the step the palette was opened on (self.screen is the palette now).
        step = screen if isinstance(screen, StepScreen) else self.current_step()
        if step is not None:
            for title, help_text, callback in step.palette_commands():
                yield SystemCommand(title, help_text, callback)
        yield from super().get_system_commands(screen)

    def on_unmount(self) -> None:
        self.release()

    def release(self) -> None:
        """Close the SSH connection and stop every sandbox (their proxy, demo backends and
        temp dir): on exit, and from the SIGHUP/SIGTERM handler (``run_app``)."""
        from wizard.sandbox import stop_all

        if self.state.connection is not None:
            with contextlib.suppress(Exception):
                self.state.connection.close()
        boxes = list(self._sandboxes)
        if self.state.sandbox is not None and all(b is not self.state.sandbox for b in boxes):
            boxes.append(self.state.sandbox)
        for box in boxes:
            box.stop()  # waits for its processes: nothing outlives the app
        self._sandboxes.clear()
        stop_all()  # also one still starting in a worker thread


def write_text(path: Path, text: str) -> None:
    """Write a file whole (temp file + rename), translating OSError for the error handler."""
    from wizard.errors import BadInput

    tmp = path.with_name(f".{path.name}.sockwizard-tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BadInput(f"Cannot write {path}: {exc.strerror}",
                       "Check that the directory exists and is writable.") from None


# Textual hands every frame to a writer thread, which needs the GIL to write it; while the
# event loop keeps busy (the next layout, a worker's result) that thread waits out CPython's
# switch interval, 5 ms by default, once per write and once per flush. Measured in a pty: the
# first screen reached the terminal ~10 ms after it was rendered; with 1 ms, ~1 ms. The TUI
# owns its process, so it may set this; the CLI commands keep the default.
UI_SWITCH_INTERVAL_S = 0.001


def run_app(**kwargs: Any) -> int:
    """Run the wizard in the terminal; the process exit code."""
    import sys

    sys.setswitchinterval(UI_SWITCH_INTERVAL_S)
    gc.disable()  # until the first step is up: see resume_gc
    app = SockwizardApp(**kwargs)
    app.gc_paused = True
    previous = install_exit_signals(app)
    try:
        result = app.run()
    finally:
        gc.enable()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if app.return_code not in (None, 0):
        return int(app.return_code)
    return int(result) if result is not None else int(ExitCode.OK)



# After a SIGHUP/SIGTERM the app gets this long to exit on its own (restoring the terminal
# when there still is one) before the process ends regardless.
SIGNAL_EXIT_GRACE_S = 3.0


def install_exit_signals(app: SockwizardApp) -> dict[int, Any]:
    """Closing the terminal (SIGHUP) or a SIGTERM cleans up like ctrl+q: without this the
    default action kills the process and its sandbox's proxy and demo backends (in sessions
    of their own) are re-parented to PID 1, the temp dir left behind. The cleanup runs at
    once, in the handler — the terminal may be gone, and the event loop may never get to
    ``on_unmount`` — then the app is asked to exit, with a watchdog in case it cannot.
    Returns the previous handlers."""
    import asyncio
    import os
    import threading
    import time

    def leave(signum: int) -> None:
        time.sleep(SIGNAL_EXIT_GRACE_S)
        os._exit(128 + signum)

    def on_signal(signum: int, frame: object) -> None:
        app.release()
        threading.Thread(target=leave, args=(signum,), daemon=True).start()
        with contextlib.suppress(RuntimeError):  # no loop running (yet / any more)
            asyncio.get_running_loop().call_soon_threadsafe(
                app.exit, None, int(ExitCode.INTERRUPTED))

    return {signum: signal.signal(signum, on_signal) for signum in (signal.SIGHUP, signal.SIGTERM)}
