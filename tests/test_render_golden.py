"""Golden files: each rendered config is compared byte for byte with a reviewed copy.

Set SOCKWIZARD_UPDATE_GOLDEN=1 to rewrite them after a deliberate template change, then read
the diff: these files must read like configs a person would write.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.scenarios import EXTENSIONS, cases
from wizard.model import DeploySpec
from wizard.render import render

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize(("case_id", "spec"), cases(), ids=[c[0] for c in cases()])
def test_render_matches_golden(case_id: str, spec: DeploySpec) -> None:
    text = render(spec).text
    path = GOLDEN / f"{case_id}.{EXTENSIONS[spec.proxy]}"
    if os.environ.get("SOCKWIZARD_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"no golden file {path.name}: run with SOCKWIZARD_UPDATE_GOLDEN=1"
    assert text == path.read_text()


def test_every_golden_file_is_used() -> None:
    expected = {f"{cid}.{EXTENSIONS[spec.proxy]}" for cid, spec in cases()}
    assert {p.name for p in GOLDEN.iterdir()} == expected
