"""What the step screens need from outside themselves, handed to each screen when the wizard
builds it (``app.SockwizardApp`` makes one ``Services``): screens never import the App.

- ``connector``: opens the Remote a ``TargetChoice`` names (Target step; tests pass one that
  returns an ``InMemoryRemote``); ``default_connector`` is the real one.
- ``ssh_config``: the ~/.ssh/config the Target step lists hosts from (None: the user's).
- ``step_shown``: called once a step has been painted (the app dresses its backdrop and
  starts the prefetch then, not before the first paint).
- ``adopt_sandbox`` / ``forget_sandbox``: a sandbox the Deploy step started is stopped on exit
  whatever happens; one it stopped itself is forgotten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from wizard.tui.state import Connection, TargetChoice, TargetKind

if TYPE_CHECKING:
    from wizard.sandbox import Sandbox


class Connector(Protocol):
    """Opens the Remote a TargetChoice names (tests pass one that returns an InMemoryRemote)."""

    def __call__(self, choice: TargetChoice, *, accept_host_key: str | None,
                 sudo_password: str | None) -> Connection: ...


def default_connector(known_hosts: Path | None = None,
                      ssh_config: Path | None = None) -> Connector:
    """The real thing: ``wizard.remote.open_remote``, this machine or a host over SSH."""

    def connect(choice: TargetChoice, *, accept_host_key: str | None,
                sudo_password: str | None) -> Connection:
        from wizard.remote import LOCAL, host_address, open_remote

        # "local" typed as an SSH host name means a host called local, as it always did here.
        host = LOCAL if choice.kind is TargetKind.LOCAL else (
            choice.ssh_text if choice.ssh_text != LOCAL else f"ssh://{LOCAL}")
        remote = open_remote(host, known_hosts=known_hosts, accept_host_key=accept_host_key,
                             identity=choice.identity, sudo_password=sudo_password,
                             ssh_config=ssh_config)
        return Connection(choice, remote, host_address(host, ssh_config=ssh_config))

    return connect


@dataclass(frozen=True)
class Services:
    """The app's services a step screen may use (see the module docstring)."""

    connector: Connector
    ssh_config: Path | None
    step_shown: Callable[[], None]
    adopt_sandbox: Callable[[Sandbox], None]
    forget_sandbox: Callable[[Sandbox], None]
