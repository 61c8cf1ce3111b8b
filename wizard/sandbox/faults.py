"""The classic faults ``sockwizard sandbox --break KIND`` deploys on purpose, as variations of
the user's own spec and rendered config (never a hand-written config).

Called by ``wizard.sandbox.run.start_sandbox`` (what to render, what the demo backends run
with) and ``wizard.sandbox.breaks`` (the symptom to look for, the spec the fix deploys). Each
fault is one of:

- a difference between the config and the server behind it (the server pings slower than the
  proxy's read timeout allows; the server listens on another path): the config is rendered
  from the spec as is, the demo backends run with other values;
- the rendered config minus the lines that do one job (the Upgrade headers, the stickiness):
  which lines those are is per-proxy knowledge, ``ProxyProfile.fault_edits``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from wizard.heartbeat import Heartbeat
from wizard.model import DeploySpec
from wizard.proxies import profile
from wizard.render import render
from wizard.sandbox.fault_kinds import FAULT_TITLES, Fault
from wizard.sandbox.procs import SandboxError

# The shortened heartbeat of the timeout fault: the config believes the server pings every
# 1 s (so a 3 s read timeout looks right to it); the demo servers really ping every 5 s.
# A client drops after 3 s instead of after minutes: the whole demo stays under a minute.
TIMEOUT_CONFIG_PING_MS = (1000, 1000)
TIMEOUT_READ_S = 3
TIMEOUT_SERVER_PING_MS = (5000, 2000)
# The fix: what diagnose advises for those pings (wizard.heartbeat's suggestion).
TIMEOUT_FIXED_READ_S = Heartbeat(*TIMEOUT_SERVER_PING_MS).suggest_s()
# The other faults' servers (and configs) ping every 2 s: a polling client's long-poll, which
# its disconnect waits for, lasts 2 s instead of 25.
SHORT_PING_MS = (2000, 2000)


@dataclass(frozen=True)
class FaultPlan:
    """What to deploy and run for one fault, and what fixes it."""

    fault: Fault
    spec: DeploySpec  # what the broken config is rendered from (the sandbox's ports)
    text: str  # the broken config itself
    backend_path: str  # where the demo servers listen
    backend_ping_ms: tuple[int, int]  # the demo servers' real pingInterval, pingTimeout
    fixed: DeploySpec  # the spec whose rendered config fixes it (deployed by --fix)
    notes: tuple[str, ...] = ()  # what the fault changed, for the user

    @property
    def title(self) -> str:
        return FAULT_TITLES[self.fault]



def backends_needed(fault: Fault | None, spec: DeploySpec) -> int:
    """How many demo backends: as many as the spec has; two for the stickiness fault."""
    return max(2, len(spec.backends)) if fault is Fault.NO_STICKY else len(spec.backends)


def plan_fault(fault: Fault, spec: DeploySpec) -> FaultPlan:
    """The fault applied to ``spec`` (already on the sandbox's ports and backends)."""
    path = spec.effective_server_path
    ping = SHORT_PING_MS
    if fault is Fault.TIMEOUT:
        broken = dataclasses.replace(
            spec, ping_interval_ms=TIMEOUT_CONFIG_PING_MS[0],
            ping_timeout_ms=TIMEOUT_CONFIG_PING_MS[1], read_timeout=TIMEOUT_READ_S,
            send_timeout=TIMEOUT_READ_S).validated()
        fixed = dataclasses.replace(
            spec, ping_interval_ms=TIMEOUT_SERVER_PING_MS[0],
            ping_timeout_ms=TIMEOUT_SERVER_PING_MS[1], read_timeout=TIMEOUT_FIXED_READ_S,
            send_timeout=TIMEOUT_FIXED_READ_S).validated()
        return FaultPlan(fault, broken, render(broken).text, path, TIMEOUT_SERVER_PING_MS,
                         fixed, (f"read timeout {TIMEOUT_READ_S} s; the servers ping every "
                                 f"{TIMEOUT_SERVER_PING_MS[0] / 1000:g} s "
                                 f"(+{TIMEOUT_SERVER_PING_MS[1] / 1000:g} s timeout)",))
    spec = dataclasses.replace(spec, ping_interval_ms=ping[0],
                               ping_timeout_ms=ping[1]).validated()
    if fault is Fault.PATH:
        other = "/ws/" if path != "/ws/" else "/socket.io/"
        fixed = dataclasses.replace(spec, server_path=other if other != spec.path else None)
        return FaultPlan(fault, spec, render(spec).text, other, ping, fixed.validated(),
                         (f"the proxy forwards {spec.path} to {path}; the servers listen on "
                          f"{other}",))
    text = edited(spec, fault)
    note = ("the Upgrade and Connection headers are not forwarded" if fault is Fault.NO_UPGRADE
            else f"{len(spec.backends)} backends, balanced without stickiness")
    return FaultPlan(fault, spec, text, path, ping, spec, (note,))


def edited(spec: DeploySpec, fault: Fault) -> str:
    """The rendered config with the proxy's ``fault_edits[fault]`` applied. Some edits fit
    one shape of the config only (one backend or several); together they must change it (a
    template change that moves the lines fails here, not silently later)."""
    prof = profile(spec.proxy)
    edits = prof.fault_edits.get(fault.value)
    if not edits:
        raise SandboxError(f"The {fault.value} fault cannot be set up with {prof.title}.",
                           _cannot_why(fault, prof.display_name))
    rendered = render(spec).text
    text = rendered
    for pattern, replacement in edits:
        text = re.sub(pattern, replacement, text, flags=re.MULTILINE)
    if text == rendered:
        raise SandboxError(f"The {fault.value} fault's edits matched nothing in the rendered "
                           f"{prof.title} config.",
                           "The template changed: update fault_edits in wizard/proxies.")
    return text


def _cannot_why(fault: Fault, name: str) -> str:
    if fault is Fault.NO_UPGRADE:
        return (f"{name} forwards WebSocket upgrades by itself: no line of its config can be "
                "left out to break them. Try --break timeout, no-sticky or path.")
    return "Try another --break KIND."
