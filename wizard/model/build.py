"""Raw values -> a valid ``DeploySpec``: ``build_spec`` and the typed converters it uses.

Flags (``wizard.commands._flags``), a TOML file (``wizard.spec_file``) and the TUI's form
(``wizard.tui.widgets.field``) all hand over raw values: text, or whatever type a TOML file
holds. ``build_spec`` converts each one (naming the field when it cannot), then asks the spec
for its semantic problems (``DeploySpec.problems()``), and raises ``InvalidSpec`` listing
*every* problem at once. ``parse_backend`` / ``parse_listen`` are the address grammars, also
read by diagnose for addresses found in a live config. No I/O.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import fields, replace
from enum import StrEnum
from typing import Any

from wizard.errors import InvalidSpec
from wizard.model.spec import DeploySpec
from wizard.model.values import MAX_BACKENDS, Backend, Layout, Problem, ProxyKind, Scope, shown

_INT_LIMIT = 10**12  # numbers beyond this are refused before any arithmetic or formatting

_FIELD_NAMES = {f.name for f in fields(DeploySpec)}


def build_spec(raw: Mapping[str, Any], base: DeploySpec | None = None) -> DeploySpec:
    """Turn raw values (strings or already-typed) into a valid spec, or raise InvalidSpec.

    ``raw`` uses the spec's field names, plus ``backends`` as a list of ``HOST:PORT`` strings
    and ``listen`` as ``[ADDR:]PORT``. Keys that are absent keep ``base``'s value.
    """
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None and key not in _OPTIONAL_FIELDS:
            continue
        try:
            if key == "listen":
                addr, port = parse_listen(_listen_text(value))
                values["listen_address"], values["listen_port"] = addr, port
            elif key == "backends":
                parsed = []
                for i, item in enumerate(_backend_items(value)):
                    try:
                        parsed.append(_backend(item))
                    except ValueError as exc:
                        problems.append(Problem(f"backends[{i}]", str(exc)))
                values["backends"] = tuple(parsed)
            elif key in _CONVERTERS:
                values[key] = _CONVERTERS[key](value)
            else:
                problems.append(Problem(shown(str(key)), "unknown setting; the settings are: "
                                        + ", ".join(sorted(_KNOWN_KEYS))))
        except ValueError as exc:
            problems.append(Problem(key, str(exc)))
    spec = replace(base or DeploySpec(), **values)
    # Field problems from parsing first, then the semantic ones for fields that did parse.
    failed = {p.field.split("[")[0] for p in problems}
    problems += [p for p in spec.problems() if p.field.split("[")[0] not in failed]
    if problems:
        raise InvalidSpec(list(problems))
    return spec


def _backend_items(value: Any) -> list[Any]:
    """``backends`` as a list: one ``"HOST:PORT"`` string or an array of them (never a table)."""
    if isinstance(value, str | Backend):
        return [value]
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list of \"HOST:PORT\" strings, got {_describe(value)}; "
                         'write e.g. backends = ["127.0.0.1:3000"]')
    if len(value) > MAX_BACKENDS:
        raise ValueError(f"{len(value)} backends; at most {MAX_BACKENDS} are supported")
    return list(value)


def _backend(item: Any) -> Backend:
    if isinstance(item, Backend):  # the TUI and tests may hand over parsed values
        return item
    if not isinstance(item, str):
        raise ValueError(f'expected "HOST:PORT" text, got {_describe(item)}')
    return parse_backend(item)


def _listen_text(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(_to_int(value))
    if not isinstance(value, str):
        raise ValueError(f'expected "[ADDR:]PORT" text or a port number, got {_describe(value)}')
    return value


def parse_backend(text: str) -> Backend:
    """``host:port``, ``[v6]:port`` or ``host`` (port 3000) -> Backend; ValueError with a reason."""
    text = text.strip()
    if text.startswith(("http://", "https://", "ws://")):
        raise ValueError(f"{text!r}: give HOST:PORT, without a scheme")
    host, port = _split_host_port(text, default_port=3000)
    return Backend(host, port)


def parse_listen(text: str) -> tuple[str | None, int]:
    """``PORT`` or ``ADDR:PORT`` or ``[v6]:PORT``."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        return None, _parse_port(text)
    host, port = _split_host_port(text, default_port=None)
    return host, port


def _split_host_port(text: str, default_port: int | None) -> tuple[str, int]:
    if not text:
        raise ValueError("empty; expected HOST:PORT")
    m = re.fullmatch(r"\[([^\]]*)\](?::(.*))?", text)
    if m:
        host, port_text = m.group(1), m.group(2)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise ValueError(f"{text!r}: write IPv6 addresses in brackets, e.g. [::1]:3000")
    else:
        host, port_text = text, None
    if port_text is None:
        if default_port is None:
            raise ValueError(f"{text!r}: a port is needed, e.g. 127.0.0.1:8080")
        return host, default_port
    return host, _parse_port(port_text)


def _parse_port(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text.strip()):
        raise ValueError(f"port {text!r} is not a number between 1 and 65535")
    return int(text)


def _to_int(value: Any) -> int:
    # A TOML file can hold any type: only whole numbers (or their text) pass, and only small
    # ones, so no later message or sum ever formats a 4000-digit number.
    if isinstance(value, int) and not isinstance(value, bool):
        if not -_INT_LIMIT < value < _INT_LIMIT:
            raise ValueError(f"{_describe(value)} is far out of range; give a small whole number")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a whole number, got {_describe(value)}")
    text = value.strip().removesuffix("s").removesuffix("ms")
    if not re.fullmatch(r"-?[0-9]{1,12}", text):
        raise ValueError(f"expected a whole number, got {_describe(value)}")
    return int(text)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected on/off (or true/false), got {_describe(value)}")
    text = value.strip().lower()
    if text in {"on", "true", "yes", "1"}:
        return True
    if text in {"off", "false", "no", "0"}:
        return False
    raise ValueError(f"expected on/off, got {_describe(value)}")


def _optional_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return _str(value)


def _optional_int(value: Any) -> int | None:
    return None if value is None or value == "" else _to_int(value)


def _enum(kind: type[StrEnum]) -> Any:
    def convert(value: Any) -> StrEnum:
        choices = ", ".join(k.value for k in kind)
        if not isinstance(value, str):
            raise ValueError(f"expected one of {choices} as text, got {_describe(value)}")
        try:
            return kind(value.strip().lower())
        except ValueError:
            raise ValueError(f"{shown(value)} is not one of: {choices}") from None

    return convert


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text in quotes, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    """A short, safe description of any value a TOML file or form can hold (never huge)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # repr() of a 5000-digit int raises; a 300-digit one floods the terminal.
        return str(value) if -_INT_LIMIT < value < _INT_LIMIT else (
            f"a number of about {value.bit_length() * 3 // 10 + 1} digits")
    if isinstance(value, float):
        return f"the decimal number {value!r}"
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, datetime.date | datetime.time):
        return "a date/time"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


_CONVERTERS: dict[str, Any] = {
    "proxy": _enum(ProxyKind),
    "scope": _enum(Scope),
    "layout": _enum(Layout),
    "path": _str,
    "server_path": _optional_str,
    "listen_address": _optional_str,
    "listen_port": _to_int,
    "server_name": _optional_str,
    "tls_cert": _optional_str,
    "tls_key": _optional_str,
    "tls_port": _to_int,
    "read_timeout": _to_int,
    "send_timeout": _to_int,
    "ping_interval_ms": _to_int,
    "ping_timeout_ms": _to_int,
    "proxy_buffering": _to_bool,
    "stream_close_delay": _optional_int,
    "apache_version": _optional_str,
    "static_root": _str,
}
_OPTIONAL_FIELDS = {"server_path", "server_name", "tls_cert", "tls_key", "stream_close_delay",
                    "apache_version", "listen_address"}
assert set(_CONVERTERS) <= _FIELD_NAMES
_KNOWN_KEYS = {*_CONVERTERS, "backends", "listen"}
