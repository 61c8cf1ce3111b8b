"""Read and write a DeploySpec as TOML: the CLI's ``--spec FILE`` and the TUI's "save spec".

Reading goes through ``model.build_spec`` so a hand-edited file gets the same checks (and
messages) as flags. Writing is done by hand: the values are already validated and flat, and
the standard library has no TOML writer.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from wizard.errors import BadInput
from wizard.model import DeploySpec, build_spec


def load_raw(path: Path) -> dict[str, Any]:
    """The raw key/values of a spec file (validated later, together with flags)."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise BadInput(f"Spec file {path} does not exist.",
                       "Give the path of a TOML file saved by sockwizard.") from None
    except OSError as exc:
        raise BadInput(f"Cannot read spec file {path}: {exc.strerror}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"Spec file {path} is not valid TOML: {exc}.",
                       "Fix the file or save a new one from the TUI.") from None
    # Tolerate a [spec] table as well as top-level keys.
    table = data.get("spec", data)
    if not isinstance(table, dict):
        raise BadInput(f"Spec file {path}: expected a table of settings.")
    return dict(table)


def load_spec(path: Path) -> DeploySpec:
    return build_spec(load_raw(path))


def dump_spec(spec: DeploySpec) -> str:
    """TOML text for ``spec``; the proxy, then every field that differs from the defaults."""
    default = DeploySpec()
    lines = ["# sockwizard spec: `sockwizard render --spec THIS_FILE`"]
    for f in fields(DeploySpec):
        value = getattr(spec, f.name)
        if f.name != "proxy" and value == getattr(default, f.name):
            continue
        if value is None:
            continue
        lines.append(f"{f.name} = {_toml_value(f.name, value)}")
    return "\n".join(lines) + "\n"


def _toml_value(name: str, value: Any) -> str:
    if name == "backends":
        return "[" + ", ".join(json.dumps(str(b)) for b in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    # JSON strings of validated ASCII values are valid TOML basic strings.
    return json.dumps(str(value.value if hasattr(value, "value") else value))


def save_spec(spec: DeploySpec, path: Path) -> None:
    path.write_text(dump_spec(spec), encoding="utf-8")
