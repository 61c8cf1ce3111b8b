"""OptionList helpers shared by the choice screens (Start, Proxy, Target hosts)."""

from __future__ import annotations

from collections.abc import Iterable

from textual.widgets.option_list import Option


def spaced(options: Iterable[Option]) -> list[Option | None]:
    """Options with a separator line between them (None is OptionList's separator)."""
    out: list[Option | None] = []
    for option in options:
        if out:
            out.append(None)
        out.append(option)
    return out
