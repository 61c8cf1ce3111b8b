"""The terminal driver the wizard runs on: Textual's Linux driver, except that the events of
one terminal read reach the app together.

``app.SockwizardApp.get_driver_class`` picks it in a real terminal (tests with Pilot run on
Textual's headless driver and never see it).

Why: Textual's input thread posts each key of a read to the event loop on its own
(``run_coroutine_threadsafe`` per key). When Enter and more keys arrive in one read (a fast
typist, a paste, a script: ``tmux send-keys Enter Down Down``), the event loop can take the
GIL right after Enter is posted, act on it, leave the step and build the next one while the
input thread waits to post the rest; the Downs then land on the next step (measured: posted
8 ms after Enter, handled 140 ms later, on the new step's list). The README promises that keys
typed in the same instant as the Enter that leaves a step stay with that step. Posting a read's
events in one loop callback puts them in the app's queue before it handles any of them, so
each goes to the widget that had the focus when the read arrived.
"""

from __future__ import annotations

import os
import selectors
import threading
from codecs import getincrementaldecoder

from textual.drivers.linux_driver import LinuxDriver
from textual.message import Message

try:  # Textual's own parser, as its driver uses it (a private module: checked, not assumed)
    from textual._xterm_parser import XTermParser
except ImportError:  # pragma: no cover - a Textual without it keeps its own driver
    XTermParser = None  # type: ignore[assignment,misc]


class BurstDriver(LinuxDriver):
    """LinuxDriver whose input thread hands the app each read's events in one go."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._burst: list[Message] = []
        self._input_thread: int | None = None

    def send_message(self, message: Message) -> None:
        # Only the input thread's own messages wait for the end of the read (a resize comes
        # from the signal handler, on the main thread).
        if threading.get_ident() == self._input_thread:
            self._burst.append(message)
        else:
            super().send_message(message)

    def _flush(self) -> None:
        if self._burst:
            burst, self._burst = self._burst, []
            self._loop.call_soon_threadsafe(self._post_all, burst)

    def _post_all(self, burst: list[Message]) -> None:
        for message in burst:  # on the event loop: nothing runs between these
            self._app.post_message(message)

    def run_input_thread(self) -> None:
        """Textual's input loop (select, decode, parse, ``process_message``), with the
        messages of each wake-up collected and posted together."""
        if XTermParser is None:  # pragma: no cover
            super().run_input_thread()
            return
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode
        self._input_thread = threading.get_ident()

        def wake_up(ready: list[tuple[selectors.SelectorKey, int]], final: bool = False) -> None:
            try:
                for _key, mask in ready:
                    if mask & selectors.EVENT_READ:
                        data = decode(os.read(self.fileno, 1024 * 4), final=final)
                        if not data:  # stdin piped and closed
                            break
                        for event in parser.feed(data):
                            self.process_message(event)
                for event in parser.tick():  # an Escape alone, once its delay is over
                    self.process_message(event)
            finally:
                self._flush()

        try:
            while not self.exit_event.is_set():
                wake_up(selector.select(0.1))
            selector.unregister(self.fileno)
            wake_up(selector.select(0.1), final=True)
        finally:
            self._input_thread = None
            selector.close()
            try:
                for _event in parser.feed(""):
                    pass
            except Exception:  # EOF or a half sequence at exit: nothing left to deliver
                pass
