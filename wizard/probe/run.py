"""The staged live probe: one ``Run``'s record, and its stages in order, each under a guard.

``run_probe`` is what everyone calls (``wizard.commands.probe``, the TUI from a worker thread
with ``on_stage`` to fill its table live, ``deploy`` after a reload, ``diagnose``). Stages:

1. ``tcp`` (+ ``tls``) connect to the proxy;
2. ``polling``: the Engine.IO v4 handshake, read verbatim and classified (``polling-eio3``
   retries with EIO=3 when the answer says the server is Socket.IO 2.x);
3. ``websocket``: the upgrade with that sid, ``2probe``/``3probe``/``5``;
4. ``socketio`` (+ ``emit``): python-socketio's own connect (``wizard.probe.sio``), and the
   transport it ends up on; or, with ``raw_connect``, our own CONNECT on the stage-3 socket;
5. ``hold``, ``sessions``, ``clients`` when asked for (``wizard.probe.hold``, ``.load``).

What each stage does is ``wizard.probe.stages`` (1-4) and ``wizard.probe.extras`` (5); this
module holds what they share (``Run``: the stages and findings so far, what the handshake
left for the upgrade) and decides what runs next. A failed stage becomes a ``Finding``; an
exception a stage did not anticipate becomes a failed stage too (``Run.guarded``), so a
hostile server can fail the probe but never make it raise: only a bad input (the URL, the
options) raises, as ``ProbeFailed``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from wizard.errors import ProbeFailed, SockwizardError
from wizard.findings import Finding, merge_findings, sort_findings
from wizard.probe import classify, extras, fronts, stages
from wizard.probe.options import ProbeOptions
from wizard.probe.report import (
    ClientsResult,
    HoldResult,
    ProbeReport,
    SessionsResult,
    Stage,
)
from wizard.probe.wire import Handshake, HttpResponse, Target, normalize_path, parse_url

if TYPE_CHECKING:
    import socket

_T = TypeVar("_T")


class Run:
    """One probe in progress: stages and findings accumulate here, in order."""

    def __init__(self, url: str, target: Target, path: str, options: ProbeOptions,
                 on_stage: Callable[[Stage], None] | None) -> None:
        self.url = url
        self.target = target
        self.path = path
        self.options = options
        self.on_stage = on_stage
        self.headers = options.request_headers()
        # The handshake's cookies (sticky-session routes) ride along on the session's upgrade.
        self.session_headers: tuple[tuple[str, str], ...] = tuple(self.headers)
        self.stages: list[Stage] = []
        self.findings: list[Finding] = []
        self.handshake: Handshake | None = None
        self.websocket_only = False
        self.websocket_ok = False
        self.transport: str | None = None
        self.socketio_ok = False
        self.raw_connected: tuple[float, str] | None = None  # (ms, sid) of a raw CONNECT
        self.emit_ok = True
        self.hold: HoldResult | None = None
        self.sessions: SessionsResult | None = None
        self.clients: ClientsResult | None = None
        self.answers: list[HttpResponse] = []  # their headers name a front tier (fronts)
        # The handshake's connection, kept for the upgrade (options.reuse_connection).
        self.kept: socket.socket | None = None

    def record(self, name: str, ok: bool, started: float, detail: str,
               data: Mapping[str, Any] | None = None) -> Stage:
        stage = Stage(name, ok, round((time.perf_counter() - started) * 1000, 1), detail,
                      dict(data or {}))
        return self.publish(stage)

    def skip(self, name: str, why: str) -> None:
        """A requested stage that cannot run: shown as "skip", never as a finding."""
        self.publish(Stage(name, False, 0.0, f"skipped: {why}", {"skipped": True}))

    def publish(self, stage: Stage) -> Stage:
        self.stages.append(stage)
        if self.on_stage is not None:
            self.on_stage(stage)
        return stage

    def guarded(self, name: str, step: Callable[..., _T], *args: Any) -> _T | None:
        """Run one stage; an exception it did not expect (a server answer nothing here
        anticipated) becomes a failed stage and an error finding, never a traceback: the
        deploy rolls back on a failed probe, and a raising one would skip that."""
        started = time.perf_counter()
        try:
            return step(*args)
        except SockwizardError:
            raise  # bad input found late (e.g. --clients above the file limit)
        except Exception as exc:
            what = f"{type(exc).__name__}: {exc}"[:200]
            self.record(name, False, started, f"the probe could not handle the answer ({what})",
                        {"error": "internal"})
            self.findings.append(classify.internal_error(name, what))
            return None

    def first_answer(self) -> HttpResponse | None:
        """The handshake's HTTP answer (whatever its status), None when none came."""
        return self.answers[0] if self.answers else None

    def stale(self) -> bool:
        """``options.expect_marker`` is set and the handshake was not answered with it."""
        expected, header = self.options.expect_marker, self.options.marker_header
        first = self.first_answer()
        return (expected is not None and header is not None
                and (first is None or first.header(header) != expected))

    def finish(self) -> ProbeReport:
        """Run the remaining stages and report; closes the kept connection."""
        return _finish(self)

    def close(self) -> None:
        if self.kept is not None:
            self.kept.close()
            self.kept = None

    def report(self) -> ProbeReport:
        front = fronts.front_finding(self.answers)
        found = sort_findings(merge_findings([*self.findings, *([front] if front else [])]))
        ok = (self.websocket_ok and self.socketio_ok and self.transport == "websocket"
              and self.emit_ok and not any(f.severity == "error" for f in found))
        return ProbeReport(self.url, self.path, ok, self.transport, self.handshake,
                           tuple(self.stages), tuple(found), self.hold, self.sessions,
                           self.clients)


def run_probe(
    url: str, options: ProbeOptions, on_stage: Callable[[Stage], None] | None = None
) -> ProbeReport:
    """Probe ``url`` stage by stage; a bad URL or option raises ``ProbeFailed`` up front.

    Every network failure after that becomes a failed stage and a finding in the report.
    """
    return start_probe(url, options, on_stage).finish()


def start_probe(
    url: str, options: ProbeOptions, on_stage: Callable[[Stage], None] | None = None
) -> Run:
    """The first half of ``run_probe``: check the options, connect, and the polling handshake.

    The deploy calls this to settle (the handshake's answer carries the config marker) and
    ``Run.finish`` to probe, on the same connection (``options.reuse_connection``). Whoever
    does not call ``finish`` calls ``close``."""
    problems = options.problems()
    if problems:
        raise ProbeFailed("Invalid probe options: " + "; ".join(problems) + ".",
                          "Fix the options and run again.")
    path = normalize_path(options.path)
    target = parse_url(url, path)
    if options.connect_to is not None:
        target = dataclasses.replace(target, connect_host=options.connect_to.strip("[]"))
    if options.clients > 0:
        from wizard.probe.load import ensure_file_limit

        ensure_file_limit(options.clients)  # refuse before any traffic, not after the stages
    run = Run(url, target, path, options, on_stage)
    sock = run.guarded("tcp", stages.connect, run)
    if sock is not None:
        run.guarded("polling", stages.polling, run, sock)
    return run


def _finish(run: Run) -> ProbeReport:
    """The stages after the handshake (``Run.finish``)."""
    options = run.options
    try:
        if run.stale():
            return run.report()  # an older config answered: its upgrade proves nothing
        v4 = run.handshake is not None and run.handshake.eio_version == 4
        if v4 or run.websocket_only:
            run.guarded("websocket", stages.websocket, run)
            if options.browsers:
                run.guarded("origin", stages.browsers, run)
            run.guarded("socketio", stages.socketio, run)
        if options.hold > 0:
            run.guarded("hold", extras.hold_stage, run)
        if options.sessions > 0:
            run.guarded("sessions", extras.sessions_stage, run)
        if options.clients > 0:
            run.guarded("clients", extras.clients_stage, run)
        return run.report()
    finally:
        run.close()
