"""The staged live probe behind ``sockwizard probe`` (and the probe half of ``diagnose``).

``wizard.commands.probe`` calls ``run_probe`` and prints ``format_report`` or
``report.to_dict()``; the TUI calls ``run_probe`` from a worker thread with ``on_stage``;
``deploy`` reads ``report.ok`` to decide a rollback; ``diagnose`` reads the stages, the
handshake and the findings. One module per job, data flowing down this list:

- ``options``: ``ProbeOptions``, its checks, ``--header``/``--data`` parsing;
- ``wire/``: Engine.IO, HTTP/1.1 and WebSocket on raw sockets, every read under a deadline;
- ``report``: ``Stage``, ``ProbeReport``, the optional stages' results, the table;
- ``classify``: what an answer means, every finding (timeouts from ``wizard.heartbeat``);
- ``sio``: python-socketio in a bounded child, or a raw CONNECT (stage 4);
- ``hold``, ``load``: the ``--hold``, ``--sessions`` and ``--clients`` stages;
- ``run``: ``run_probe`` (``start_probe`` + ``Run.finish``), the run's record and the
  stages in order, each under a guard; ``stages``: what stages 1-4 do; ``extras``: the
  stages run only when asked for.

``load`` imports asyncio, which ``import wizard.probe`` must not pay (``sockwizard --help``
and the TUI import this package), so its names are resolved on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wizard.findings import Finding
from wizard.probe.classify import (
    FIX_BACKEND,
    FIX_ORIGIN,
    FIX_STICKY,
    FIX_UPGRADE,
    Verdict,
    classify_handshake,
    classify_upgrade,
    hold_finding,
    hold_verdict,
)
from wizard.probe.hold import hold_connection
from wizard.probe.options import MAX_CLIENTS, MAX_SESSIONS, ProbeOptions, parse_data, parse_header
from wizard.probe.report import (
    STAGE_NAMES,
    ClientsResult,
    HoldResult,
    HoldVerdict,
    ProbeReport,
    SessionsResult,
    Stage,
    format_ms,
    format_report,
)
from wizard.probe.run import Run, run_probe, start_probe
from wizard.probe.sio import (
    MAX_REPLY_JSON,
    SIO_CHILD_MEMORY,
    SIO_CHILD_STARTUP_S,
    SioOutcome,
    SioRequest,
    raw_connect,
    sio_budget,
    sio_child,
    sio_probe,
    sio_probe_bounded,
)
from wizard.probe.wire import (
    Handshake,
    check_connect_data,
    connect_answer_sid,
    is_unknown_session,
)

if TYPE_CHECKING:
    from wizard.probe.load import (
        MAX_SESSION_THREADS,
        Endpoint,
        ensure_file_limit,
        percentile,
        run_clients,
        run_sessions,
    )

_LAZY = frozenset({"MAX_SESSION_THREADS", "Endpoint", "ensure_file_limit", "percentile",
                   "run_clients", "run_sessions"})

__all__ = [
    "FIX_BACKEND",
    "FIX_ORIGIN",
    "FIX_STICKY",
    "FIX_UPGRADE",
    "MAX_CLIENTS",
    "MAX_REPLY_JSON",
    "MAX_SESSIONS",
    "MAX_SESSION_THREADS",
    "SIO_CHILD_MEMORY",
    "SIO_CHILD_STARTUP_S",
    "STAGE_NAMES",
    "ClientsResult",
    "Endpoint",
    "Finding",
    "Handshake",
    "HoldResult",
    "HoldVerdict",
    "ProbeOptions",
    "ProbeReport",
    "Run",
    "SessionsResult",
    "SioOutcome",
    "SioRequest",
    "Stage",
    "Verdict",
    "check_connect_data",
    "classify_handshake",
    "classify_upgrade",
    "connect_answer_sid",
    "ensure_file_limit",
    "format_ms",
    "format_report",
    "hold_connection",
    "hold_finding",
    "hold_verdict",
    "is_unknown_session",
    "parse_data",
    "parse_header",
    "percentile",
    "raw_connect",
    "run_clients",
    "run_probe",
    "run_sessions",
    "sio_budget",
    "sio_child",
    "sio_probe",
    "sio_probe_bounded",
    "start_probe",
]


def __getattr__(name: str) -> Any:
    """``wizard.probe.load``'s names, imported (with asyncio) only when first asked for."""
    if name in _LAZY:
        from wizard.probe import load

        return getattr(load, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
