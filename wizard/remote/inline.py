"""A command's small stdin, carried in the command line itself (issue #15: one round trip).

OpenSSH's sshd opens a session channel with a window of 0 and opens it only once the exec
request is accepted (``session_input_channel_req``), so bytes for the command's stdin cannot
leave with the request: they wait a round trip for that WINDOW_ADJUST. Measured through the
bench's 100 ms relay, a deploy's activation (1.8 KB of config on stdin) sent its bytes one
round trip after its script. Folded into the command instead — ``printf '%s' BYTES | { CMD }``,
printf being the login shell's builtin — everything leaves in one packet.

Only :class:`FoldableInput` is folded: ``ShellRemote.run`` marks its ``input`` so, and the
sudo password (prepended to stdin as plain ``bytes``) never is: it must not appear in a
command line, where the host's local users can read it (``/proc/PID/cmdline``) while the
command runs. The same holds for the folded bytes: ``Remote.run``'s ``input`` is for what may
be seen like the command itself (a rendered config), never for secrets. Only text without
NUL (an argument cannot hold one), and only while the whole line stays under Linux's limit
for one argument (``MAX_ARG_STRLEN``, 128 KiB: sshd runs it as the login shell's ``-c``);
anything else goes on stdin as before. The scripts check what arrived (size and sha256)
either way.
"""

from __future__ import annotations

import shlex

FOLD_MAX_INPUT = 64 * 1024  # bytes of stdin folded at most
FOLD_MAX_LINE = 120_000  # the folded line's bytes, under MAX_ARG_STRLEN (131,072)


class FoldableInput(bytes):
    """stdin bytes that may travel inside the command line (not a secret)."""


def fold(line: str, stdin: bytes | None) -> str | None:
    """``line`` with ``stdin`` fed by the login shell's printf, or None (send it on stdin)."""
    if not isinstance(stdin, FoldableInput) or not stdin or len(stdin) > FOLD_MAX_INPUT:
        return None
    if stdin.find(b"\0") >= 0:
        return None
    try:
        text = stdin.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # A group, so that a line of several commands reads it as a whole; the newline ends a
    # trailing comment. printf's %s copies the argument byte for byte (no escapes).
    folded = f"printf '%s' {shlex.quote(text)} | {{ {line}\n}}"
    return folded if len(folded.encode("utf-8")) <= FOLD_MAX_LINE else None
