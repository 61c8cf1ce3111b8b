"""Inventory hosts -> one deploy job each: an SSH target, a spec, options and login.

Called by ``sockwizard deploy --inventory`` (``wizard.commands.deploy``). Each host's merged
variables (``wizard.fleet.inventory``) say:

- where: ``ansible_host`` (default: the inventory name), ``ansible_port``, ``ansible_user``,
  ``ansible_ssh_private_key_file``; ``ansible_connection=local`` deploys to this machine;
- what: any spec field by its model name (``server_name``, ``listen_port``, ``backends``, ...),
  over the ``--spec`` file and under the command-line flags (as Ansible's extra vars win),
  validated by the model like flags, each problem naming the host;
- how: ``sockwizard_dest``, ``sockwizard_validate_cmd``, ``sockwizard_reload_cmd``,
  ``sockwizard_probe_url`` (the role from ``sockwizard export ansible`` reads the same names).

Other variables are Ansible's business and are ignored. Values are typed and checked here,
before any connection: a bad inventory is exit 2 and nothing is touched.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wizard.deploy import ConnectOptions, DeployOptions
from wizard.errors import BadInput, InvalidSpec
from wizard.fleet.inventory import Inventory
from wizard.model import DeploySpec, Problem, build_spec

SPEC_FIELDS = frozenset({f.name for f in dataclasses.fields(DeploySpec)} | {"listen"})
OPTION_VARS = {"sockwizard_dest": "dest", "sockwizard_validate_cmd": "validate_cmd",
               "sockwizard_reload_cmd": "reload_cmd", "sockwizard_probe_url": "probe_url"}
_HOST_RE = re.compile(r"^[A-Za-z0-9_.-]{1,253}$|^[0-9A-Fa-f:.]{2,45}$")
_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
_MAX_CMD = 4096


@dataclass(frozen=True)
class HostJob:
    """One host's deploy: ``name`` as in the inventory, ``target`` for ``wizard.remote``."""

    name: str
    target: str
    spec: DeploySpec
    options: DeployOptions
    connect: ConnectOptions


def jobs_for(inv: Inventory, hosts: list[str], base: Mapping[str, Any],
             flags: Mapping[str, Any], options: DeployOptions, connect: ConnectOptions,
             *, option_flags: frozenset[str] = frozenset()) -> list[HostJob]:
    """A job per host of ``hosts``. ``base``: the ``--spec`` file's raw values; ``flags``: the
    spec flags given; ``option_flags``: the DeployOptions fields given as flags (they win over
    the host's ``sockwizard_*`` variables). Raises InvalidSpec/BadInput naming the host."""
    jobs: list[HostJob] = []
    problems: list[object] = []
    for host in hosts:
        variables = inv.variables(host)
        raw = {**base, **{k: v for k, v in variables.items() if k in SPEC_FIELDS}, **flags}
        if "proxy" not in raw:
            problems.append(Problem(f"proxy (host {host})", "which proxy? give --proxy, a "
                                    "--spec file that sets it, or a proxy host variable"))
            continue
        try:
            spec = build_spec(raw)
        except InvalidSpec as exc:
            problems += [Problem(f"{p.field} (host {host})", p.message)
                         if isinstance(p, Problem) else p for p in exc.problems]
            continue
        jobs.append(HostJob(host, _target(host, variables, inv.source), spec,
                            _options(host, variables, options, option_flags, inv.source),
                            _connect(host, variables, connect, inv.source)))
    if problems:
        raise InvalidSpec(problems)
    return jobs


def _target(host: str, variables: Mapping[str, Any], source: str) -> str:
    if variables.get("ansible_connection") == "local":
        return "local"
    address = _text(host, variables, "ansible_host", source, default=host)
    if not _HOST_RE.fullmatch(address):
        raise _bad(host, source, f"ansible_host {address[:80]!r} is not a host name or address")
    user = variables.get("ansible_user")
    if user is not None:
        user = _text(host, variables, "ansible_user", source)
        if not _USER_RE.fullmatch(user):
            raise _bad(host, source, f"ansible_user {user[:40]!r} is not a login name")
    port = variables.get("ansible_port")
    if port is not None:
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise _bad(host, source, f"ansible_port {str(port)[:20]!r} is not a port (1-65535)")
    shown = f"[{address}]" if ":" in address else address
    return (f"{user}@" if user else "") + shown + (f":{port}" if port is not None else "")


def _options(host: str, variables: Mapping[str, Any], options: DeployOptions,
             given: frozenset[str], source: str) -> DeployOptions:
    changes: dict[str, Any] = {}
    for var, name in OPTION_VARS.items():
        if var in variables and name not in given:
            value = _text(host, variables, var, source)
            if len(value) > _MAX_CMD or "\n" in value or "\0" in value:
                raise _bad(host, source, f"{var} is longer than {_MAX_CMD} characters or "
                                         "spans lines")
            changes[name] = value
    return dataclasses.replace(options, **changes) if changes else options


def _connect(host: str, variables: Mapping[str, Any], connect: ConnectOptions,
             source: str) -> ConnectOptions:
    if "ansible_ssh_private_key_file" not in variables or connect.identity is not None:
        return connect
    key = _text(host, variables, "ansible_ssh_private_key_file", source)
    return dataclasses.replace(connect, identity=Path(key).expanduser())


def _text(host: str, variables: Mapping[str, Any], key: str, source: str,
          default: str | None = None) -> str:
    value = variables.get(key, default)
    if not isinstance(value, str) or not value:
        raise _bad(host, source, f"{key} must be a non-empty string, not "
                                 f"{type(value).__name__}")
    return value


def _bad(host: str, source: str, why: str) -> BadInput:
    return BadInput(f"Inventory {source}, host {host!r}: {why}.",
                    "Fix the host's variables in the inventory; nothing was deployed.")
