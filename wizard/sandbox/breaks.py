"""``sockwizard sandbox --break KIND``: the fault's symptom with a real client, ``diagnose`` on
the broken sandbox, and the fix deployed by the real transaction.

Called by ``wizard.commands.sandbox`` (and the TUI's sandbox choice) after
``start_sandbox(..., fault=...)``. The symptom is what a user of the broken site would see:
python-socketio dropped with "transport error" (the Node client says "transport close"), a
client left on polling, "Session ID unknown" on polling sessions, a 404 on connect.
Every wait is bounded; with the shortened ping settings the whole run stays under a minute.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wizard.deploy import DeployResult, EventSink
from wizard.diagnose import Diagnosis, run_diagnosis
from wizard.probe import ProbeOptions, Stage
from wizard.remote import LocalRemote
from wizard.sandbox.fault_kinds import Fault
from wizard.sandbox.faults import TIMEOUT_READ_S
from wizard.sandbox.run import AFFINITY_SESSIONS, Sandbox, check_affinity

if TYPE_CHECKING:
    from collections.abc import Callable

CONNECT_WAIT_S = 5.0
UPGRADE_WAIT_S = 2.0  # python-socketio upgrades within milliseconds when it can
DROP_WAIT_S = TIMEOUT_READ_S + 6.0  # the proxy's read timeout, plus slack


@dataclass(frozen=True)
class Symptom:
    """What a real client saw: ``seen`` when it is the fault's symptom."""

    seen: bool
    what: str


def show_symptom(box: Sandbox) -> Symptom:
    """Connect a real client the way the fault hurts and report what happened."""
    assert box.fault is not None
    fault = box.fault.fault
    if fault is Fault.NO_STICKY:
        result = check_affinity(box.url, box.path, AFFINITY_SESSIONS)
        what = (f"{result.unknown_session} of {result.requested} polling sessions got 400 "
                "\"Session ID unknown\"")
        if result.unknown_session:
            what += " (their requests reached another backend)"
        else:
            what += f"; {result.ok} completed on their backend"
        return Symptom(result.unknown_session > 0, what)
    if fault is Fault.TIMEOUT:
        return _idle_drop(box)
    return _connect_symptom(box, fault)


class _Client:
    """One python-socketio client that records why it was disconnected, and when."""

    def __init__(self, transports: list[str] | None = None) -> None:
        import socketio

        self.client = socketio.Client(reconnection=False)
        self.transports = transports
        self.dropped = threading.Event()
        self.reason = ""
        self.at = 0.0
        self.client.on("disconnect", self._on_disconnect)

    def _on_disconnect(self, reason: Any = None) -> None:
        self.reason, self.at = str(reason), time.monotonic()
        self.dropped.set()

    def connect(self, box: Sandbox) -> None:
        self.client.connect(box.url, socketio_path=box.path.strip("/"),
                            transports=self.transports, wait_timeout=CONNECT_WAIT_S)

    def close(self) -> None:
        self.client.disconnect()


def _idle_drop(box: Sandbox) -> Symptom:
    """Two idle clients, one on WebSocket and one on long-polling (a proxy may cut either:
    Apache's WebSocket tunnel, for one, follows ``Timeout``, its polling ``ProxyTimeout``)."""
    clients = {"WebSocket": _Client(["websocket"]), "long-polling": _Client(["polling"])}
    started = time.monotonic()
    try:
        for client in clients.values():
            client.connect(box)
        deadline = started + DROP_WAIT_S
        for client in clients.values():
            client.dropped.wait(max(0.0, deadline - time.monotonic()))
        seen = [f"the idle client on {name} was dropped after {c.at - started:.1f} s: "
                f"\"{c.reason}\"" for name, c in clients.items() if c.dropped.is_set()]
        kept = [name for name, c in clients.items() if not c.dropped.is_set()]
        what = "; ".join(seen) or "no idle client was dropped"
        if seen and kept:
            what += f" (the one on {kept[0]} stayed)"
        return Symptom(bool(seen), what + (" — the Node client says \"transport close\""
                                           if seen else ""))
    finally:
        for client in clients.values():
            client.close()


def _connect_symptom(box: Sandbox, fault: Fault) -> Symptom:
    import socketio

    client = _Client()
    try:
        client.connect(box)
    except socketio.exceptions.ConnectionError as exc:
        return Symptom(fault is Fault.PATH, f"python-socketio could not connect: {exc}")
    try:
        if fault is Fault.PATH:
            return Symptom(False, f"python-socketio connected on {client.client.transport()}")
        time.sleep(UPGRADE_WAIT_S)
        transport = client.client.transport()
        return Symptom(transport == "polling",
                       f"python-socketio connected and is still on {transport} after "
                       f"{UPGRADE_WAIT_S:g} s (its WebSocket upgrade was refused)"
                       if transport == "polling" else "the client upgraded to WebSocket")
    finally:
        client.close()


def diagnose_box(box: Sandbox, on_stage: Callable[[Stage], None] | None = None) -> Diagnosis:
    """``sockwizard diagnose URL --host local --proxy KIND --config MAIN`` on the sandbox."""
    assert box.setup is not None
    options = ProbeOptions(path=box.path, sessions=6, timeout=5.0)
    return run_diagnosis(box.url, options, remote=LocalRemote(name="sandbox"), proxy=box.kind,
                         config_path=(str(box.setup.main_config) if box.setup.main_config
                                      else None), on_stage=on_stage)


def apply_fix(box: Sandbox, on_event: EventSink | None = None) -> DeployResult:
    """Deploy the config that fixes the fault (the spec's own, or one matching the servers'
    real ping settings / path) with the real transaction: backup, validate, reload, probe."""
    assert box.fault is not None
    return box.deploy(box.fault.fixed, on_event)


def break_report(box: Sandbox) -> str:
    """The symptom and the diagnosis of a broken sandbox as plain lines: what the TUI's Deploy
    step shows after "Break the sandbox" (the CLI prints the whole diagnosis instead)."""
    assert box.fault is not None
    symptom = show_symptom(box)
    diagnosis = diagnose_box(box)
    lines = [f"{box.fault.title}; " + "; ".join(box.fault.notes),
             f"a real client: {symptom.what}", "diagnose:"]
    for finding in diagnosis.findings:
        lines += [f"  [{finding.severity}] {finding.code}: {finding.title}",
                  *(f"    {line}" for line in f"fix: {finding.fix}".splitlines())]
    if not diagnosis.findings:
        lines.append("  no findings")
    lines.append("Command palette → \"Deploy the fix\" deploys the fixed config and probes it.")
    return "\n".join(lines)
