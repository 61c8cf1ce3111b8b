"""The wizard's steps, written once: for each mode, the step screens in order and the name
each has in the step list at the left.

``app.SockwizardApp.run_wizard`` walks ``STEPS[mode]`` and hands each screen its position;
the screens' frame (``screens.base.StepScreen``) draws the step list from ``labels(mode)``;
the prefetch thread and the tests read the same table. No screen knows its own position: the
Target step is 6 of 8 when deploying and 2 of 4 when diagnosing.

Screens are named as ``module:Class`` under ``wizard.tui.screens`` and imported on first use
(``app.step_class``): the deploy, diagnose and probe screens pull in the core (paramiko,
Pygments...) that the first screen does not need. Nothing here imports Textual.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from wizard.tui.state import Mode, WizardState


@dataclass(frozen=True)
class Step:
    """One step: its name in the step list and title bar, and its screen as ``module:Class``."""

    label: str
    screen: str
    # The WizardState field that holds this step's result: while it is set, the step list
    # shows the step as done even when the user has gone back before it (and an edit that
    # drops the result, ``state.without_stale_results``, takes the mark away).
    result: str = ""

    @property
    def module(self) -> str:
        return f"wizard.tui.screens.{self.screen.partition(':')[0]}"

    @property
    def class_name(self) -> str:
        return self.screen.partition(":")[2]


STEPS: Mapping[Mode, tuple[Step, ...]] = {
    Mode.DEPLOY: (
        Step("Start", "start:StartScreen"),
        Step("Proxy", "proxy:ProxyScreen"),
        Step("Path & scope", "path:PathScreen"),
        Step("Backends & timeouts", "backends:BackendsScreen"),
        Step("Preview", "preview:PreviewScreen"),
        Step("Target", "target:TargetScreen"),
        Step("Deploy", "deploy:DeployScreen", result="deploy_report"),
        Step("Probe & verdict", "verdict:VerdictScreen", result="verdict_ok"),
    ),
    Mode.DIAGNOSE: (
        Step("Start", "start:StartScreen"),
        Step("Target", "target:TargetScreen"),
        Step("URL & path", "diagnose:DiagnoseUrlScreen"),
        Step("Findings", "diagnose:FindingsScreen"),
    ),
}


def labels(mode: Mode) -> tuple[str, ...]:
    """The step list of a mode, as the stepper shows it."""
    return tuple(step.label for step in STEPS[mode])


def done(state: WizardState, current: int) -> frozenset[int]:
    """The steps the step list marks done: those before ``current``, and later ones whose
    result the state still holds (a deploy of this very spec, its verdict)."""
    steps = STEPS[state.mode]
    return frozenset(i for i, step in enumerate(steps) if i < current or (
        i > current and step.result and getattr(state, step.result) is not None))
