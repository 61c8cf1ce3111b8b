"""The host-side scripts that change a file: backup, activation (rename + validate + restore,
or for a watched file validate + rename), restore — and the one parser of what the
activation script answers.

Pure functions: the transaction runs them (``wizard.deploy.steps`` / ``recovery``) and the
dry run lists them (``wizard.deploy.plan``), from the same builders, so the plan cannot drift
from what runs. The lock, journal and temp-dir scripts are in ``wizard.deploy.hoststate``.

The activation script's outcome is its exit status, parsed once into ``Activation`` — the
statuses are chosen apart from sudo's 1 and a shell's 126/127 so that anything else means
"we cannot tell what happened".
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from wizard.deploy import history, hoststate
from wizard.deploy.history import INDEX_NAME


class Activation(Enum):
    """What the activation script did, from its exit status."""

    VALIDATED = 0  # renamed, and the checker accepted the new config
    RENAME_FAILED = 90  # the old file is untouched
    REFUSED_RESTORED = 91  # the checker refused; the old file is back
    REFUSED_RESTORE_FAILED = 92  # the checker refused, and putting the old file back failed
    CHANGED_MEANWHILE = 93  # the file is not the one backed up: nothing was done
    REFUSED_UNTOUCHED = 94  # the checker refused the temp file before the rename: no change
    UNKNOWN = -1  # anything else (sudo refused, the shell died): the state is unknown

    @classmethod
    def from_exit(cls, status: int) -> Activation:
        return next((a for a in cls if a.value == status and a is not cls.UNKNOWN),
                    cls.UNKNOWN)


@dataclass(frozen=True)
class ActivationReport:
    """The activation script's answer: its outcome, the host-measured times, the checker's
    output (our ``@@sw`` markers removed)."""

    outcome: Activation
    exit_status: int
    rename_s: float
    validate_s: float
    output: str


def parse_activation(exit_status: int, stdout: str, stderr: str,
                     total: float) -> ActivationReport:
    marks = dict(re.findall(r"^@@sw (checking|renamed|validated)(?: \d+)? (\d{6,})$", stdout,
                            re.M))
    output = re.sub(r"^@@sw .*\n?", "", stdout, flags=re.M) + stderr
    rename_s, validate_s = _split_time(marks, total)
    return ActivationReport(Activation.from_exit(exit_status), exit_status, rename_s,
                            validate_s, output)


def _split_time(marks: dict[str, str], total: float) -> tuple[float, float]:
    """(rename, validate) seconds from the script's nanosecond stamps, else all to validate.
    The checker ran between ``renamed`` and ``validated``, or (checked before the rename)
    between ``checking`` and ``validated``."""
    try:
        start = int(marks["checking"] if "checking" in marks else marks["renamed"])
        validated = int(marks["validated"])
    except (KeyError, ValueError):
        return 0.0, total
    validate = max(0.0, (validated - start) / 1e9)
    return max(0.0, total - validate), validate


def restore_lines(dest: str, backup: str | None, disable_cmds: Sequence[str],
                  reenable_cmds: Sequence[str] = ()) -> list[str]:
    """Shell lines that put the backup's bytes back at ``dest`` in one rename (or remove a
    file that did not exist before). Exit status 0 only when it worked. ``reenable_cmds``
    (a2ensite) run after the bytes are back when the change being undone had removed the file
    and disabled it (a rollback that put a file away)."""
    d = shlex.quote(dest)
    if backup is None:
        undo = " && ".join(f"{{ {cmd}; }} >/dev/null 2>&1" for cmd in disable_cmds) or ":"
        return [f"rm -f -- {d} && {{ {undo} || :; }}"]
    # Staged outside the destination's directory: no include glob can load it (hoststate).
    tdir = hoststate.temp_dir(dest)
    r = shlex.quote(posixpath.join(tdir, f"{hoststate.state_key(dest)}.restore"))
    redo = "".join(f" && {cmd}" for cmd in reenable_cmds)
    return [f"mkdir -p -m 0700 -- {shlex.quote(tdir)} && cp -p -- {shlex.quote(backup)} {r} "
            f"&& mv -f -- {r} {d}{redo}"]


def activation_script(tmp: str | None, dest: str, backup: str | None, validate_cmd: str,
                      enable_cmds: Sequence[str], disable_cmds: Sequence[str],
                      remove_cmds: Sequence[str] = (), reenable_cmds: Sequence[str] = (), *,
                      expect_sha: str | None = None, expect_absent: bool = False,
                      journal: Sequence[str] = (), clear_journal: str | None = None,
                      precheck: str | None = None) -> str:
    """Rename the uploaded temp file over ``dest`` (``tmp`` None: remove ``dest``), run the
    checker on the whole tree, and put the old file back at once if the checker refuses. One
    script, so that a dropped connection cannot separate the rename from the restore (HUP and
    PIPE are ignored).

    With ``precheck`` (a checker with ``{config}``, for a proxy that loads a changed file by
    itself: ``ProxyProfile.validate_before_rename``) the temp file is checked first, where it
    lies (``hoststate.temp_dir``: no include glob or watcher sees it); a refused one is
    removed and ``dest`` never touched (``Activation.REFUSED_UNTOUCHED``). An accepted one is
    renamed and not checked again (the same bytes, a checker that reads only that file); the
    rename's restore still covers a failing ``enable_cmds``.

    Before the rename it refuses (``Activation.CHANGED_MEANWHILE``) when ``dest`` is no longer
    the file that was backed up (``expect_sha``; ``expect_absent``: it must not exist) or is
    no longer a plain file, and writes the ``journal`` lines (``hoststate.journal_lines``); a
    refused config removes the journal again (``clear_journal``)."""
    d = shlex.quote(dest)
    guard = []
    prechecked = precheck is not None and tmp is not None
    if prechecked:
        # First of all: the hash re-check and the journal below stay next to the rename.
        q = shlex.quote(tmp or "")
        guard += [
            'echo "@@sw checking $(date +%s%N)"',
            f"out=$( {{ {(precheck or '').replace('{config}', q)} ; }} 2>&1 ); st=$?",
            'echo "@@sw validated $st $(date +%s%N)"',
            f'if [ "$st" -ne 0 ]; then rm -f -- {q}; printf "%s\\n" "$out"; '
            f"exit {Activation.REFUSED_UNTOUCHED.value}; fi",
            'checked=$out',
        ]
    if expect_sha is not None or expect_absent:
        t = f"rm -f -- {shlex.quote(tmp)}; " if tmp is not None else ""
        refuse = f"{{ echo '@@sw changed'; {t}exit {Activation.CHANGED_MEANWHILE.value}; }}"
        # A plain file first: sha256sum of a FIFO that appeared meanwhile would block.
        guard.append(f"if [ -L {d} ] || {{ [ -e {d} ] && [ ! -f {d} ]; }}; then {refuse}; fi")
        if expect_absent:
            guard.append(f"[ ! -e {d} ] || {refuse}")
        else:
            guard.append(f"cur=$(sha256sum -- {d} 2>/dev/null) || cur=")
            guard.append(f'[ "${{cur%% *}}" = {shlex.quote(expect_sha or "")} ] || {refuse}')
    if tmp is not None:
        # The temp file was written elsewhere (hoststate.temp_dir): give it the mode and owner
        # of the file it replaces.
        q = shlex.quote(tmp)
        guard.append(f"if [ -e {d} ]; then chmod --reference={d} -- {q} 2>/dev/null; "
                     f"chown --reference={d} -- {q} 2>/dev/null; fi")
    guard.extend(journal)
    unjournal = f"rm -f -- {shlex.quote(clear_journal)}; " if clear_journal else ""
    if tmp is None:
        undo = "".join(f" && {{ {cmd}; }} >/dev/null 2>&1" for cmd in remove_cmds)
        put = f"{{ rm -f -- {d}{undo}; }}"
    else:
        put = f"mv -f -- {shlex.quote(tmp)} {d}"
    # Putting a removed file back also enables it again (remove_cmds disabled it).
    reenable = reenable_cmds if tmp is None else ()
    restore = " && ".join(restore_lines(dest, backup, disable_cmds, reenable))
    enable = "".join(f"{cmd} && " for cmd in enable_cmds)
    check = (["out=$( { " + (" && ".join(enable_cmds) or ":") + " ; } 2>&1 ); st=$?",
              'out="$checked$out"'] if prechecked else
             [f"out=$( {{ {enable}{validate_cmd} ; }} 2>&1 ); st=$?",
              'echo "@@sw validated $st $(date +%s%N)"'])
    return "\n".join([
        "trap '' HUP PIPE",
        *guard,
        f"{put} || {{ echo '@@sw rename failed'; {unjournal}"
        f"exit {Activation.RENAME_FAILED.value}; }}",
        'echo "@@sw renamed $(date +%s%N)"',
        *check,
        'if [ "$st" -ne 0 ]; then',
        f"  if {restore}; then {unjournal}rs={Activation.REFUSED_RESTORED.value}; "
        f"else rs={Activation.REFUSED_RESTORE_FAILED.value}; fi",
        '  printf "%s\\n" "$out"',
        '  exit "$rs"',
        "fi",
        'printf "%s\\n" "$out"',
        "exit 0",
    ])


def backup_script(dest: str, backup_dir: str, backup: str | None, entry: dict[str, Any]) -> str:
    """Copy ``dest`` into the backup dir (bytes, mode, owner), print its sha256, and append
    the run's provisional history record (``wizard.deploy.history``)."""
    lines = ["set -e", "umask 077", f"mkdir -p -- {shlex.quote(backup_dir)}"]
    if backup is not None:
        lines.append(f"cp -p -- {shlex.quote(dest)} {shlex.quote(backup)}")
        lines.append(f"sha256sum -- {shlex.quote(backup)}")
    lines += history.append_lines(posixpath.join(backup_dir, INDEX_NAME), entry)
    return "\n".join(lines)
