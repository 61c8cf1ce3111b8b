"""Read and write a DeploySpec as TOML: the CLI's ``--spec FILE`` (``wizard.commands._flags``)
and the TUI's "load spec" / "save spec".

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

__all__ = ["MAX_SPEC_BYTES", "dump_spec", "load_raw", "load_spec", "save_spec"]

MAX_SPEC_BYTES = 1 << 20  # a spec is a few hundred bytes; refuse to parse a huge file


def load_raw(path: Path) -> dict[str, Any]:
    """The raw key/values of a spec file (validated later, together with flags).

    Every failure of reading or parsing, whatever the bytes, is a ``BadInput`` (exit 2) that
    names the file: not UTF-8, too large, too deeply nested, numbers past Python's limits.
    """
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise BadInput(f"Spec file {path} does not exist.",
                       "Give the path of a TOML file saved by sockwizard.") from None
    except OSError as exc:
        raise BadInput(f"Cannot read spec file {path}: {exc.strerror or exc}.",
                       "Give the path of a readable TOML file.") from None
    if len(data) > MAX_SPEC_BYTES:
        raise BadInput(f"Spec file {path} is larger than {MAX_SPEC_BYTES} bytes.",
                       "A spec is a few lines of TOML; give the right file.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"Spec file {path} is not UTF-8 text (byte {exc.start} is "
                       f"0x{data[exc.start]:02x}).",
                       "TOML files must be UTF-8: re-save it as UTF-8.") from None
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"Spec file {path} is not valid TOML: {exc}.",
                       "Fix the file or save a new one from the TUI.") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        # tomllib lets Python's own limits through: ints past 4300 digits, deep nesting.
        reason = "nested too deeply" if isinstance(exc, RecursionError) else (
            "too large" if isinstance(exc, MemoryError) else f"unreadable ({exc})")
        raise BadInput(f"Spec file {path} is {reason}.",
                       "A spec holds short strings and small numbers; fix the file.") from None
    # Tolerate a [spec] table as well as top-level keys.
    table = parsed.get("spec", parsed)
    if not isinstance(table, dict):
        raise BadInput(f"Spec file {path}: \"spec\" must be a table of settings.",
                       "Write the settings at the top level or under [spec].")
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
