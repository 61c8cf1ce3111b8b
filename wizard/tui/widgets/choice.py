"""Radio choices that read without colour, and Enter that moves on.

Textual's ``RadioButton`` draws the chosen and the other buttons with the same glyph in two
colours; with ``NO_COLOR`` (or a colour-blind eye) they look alike. ``Choice`` draws ``●``
for the chosen one and ``○`` for the others. In a ``Choices`` set, Enter on the choice that
is already made moves to the next step (``StepScreen`` handles ``Choices.Confirmed``); on
another choice it makes it, as Space does.
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.content import Content
from textual.message import Message
from textual.widgets import RadioButton, RadioSet


class Choice(RadioButton):
    """A radio button whose mark is a glyph, not only a colour."""

    @property
    def _button(self) -> Content:
        self.BUTTON_INNER = "●" if self.value else "○"
        return super()._button


class Choices(RadioSet):
    """A radio set where Enter on the current choice means "go on"."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("down,right", "next_button", "Next option", show=False),
        Binding("space", "toggle_button", "Choose", show=False),
        Binding("enter", "choose_or_go_on", "Choose", show=False),
        Binding("up,left", "previous_button", "Previous option", show=False),
    ]

    class Confirmed(Message):
        """Enter on the choice already made."""

    def action_choose_or_go_on(self) -> None:
        highlighted = self._selected
        if highlighted is not None and highlighted == self.pressed_index:
            self.post_message(self.Confirmed())
        else:
            self.action_toggle_button()
