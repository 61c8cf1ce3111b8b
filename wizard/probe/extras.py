"""The probe's stages that run only when asked for: ``--hold``, ``--sessions``, ``--clients``.

``wizard.probe.run`` calls these on its ``Run`` after the Socket.IO stage (stages 1-4 are
``wizard.probe.stages``); each records its stage and finding on the run like the others.
``load`` (asyncio) is imported only when its stage runs.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

from wizard.probe import classify
from wizard.probe.lifetime import hold_and_compare
from wizard.probe.wire import WireError

if TYPE_CHECKING:
    from wizard.probe.load import Endpoint
    from wizard.probe.run import Run



def _endpoint(run: Run) -> Endpoint:
    from wizard.probe.load import Endpoint  # asyncio: only when a load stage runs

    return Endpoint(run.target, run.path, run.headers, run.options.timeout, run.options.insecure)


# ---- stage 5
def hold_stage(run: Run) -> None:
    handshake = run.handshake
    started = time.perf_counter()
    if handshake is None or handshake.eio_version != 4 or run.websocket_only:
        run.skip("hold", "no Engine.IO v4 polling session")
        return
    result = hold_and_compare(run.target, run.path, run.headers, run.options.timeout,
                              run.options.insecure, run.options.hold,
                              websocket=run.websocket_ok)
    if isinstance(result, str):
        run.record("hold", False, started, f"could not open the session: {result}")
        return
    graded = result
    if result.dropped and result.idle_before_drop_s is not None:
        verdict = classify.hold_verdict(handshake, result.idle_before_drop_s,
                                        result.verdict == "server-closed")
        graded = dataclasses.replace(result, verdict=verdict)
    run.hold = graded
    finding = classify.hold_finding(handshake, graded)
    if finding is not None:
        run.findings.append(finding)
    run.record("hold", not graded.dropped, started, graded.detail(handshake.ping_sum_s),
                graded.to_dict())


# ---- stage 6
def sessions_stage(run: Run) -> None:
    from wizard.probe.load import run_sessions

    started = time.perf_counter()
    handshake = run.handshake
    if handshake is None or handshake.eio_version != 4 or run.websocket_only:
        run.skip("sessions", "no Engine.IO v4 polling session")
        return
    result = run_sessions(_endpoint(run), run.options.sessions)
    run.sessions = result
    run.record("sessions", result.ok == result.requested, started, result.detail(),
                result.to_dict())
    if (finding := classify.sessions_finding(result)) is not None:
        run.findings.append(finding)


# ---- stage 7
def clients_stage(run: Run) -> None:
    from wizard.probe.load import run_clients

    started = time.perf_counter()
    if not run.websocket_ok:
        run.skip("clients", "the WebSocket stage failed")
        return
    try:
        result = run_clients(_endpoint(run), run.options.clients)
    except WireError as exc:  # resolving the host again failed
        run.record("clients", False, started, exc.message, {"error": exc.kind})
        return
    run.clients = result
    run.record("clients", result.failed == 0, started, result.detail(), result.to_dict())
    if (finding := classify.clients_finding(result)) is not None:
        run.findings.append(finding)
