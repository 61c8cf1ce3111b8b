"""Authentication in one flight: SERVICE_REQUEST, USERAUTH_REQUEST and the first CHANNEL_OPEN.

:class:`.transport.QuickTransport` installs :class:`PipelinedAuthHandler` for every attempt
paramiko's ``auth_publickey``/``auth_password``/``auth_interactive`` makes, and asks
:class:`EarlyChannel` for the first session channel; ``SshRemote`` hands that channel to its
``SpareChannel`` so the first command finds it confirmed. Two client turns fewer per connect
(on a direct link one round trip fewer, see "What it saves").

Why it is safe, checked against OpenSSH 9.2 (Debian 12), see tests/test_ssh_pipeline.py:

* sshd handles packets strictly in order. ``input_service_request`` installs the userauth
  dispatcher before it reads the next packet, so a USERAUTH_REQUEST right behind the
  SERVICE_REQUEST is processed as if we had waited for SERVICE_ACCEPT (which then only arrives
  and is ignored). paramiko's classic handler waits for it; OpenSSH's own client does too.
* A CHANNEL_OPEN behind a USERAUTH_REQUEST that succeeds is honoured: the pre-auth process
  exports the unread input buffer to the post-auth one (``ssh_packet_get_state``). Behind one
  that fails (or is partial), sshd answers SSH_MSG_UNIMPLEMENTED and carries on: the channel
  is forgotten at the USERAUTH_FAILURE and the next attempt sends a new one. Other servers
  may drop the connection instead (dropbear exits on any message > 60 before auth), so the
  early channel is only sent to OpenSSH, and only with password and public-key requests
  (keyboard-interactive answers with questions, not a verdict).

What it saves. sshd has Nagle on before auth (TCP_NODELAY 0, read from its socket) and flushes
SERVICE_ACCEPT before it reads the USERAUTH_REQUEST, so USERAUTH_SUCCESS and the channel
confirmation queued behind it wait in sshd's socket for the peer's ACK of SERVICE_ACCEPT.
:func:`_ack_at_once` makes our kernel send that ACK at once. On a direct link that ACK takes a
round trip to reach sshd: the first exec leaves two round trips after this flight instead of
three (one saved, by TCP's rules; no netem here to measure it). Through a user-space relay, as in
tests/ssh_turns.py and bench/bench_rtt.py, the relay's kernel ACKs sshd locally within its
delayed-ACK time (<= 40 ms): measured there, connect + first command at 100 ms RTT 485 ms
instead of 665 ms, and two turns fewer; but +35 ms on a relay (or jump host) with no delay.

paramiko internals used here are listed, and checked once, in :mod:`.internals`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, cast

import paramiko
from paramiko.auth_handler import AuthHandler
from paramiko.common import (
    MSG_SERVICE_ACCEPT,
    MSG_USERAUTH_FAILURE,
    cMSG_CHANNEL_OPEN,
    cMSG_SERVICE_REQUEST,
)
from paramiko.message import Message

if TYPE_CHECKING:
    from wizard.remote.ssh.transport import QuickTransport

EARLY_METHODS = ("publickey", "password")


class _Capture:
    """Stands in for the transport while paramiko builds a USERAUTH_REQUEST: keeps the message
    instead of sending it; everything else (logging, agreed algorithms) goes to the transport."""

    def __init__(self, transport: Any) -> None:
        object.__setattr__(self, "_transport", transport)
        object.__setattr__(self, "sent", [])

    def _send_message(self, m: Message) -> None:
        self.sent.append(m)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_transport"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_transport"), name, value)


class PipelinedAuthHandler(AuthHandler):
    """paramiko's client AuthHandler, sending the USERAUTH_REQUEST without waiting for
    SERVICE_ACCEPT (paramiko's own code builds and signs it), plus the early CHANNEL_OPEN."""

    def _request_auth(self) -> None:
        # Called by AuthHandler.auth_* with transport.lock held, on the caller's thread.
        raw = cast(Any, self)
        transport = raw.transport
        capture = _Capture(transport)
        accept = Message()
        accept.add_string("ssh-userauth")
        accept.rewind()
        raw.transport = capture
        try:
            # paramiko's SERVICE_ACCEPT handler is where it builds (and signs) the request.
            AuthHandler._parse_service_accept(raw, accept)  # type: ignore[attr-defined]
        finally:
            raw.transport = transport
        service = Message()
        service.add_byte(cMSG_SERVICE_REQUEST)
        service.add_string("ssh-userauth")
        flight = [service, *capture.sent]
        if self.auth_method in EARLY_METHODS:
            early = getattr(transport, "open_early_channel", None)
            channel_open = early() if early is not None else None
            if channel_open is not None:
                flight.append(channel_open)
        # Built first, sent back to back: nothing waits between them.
        for m in flight:
            transport._send_message(m)
        _ack_at_once(getattr(transport, "sock", None))

    def _parse_service_accept(self, m: Message) -> None:
        m.get_text()  # the request it permits already left

    def _parse_userauth_failure(self, m: Message) -> None:
        # sshd answered (or will answer) the CHANNEL_OPEN behind this request with UNIMPLEMENTED.
        abandon = getattr(cast(Any, self).transport, "abandon_early_channel", None)
        if abandon is not None:
            abandon()
        cast(Any, super())._parse_userauth_failure(m)

    @property
    def _client_handler_table(self) -> dict[int, Any]:
        # Bound methods, looked up on every message: name ours explicitly, whatever paramiko's
        # table holds.
        table = dict(cast(Any, super())._client_handler_table)
        table[MSG_SERVICE_ACCEPT] = self._parse_service_accept
        table[MSG_USERAUTH_FAILURE] = self._parse_userauth_failure
        return table


class EarlyChannel:
    """A session channel whose CHANNEL_OPEN left behind a USERAUTH_REQUEST."""

    def __init__(self, transport: QuickTransport) -> None:
        """Register the channel with paramiko as ``open_channel`` does; the caller holds
        ``transport.lock`` and sends :attr:`message`."""
        raw = cast(Any, transport)
        window = raw._sanitize_window_size(None)
        packet = raw._sanitize_packet_size(None)
        self.chanid: int = raw._next_channel()
        self.message = Message()
        self.message.add_byte(cMSG_CHANNEL_OPEN)
        self.message.add_string("session")
        self.message.add_int(self.chanid)
        self.message.add_int(window)
        self.message.add_int(packet)
        self.chan = paramiko.Channel(self.chanid)
        raw._channels.put(self.chanid, self.chan)
        self.event = raw.channel_events[self.chanid] = threading.Event()
        raw.channels_seen[self.chanid] = True  # a late answer is ignored, not fatal
        cast(Any, self.chan)._set_transport(transport)
        cast(Any, self.chan)._set_window(window, packet)
        self.transport = transport
        self.abandoned = False

    def abandon(self) -> None:
        """Auth failed: sshd will never answer this open; forget it."""
        raw = cast(Any, self.transport)
        with self.transport.lock:
            raw._channels.delete(self.chanid)
            raw.channel_events.pop(self.chanid, None)
        self.abandoned = True
        self.event.set()

    def wait(self, timeout: float) -> paramiko.Channel:
        """The channel once sshd confirmed it (``open_channel``'s wait); raises SSHException
        when it was refused, abandoned, or the link went down."""
        deadline = time.monotonic() + timeout
        while not self.event.wait(0.1):
            if not self.transport.is_active():
                raise self.transport.get_exception() or paramiko.SSHException(
                    "Unable to open channel.")
            if time.monotonic() > deadline:
                raise paramiko.SSHException("Timeout opening channel.")
        if self.abandoned or cast(Any, self.transport)._channels.get(self.chanid) is None:
            raise paramiko.SSHException("The early channel was refused.")
        return self.chan


def _ack_at_once(sock: object) -> None:
    """sshd holds USERAUTH_SUCCESS until our ACK of SERVICE_ACCEPT arrives (see above). We send
    nothing in between, so that ACK would wait for the delayed-ACK timer (~40 ms, measured:
    connect 67 ms instead of 25 ms on loopback). Leaving "pingpong" (interactive) mode makes the
    kernel ACK a small segment as soon as paramiko reads it. Linux only; on a ProxyCommand or a
    jump channel the hop's own socket decides."""
    if isinstance(sock, socket.socket) and hasattr(socket, "TCP_QUICKACK"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
