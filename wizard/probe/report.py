"""What one probe saw, as data: the stages, the report, the optional stages' results, the table.

Every stage module produces these and ``wizard.probe.run`` assembles them; ``wizard.commands``
prints ``format_report`` or ``to_dict()`` (the ``--json`` contract), the TUI fills its table from
``STAGE_NAMES`` and ``Stage``, ``deploy`` reads ``ok``, ``diagnose`` reads the stages, the
handshake and the findings. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from wizard.findings import Finding
from wizard.probe.wire import Handshake, HttpResponse

# Every stage the probe can report, in order (the TUI pre-fills its table from this).
STAGE_NAMES = (
    "tcp", "tls", "polling", "polling-eio3", "websocket", "origin", "firefox", "socketio",
    "emit", "hold",
    "sessions", "clients",
)


@dataclass(frozen=True)
class Stage:
    """One probe step: did it work, how long it took, what it saw (``data``: the raw facts)."""

    name: str
    ok: bool
    ms: float
    detail: str
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        """Not run (an earlier stage failed, or it was not asked for): not a failure."""
        return bool(self.data.get("skipped"))

    @property
    def mark(self) -> str:
        """The human tables' mark (probe's and diagnose's): ok, skip or FAIL."""
        return "ok" if self.ok else "skip" if self.skipped else "FAIL"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "ok": self.ok, "ms": self.ms, "detail": self.detail,
            "data": dict(self.data),
        }


@dataclass(frozen=True)
class ProbeReport:
    """Everything one probe saw. ``ok``: WebSocket works end to end and no error findings."""

    url: str
    path: str
    ok: bool
    transport: str | None  # what python-socketio ended up on: "websocket", "polling", None
    handshake: Handshake | None
    stages: tuple[Stage, ...]
    findings: tuple[Finding, ...]
    hold: HoldResult | None = None
    sessions: SessionsResult | None = None
    clients: ClientsResult | None = None

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "path": self.path,
            "ok": self.ok,
            "transport": self.transport,
            "handshake": self.handshake.to_dict() if self.handshake else None,
            "stages": [s.to_dict() for s in self.stages],
            "findings": [f.to_dict() for f in self.findings],
            "hold": self.hold.to_dict() if self.hold else None,
            "sessions": self.sessions.to_dict() if self.sessions else None,
            "clients": self.clients.to_dict() if self.clients else None,
        }


HoldVerdict = Literal["no-drop", "dropped", "certain", "at-risk", "late", "server-closed"]


@dataclass(frozen=True)
class HoldResult:
    """An idle connection kept open: the pings it saw and when (if) it dropped.

    ``verdict`` is ``no-drop``, ``server-closed`` (an Engine.IO/Socket.IO close packet), or
    ``dropped`` here; ``wizard.probe.classify`` grades a plain drop against the handshake's ping
    settings into ``certain`` / ``at-risk`` / ``late``.
    """

    transport: str
    requested_s: float
    held_s: float
    pings: int
    ping_times_s: tuple[float, ...]
    dropped: bool
    drop_after_s: float | None  # since the session went idle (after the namespace connect)
    idle_before_drop_s: float | None  # since the server last sent anything
    how: str
    verdict: HoldVerdict
    # The connection's age at the drop (since the 101): constant under a lifetime cap, while
    # the idle time is what is constant under an idle timeout.
    age_at_drop_s: float | None = None
    longest_quiet_s: float | None = None  # the longest silence it survived before the drop
    busy: BusyResult | None = None  # a twin kept busy meanwhile (``wizard.probe.lifetime``)

    def to_dict(self) -> dict[str, Any]:
        return {
            "age_at_drop_s": self.age_at_drop_s,
            "longest_quiet_s": self.longest_quiet_s,
            "busy": self.busy.to_dict() if self.busy else None,
            "transport": self.transport,
            "requested_s": self.requested_s,
            "held_s": self.held_s,
            "pings": self.pings,
            "ping_times_s": list(self.ping_times_s),
            "dropped": self.dropped,
            "drop_after_s": self.drop_after_s,
            "idle_before_drop_s": self.idle_before_drop_s,
            "how": self.how,
            "verdict": self.verdict,
        }

    def detail(self, ping_sum_s: float) -> str:
        """The stage line; ``ping_sum_s``: a hold shorter than it proves no longer timeout."""
        if self.dropped:
            age = "" if self.age_at_drop_s is None else f", age {self.age_at_drop_s:.1f} s"
            busy = "" if self.busy is None else f"; busy twin: {self.busy.detail()}"
            return (f"dropped after {self.drop_after_s:.1f} s ({self.how}{age}); "
                    f"{self.pings} ping(s); verdict {self.verdict}{busy}")
        detail = f"held {self.held_s:.1f} s over {self.transport}, {self.pings} ping(s), no drop"
        if self.held_s < ping_sum_s:
            detail += (f" (shorter than pingInterval + pingTimeout = "
                       f"{ping_sum_s:g} s: a longer timeout is not proven)")
        return detail


@dataclass(frozen=True)
class BusyResult:
    """A second WebSocket held open with traffic every ``interval_s`` (WebSocket pings the
    server answers): an idle timeout never cuts it, a lifetime cap does, at the same age."""

    held_s: float
    interval_s: float
    dropped: bool
    age_at_drop_s: float | None
    how: str

    def to_dict(self) -> dict[str, Any]:
        return {"held_s": self.held_s, "interval_s": self.interval_s, "dropped": self.dropped,
                "age_at_drop_s": self.age_at_drop_s, "how": self.how}

    def detail(self) -> str:
        if self.dropped:
            return f"dropped at age {self.age_at_drop_s:.1f} s ({self.how})"
        return f"held {self.held_s:.1f} s with traffic every {self.interval_s:g} s, no drop"


@dataclass(frozen=True)
class SessionsResult:
    """N polling sessions: how many completed, and why the others failed (message -> count)."""

    requested: int
    ok: int
    unknown_session: int
    errors: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "requested": self.requested,
            "ok": self.ok,
            "failed": self.requested - self.ok,
            "unknown_session": self.unknown_session,
            "errors": dict(self.errors),
        }

    def detail(self) -> str:
        detail = f"{self.ok}/{self.requested} sessions completed"
        if self.errors:
            first = next(iter(self.errors))
            detail += f"; {self.requested - self.ok} failed, e.g. {first}"
        return detail


@dataclass(frozen=True)
class ClientsResult:
    """N concurrent WebSocket-only Socket.IO clients through the URL."""

    requested: int
    connected: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    all_done_s: float  # wall time from the first connect to the last outcome
    dropped_while_waiting: int
    errors: dict[str, int]
    cpu_s: float  # user + system CPU of this process during the stage
    max_rss_mb: float  # peak resident size of this process (whole run so far)

    @property
    def failed(self) -> int:
        return self.requested - self.connected

    def to_dict(self) -> dict[str, object]:
        return {
            "requested": self.requested,
            "connected": self.connected,
            "failed": self.failed,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "all_done_s": self.all_done_s,
            "dropped_while_waiting": self.dropped_while_waiting,
            "errors": dict(self.errors),
            "cpu_s": self.cpu_s,
            "max_rss_mb": self.max_rss_mb,
        }

    def detail(self) -> str:
        detail = (f"{self.connected}/{self.requested} connected in {self.all_done_s:.2f} s;"
                  f" p50 {self.p50_ms} ms, p95 {self.p95_ms} ms, p99 {self.p99_ms} ms; "
                  f"CPU {self.cpu_s:.2f} s, peak RSS {self.max_rss_mb:.0f} MB")
        if self.errors:
            detail += "; failures: " + ", ".join(f"{k} ×{v}" for k, v in self.errors.items())
        return detail


def response_data(response: HttpResponse) -> dict[str, Any]:
    """What a stage's ``data`` keeps of an HTTP answer (``diagnose`` reads it)."""
    keep = ("content-type", "server", "upgrade", "connection", "via")
    return {
        "status": response.status,
        "reason": response.reason,
        "headers": {k: v for k, v in response.headers if k.lower() in keep},
        "body": response.text[:300],
    }


def format_ms(ms: float) -> str:
    """A stage's time: ``12.3 ms`` below a second, ``50.0 s`` from a second on (a hold lasts
    tens of seconds: ``50026.6 ms`` is a number to count digits in)."""
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def format_report(report: ProbeReport) -> str:
    """The human table: one line per stage, then the verdict and the findings."""
    lines = [f"sockwizard probe {report.url}  (path {report.path})", ""]
    width = max((len(s.name) for s in report.stages), default=5)
    lines.append(f"  {'stage':<{width}}  {'ok':<4}  {'time':>9}  detail")
    for stage in report.stages:
        lines.append(f"  {stage.name:<{width}}  {stage.mark:<4}  {format_ms(stage.ms):>9}  "
                     f"{stage.detail}")
    lines.append("")
    if report.handshake is not None:
        hs = report.handshake
        lines.append(f"handshake: EIO={hs.eio_version} pingInterval {hs.ping_interval_ms} ms, "
                     f"pingTimeout {hs.ping_timeout_ms} ms, maxPayload {hs.max_payload}, "
                     f"upgrades {list(hs.upgrades)}")
    if report.ok:
        lines.append("result: OK — Socket.IO works end to end over WebSocket")
    else:
        lines.append(f"result: FAILED — transport {report.transport or 'none'}")
    if not report.findings:
        lines.append("findings: none")
    for finding in report.findings:
        lines.append("")
        lines.append(f"[{finding.severity.upper()}] {finding.code}: {finding.title}")
        lines.append(f"    evidence: {finding.evidence}")
        lines.append(f"    fix: {finding.fix}")
    return "\n".join(lines) + "\n"

