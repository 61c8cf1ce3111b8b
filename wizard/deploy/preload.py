"""Work every transaction does, done ahead: import its lazy stacks, compile its templates.

Called by ``deploy_host`` while its connect is under way (``wizard.remote.Opening``: the key
exchange leaves this process idle for three round trips) and by the fleet before its threads
start (``wizard.fleet.run``: fifty threads importing the same module serialise on the import
lock, and Jinja2's template cache has no lock, so fifty threads missing it at once compiled
the same templates fifty times).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from wizard.errors import SockwizardError
from wizard.model import DeploySpec, ProxyKind
from wizard.render import render

# What a transaction imports lazily (see wizard.remote.connect, wizard.deploy.settle).
LAZY_MODULES = ("wizard.remote.ssh", "wizard.probe")


def preload(specs: Iterable[DeploySpec]) -> None:
    """Best effort: a spec that fails to validate or render fails in its own transaction,
    with its own message; one render per proxy kind fills the template cache (another spec
    of the kind is tried when one fails)."""
    for name in LAZY_MODULES:
        importlib.import_module(name)
    done: set[ProxyKind] = set()
    for spec in specs:
        if spec.proxy in done:
            continue
        try:
            render(spec.validated())
        except SockwizardError:
            continue
        done.add(spec.proxy)
