"""What the wizard carries from step to step, and how a step answers.

The wizard coroutine (``app.SockwizardApp.run_wizard``) pushes one step screen at a time and
awaits its answer: ``Next(state)`` or ``Back(state)``. ``WizardState`` is frozen; a step returns
a new one built with ``dataclasses.replace`` (the spec inside it the same way), so no screen
mutates what another screen holds. Nothing here imports Textual.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wizard.model import DeploySpec

if TYPE_CHECKING:
    from wizard.remote import Remote


class Mode(StrEnum):
    DEPLOY = "deploy"
    DIAGNOSE = "diagnose"


class TargetKind(StrEnum):
    LOCAL = "local"
    SSH = "ssh"
    NONE = "none"  # diagnose only: probe the URL without reading the proxy's config
    SANDBOX = "sandbox"  # deploy only: a throwaway proxy + demo backend here (wizard.sandbox)


@dataclass(frozen=True)
class TargetChoice:
    """Where to deploy (or what to diagnose), as typed on the Target step.

    ``host`` is ``[user@]host[:port]`` or an ~/.ssh/config alias; ``user``/``port`` override it.
    The overrides at the end are the deploy's ``--dest``/``--validate-cmd``/``--reload-cmd``/
    ``--probe-url`` (hosts without systemd, containers, test rigs).
    """

    kind: TargetKind = TargetKind.LOCAL
    host: str = ""
    user: str = ""
    port: int | None = None
    identity: Path | None = None
    dest: str | None = None
    validate_cmd: str | None = None
    reload_cmd: str | None = None
    probe_url: str | None = None

    @property
    def ssh_text(self) -> str:
        """The ``--host`` value these fields stand for."""
        text = self.host.strip()
        if self.user and "@" not in text:
            text = f"{self.user}@{text}"
        if self.port is not None:
            text = f"{text}:{self.port}"
        return text

    @property
    def label(self) -> str:
        if self.kind is TargetKind.NONE:
            return "no host access"
        if self.kind is TargetKind.SANDBOX:
            return "a sandbox on this machine"
        return "this machine" if self.kind is TargetKind.LOCAL else self.ssh_text


@dataclass(frozen=True)
class Connection:
    """An open Remote and the choice that opened it (the sudo password lives only inside it).

    ``lock`` serializes the worker threads that use the remote: a dry run still reading the
    host when the user moves on must not share the SSH session with the next step's calls.
    """

    choice: TargetChoice
    remote: Remote
    host_name: str  # for URLs: the address the proxy is reached at from here
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def close(self) -> None:
        self.remote.close()


@dataclass(frozen=True)
class WizardState:
    """Everything the steps have decided so far."""

    mode: Mode = Mode.DEPLOY
    spec: DeploySpec = field(default_factory=DeploySpec)
    spec_source: Path | None = None  # the TOML file it was loaded from, if any
    target: TargetChoice = field(default_factory=TargetChoice)  # as last typed on Target
    connection: Connection | None = None
    # The deploy transaction's final report (wizard.deploy), handed to the probe step, and
    # the spec it deployed: the verdict judges the live config by what was deployed.
    deploy_report: Any = None
    deployed_spec: DeploySpec | None = None
    sandbox: Any = None  # a running wizard.sandbox.Sandbox (stopped when left behind)
    probe_url: str | None = None  # diagnose: the URL to probe
    probe_path: str | None = None
    config_path: str | None = None  # diagnose: the proxy's main config file, when not default
    # The last step's verdict (probe ok / diagnosis without errors): the app's exit code.
    verdict_ok: bool | None = None


def without_stale_results(old: WizardState, new: WizardState) -> WizardState:
    """``new``, minus the results that no longer describe it.

    The wizard calls this on every step's answer (``app.SockwizardApp.run_wizard``): after
    Back and an edit of the spec or the target, the deploy report, the sandbox that serves it
    and the verdict describe a config that is not the one on screen any more, so the Deploy
    step must not show "Deployed" and the verdict must not be reached without a new deploy.
    """
    if new.spec == old.spec and new.target == old.target:
        return new
    if new.deploy_report is None and new.sandbox is None and new.verdict_ok is None:
        return new
    return replace(new, deploy_report=None, deployed_spec=None, sandbox=None, verdict_ok=None)


@dataclass(frozen=True)
class Next:
    """Go on with this state."""

    state: WizardState


@dataclass(frozen=True)
class Back:
    """Go to the previous step, keeping the edits that were valid."""

    state: WizardState


@dataclass(frozen=True)
class Restart:
    """Leave the current flow and return to Start (e.g. "New deploy" on the verdict)."""

    state: WizardState


Answer = Next | Back | Restart
