"""Read a proxy's *live* config into the facts about the one route that serves Socket.IO.

``wizard.diagnose.run`` calls :func:`read_route` with a :class:`~wizard.remote.Remote` and gets
one :class:`~wizard.diagnose.facts.RouteFacts`: which block serves the Socket.IO path, where it
is (file:line), the effective idle timeouts with the proxy's defaults applied, whether the
WebSocket upgrade can get through, balancing and affinity, the path the backend sees, and the
forwarded headers. The rules hold these facts against the probe; they never parse config text.

One reader per proxy, registered by kind in :data:`READERS` (a kind without a reader fails the
registry test, never falls through to another proxy's reader):

* ``nginx``  — ``nginx -T`` (the whole tree as nginx itself loaded it) parsed with crossplane;
* ``apache`` — ``-t -D DUMP_INCLUDES`` (the file list), ``-M``, ``-v``, then the files;
* ``caddy``  — ``caddy adapt`` to JSON (semantics) plus the Caddyfile text (line numbers);
* ``node``   — the http-proxy script, read with regular expressions;
* ``haproxy`` — the main config and its conf dir, plus ``haproxy -c``;
* ``traefik`` — the file provider's dynamic YAML files (safe loader, alias bombs refused).

Each has a pure ``facts_from_*`` function (text in, facts out: the table-driven tests and a
local file use it) and a ``read`` function that fetches the text in as few round trips as
possible (each SSH exec costs ~15 ms).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from wizard.diagnose.facts import RouteFacts, RouteQuery
from wizard.diagnose.readers import apache, caddy, haproxy, nginx, node, traefik
from wizard.diagnose.readers.base import (
    CONFIG_DEADLINE_S,
    ConfigReadError,
    ReadBudget,
    cat_files,
)
from wizard.errors import ConnectionFailed, RemoteCommandFailed
from wizard.model import ProxyKind
from wizard.remote import path_problem

if TYPE_CHECKING:
    from wizard.remote import Remote

Reader = Callable[["Remote", RouteQuery, "str | None", ReadBudget], RouteFacts]

READERS: dict[ProxyKind, Reader] = {
    ProxyKind.NGINX: nginx.read,
    ProxyKind.APACHE: apache.read,
    ProxyKind.CADDY: caddy.read,
    ProxyKind.NODE: node.read,
    ProxyKind.HAPROXY: haproxy.read,
    ProxyKind.TRAEFIK: traefik.read,
}

__all__ = [
    "CONFIG_DEADLINE_S",
    "READERS",
    "ConfigReadError",
    "ReadBudget",
    "Reader",
    "apache",
    "caddy",
    "cat_files",
    "haproxy",
    "nginx",
    "node",
    "path_problem",
    "read_route",
]


def read_route(
    remote: Remote, kind: ProxyKind, query: RouteQuery, config_path: str | None = None,
    *, deadline_s: float = CONFIG_DEADLINE_S,
) -> RouteFacts:
    """Fetch the live config of ``kind`` over ``remote`` and return the facts for ``query``.

    The whole read has ``deadline_s`` and the caps of :class:`ReadBudget`. Raises
    ConfigReadError when the config cannot be read or parsed, or a remote command failed or
    timed out; a lost connection (ConnectionFailed, ...) passes through unchanged.
    """
    if config_path is not None:
        problem = path_problem(config_path)
        if problem is not None:
            raise ConfigReadError(f"--config: {problem}", "Give the config file's absolute path.")
    budget = ReadBudget(deadline_s)
    try:
        facts = READERS[kind](remote, query, config_path, budget)
    except ConnectionFailed:
        raise
    except RemoteCommandFailed as exc:  # a timeout, a refused sudo: the probe's findings stand
        raise ConfigReadError(exc.title, exc.hint, detail=exc.detail) from None
    if budget.notes:
        facts = replace(facts, notes=(*facts.notes, *dict.fromkeys(budget.notes)))
    return facts
