"""The config lines of diagnose's fixes, rendered from the proxy's own template macros.

Called by the rules (``wizard.diagnose.rules``) when a finding's fix names lines to paste, and by
``run`` for the backend check. The lines come from ``templates/<kind>/_macros.j2`` through
:func:`wizard.render.snippet` — the macros the rendered configs are built from — so a fix and
``sockwizard render`` cannot drift apart; the proxy's module (``wizard.proxies.<kind>``) only
words where they go.

Every value read from a live config is hostile: backend addresses pass the model's own host and
port rules (what ``--backend`` accepts) or are left out, the balancer name must look like one,
and the whole set goes through ``DeploySpec.validated()`` like any spec that is rendered. When
that fails, the fix says so instead of printing lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from wizard.errors import InvalidSpec
from wizard.model import MAX_BACKENDS, Backend, DeploySpec, ProxyKind
from wizard.render import snippet

# What a fix's lines point at when the config names no usable backend (FixSite.backend's).
DEFAULT_BACKEND = Backend("127.0.0.1", 3000)
UNKNOWN_BALANCER = "balancer://…"  # Apache: the balancer's name is not known (or not usable)
_BALANCER = re.compile(r"balancer://[A-Za-z0-9._-]{1,64}")
UNWRITTEN = ("    (sockwizard does not print the lines: the path or the ping settings are not "
             "values it would write into a config)")


def backend_address_problem(item: str) -> tuple[str, int] | str:
    """``HOST:PORT`` from a config -> (host, port) when the model would accept it as a
    backend, else why not (a string)."""
    from wizard import model

    if len(item) > 300:
        return f"an address of {len(item)} characters"
    shown = repr(item if len(item) <= 60 else item[:57] + "...")
    if ":" not in item:
        return f"{shown} has no port"
    try:
        backend = model.parse_backend(item)
    except ValueError as exc:
        return str(exc)
    problems = model.host_problems("backend", backend.host) + \
        model.port_problems("backend", backend.port)  # the model's own host rules
    return problems[0].message if problems else (backend.host, backend.port)


def checked_backends(items: Sequence[str]) -> tuple[Backend, ...]:
    """The config's backend addresses the model accepts, parsed, once each, in order."""
    out: list[Backend] = []
    for item in items:
        host_port = backend_address_problem(item)
        if not isinstance(host_port, str) and Backend(*host_port) not in out:
            out.append(Backend(*host_port))
    return tuple(out[:MAX_BACKENDS])


def checked_balancer(name: str | None) -> str:
    return name if name is not None and _BALANCER.fullmatch(name) else UNKNOWN_BALANCER


def fix_spec(kind: ProxyKind, path: str, backends: Sequence[Backend], seconds: int,
             ping_interval_ms: int, ping_timeout_ms: int) -> DeploySpec | None:
    """The spec a fix's lines are rendered from, validated like any rendered spec; None when
    a value (the probe's path or ping settings) is not one the model accepts."""
    try:
        return DeploySpec(proxy=kind, path=path, backends=tuple(backends) or (DEFAULT_BACKEND,),
                          read_timeout=seconds, send_timeout=seconds,
                          ping_interval_ms=ping_interval_ms,
                          ping_timeout_ms=ping_timeout_ms).validated()
    except InvalidSpec:
        return None


def _shown(text: str) -> str:
    # Fixes are printed with spaces, like every other fix; Caddy's tabs mean the same to it.
    return text.expandtabs(4)


def route_lines(spec: DeploySpec | None) -> str:
    """The route to add, to the first backend (the proxy's template's Socket.IO route)."""
    if spec is None:
        return UNWRITTEN
    return _shown(snippet(spec.proxy, "fix_route", spec=replace(spec, backends=spec.backends[:1])))


def sticky_lines(spec: DeploySpec | None, balancer: str | None) -> str:
    """What keeps each client on one backend (the template's sticky-session lines)."""
    if spec is None:
        return UNWRITTEN
    return _shown(snippet(spec.proxy, "fix_sticky", spec=spec,
                          balancer=checked_balancer(balancer)))


def timeout_lines(spec: DeploySpec | None, existing: bool) -> str:
    """The timeout directive(s) at ``spec.read_timeout`` (replacing one, or added)."""
    if spec is None:
        return UNWRITTEN
    return _shown(snippet(spec.proxy, "fix_timeout", spec=spec, existing=existing))
