"""What every wizard step shares: the frame (header, step list, nav bar, footer), Back/Next,
running blocking core calls in thread workers, and handing worker errors to the app.

A step subclasses ``StepScreen``, composes its body in ``compose_body`` and answers in
``answer()`` with a new ``WizardState`` (or None to stay, with the problems shown). The wizard
coroutine in ``app.py`` builds each screen with the state, its position in ``flow.STEPS`` and
the app's ``Services``, and awaits the screen's ``Next``/``Back``/``Restart``. Screens do not
import the App.

Code that runs in a worker thread reaches the UI only through ``post_message``
(``wizard.tui.messages``); ``run_in_thread`` returns once the screen has handled what the
thread posted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Static
from textual.worker import Worker, WorkerCancelled, WorkerFailed, WorkerState

from wizard.tui import flow
from wizard.tui.services import Services
from wizard.tui.state import Answer, Back, Next, WizardState
from wizard.tui.widgets.stepper import StepLine, Stepper

T = TypeVar("T")

# Thread workers started by ``in_thread``: their errors go to the awaiting coroutine, not to
# the error handler (which would report them twice).
BLOCKING_GROUP = "blocking"


def forward_worker_error(node: Any, event: Worker.StateChanged) -> None:
    """Send a failed worker's exception to the app's single error handler."""
    worker = event.worker
    if event.state is WorkerState.ERROR and worker.group != BLOCKING_GROUP:
        error = worker.error
        if error is not None and not isinstance(error, WorkerCancelled | asyncio.CancelledError):
            node.app.show_error(error)


async def run_in_thread(node: Any, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking ``fn`` in a Textual thread worker and return its result (or raise its error).

    The UI keeps running while paramiko, a proxy checker or the probe does its work. Callbacks
    that ``fn`` calls in the thread may only ``post_message`` to ``node``: this returns (or
    raises) after ``node`` has handled those messages, so the caller shows the result after
    the rows that led to it.
    """
    worker: Worker[T] = node.run_worker(partial(fn, *args, **kwargs), thread=True,
                                        exit_on_error=False, group=BLOCKING_GROUP)
    try:
        result = await worker.wait()
    except WorkerFailed as failed:
        await caught_up(node)
        raise failed.error from None
    except WorkerCancelled:
        # The awaiting worker was cancelled (a newer one replaced it, or its screen closed):
        # end it quietly; the thread finishes on its own and its result is dropped.
        raise asyncio.CancelledError from None
    await caught_up(node)
    return result


async def caught_up(node: Any) -> None:
    """Wait until ``node`` has handled the messages queued to it before now.

    A thread's ``post_message`` is queued (``call_soon_threadsafe``) before the thread's result
    reaches the event loop, so once the awaited worker is done, every message it posted is in
    the queue; ``call_later`` runs after "all messages are processed in this object".
    """
    done = asyncio.Event()
    if node.call_later(done.set):  # False: the node is closing, nothing will be handled
        await done.wait()


class StepScreen(Screen[Answer]):
    """One wizard step. Subclasses set STEP_HELP (and the class flags below) and implement
    compose_body/answer; their name and position come from ``flow.STEPS``."""

    STEP_HELP: ClassVar[str] = ""
    NEXT_LABEL: ClassVar[str] = "Next"
    SHOW_BACK: ClassVar[bool] = True
    # False where the body's own control moves on (Start's menu: Enter or a click on a choice).
    SHOW_NEXT: ClassVar[bool] = True
    # False for steps whose body manages its own scrolling (tabs of code, tables).
    BODY_SCROLLS: ClassVar[bool] = True

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+n", "next", "Next", priority=True),
    ]

    def __init__(self, state: WizardState, index: int, services: Services) -> None:
        super().__init__()
        self.state = state
        # The same screen can sit at different positions (Target is 6 of 8 when deploying,
        # 2 of 4 when diagnosing): the wizard passes the position in flow.STEPS.
        self.index = index
        self.services = services
        # Set before mounting, so the header's first paint already shows it (set in on_mount,
        # it costs the header a second update before the first frame).
        self.sub_title = self.step_title

    @property
    def steps(self) -> tuple[str, ...]:
        return flow.labels(self.state.mode)

    @property
    def step_title(self) -> str:
        return self.steps[self.index]

    # -- frame ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(icon="⇄")
        done = flow.done(self.state, self.index)
        with Horizontal(id="frame"):
            yield Stepper(self.steps, self.index, done, id="stepper")
            with Vertical(id="main"):
                # One of these two shows, by the terminal's width (wizard.tcss, -narrow).
                yield StepLine(self.steps, self.index, done, id="step-line")
                yield Static(f"{self.index + 1}. {self.step_title}", id="step-title")
                if self.STEP_HELP:
                    yield Static(self.STEP_HELP, id="step-help")
                body = VerticalScroll(id="body") if self.BODY_SCROLLS else Vertical(id="body")
                with body:
                    yield from self.compose_body()
                with Horizontal(id="nav"):
                    if self.SHOW_BACK:
                        yield Button("◂ Back", id="back", compact=True, action="screen.back")
                    yield Static(id="nav-status")
                    if self.SHOW_NEXT:
                        yield Button(f"{self.NEXT_LABEL} ▸", id="next", variant="primary",
                                     compact=True, action="screen.next")
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        # Textual calls every class's on_mount in the MRO (subclass first): steps that have
        # their own must not call super().on_mount(), or this runs twice.
        self.call_after_refresh(self.services.step_shown)

    def set_next_label(self, label: str) -> None:
        """Rename the Next button (e.g. "Connect", "Probe & verdict")."""
        button = self.query_one("#next", Button)
        button.label = f"{label} ▸"
        button.refresh(layout=True)  # the label is not a layout reactive: resize for it

    def set_status(self, text: str) -> None:
        """A short line in the nav bar (what is going on, or why Next is refused)."""
        self.query_one("#nav-status", Static).update(text)

    # -- navigation ------------------------------------------------------------------------

    def answer(self) -> WizardState | None:
        """The new state this step produces, or None to stay (after showing why)."""
        return self.state

    def back_state(self) -> WizardState:
        """The state to go back with: by default, the one this step started from."""
        return self.state

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Back is hidden from the footer on the first step.
        return not (action == "back" and not self.SHOW_BACK)

    def action_next(self) -> None:
        state = self.answer()
        if state is not None:
            self.dismiss(Next(state))

    def action_back(self) -> None:
        if self.SHOW_BACK:
            self.dismiss(Back(self.back_state()))

    def on_choices_confirmed(self) -> None:
        """Enter on a radio choice that is already made (``widgets.choice.Choices``): go on.
        By name, so that the first screen does not import the radio widgets."""
        self.action_next()

    def palette_commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        """This step's own actions for the command palette: (title, help, callback)."""
        return []

    # -- workers ---------------------------------------------------------------------------

    async def in_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_in_thread(self, fn, *args, **kwargs)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        forward_worker_error(self, event)
