"""The core's messages name command-line flags ("Give --server-name", "run the command
again"); inside the wizard the same advice points at the step and field that set it.

``app.SockwizardApp.show_error`` and the Deploy step's notices and result pass their text
through :func:`for_tui`. The table maps the flags the core's messages use to where the
wizard has them; a flag the wizard has no field for is left as it is (the CLI can do it).
Nothing here imports Textual.
"""

from __future__ import annotations

import re

# (the CLI's words, the wizard's), longest first where one contains another.
_WORDS: tuple[tuple[str, str], ...] = (
    ("run the command again", "try again"),
    ("--layout full", '"A complete main config" on the Proxy step'),
    ("--server-name", "a Server name (Backends & timeouts step)"),
    ("--probe-url", "a Probe URL (Target step, Overrides)"),
    ("--validate-cmd", "a Validate command (Target step, Overrides)"),
    ("--reload-cmd", "a Reload command (Target step, Overrides)"),
    ("--dest", "a Destination (Target step, Overrides)"),
    ("--identity", "a Private key file (Target step)"),
    ("--no-rollback", '"Roll back on failure" unticked (Deploy step)'),
)
_PATTERN = re.compile("|".join(rf"(?<![\w-]){re.escape(cli)}(?![\w-])" for cli, _ in _WORDS))
_BY_CLI = dict(_WORDS)


def for_tui(text: str) -> str:
    """``text`` with the CLI's flags replaced by the wizard's steps and fields."""
    return _PATTERN.sub(lambda m: _BY_CLI[m.group(0)], text)
