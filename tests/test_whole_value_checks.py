"""A value check matches the whole value: a trailing newline is not let through.

Python's ``$`` also matches just before a final ``\\n``, so ``re.match(r"^[a-z.]+$", v)`` passes
``"app.example.com\\n"``. These checks guard values from hostile files (inventories, host
variables in the exported Ansible role) on their way into a config file or an SSH target; each
now uses ``fullmatch``. Pure: no daemons.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from wizard.deploy import ConnectOptions, DeployOptions
from wizard.errors import BadInput, InvalidSpec, SockwizardError
from wizard.fleet import jobs_for
from wizard.fleet.inventory import parse_inventory

FILTERS = (Path(__file__).resolve().parent.parent / "wizard" / "export" / "ansible_role"
           / "filter_plugins" / "sockwizard_filters.py")


def _filters() -> Any:
    spec = importlib.util.spec_from_file_location("sockwizard_filters_under_test", FILTERS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("name", "good", "bad"), [
    ("server_name", "app.example.com", "app.example.com\n"),
    ("listen_address", "127.0.0.1", "127.0.0.1\n"),
    ("tls_cert", "/etc/ssl/c.pem", "/etc/ssl/c.pem\n"),
    ("static_root", "/srv/www", "/srv/www\n"),
    ("backends", ["10.0.0.1:3000"], ["10.0.0.1:3000\n"]),
])
def test_exported_roles_host_variable_checks_take_the_whole_value(name: str, good: Any,
                                                                   bad: Any) -> None:
    checks = _filters().HOST_FIELDS
    assert checks[name](good) == good
    with pytest.raises(ValueError):
        checks[name](bad)


@pytest.mark.parametrize("text", [
    'all:\n  children:\n    "web\\n":\n      hosts:\n        h1:\n',
    'all:\n  hosts:\n    "h1\\n":\n',
    'all:\n  hosts:\n    h1:\n      "server_name\\n": x\n',
])
def test_inventory_names_take_the_whole_value(text: str) -> None:
    with pytest.raises(BadInput):
        parse_inventory(text, "inv.yml", yaml_first=True)


@pytest.mark.parametrize(("var", "value"), [("ansible_host", "10.0.0.1\n"),
                                            ("ansible_user", "deploy\n")])
def test_inventory_targets_take_the_whole_value(var: str, value: str) -> None:
    inv = parse_inventory(f'all:\n  hosts:\n    h1:\n      {var}: "{value.encode("unicode_escape").decode()}"\n',
                          "inv.yml", yaml_first=True)
    with pytest.raises(SockwizardError) as caught:
        jobs_for(inv, ["h1"], {"proxy": "nginx"}, {}, DeployOptions(), ConnectOptions())
    assert isinstance(caught.value, BadInput | InvalidSpec)
    assert var in caught.value.message()
