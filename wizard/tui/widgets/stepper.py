"""The list of steps: done, current, still to come — at the left of every step screen, or as
one line above the step when the terminal is narrow (``StepLine``; the CSS shows one of them).

The names are ``flow.labels(mode)`` and the done marks ``flow.done(state, index)``; the
screens' frame passes them in. A mark is a glyph, not only a colour (✓ ● ○), so the list
reads the same without colours (NO_COLOR).
"""

from __future__ import annotations

from collections.abc import Collection

from textual.content import Content
from textual.widgets import Static


def _mark(i: int, current: int, done: Collection[int]) -> tuple[str, str]:
    if i == current:
        return "●", "$text-accent"
    if i in done:
        return "✓", "$text-success"
    return "○", "$text-disabled"


class Stepper(Static):
    """Renders ``steps`` with a mark per state; ``current`` is 0-based."""

    DEFAULT_CLASSES = "stepper"

    def __init__(self, steps: tuple[str, ...], current: int, done: Collection[int] = (), *,
                 id: str | None = None) -> None:
        super().__init__(self._content(steps, current, done), id=id)
        self.border_title = "Steps"

    @staticmethod
    def _content(steps: tuple[str, ...], current: int, done: Collection[int]) -> Content:
        lines: list[Content] = []
        for i, name in enumerate(steps):
            mark, style = _mark(i, current, done)
            text_style = ("bold $text" if i == current else
                          "$text-muted" if i in done else "$text-disabled")
            lines.append(Content.assemble((f"{mark} ", style), (f"{i + 1} {name}", text_style)))
        return Content("\n").join(lines)


class StepLine(Static):
    """The step list in one line, for narrow terminals: ``✓1 ✓2 ●3. Path & scope ○4 …``."""

    DEFAULT_CLASSES = "step-line-compact"

    def __init__(self, steps: tuple[str, ...], current: int, done: Collection[int] = (), *,
                 id: str | None = None) -> None:
        parts: list[Content] = []
        for i, name in enumerate(steps):
            mark, style = _mark(i, current, done)
            label = f"{i + 1}. {name}" if i == current else str(i + 1)
            parts.append(Content.assemble((mark, style),
                                          (label, "bold $text" if i == current else style)))
        super().__init__(Content(" ").join(parts), id=id)
