"""Ansible's inventory formats (INI and YAML), read the way ``ansible-inventory`` reads them.

Called by ``wizard.fleet.jobs`` (through ``load_inventory``) for ``deploy --inventory``. Why
not ansible-core's own parser: it is not a sockwizard dependency (heavy, GPL, its loader needs
the whole plugin machinery); this reader covers what an inventory for this tool holds (groups,
``:children``, ``:vars``, host ranges ``web[01:20]``, ``host:port``, ``ansible_*`` and any
other host variable) and a test proves it against ``ansible-inventory --list``.

Values follow Ansible: an INI value is ``ast.literal_eval``'d when it parses (``8080`` -> int,
``'[1,2]'`` -> list) and is a string otherwise; YAML values keep their YAML types. Variables
merge like Ansible's: ``all`` < parent groups < child groups (same depth: by
``ansible_group_priority``, then name) < the host's own.

The file is hostile input: size, line length, hosts, groups, range width, nesting and YAML
node counts are capped, and every fault is a ``BadInput`` (exit 2) naming the file and line.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wizard.errors import BadInput

MAX_BYTES = 1 << 20
MAX_LINE = 8192
MAX_HOSTS = 5000
MAX_GROUPS = 1000
MAX_DEPTH = 32  # children nesting
MAX_YAML_NODES = 200_000

_GROUP_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9_.:\[\]-]{1,255}$")
_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_RANGE_RE = re.compile(r"\[([0-9a-zA-Z]+):([0-9a-zA-Z]+)(?::([0-9]+))?\]")
_HINT = "Fix the inventory (Ansible's INI or YAML format) and run the command again."


@dataclass
class Group:
    name: str
    hosts: list[str] = field(default_factory=list)  # direct members, in file order
    children: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class Inventory:
    """Groups (``all`` and ``ungrouped`` included) and each host's own variables."""

    source: str
    groups: dict[str, Group] = field(default_factory=dict)
    host_vars: dict[str, dict[str, Any]] = field(default_factory=dict)  # file order

    @property
    def hosts(self) -> list[str]:
        return list(self.host_vars)

    def group(self, name: str) -> Group:
        if name not in self.groups:
            if len(self.groups) >= MAX_GROUPS:
                raise BadInput(f"Inventory {self.source} has more than {MAX_GROUPS} groups.",
                               _HINT)
            if not _GROUP_RE.fullmatch(name):
                raise BadInput(f"Inventory {self.source}: {name[:80]!r} is not a group name "
                               "(letters, digits, _ . -).", _HINT)
            self.groups[name] = Group(name)
        return self.groups[name]

    def add_host(self, name: str, group: str, variables: dict[str, Any]) -> None:
        if name not in self.host_vars:
            if len(self.host_vars) >= MAX_HOSTS:
                raise BadInput(f"Inventory {self.source} has more than {MAX_HOSTS} hosts.", _HINT)
            self.host_vars[name] = {}
        self.host_vars[name].update(variables)
        members = self.group(group).hosts
        if name not in members:
            members.append(name)

    def groups_of(self, host: str) -> list[str]:
        """Every group ``host`` is in, directly or through children (``all`` included)."""
        return [g for g in self.groups if host in self.members(g)]

    def members(self, group: str) -> list[str]:
        """The hosts of ``group`` and of its children, in inventory order."""
        seen: set[str] = set()
        found: set[str] = set()

        def walk(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            g = self.groups[name]
            found.update(g.hosts)
            for child in g.children:
                walk(child)

        if group == "all":
            return self.hosts
        if group not in self.groups:
            return []
        walk(group)
        return [h for h in self.hosts if h in found]

    def variables(self, host: str) -> dict[str, Any]:
        """``host``'s variables merged as Ansible merges them (see the module docstring)."""
        depth = self._depths()
        groups = [g for g in self.groups_of(host)]
        groups.sort(key=lambda g: (depth.get(g, 0), _priority(self.groups[g].vars), g))
        merged: dict[str, Any] = {}
        for g in groups:
            merged.update(self.groups[g].vars)
        merged.pop("ansible_group_priority", None)  # Ansible's setting, not a variable
        merged.update(self.host_vars[host])
        return merged

    def _depths(self) -> dict[str, int]:
        depth = {"all": 0}
        frontier = ["all"]
        while frontier:
            nxt = []
            for name in frontier:
                for child in self.groups[name].children:
                    if depth.get(child, -1) < depth[name] + 1:
                        depth[child] = depth[name] + 1
                        if depth[child] > MAX_DEPTH:
                            raise BadInput(f"Inventory {self.source}: groups nest deeper than "
                                           f"{MAX_DEPTH} levels (or form a cycle at "
                                           f"{child!r}).", _HINT)
                        nxt.append(child)
            frontier = nxt
        return depth

    def finish(self) -> Inventory:
        """Add ``all``/``ungrouped`` as Ansible does; check nesting; return self."""
        self.group("all")
        self.group("ungrouped")
        for name, g in self.groups.items():
            if name != "all" and not any(name in p.children for p in self.groups.values()):
                self.groups["all"].children.append(name)
            for child in g.children:
                if child == "all":
                    raise BadInput(f"Inventory {self.source}: group {name!r} lists 'all' as a "
                                   "child.", _HINT)
        grouped = {h for n, g in self.groups.items() if n not in ("all", "ungrouped")
                   for h in g.hosts}
        ungrouped = self.groups["ungrouped"]
        for h in self.hosts:
            if h not in grouped and h not in ungrouped.hosts:
                ungrouped.hosts.append(h)
        self.groups["all"].hosts = []  # everything is reached through children
        self._check_cycles()
        self._depths()
        return self

    def _check_cycles(self) -> None:
        state: dict[str, int] = {}  # 1: on the path, 2: done

        def visit(name: str) -> None:
            state[name] = 1
            for child in self.groups[name].children:
                if state.get(child) == 1:
                    raise BadInput(f"Inventory {self.source}: groups {name!r} and {child!r} "
                                   "form a cycle of children.", _HINT)
                if child not in state:
                    visit(child)
            state[name] = 2

        for name in list(self.groups):
            if name not in state:
                visit(name)


def _priority(variables: dict[str, Any]) -> int:
    value = variables.get("ansible_group_priority", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def load_inventory(path: Path) -> Inventory:
    """Read ``path`` (YAML when it parses as a YAML mapping of groups, else INI)."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise BadInput(f"Cannot read inventory {path}: {exc.strerror or exc}.",
                       "Give the path of an Ansible inventory file (INI or YAML).") from None
    if len(data) > MAX_BYTES:
        raise BadInput(f"Inventory {path} is larger than {MAX_BYTES} bytes.", _HINT)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"Inventory {path} is not UTF-8 text (byte {exc.start}).", _HINT) from None
    return parse_inventory(text, str(path), yaml_first=path.suffix in (".yml", ".yaml"))


def parse_inventory(text: str, source: str = "<inventory>", *,
                    yaml_first: bool = False) -> Inventory:
    """Parse INI or YAML text. A ``.yml``/``.yaml`` file must be YAML; other files are INI
    unless they start like a YAML mapping (``all:`` or a ``---`` document start)."""
    from wizard.fleet import yaml_format

    stripped = text.lstrip()
    looks_yaml = stripped.startswith("---") or re.match(r"^[A-Za-z0-9_.-]+:\s*(#.*)?$",
                                                         stripped.split("\n", 1)[0]) is not None
    if yaml_first or looks_yaml:
        return yaml_format.parse(text, Inventory(source)).finish()
    return _parse_ini(text, Inventory(source)).finish()


# -- INI --------------------------------------------------------------------------------------


def _parse_ini(text: str, inv: Inventory) -> Inventory:
    section, kind = "ungrouped", "hosts"
    pending_children: list[tuple[str, str, int]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        where = f"{inv.source}:{number}"
        if len(raw) > MAX_LINE:
            raise BadInput(f"Inventory {where}: the line is longer than {MAX_LINE} characters.",
                           _HINT)
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            m = re.match(r"^\[([^\]:]+)(?::(vars|children|hosts))?\]\s*([#;].*)?$", line)
            if m is None:
                raise BadInput(f"Inventory {where}: {line[:80]!r} is not a section header.",
                               "Sections are [group], [group:vars] or [group:children].")
            section, kind = m.group(1), m.group(2) or "hosts"
            inv.group(section)
        elif kind == "vars":
            key, eq, value = line.partition("=")
            if not eq:
                raise BadInput(f"Inventory {where}: expected key=value in [{section}:vars].",
                               _HINT)
            inv.group(section).vars[_var_name(key.strip(), where)] = _value(value.strip())
        elif kind == "children":
            pending_children.append((section, line.split()[0], number))
        else:
            _ini_host_line(inv, section, line, where)
    for parent, child, number in pending_children:
        inv.group(child)
        children = inv.group(parent).children
        if child not in children:
            children.append(child)
        if child == parent:
            raise BadInput(f"Inventory {inv.source}:{number}: group {parent!r} is its own child.",
                           _HINT)
    return inv


def _ini_host_line(inv: Inventory, group: str, line: str, where: str) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise BadInput(f"Inventory {where}: {exc} (an unclosed quote?).", _HINT) from None
    if not tokens:
        return
    variables: dict[str, Any] = {}
    for token in tokens[1:]:
        key, eq, value = token.partition("=")
        if not eq:
            raise BadInput(f"Inventory {where}: {token[:80]!r} is not a key=value host variable.",
                           _HINT)
        variables[_var_name(key, where)] = _value(value)
    for name, port in expand_hosts(tokens[0], where):
        extra = {"ansible_port": port} if port is not None else {}
        inv.add_host(name, group, {**extra, **variables})


def _value(text: str) -> Any:
    """An INI value as Ansible reads it: a Python literal when it is one, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _var_name(key: str, where: str) -> str:
    if not _VAR_RE.fullmatch(key):
        raise BadInput(f"Inventory {where}: {key[:80]!r} is not a variable name.",
                       "Variable names are letters, digits and _ (not starting with a digit).")
    return key


# -- host patterns (both formats) -------------------------------------------------------------


def expand_hosts(pattern: str, where: str) -> list[tuple[str, int | None]]:
    """``web[01:03].example.com:2222`` -> the names and the port (None: not given)."""
    name, port = pattern, None
    head, sep, tail = pattern.rpartition(":")
    # One colon outside the [a:b] ranges, digits after it: a port (an IPv6 name has several).
    if sep and tail.isdigit() and ":" not in re.sub(r"\[[^\]]*\]", "", head):
        name, port = head, int(tail) if len(tail) <= 5 else 0
        if not 0 < port < 65536:
            raise BadInput(f"Inventory {where}: the port of {pattern[:80]!r} is out of range.",
                           _HINT)
    names = [name]
    while any(_RANGE_RE.search(n) for n in names):
        names = [e for n in names for e in _expand_one(n, where)]
        if len(names) > MAX_HOSTS:
            raise BadInput(f"Inventory {where}: {pattern[:80]!r} expands to more than "
                           f"{MAX_HOSTS} hosts.", _HINT)
    for n in names:
        if not _HOST_RE.fullmatch(n) or "[" in n:
            raise BadInput(f"Inventory {where}: {n[:80]!r} is not a host name.",
                           "Host names are letters, digits and . _ - (ranges as [01:20]).")
    return [(n, port) for n in names]


def _expand_one(name: str, where: str) -> list[str]:
    m = _RANGE_RE.search(name)
    assert m is not None
    start, end, step = m.group(1), m.group(2), int(m.group(3) or 1)
    head, tail = name[:m.start()], name[m.end():]
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") else 0
        lo, hi = int(start), int(end)
        if hi < lo or step < 1 or (hi - lo) // step >= MAX_HOSTS:
            raise BadInput(f"Inventory {where}: the range [{start}:{end}] is empty or too wide.",
                           _HINT)
        return [f"{head}{str(i).zfill(width)}{tail}" for i in range(lo, hi + 1, step)]
    if len(start) == 1 and len(end) == 1 and start.isalpha() and end.isalpha() and start <= end:
        return [f"{head}{chr(c)}{tail}" for c in range(ord(start), ord(end) + 1, step)]
    raise BadInput(f"Inventory {where}: the range [{start}:{end}] is not numbers or letters.",
                   _HINT)
