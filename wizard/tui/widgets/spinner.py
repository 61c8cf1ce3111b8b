"""A one-cell spinner for steps that are running (deploy steps, connecting, probing)."""

from __future__ import annotations

from textual.widgets import Static

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class Spinner(Static):
    """Turns while mounted and ``spinning``; ``stop(mark)`` freezes it on a ✓/✗ or any text."""

    DEFAULT_CLASSES = "spinner"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(FRAMES[0], id=id, classes=classes)
        self._frame = 0
        self.spinning = True

    def on_mount(self) -> None:
        self._timer = self.set_interval(0.08, self._tick)

    def _tick(self) -> None:
        if self.spinning:
            self._frame = (self._frame + 1) % len(FRAMES)
            self.update(FRAMES[self._frame])

    def stop(self, mark: str) -> None:
        self.spinning = False
        self.update(mark)
