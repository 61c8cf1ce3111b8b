"""The list of steps at the left of every step screen: done, current, still to come.

The names are ``flow.labels(mode)``; the screens' frame passes them in."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static


class Stepper(Static):
    """Renders ``steps`` with a mark per state; ``current`` is 0-based."""

    DEFAULT_CLASSES = "stepper"

    def __init__(self, steps: tuple[str, ...], current: int, *, id: str | None = None) -> None:
        super().__init__(self._content(steps, current), id=id)
        self.border_title = "Steps"

    @staticmethod
    def _content(steps: tuple[str, ...], current: int) -> Content:
        lines: list[Content] = []
        for i, name in enumerate(steps):
            if i < current:
                lines.append(Content.assemble(("✓ ", "$text-success"), (f"{i + 1} {name}",
                                                                        "$text-muted")))
            elif i == current:
                lines.append(Content.assemble(("● ", "$text-accent"),
                                              (f"{i + 1} {name}", "bold $text")))
            else:
                lines.append(Content.styled(f"○ {i + 1} {name}", "$text-disabled"))
        return Content("\n").join(lines)
