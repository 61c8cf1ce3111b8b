"""Ansible's YAML inventory format, into ``wizard.fleet.inventory.Inventory``.

Called by ``wizard.fleet.inventory.parse_inventory``. The shape (as Ansible's ``yaml``
inventory plugin reads it)::

    all:                      # any top-level key is a group
      vars: {k: v}
      hosts: {name: {k: v} | null}
      children: {group: {hosts/vars/children} | null}

PyYAML's ``safe_load`` (no Python objects); aliases are allowed as in Ansible, but the node
count of the loaded document is capped so a "billion laughs" file cannot make us walk forever.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wizard.errors import BadInput

if TYPE_CHECKING:
    from wizard.fleet.inventory import Inventory

_HINT = "Fix the YAML inventory (groups with hosts:, vars:, children:) and run again."
_KEYS = {"hosts", "vars", "children"}


def parse(text: str, inv: Inventory) -> Inventory:
    import yaml

    from wizard.fleet.inventory import MAX_DEPTH

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BadInput(f"Inventory {inv.source} is not valid YAML: "
                       f"{str(exc).splitlines()[0][:200]}.", _HINT) from None
    except (RecursionError, MemoryError, ValueError):
        raise BadInput(f"Inventory {inv.source} is nested too deeply or too large.",
                       _HINT) from None
    if data is None:
        return inv
    _count_nodes(data, inv.source)
    if not isinstance(data, dict):
        raise BadInput(f"Inventory {inv.source}: the top level must be a mapping of groups.",
                       _HINT)
    for name, body in data.items():
        _group(inv, _name(name, inv.source), body, 0, MAX_DEPTH)
    return inv


def _group(inv: Inventory, name: str, body: Any, depth: int, max_depth: int) -> None:
    from wizard.fleet.inventory import expand_hosts

    if depth > max_depth:
        raise BadInput(f"Inventory {inv.source}: groups nest deeper than {max_depth} levels.",
                       _HINT)
    group = inv.group(name)
    if body is None:
        return
    where = f"{inv.source}, group {name!r}"
    if not isinstance(body, dict):
        raise BadInput(f"Inventory {where}: expected a mapping with hosts, vars or children, "
                       f"not {type(body).__name__}.", _HINT)
    unknown = set(map(str, body)) - _KEYS
    if unknown:
        raise BadInput(f"Inventory {where}: unknown key {sorted(unknown)[0]!r}.",
                       "A group may have hosts:, vars: and children: only.")
    group.vars.update(_mapping(body.get("vars"), f"{where}, vars", inv))
    for pattern, variables in _section(body, "hosts", "names", where).items():
        pattern = _name(pattern, inv.source)
        own = _mapping(variables, f"{where}, host {pattern!r}", inv)
        for host, port in expand_hosts(pattern, where):
            inv.add_host(host, name, {**({"ansible_port": port} if port else {}), **own})
    for child, child_body in _section(body, "children", "groups", where).items():
        child = _name(child, inv.source)
        if child == name:
            raise BadInput(f"Inventory {where}: the group is its own child.", _HINT)
        if child not in group.children:
            group.children.append(child)
        _group(inv, child, child_body, depth + 1, max_depth)


def _section(body: dict[Any, Any], key: str, what: str, where: str) -> dict[Any, Any]:
    """``hosts:`` or ``children:`` of a group: a mapping, or nothing."""
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInput(f"Inventory {where}: {key}: must be a mapping of {what}.", _HINT)
    return value


def _mapping(value: Any, where: str, inv: Inventory) -> dict[str, Any]:
    from wizard.fleet.inventory import _VAR_RE

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInput(f"Inventory {where}: expected a mapping of variables, not "
                       f"{type(value).__name__}.", _HINT)
    for key in value:
        if not isinstance(key, str) or not _VAR_RE.fullmatch(key):
            raise BadInput(f"Inventory {where}: {str(key)[:80]!r} is not a variable name.",
                           "Variable names are letters, digits and _.")
    return dict(value)


def _name(value: Any, source: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadInput(f"Inventory {source}: {str(value)[:80]!r} is not a group or host name.",
                       _HINT)
    return str(value)


def _count_nodes(data: Any, source: str) -> None:
    from wizard.fleet.inventory import MAX_YAML_NODES

    stack, count = [data], 0
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            raise BadInput(f"Inventory {source} has more than {MAX_YAML_NODES} YAML nodes "
                           "(aliases included).", _HINT)
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
