"""The classic faults' names and one-line titles, apart from how each is made (``faults``).

Read by ``sockwizard --help`` (``wizard.commands.sandbox``) and the TUI's choice, so they import
nothing heavy: building the CLI's parser must not load the renderer or the deploy.
"""

from __future__ import annotations

from enum import StrEnum

from wizard.errors import BadInput


class Fault(StrEnum):
    TIMEOUT = "timeout"
    NO_UPGRADE = "no-upgrade"
    NO_STICKY = "no-sticky"
    PATH = "path"


# One line each, for --help and the TUI's choice.
FAULT_TITLES = {
    Fault.TIMEOUT: "read timeout below the server's ping interval (clients drop every few s)",
    Fault.NO_UPGRADE: "no Upgrade/Connection headers (clients stay on polling)",
    Fault.NO_STICKY: "two backends without stickiness (\"Session ID unknown\")",
    Fault.PATH: "the server listens on another path than the proxy forwards (404)",
}


def parse_fault(text: str) -> Fault:
    try:
        return Fault(text.strip().lower())
    except ValueError:
        raise BadInput(f"Unknown fault {text!r}.", "Choose one of: "
                       + ", ".join(f.value for f in Fault) + ".") from None
