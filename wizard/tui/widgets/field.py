"""A labelled input whose problems come from the model, shown right under it.

Validation lives once, in ``wizard.model``: a screen turns its inputs into the raw mapping
``build_spec`` takes and hands each field the problem the model found for it. ``ModelCheck``
lets Textual's Input validation (red border, ``-invalid``) use the same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.validation import ValidationResult, Validator
from textual.widgets import Input, Label, Static

from wizard.errors import InvalidSpec
from wizard.model import DeploySpec, Problem, build_spec


class ModelCheck(Validator):
    """A Validator that asks ``problem(value)`` (a call into the model) what is wrong."""

    def __init__(self, problem: Callable[[str], str | None]) -> None:
        super().__init__()
        self._problem = problem

    def validate(self, value: str) -> ValidationResult:
        why = self._problem(value)
        return self.success() if why is None else self.failure(why)


class Field(Vertical):
    """Label, Input and a message line (a problem in red, or a hint in muted text)."""

    DEFAULT_CLASSES = "field"

    def __init__(self, label: str, input: Input, *, hint: str = "",
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._label = label
        self.input = input
        self._hint = hint

    def compose(self) -> ComposeResult:
        yield Label(self._label, classes="field-label")
        yield self.input
        message = Static(self._hint, classes="field-message", markup=False)
        message.display = bool(self._hint)  # no empty line under fields without a hint
        yield message

    def set_problem(self, problem: str | None) -> None:
        """Show the model's problem for this field (None: show the hint again)."""
        message = self.query_one(".field-message", Static)
        text = problem if problem else self._hint
        message.update(text)
        message.display = bool(text)
        message.set_class(bool(problem), "-problem")
        self.set_class(bool(problem), "-invalid")


def check_raw(raw: Mapping[str, Any], base: DeploySpec) -> tuple[DeploySpec | None, dict[str, str]]:
    """Ask the model about a screen's raw values: the new spec, or every problem by field.

    Keys are the model's field names (``backends[1]`` for one backend); a field shows the
    problem under its exact name, else under its base name (``backends``).
    """
    try:
        return build_spec(raw, base=base), {}
    except InvalidSpec as exc:
        problems: dict[str, str] = {}
        for problem in exc.problems:
            if isinstance(problem, Problem):
                problems.setdefault(problem.field, problem.message)
        return None, problems


def problem_for(problems: Mapping[str, str], name: str) -> str | None:
    """The problem the model reported for ``name`` (exact, then the field's base name)."""
    return problems.get(name) or problems.get(name.split("[")[0])
