"""Engine.IO (v3 and v4) and Socket.IO packets as text: open packets, payloads, errors, sids.

The probe's stages, ``wizard.probe.load`` and ``wizard.probe.hold`` call this; nothing here
touches a socket. The wire is hostile: every value read from it is type- and range-checked
(``read_open``, ``load_json``), and a server-chosen session id must match ``SID_RE`` before it
may go into a request line (``eio_query``) — CRLF in a sid would be header injection.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from wizard.heartbeat import Heartbeat
from wizard.probe.wire.http import HttpResponse
from wizard.probe.wire.net import WireError

MAX_PING_MS = 86_400_000  # a pingInterval/pingTimeout above one day is not a real setting
# Engine.IO session ids are base64url-ish (Node: base64id, python-engineio: urlsafe b64);
# anything else would go unchecked into a request line (CRLF = header injection).
SID_RE = re.compile(r"[A-Za-z0-9_\-=.~]{1,128}")


def eio_query(path: str, eio: int, transport: str, sid: str | None = None) -> str:
    """The request target of an Engine.IO request (``t`` only busts caches, like real clients).

    A server-chosen ``sid`` that is not Engine.IO's charset raises ``WireError('protocol')``
    (``read_open`` refuses such a handshake first; this is the last line before the wire).
    """
    query = f"{path}?EIO={eio}&transport={transport}"
    if sid is not None:
        if not SID_RE.fullmatch(sid):
            raise WireError("protocol", f"refusing to send the server's sid {sid[:40]!r}: "
                            "not an Engine.IO session id")
        query += f"&sid={sid}"
    return query




@dataclass(frozen=True)
class Handshake:
    """The fields of an Engine.IO open packet (v3 has no maxPayload)."""

    sid: str
    upgrades: tuple[str, ...]
    ping_interval_ms: int
    ping_timeout_ms: int
    max_payload: int | None
    eio_version: int

    @property
    def ping_sum_s(self) -> float:
        """pingInterval + pingTimeout in seconds: what a proxy timeout must exceed."""
        return self.heartbeat.sum_s

    @property
    def heartbeat(self) -> Heartbeat:
        """The server's heartbeat as this open packet announced it (``wizard.heartbeat``)."""
        return Heartbeat(self.ping_interval_ms, self.ping_timeout_ms)

    def to_dict(self) -> dict[str, object]:
        return {
            "sid": self.sid,
            "upgrades": list(self.upgrades),
            "pingInterval": self.ping_interval_ms,
            "pingTimeout": self.ping_timeout_ms,
            "maxPayload": self.max_payload,
            "eio_version": self.eio_version,
        }


_V3_TEXT = re.compile(rb"^\d+:0\{")


def looks_like_v3(body: bytes) -> bool:
    """``97:0{…}2:40`` (text payload) or the binary ``\\x00…\\xff0{`` form of Engine.IO v3."""
    if _V3_TEXT.match(body):
        return True
    return body[:1] in (b"\x00", b"\x01") and b"\xff0{" in body[:16]


def decode_payload(body: bytes, eio: int) -> list[str]:
    """Split a polling payload into packets (v4: ``\\x1e``-separated; v3: length-prefixed)."""
    if eio >= 4:
        return body.decode("utf-8", "replace").split("\x1e")
    packets: list[str] = []
    if body[:1] in (b"\x00", b"\x01"):
        data = body
        while data:
            digits, _, data = data[1:].partition(b"\xff")
            # v3 binary lengths are one byte per decimal digit (0..9), ended by 0xff
            size = int("".join(str(d) for d in digits) or "0")
            packets.append(data[:size].decode("utf-8", "replace"))
            data = data[size:]
        return packets
    text = body.decode("utf-8", "replace")
    while text:
        length, sep, rest = text.partition(":")
        if not sep or not length.isdigit():
            break
        size = int(length)
        packets.append(rest[:size])
        text = rest[size:]
    return packets


def parse_open(packet: str, eio: int) -> Handshake | None:
    """An open packet (``0{…}``) or ``None`` when the text is not a usable one."""
    opened = read_open(packet, eio)
    return opened if isinstance(opened, Handshake) else None


def load_json(text: str) -> object:
    """``json.loads`` for server text: ``ValueError`` for anything unparsable, including
    nesting deep enough to exhaust the parser's recursion (RecursionError) and ``NaN``."""
    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _ms_field(data: dict[str, object], name: str) -> int | str:
    """A positive, finite, sane number of milliseconds, or why not."""
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{name} is {json.dumps(value)[:40] if name in data else 'missing'}"
    if not math.isfinite(value) or not 0 < value <= MAX_PING_MS:
        return f"{name} {value!r} is not between 1 ms and one day"
    return int(value)


def read_open(packet: str, eio: int) -> Handshake | str | None:
    """An open packet: the ``Handshake``, a sentence saying why this ``0{…}`` is unusable
    (the wire is hostile: every field is type- and range-checked), or ``None`` when the text
    is not an open packet at all."""
    if not packet.startswith("0{"):
        return None
    try:
        data = load_json(packet[1:])
    except ValueError as exc:
        return f"the open packet is not valid JSON ({exc})"
    if not isinstance(data, dict):
        return "the open packet is not a JSON object"
    sid = data.get("sid")
    if not isinstance(sid, str) or not SID_RE.fullmatch(sid):
        shown = json.dumps(sid, ensure_ascii=True)[:60] if "sid" in data else "missing"
        return (f"sid {shown} is not an Engine.IO session id (1-128 characters of "
                "A-Z a-z 0-9 _ - = . ~)")
    upgrades = data.get("upgrades", [])
    if not isinstance(upgrades, list) or not all(isinstance(u, str) for u in upgrades):
        return "upgrades is not a list of strings"
    interval, ping_timeout = _ms_field(data, "pingInterval"), _ms_field(data, "pingTimeout")
    for problem in (interval, ping_timeout):
        if isinstance(problem, str):
            return problem
    max_payload = data.get("maxPayload")
    if max_payload is not None and (isinstance(max_payload, bool)
                                    or not isinstance(max_payload, int) or max_payload <= 0):
        return f"maxPayload {json.dumps(max_payload)[:40]} is not a positive integer"
    assert isinstance(interval, int) and isinstance(ping_timeout, int)
    return Handshake(sid=sid, upgrades=tuple(upgrades)[:16], ping_interval_ms=interval,
                     ping_timeout_ms=ping_timeout, max_payload=max_payload, eio_version=eio)


def error_message(body: bytes) -> tuple[int | None, str | None]:
    """Engine.IO's error body: ``{"code":N,"message":…}`` (Node) or a JSON string (python)."""
    try:
        data = load_json(body.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
        return None, None
    if isinstance(data, dict):
        code = data.get("code")
        message = data.get("message")
        return (code if isinstance(code, int) and not isinstance(code, bool) else None), (
            message if isinstance(message, str) else None
        )
    if isinstance(data, str):
        return None, data
    return None, None



def is_unknown_session(response: HttpResponse) -> bool:
    """Node: 400 ``{"code":1,"message":"Session ID unknown"}``; python: ``"Invalid session …"``."""
    if response.status != 400:
        return False
    code, message = error_message(response.body)
    text = (message or response.text).lower()
    return code == 1 or "session id unknown" in text or "invalid session" in text


def connect_answer_sid(text: str) -> str:
    """The sid in a Socket.IO CONNECT answer ``40{"sid":…}``; ``WireError('protocol')`` for
    anything else (``40[]``, ``40null``, ``401``, ``40"x"``, no sid): the Socket.IO 3+/4
    JavaScript client refuses those as "not a v3+ server", so the probe does too."""
    try:
        data = load_json(text[2:])
    except ValueError as exc:
        raise WireError("protocol", f"the CONNECT answer {text[:40]!r} is not JSON ({exc})") \
            from None
    return check_connect_data(data)


def check_connect_data(data: object) -> str:
    """The sid of a CONNECT answer's (parsed) payload, or ``WireError('protocol')``."""
    shown = json.dumps(data, ensure_ascii=True)[:40]
    if not isinstance(data, dict):
        raise WireError("protocol", f"the Socket.IO CONNECT answer carried {shown}, not an "
                        "object with a sid (not a Socket.IO 3+ server?)")
    sid = data.get("sid")
    if not isinstance(sid, str) or not SID_RE.fullmatch(sid):
        raise WireError("protocol", f"the Socket.IO CONNECT answer {shown} has no valid sid")
    return sid
