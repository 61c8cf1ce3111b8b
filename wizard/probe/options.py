"""What to probe and how: ``ProbeOptions``, its checks, and the parsing of the flags that feed it.

``wizard.commands.probe`` builds options from ``--header``/``--data`` with ``parse_header`` and
``parse_data``; the TUI, ``deploy`` and ``diagnose`` build them directly. ``run_probe`` asks
``problems()`` before any traffic, so a bad option is one ``ProbeFailed`` naming every problem,
never a half-run probe.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from wizard.errors import BadInput

MAX_SESSIONS = 1000
MAX_CLIENTS = 100_000


@dataclass(frozen=True)
class ProbeOptions:
    """What to probe and how; the CLI flags map one to one (see the module docstring)."""

    path: str = "/socket.io/"
    headers: tuple[tuple[str, str], ...] = ()
    origin: str | None = None
    insecure: bool = False
    timeout: float = 5.0  # seconds, per stage (per request inside a stage)
    emit: str | None = None
    data: str | None = None  # JSON text sent with --emit (parsed here: "null" is a value)
    expect: str | None = None  # wait for this event instead of an acknowledgement
    hold: float = 0.0  # seconds to keep an idle connection open (0: no hold)
    sessions: int = 0
    clients: int = 0
    # Connect Socket.IO with a raw CONNECT packet on the upgraded WebSocket instead of the
    # python-socketio client: the same proof (a namespace answered over WebSocket) without
    # ~200 ms of imports. The deploy's post-reload probe uses it; --emit needs the client.
    raw_connect: bool = False
    # Record this response header of the handshake and of the upgrade in the stages' data
    # ("marker"): the deploy checks that both were answered by the config it just loaded.
    marker_header: str | None = None
    # Stop after the handshake unless it carries this value of ``marker_header``: the deploy
    # settles on the probe's own handshake, and an older config's upgrade proves nothing.
    expect_marker: str | None = None
    # Send the upgrade on the handshake's connection when HTTP/1.1 keep-alive allows (the
    # deploy: one connection, and the answer to both from the same worker and config). Off,
    # the upgrade opens a new connection as browsers do, so a proxy that routes by connection
    # cannot hide a sticky-session fault (the command-line probe, diagnose).
    reuse_connection: bool = False
    # Connect to this address, not the URL's host (which stays the Host header and SNI).
    connect_to: str | None = None
    # Also try as browsers do (wizard.probe.browser): a same-origin page's Origin, Firefox's
    # `Connection: keep-alive, Upgrade`. Off: the command-line client's view only.
    browsers: bool = True

    def problems(self) -> list[str]:
        """Everything wrong with these options, one sentence each (empty: fine)."""
        out: list[str] = []
        if not (0 < self.timeout <= 600):
            out.append(f"--timeout must be between 0 and 600 seconds (got {self.timeout:g})")
        if self.hold < 0 or self.hold > 86_400:
            out.append(f"--hold must be between 0 and 86400 seconds (got {self.hold:g})")
        if not 0 <= self.sessions <= MAX_SESSIONS:
            out.append(f"--sessions must be between 0 and {MAX_SESSIONS} (got {self.sessions})")
        if not 0 <= self.clients <= MAX_CLIENTS:
            out.append(f"--clients must be between 0 and {MAX_CLIENTS} (got {self.clients})")
        if self.connect_to is not None:
            if not self.raw_connect:
                out.append("--connect-to cannot be combined with --emit (python-socketio "
                           "resolves the URL itself)")
            if self.clients:
                out.append("--connect-to does not apply to --clients")
            if not re.fullmatch(r"[A-Za-z0-9.:\-\[\]]{1,253}", self.connect_to):
                out.append(f"--connect-to {self.connect_to!r} is not a host name or address")
        if self.expect_marker is not None and self.marker_header is None:
            out.append("expect_marker needs marker_header (the header that carries it)")
        if self.raw_connect and self.emit is not None:
            out.append("--emit needs the python-socketio client (not raw_connect)")
        if self.expect is not None and self.emit is None:
            out.append("--expect needs --emit (the event to send first)")
        if self.data is not None and self.emit is None:
            out.append("--data needs --emit (the event to send it with)")
        if self.data is not None:
            try:
                json.loads(self.data)
            except ValueError as exc:
                out.append(f"--data is not valid JSON ({exc})")
        for key, value in self.headers:
            if not key or any(c in key for c in " \t\r\n:") or not _header_safe(key + value):
                out.append(f"invalid header {key!r}: {value!r} (control characters or "
                           "characters outside Latin-1)")
        if self.origin is not None and not _header_safe(self.origin):
            out.append(f"invalid --origin {self.origin!r}")
        return out

    def request_headers(self) -> tuple[tuple[str, str], ...]:
        origin = (("Origin", self.origin),) if self.origin else ()
        return origin + self.headers


def _header_safe(text: str) -> bool:
    """Sendable in an HTTP header: Latin-1, no control characters (tab allowed)."""
    return all(c == "\t" or (0x20 <= ord(c) <= 0xFF and ord(c) != 0x7F) for c in text)


def parse_header(text: str) -> tuple[str, str]:
    """``--header 'K: V'`` -> ``("K", "V")``; ``BadInput`` when there is no name or colon."""
    key, sep, value = text.partition(":")
    if not sep or not key.strip() or any(c in key.strip() for c in " \t"):
        raise BadInput(f"Invalid --header {text!r}.", "Write it as Name:value, e.g. "
                       "--header 'Authorization: Bearer abc'.")
    return key.strip(), value.strip()


def parse_data(text: str) -> Any:
    """``--data JSON`` -> the JSON value; ``BadInput`` with the parser's position otherwise."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadInput(f"--data is not valid JSON: {exc}.",
                       "Quote it for the shell, e.g. --data '{\"x\": 1}' or --data '\"text\"'.")\
            from None

