"""``--limit PATTERN``: Ansible's host-pattern syntax, over a ``wizard.fleet.inventory``.

Called by ``wizard.fleet.jobs.jobs_for``. The subset kept (as Ansible's ``InventoryManager``
evaluates it): terms joined by ``,`` (or ``:`` when there is no comma); a term is a host or a
group name, a glob (``web*``, ``db?``) or ``~regex``, matched against group names (-> their
hosts) and host names; ``&term`` intersects, ``!term`` excludes. As in Ansible, unions are
taken first, then intersections, then exclusions, and a pattern of only ``&``/``!`` terms
starts from ``all``. Not kept: subscripts (``web[0:2]``), which are refused, never guessed.
"""

from __future__ import annotations

import fnmatch
import re

from wizard.errors import BadInput
from wizard.fleet.inventory import Inventory

MAX_PATTERN = 2000
_HINT = ("Patterns: names, groups, web* globs, ~regex, joined by , or : ; &group intersects, "
         "!group excludes (e.g. 'web:&prod:!web3').")


def select(inv: Inventory, pattern: str | None) -> list[str]:
    """The hosts ``pattern`` selects, in inventory order. Raises BadInput for a pattern that
    cannot be read or selects nothing."""
    if pattern is None:
        return inv.hosts
    if len(pattern) > MAX_PATTERN:
        raise BadInput(f"--limit is longer than {MAX_PATTERN} characters.", _HINT)
    terms = [t.strip() for t in re.split("," if "," in pattern else ":", pattern)]
    terms = [t for t in terms if t]
    if not terms:
        raise BadInput("--limit is empty.", _HINT)
    union = [t for t in terms if t[0] not in "&!"]
    both = [t[1:] for t in terms if t[0] == "&"]
    minus = [t[1:] for t in terms if t[0] == "!"]
    chosen: set[str] = set()
    for term in union or ["all"]:
        chosen |= _matches(inv, term)
    for term in both:
        chosen &= _matches(inv, term)
    for term in minus:
        chosen -= _matches(inv, term)
    hosts = [h for h in inv.hosts if h in chosen]
    if not hosts:
        raise BadInput(f"--limit {pattern!r} selects no host of {inv.source}.",
                       "Check the names against the inventory (" +
                       ", ".join(inv.hosts[:8]) + (", ..." if len(inv.hosts) > 8 else "")
                       + ").")
    return hosts


def _matches(inv: Inventory, term: str) -> set[str]:
    if not term:
        raise BadInput("--limit has an empty & or ! term.", _HINT)
    if re.search(r"\[[^\]]*\]$", term) and not term.startswith("~"):
        raise BadInput(f"--limit {term!r}: subscripts such as web[0:2] are not supported.",
                       "Name the hosts, or use a glob (web0*).")
    if term.startswith("~"):
        try:
            rx = re.compile(term[1:])
        except re.error as exc:
            raise BadInput(f"--limit {term!r} is not a regular expression: {exc}.",
                           _HINT) from None
        def test(name: str) -> bool:
            return rx.search(name) is not None
    else:
        rx = re.compile(fnmatch.translate(term))
        def test(name: str) -> bool:
            return rx.match(name) is not None
    groups = [g for g in inv.groups if test(g)]
    found = {h for g in groups for h in inv.members(g)}
    if not groups or term[0] == "~" or any(c in term for c in ".?*["):
        found |= {h for h in inv.hosts if test(h)}
    return found
