"""Lifetime caps vs idle timeouts: a busy twin beside the ``--hold``, and what the two mean.

``wizard.probe.run``'s hold stage calls :func:`hold_and_compare` instead of the bare
``hold_connection``; ``wizard.probe.classify.hold_finding`` asks :func:`lifetime_finding`
first. Some load balancers close a WebSocket at a fixed *age* however busy it is (GCP's
backend service timeout, 30 s by default). The idle hold alone would grade such a drop by the
time since the server's last ping and call it "a proxy timeout of about 5 s". Two facts tell
them apart: the idle connection had already survived a longer silence than the one it died in,
and a twin kept busy (a WebSocket ping every ``BUSY_EVERY_S``, which the server answers) dies
at the same age. An idle timeout never cuts the busy twin.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence

from wizard import findings as codes
from wizard.findings import Finding
from wizard.probe.hold import hold_connection, open_session, upgrade_session
from wizard.probe.report import BusyResult, HoldResult
from wizard.probe.wire import (
    OP_CLOSE,
    Handshake,
    Target,
    WireError,
    open_socket,
)

BUSY_EVERY_S = 0.5  # below any idle timeout a proxy ships with


def same_age_margin(age: float) -> float:
    """How far apart two ages may be and still be "the same" (setup time, our clock)."""
    return max(1.0, 0.1 * age)


def hold_and_compare(target: Target, path: str, headers: Sequence[tuple[str, str]],
                     timeout: float, insecure: bool, seconds: float,
                     websocket: bool) -> HoldResult | str:
    """The idle hold, with a busy twin beside it on WebSocket; once the idle connection has
    dropped, the twin is stopped when *its own* age passes that age by the margin. (Timing it
    from the idle drop failed in CI: under load the twin opened late and was stopped before
    it reached the age at which it too would have been cut.)"""
    if not websocket:
        return hold_connection(target, path, headers, timeout, insecure, seconds, False)
    stop = TwinStop()
    box: list[BusyResult | str] = []
    twin = threading.Thread(
        target=lambda: box.append(busy_hold(target, path, headers, timeout, insecure,
                                            seconds, stop)),
        name="sockwizard-busy-hold", daemon=True)
    twin.start()
    try:
        result = hold_connection(target, path, headers, timeout, insecure, seconds, True)
        if isinstance(result, HoldResult) and result.age_at_drop_s is not None:
            age = result.age_at_drop_s
            stop.age_limit = age + same_age_margin(age) + 0.5
            # bounded: opening the twin takes at most ``timeout``, then it lives to the limit
            twin.join(2 * timeout + stop.age_limit)
    finally:
        stop.event.set()
        twin.join(timeout + 1)
    if isinstance(result, str) or not box or isinstance(box[0], str):
        return result
    busy = box[0]
    if not result.dropped:
        return result  # nothing to compare; the twin's own drop (if any) is in its detail
    return dataclasses.replace(result, busy=busy)


@dataclasses.dataclass
class TwinStop:
    """When the busy twin stops: ``event`` (the hold is over) or its age past ``age_limit``
    (set once the idle connection has dropped)."""

    event: threading.Event = dataclasses.field(default_factory=threading.Event)
    age_limit: float | None = None

    def due(self, age: float) -> bool:
        return self.event.is_set() or (self.age_limit is not None and age >= self.age_limit)


def busy_hold(target: Target, path: str, headers: Sequence[tuple[str, str]], timeout: float,
              insecure: bool, seconds: float, stop: TwinStop) -> BusyResult | str:
    """A second session on WebSocket with traffic every ``BUSY_EVERY_S`` until ``stop`` or
    ``seconds``; its age at a drop. A sentence when it cannot even be opened."""
    try:
        opened = open_session(target, path, headers, timeout, insecure)
        if isinstance(opened, str):
            return opened
        handshake, session = opened
        return _busy(target, path, session, timeout, insecure, seconds, stop, handshake)
    except WireError as exc:
        return f"{exc.kind}: {exc.message}"


def _busy(target: Target, path: str, headers: Sequence[tuple[str, str]], timeout: float,
          insecure: bool, seconds: float, stop: TwinStop,
          handshake: Handshake) -> BusyResult | str:
    setup = time.monotonic() + timeout
    sock = open_socket(target, timeout, insecure)
    try:
        upgraded = upgrade_session(sock, target, path, headers, timeout, handshake.sid, setup)
        if isinstance(upgraded, str):
            return upgraded
        ws, opened = upgraded
        deadline = opened + seconds
        how = ""
        while not stop.due(time.monotonic() - opened) and time.monotonic() < deadline:
            try:
                ws.send_ping(timeout)
                frame = ws.recv(BUSY_EVERY_S)
            except WireError as exc:
                if exc.kind == "timeout":
                    continue  # no data frame within the interval: the usual case
                how = exc.message
                break
            if frame.opcode == OP_CLOSE:
                how = f"close frame {frame.close_code}"
                break
            if frame.text == "2":
                ws.send_text("3", timeout)
            elif frame.text == "1" or frame.text.startswith("41"):
                how = "the server closed the session"
                break
        now = time.monotonic()
        return BusyResult(round(now - opened, 3), BUSY_EVERY_S, bool(how),
                          round(now - opened, 3) if how else None, how or "held")
    finally:
        sock.close()


def lifetime_finding(hold: HoldResult) -> Finding | None:
    """A drop explained by the connection's age, not its idle time (pure), or None."""
    if not hold.dropped or hold.verdict == "server-closed" or hold.age_at_drop_s is None:
        return None
    age, idle = hold.age_at_drop_s, hold.idle_before_drop_s or 0.0
    margin = same_age_margin(age)
    busy = hold.busy
    if busy is not None and not busy.dropped:
        return None  # the busy twin outlived it: the idle time is what is cut
    twin_same = (busy is not None and busy.age_at_drop_s is not None
                 and abs(busy.age_at_drop_s - age) <= margin)
    quiet = hold.longest_quiet_s or 0.0
    survived_longer = quiet > idle + margin
    if not (twin_same or survived_longer):
        return None
    proof = []
    if survived_longer:
        proof.append(f"it had survived {quiet:.1f} s of silence before, yet dropped "
                     f"{idle:.1f} s after the last frame")
    if twin_same and busy is not None:
        proof.append(f"a twin kept busy (traffic every {busy.interval_s:g} s) dropped at age "
                     f"{busy.age_at_drop_s:.1f} s")
    return Finding(
        codes.LIFETIME_CAP, "error",
        f"WebSocket connections are cut at a fixed age of ~{age:.0f} s however busy they "
        "are: a connection lifetime cap, not an idle timeout",
        f"hold over {hold.transport}: dropped at age {age:.1f} s ({hold.how}); "
        + "; ".join(proof),
        f"Find the tier that caps a connection's age at ~{age:.0f} s and raise it above the "
        "longest session you want: a cloud load balancer's backend/connection timeout (GCP: "
        "the backend service timeout, 30 s by default — `gcloud compute backend-services "
        "update NAME --timeout=3600`), a firewall or NAT session lifetime, a relay's maximum "
        "session time. Raising the proxy's idle timeouts cannot help. Socket.IO clients "
        "reconnect, but every cut drops in-flight messages and rejoins rooms.")
