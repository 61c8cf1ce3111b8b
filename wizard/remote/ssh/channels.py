"""Session channels without idle round trips: opened one ahead, exec sent without waiting.

``wizard.remote.ssh.remote.SshRemote._exec`` runs every command through here. Over a link with
latency every wait for sshd is a round trip, and a command used to cost three: the channel
open, the exec request's answer, the output. Two of them need not be waited for:

* :class:`SpareChannel` — while one command runs, the next session channel is already being
  opened (in a thread; paramiko's ``open_session`` blocks until sshd confirms), so the next
  command finds it confirmed. At most one spare is open; ``close`` drops it.
* :func:`send_exec` — the exec request, stdin and EOF leave together, as OpenSSH's own client
  sends them; a refused request closes the channel and is checked after the output.

Both use paramiko's public API except where ``exec_command`` itself does the same (noted);
without those internals (:mod:`.internals`) ``send_exec`` is ``exec_command``. The first spare
is the channel opened in the auth flight (:mod:`.pipeline`), when there is one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST
from paramiko.message import Message

from wizard.remote.ssh import internals


def send_exec(chan: paramiko.Channel, command: str) -> None:
    """``Channel.exec_command`` without waiting for sshd's answer (paramiko 3–5 internals,
    exactly as ``exec_command`` uses them). Check :func:`refused` once the output ended.
    Without those internals: ``exec_command`` (raises SSHException when refused)."""
    if not internals.SUPPORT.exec_nowait:
        chan.exec_command(command)
        return
    m = Message()
    m.add_byte(cMSG_CHANNEL_REQUEST)
    m.add_int(chan.remote_chanid)
    m.add_string("exec")
    m.add_boolean(True)
    m.add_string(command)
    raw = cast(Any, chan)
    raw._event_pending()
    raw.transport._send_user_message(m)


def refused(chan: paramiko.Channel) -> bool:
    """sshd answered the exec request with a failure (paramiko closed the channel)."""
    if not internals.SUPPORT.exec_nowait:
        return False  # exec_command raised already
    return chan.event.is_set() and not cast(Any, chan).event_ready


class _Opening:
    """One channel on its way: set ``done`` when sshd answered (``chan`` None: it failed)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.chan: paramiko.Channel | None = None
        self.abandoned = False
        self.confirmed_at = 0.0  # time.monotonic() when sshd's confirmation was seen


class SpareChannel:
    """One session channel opened ahead of need, in a daemon thread."""

    def __init__(self, transport: paramiko.Transport, timeout: float) -> None:
        self._transport = transport
        self._timeout = timeout
        self._next: _Opening | None = None

    def start(self, sent: Callable[[float], paramiko.Channel] | None = None) -> None:
        """Begin opening the next channel (no-op when one is on its way or the link is down).
        ``sent``: wait for a channel whose open already left (``EarlyChannel.wait``)."""
        if self._next is not None or not self._transport.is_active():
            return
        opening = self._next = _Opening()
        threading.Thread(target=self._open, args=(opening, sent), name="sockwizard-spare",
                         daemon=True).start()

    def _open(self, opening: _Opening,
              sent: Callable[[float], paramiko.Channel] | None) -> None:
        chan: paramiko.Channel | None = None
        with contextlib.suppress(Exception):  # the caller opens its own and words the error
            chan = (sent or self._open_session)(self._timeout)
        with opening.lock:
            if opening.abandoned and chan is not None:
                with contextlib.suppress(Exception):
                    chan.close()
                chan = None
            opening.chan = chan
            opening.confirmed_at = time.monotonic()
            opening.done.set()

    def _open_session(self, timeout: float) -> paramiko.Channel:
        return self._transport.open_session(timeout=timeout)

    def take(self, wait: float) -> paramiko.Channel | None:
        """The spare channel, once open (waiting up to ``wait``); None: open one yourself."""
        opening, self._next = self._next, None
        if opening is None:
            return None
        opening.done.wait(wait)
        with opening.lock:
            if not opening.done.is_set():  # sshd has not answered: it closes it when it does
                opening.abandoned = True
                return None
            chan = opening.chan
        if chan is None or chan.closed or not chan.active:
            return None
        return chan

    def take_fresh(self, max_age: float) -> paramiko.Channel | None:
        """The spare channel if sshd confirmed it at most ``max_age`` seconds ago (then it is
        as good as one opened now: the link was alive that recently), waiting up to that long
        for one on its way; else None, and the spare stays for a later command."""
        opening = self._next
        if opening is None or not opening.done.wait(max_age):
            return None
        with opening.lock:
            chan = opening.chan
        if (chan is None or chan.closed or not chan.active
                or time.monotonic() - opening.confirmed_at > max_age):
            return None
        self._next = None
        return chan

    def close(self) -> None:
        chan = self.take(0)
        if chan is not None:
            with contextlib.suppress(Exception):
                chan.close()
