"""SVG snapshots of every wizard screen at a fixed size (pytest-textual-snapshot).

The scenes are the ones ``scripts/screenshots.py`` writes for the README, so the pictures
there and the snapshots here cannot drift apart: each step, the light theme, and the error
states (a read timeout that drops clients, the unknown host key, an error modal, a deploy that
was rolled back, a probe with findings). Regenerate after a deliberate change with
``python3 -m pytest tests/test_tui_snapshots.py --snapshot-update`` (and rerun the script).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "screenshots.py"
_spec = importlib.util.spec_from_file_location("sockwizard_screenshots", _SCRIPT)
assert _spec is not None and _spec.loader is not None
screenshots = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = screenshots
_spec.loader.exec_module(screenshots)


@pytest.fixture(autouse=True)
def _fixed_state_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deploy plan names the local backup dir; keep it the same on every machine."""
    monkeypatch.setenv("XDG_STATE_HOME", "/tmp/sockwizard-snapshots-state")
    monkeypatch.setenv("HOME", "/tmp/sockwizard-snapshots-home")


@pytest.mark.parametrize("name", sorted(screenshots.SCENES))
def test_screen(name: str, snap_compare: Any) -> None:
    scene = screenshots.SCENES[name]
    assert snap_compare(scene.make(), terminal_size=screenshots.SIZE,
                        run_before=screenshots.before_of(scene))


# A classic SSH terminal (the step list folds into one line, the frame drops its blank lines)
# and a roomy one: every scene at both sizes, beside the README's size above.
SIZES = {"80x24": (80, 24), "120x40": (120, 40)}


@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("name", sorted(screenshots.SCENES))
def test_screen_at(name: str, size: str, snap_compare: Any) -> None:
    scene = screenshots.SCENES[name]
    assert snap_compare(scene.make(), terminal_size=SIZES[size],
                        run_before=screenshots.before_of(scene))


def test_every_step_has_a_scene() -> None:
    """A new step screen without a snapshot fails here, not silently."""
    from wizard.tui.flow import STEPS
    from wizard.tui.state import Mode

    names = set(screenshots.SCENES)
    steps = {step.class_name for mode in Mode for step in STEPS[mode]}
    expected = {
        "StartScreen": "01-start", "ProxyScreen": "02-proxy", "PathScreen": "03-path-custom",
        "BackendsScreen": "04-backends-sticky", "PreviewScreen": "05-preview",
        "TargetScreen": "06-target-ssh", "DeployScreen": "07-deploy",
        "VerdictScreen": "08-verdict", "DiagnoseUrlScreen": "09-diagnose-url",
        "FindingsScreen": "10-diagnose-findings",
    }
    assert steps == set(expected), steps ^ set(expected)
    assert set(expected.values()) <= names
    for state in ("04b-backends-bad-timeout", "06b-host-key", "06c-error",
                  "07b-deploy-rolled-back", "08b-verdict-findings", "05b-preview-light"):
        assert state in names
