"""The paramiko internals sockwizard leans on, checked once: every speed-up has a public fallback.

paramiko has no public call that sends a request without waiting for its answer, and each such
wait is a round trip on a link with latency. Where the modules beside this one send anyway,
they use paramiko's private methods the way paramiko itself does. pyproject.toml bounds paramiko
to the majors tested; should a release inside (or outside) that bound rename one of them, the
feature that needs it is switched off here, at import, and its caller takes the public path:

* ``exec_nowait`` — :func:`.channels.send_exec`; else ``Channel.exec_command`` (it waits for
  sshd's answer: one more round trip per command).
* ``ignore_reply`` — :class:`.transport.QuickTransport` answers sshd's ``hostkeys-00`` request
  with SSH_MSG_IGNORE; else paramiko's own handling (a delayed ACK on the first channel).
* ``pipelined_auth`` — :class:`.pipeline.PipelinedAuthHandler` sends the USERAUTH_REQUEST right
  behind the SERVICE_REQUEST; else paramiko's AuthHandler (waits for SERVICE_ACCEPT).
* ``early_channel`` — the first session channel's CHANNEL_OPEN rides behind the USERAUTH_REQUEST
  (:mod:`.pipeline`); else the first command opens its channel after auth.
* ``sftp_fsync`` — ``SshRemote._fsync`` (fsync@openssh.com); else no fsync (rename still atomic).

``SUPPORT`` is what the callers read; tests rename an entry of ``NEEDS`` and call
:func:`detect` to show each fallback still deploys.
"""

from __future__ import annotations

from dataclasses import dataclass

import paramiko
from paramiko.auth_handler import AuthHandler

# Attributes set in __init__ (not visible on the class) are checked on a bare instance.
_CHANNEL = paramiko.Channel(0)

NEEDS: dict[str, tuple[tuple[object, str], ...]] = {
    "exec_nowait": ((paramiko.Channel, "_event_pending"),
                    (paramiko.Transport, "_send_user_message"), (_CHANNEL, "event_ready")),
    "ignore_reply": ((paramiko.Transport, "_parse_global_request"),
                     (paramiko.Transport, "_send_message")),
    "pipelined_auth": ((AuthHandler, "_request_auth"), (AuthHandler, "_parse_service_accept"),
                       (AuthHandler, "_parse_userauth_failure"),
                       (AuthHandler, "_client_handler_table"),
                       (paramiko.Transport, "_send_message")),
    "early_channel": ((paramiko.Transport, "_next_channel"),
                      (paramiko.Transport, "_sanitize_window_size"),
                      (paramiko.Transport, "_sanitize_packet_size"),
                      (paramiko.Channel, "_set_transport"), (paramiko.Channel, "_set_window")),
    "sftp_fsync": ((paramiko.SFTPClient, "_request"),),
}


@dataclass(frozen=True)
class Support:
    exec_nowait: bool
    ignore_reply: bool
    pipelined_auth: bool
    early_channel: bool
    sftp_fsync: bool


def detect() -> Support:
    """Which features this paramiko allows (``early_channel`` also needs ``pipelined_auth``)."""
    found = {feature: all(hasattr(owner, name) for owner, name in needs)
             for feature, needs in NEEDS.items()}
    found["early_channel"] = found["early_channel"] and found["pipelined_auth"]
    return Support(**found)


SUPPORT = detect()
