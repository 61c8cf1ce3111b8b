"""The diagnosis in words: evidence strings, places in a config, what passed, the report.

The rules (``wizard.diagnose.rules``) build their evidence with :func:`evidence`,
:func:`probe_evidence` and :func:`place`; ``run_diagnosis`` lists :func:`passed_checks` when
all is well; ``sockwizard diagnose`` prints :func:`format_diagnosis`. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from wizard import findings as codes
from wizard.diagnose.facts import RouteFacts, Where, ping_of
from wizard.findings import Finding
from wizard.proxies.fixes import Spot, worded

if TYPE_CHECKING:
    from wizard.diagnose.run import Diagnosis
    from wizard.probe import ProbeReport


def evidence(*parts: str | Where | Iterable[Where] | None) -> str:
    """The parts that are there, each once, joined with "; "."""
    out: list[str] = []
    for part in parts:
        if part is None or part == "":
            continue
        if isinstance(part, (str, Where)):
            out.append(str(part))
        else:
            out.extend(str(w) for w in part)
    return "; ".join(dict.fromkeys(out))


def probe_evidence(found: Sequence[Finding]) -> str:
    """The probe's own evidence for findings a rule took over, each marked as the probe's."""
    return "; ".join(dict.fromkeys(f"probe {f.evidence}" if not f.evidence.startswith("probe")
                                   else f.evidence for f in found))


def spot(where: Where | None) -> Spot | None:
    return None if where is None else Spot(where.file, where.line, where.text)


def place(where: Where | None) -> str:
    """"`text` (file:line)": a place in the config the way fixes name it."""
    return worded(spot(where))




def passed_checks(facts: RouteFacts | None, probe: ProbeReport | None,
                  found: Sequence[Finding]) -> list[str]:
    """Plain-language list of what was verified and found fine (shown when all is well)."""
    bad = {f.code for f in found}
    ping = ping_of(probe)
    out: list[str] = []
    if probe is not None and probe.handshake is not None:
        out.append(f"Socket.IO answers at {probe.path} ({ping.describe()})")
    if probe is not None and probe.transport == "websocket" and codes.WEBSOCKET_UPGRADE_BLOCKED \
            not in bad:
        out.append("clients get a WebSocket (python-socketio connected on websocket)")
    if facts is None:
        return out
    if facts.route is not None and facts.proxied and codes.PATH_MISMATCH not in bad:
        out.append(f"route: {facts.route} forwards to {', '.join(facts.backends) or '?'}"
                   + (f" as {facts.upstream_path}" if facts.upstream_path else ""))
    for fact in (facts.ws_idle_timeout, facts.poll_timeout):
        if fact is not None and codes.READ_TIMEOUT_TOO_SHORT not in bad:
            value = "no timeout" if fact.seconds is None else f"{fact.seconds:g} s"
            out.append(f"idle timeout for {fact.applies_to}: {value} "
                       f"(> {ping.sum_s:g} s needed)")
    if facts.proxied and not facts.upgrade_blockers:
        out.append("the route passes WebSocket upgrades")
    if len(facts.backends) > 1 and codes.NO_STICKY_SESSIONS not in bad:
        out.append(f"{len(facts.backends)} backends with affinity: {facts.affinity}")
    return out



def format_diagnosis(d: Diagnosis) -> str:
    """The human report: what was read and probed, then the findings (or what passed)."""
    lines = [f"sockwizard diagnose {d.url}  (path {d.path})", ""]
    if d.facts is not None:
        f = d.facts
        lines.append(f"config: {f.source}")
        lines.append(f"  route: {f.route_desc or 'none'}" + (f" at {f.route}" if f.route else ""))
    if d.probe is not None:
        for stage in d.probe.stages:
            lines.append(f"  {stage.name:<12} {stage.mark:<4} {stage.ms:>8.1f} ms  "
                         f"{stage.detail}")
        if d.probe.handshake is not None:
            hs = d.probe.handshake
            lines.append(f"  handshake: EIO={hs.eio_version}, pingInterval {hs.ping_interval_ms} "
                         f"ms, pingTimeout {hs.ping_timeout_ms} ms")
    lines.append("")
    if not d.findings:
        lines.append("No problems found: Socket.IO works through this proxy.")
        lines.extend(f"  ✓ {c}" for c in d.checks)
    for finding in d.findings:
        lines.append(f"[{finding.severity.upper()}] {finding.code}: {finding.title}")
        lines.append(f"    evidence: {finding.evidence}")
        fix = finding.fix.replace("\n", "\n        ")
        lines.append(f"    fix: {fix}")
        lines.append("")
    for note in d.notes:
        lines.append(f"note: {note}")
    timing = ", ".join(f"{k.removesuffix('_ms')} {v:.0f} ms" for k, v in d.timings.items())
    if timing:
        lines.append(f"({timing})")
    return "\n".join(lines).rstrip("\n") + "\n"
