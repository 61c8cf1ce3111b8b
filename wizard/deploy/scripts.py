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

import hashlib
import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from wizard.deploy import history, hoststate
from wizard.deploy.history import INDEX_NAME
from wizard.deploy.hostclock import CLOCK_LINES, UNTIMED, Timeline, mark
from wizard.remote import guarded


class Activation(Enum):
    """What the activation script did, from its exit status."""

    VALIDATED = 0  # renamed, and the checker accepted the new config
    RENAME_FAILED = 90  # the old file is untouched
    REFUSED_RESTORED = 91  # the checker refused; the old file is back
    REFUSED_RESTORE_FAILED = 92  # the checker refused, and putting the old file back failed
    CHANGED_MEANWHILE = 93  # the file is not the one backed up: nothing was done
    REFUSED_UNTOUCHED = 94  # the checker refused the temp file before the rename: no change
    UPLOAD_FAILED = 95  # the bytes on stdin did not arrive whole: no change, no temp file left
    BACKUP_FAILED = 96  # the backup could not be made, or differs from the file read: no change
    # Before anything else (``LockStep``): nothing was changed, the lock not kept.
    CHANGED_SINCE_READ = 97  # the file is not the one the client read (compare-and-swap)
    LOCK_HELD = 98  # another live deploy holds the destination's lock
    LOCK_FAILED = 99  # the lock could not be made (the backup dir is not writable)
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
    upload_s: float = 0.0
    uploaded: bool = False  # the streamed bytes were written whole (``upload_lines``)
    reload: Reload | None = None  # the reload that ran after a validated config
    # After a refused config: the sha256 of what is at the destination now ("absent": none).
    restored_sha: str | None = None
    # The sha256 of each backup the script made, in order (``Backup.sums``); ``backup_fault``:
    # "failed" (the copy failed) or "mismatch" (it is not the file read), with BACKUP_FAILED.
    backup_sums: tuple[str, ...] = ()
    backup_fault: str | None = None
    backup_s: float = 0.0
    # The lock step (``LockStep``): who holds it (LOCK_HELD), or whose stale one was taken.
    lock_holder: str = ""
    lock_stale: bool = False
    # The marks the times come from: the clock's resolution, the lock's span (``locked``),
    # the script's whole host-side span and the rest of the wait (``hostclock.Timeline``).
    times: Timeline = UNTIMED


@dataclass(frozen=True)
class Reload:
    """What the reload run by the activation script did (``activation_script(reload=...)``):
    its exit status (137: killed by its timeout), seconds, and its own output."""

    exit_status: int
    seconds: float
    output: str
    resolution: float = 0.0  # the host clock's step that timed it (``hostclock.Timeline``)

    @property
    def hung(self) -> bool:
        return self.exit_status in (124, 128 + 9)  # GNU timeout: TERM'd, or KILLed with itself


def parse_activation(exit_status: int, stdout: str, stderr: str,
                     total: float) -> ActivationReport:
    """The activation script's answer; ``total``: the client's seconds waiting for it. Each
    step's time is its own host-side span (``hostclock.Timeline``), the rest ``wait_s``."""
    stdout, reloaded, reload_out = stdout.partition("\n@@sw reloaded ")
    head = re.match(r"(-?\d{1,4}) (\d{1,20})\n", reload_out) if reloaded else None
    times = Timeline.parse(stdout + (f"\n@@sw reloaded {head.group(0)}" if head else ""), total)
    output = re.sub(r"^@@sw .*\n?", "", stdout, flags=re.M) + stderr
    reload = None if head is None else Reload(int(head.group(1)), times.step("reloaded"),
                                              reload_out[head.end():], times.resolution)
    restored = re.search(r"^@@sw restored ([0-9a-f]{64}|absent|other)$", stdout, re.M)
    fault = re.search(r"^@@sw backup (failed|mismatch)$", stdout, re.M)
    holder = re.search(r"^@@sw (held|stale) (.*)$", stdout, re.M)
    return ActivationReport(Activation.from_exit(exit_status), exit_status,
                            times.step("renamed"), times.step("validated"), output,
                            times.step("uploaded"), times.has("uploaded"), reload,
                            restored.group(1) if restored else None,
                            tuple(re.findall(r"^@@sw backup ([0-9a-f]{64})$", stdout, re.M)),
                            fault.group(1) if fault else None, times.step("backedup"),
                            holder.group(2)[:400] if holder else "",
                            holder is not None and holder.group(1) == "stale", times)


def restore_lines(dest: str, backup: str | None, disable_cmds: Sequence[str],
                  reenable_cmds: Sequence[str] = (), *, old_sha: str | None = None
                  ) -> list[str]:
    """Shell lines that put the backup's bytes back at ``dest`` in one rename (or remove a
    file that did not exist before). Exit status 0 only when it worked. ``reenable_cmds``
    (a2ensite) run after the bytes are back when the change being undone had removed the file
    and disabled it (a rollback that put a file away). ``old_sha``: a ``dest`` that is still
    that plain file is left as it is — the backup is made by the activation script itself,
    so a run that never got that far has none, and nothing to undo."""
    d = shlex.quote(dest)
    if backup is None:
        undo = " && ".join(f"{{ {cmd}; }} >/dev/null 2>&1" for cmd in disable_cmds) or ":"
        return [f"rm -f -- {d} && {{ {undo} || :; }}"]
    # Staged outside the destination's directory: no include glob can load it (hoststate).
    tdir = hoststate.temp_dir(dest)
    r = shlex.quote(posixpath.join(tdir, f"{hoststate.state_key(dest)}.restore"))
    redo = "".join(f" && {cmd}" for cmd in reenable_cmds)
    t = shlex.quote(tdir)
    put = (f"{{ [ -d {t} ] || mkdir -p -m 0700 -- {t}; }} && cp -p -- {shlex.quote(backup)} {r} "
           f"&& mv -f -- {r} {d}{redo}")
    if old_sha is None:
        return [put]
    return [f"{{ [ -f {d} ] && [ ! -L {d} ] && cur=$(sha256sum < {d}) && "
            f"[ \"${{cur%% *}}\" = {shlex.quote(old_sha)} ]; }} || {{ {put}; }}"]


@dataclass(frozen=True)
class CompanionScript:
    """A change made with the file (``wizard.deploy.companions``), as shell text: ``guard``
    is true while it is as backed up, ``put`` makes it, ``undo`` puts it back exactly (also
    when it never happened); ``tmp`` is its uploaded temp file, removed if nothing happens."""

    guard: str
    put: str
    undo: str
    tmp: str | None = None


@dataclass(frozen=True)
class LockStep:
    """What the activation script does first (optimistic concurrency: the run read the
    destination without a lock, ``hoststate.peek_script``): take the lock
    (``hoststate.lock_lines``), check that the destination is still the file read
    (``expect_sha``; None: it must still be absent), then sweep this destination's leftover
    temp files. A held lock or a changed file: what it took is given back, the bytes on
    stdin (``drain``) are read and dropped, and it exits ``LOCK_HELD`` / ``CHANGED_SINCE_READ``
    (``LOCK_FAILED``: no lock could be made) — nothing changed."""

    backup_dir: str
    token: str
    client: str
    expect_sha: str | None
    drain: int = 0


def lock_step_lines(step: LockStep, dest: str) -> list[str]:
    d = shlex.quote(dest)
    drain = f"head -c {int(step.drain)} >/dev/null; " if step.drain else ""
    give_back = '[ -z "$took" ] || rm -rf -- "$lock"; '

    def stop(outcome: Activation, words: str) -> str:
        return f"{give_back}{drain}echo '@@sw {words}'; exit {outcome.value}"

    if step.expect_sha is None:
        same = f"[ ! -e {d} ] && [ ! -L {d} ]"
    else:
        # A plain file first: sha256sum of a FIFO that appeared meanwhile would block.
        same = (f"[ -f {d} ] && [ ! -L {d} ] && cur=$(sha256sum < {d}) && "
                f"[ \"${{cur%% *}}\" = {shlex.quote(step.expect_sha)} ]")
    return [
        *hoststate.lock_lines(step.backup_dir, dest, step.token, step.client,
                              held=f"{drain}exit {Activation.LOCK_HELD.value}",
                              failed=f"{drain}echo '@@sw lock failed'; "
                                     f"exit {Activation.LOCK_FAILED.value}"),
        f"{same} || {{ {stop(Activation.CHANGED_SINCE_READ, 'changed since read')}; }}",
        *hoststate.sweep_lines(dest),
    ]


def activation_script(tmp: str | None, dest: str, backup: str | None, validate_cmd: str,
                      enable_cmds: Sequence[str], disable_cmds: Sequence[str],
                      remove_cmds: Sequence[str] = (), reenable_cmds: Sequence[str] = (), *,
                      expect_sha: str | None = None, expect_absent: bool = False,
                      journal: Sequence[str] = (), clear_journal: str | None = None,
                      precheck: str | None = None,
                      companions: Sequence[CompanionScript] = (),
                      upload: Upload | None = None,
                      reload: tuple[str, float] | None = None,
                      backup_first: Backup | None = None,
                      lock: LockStep | None = None) -> str:
    """Rename the uploaded temp file over ``dest`` (``tmp`` None: remove ``dest``), run the
    checker on the whole tree, and put the old file back at once if the checker refuses. One
    script, so that a dropped connection cannot separate the rename from the restore (HUP and
    PIPE are ignored).

    With ``precheck`` (a checker with ``{config}``, for a proxy that loads a changed file by
    itself: ``ProxyProfile.validate_before_rename``) the temp file is checked first, where it
    lies (``hoststate.temp_dir``: no include glob or watcher sees it); a refused one is
    removed and ``dest`` never touched (``Activation.REFUSED_UNTOUCHED``). An accepted one is
    renamed and not checked again (the same bytes, a checker that reads only that file) unless
    ``companions`` changed other files with it; the rename's restore still covers a failing
    ``enable_cmds``.

    Before the rename it refuses (``Activation.CHANGED_MEANWHILE``) when ``dest`` is no longer
    the file that was backed up (``expect_sha``; ``expect_absent``: it must not exist) or is
    no longer a plain file, and writes the ``journal`` lines (``hoststate.journal_lines``); a
    refused config removes the journal again (``clear_journal``).

    ``companions`` (the main config's include line, a default site disabled) are checked with
    the file, made just before its rename, and undone with it: on a refused config, and when
    the rename itself fails; a temp file refused before the rename takes their temp files
    with it (none was made).

    With ``upload`` the new bytes come on stdin, in the same channel (no separate upload
    round trips): written to ``tmp`` first and checked against their size and sha256; bytes
    that do not arrive whole (a cut connection) end the script with
    ``Activation.UPLOAD_FAILED`` before anything else happened.

    With ``reload`` (command, seconds) a validated config is reloaded in the same script, under
    its own ``timeout``: ``@@sw reloaded STATUS NS`` then the reload's output end the stdout
    (``ActivationReport.reload``); the exit status stays the activation's. A refused config is
    never reloaded.

    With ``backup_first`` the backup (``backup_section``) is made right after the upload and
    before anything else: a backup that fails or does not match the file read ends the script
    with ``Activation.BACKUP_FAILED`` — nothing changed, no temp file left.

    With ``lock`` (``LockStep``) the script first takes the destination's lock and checks the
    file is still the one read, before the upload: the run read it without a lock."""
    d = shlex.quote(dest)
    # The clock first, to time the lock too — after the lock's first line ("lock=…"), which
    # the script's second line has always been.
    guard: list[str] = [*lock_step_lines(lock, dest)] if lock is not None else []
    guard[1:1] = [*CLOCK_LINES, mark("begin")]
    if lock is not None:
        guard.append(mark("locked"))
    temps = [t for t in (tmp, *(c.tmp for c in companions)) if t is not None]
    t = f"rm -f -- {' '.join(shlex.quote(x) for x in temps)}; " if temps else ""
    if upload is not None and tmp is not None:
        guard += upload_lines(tmp, upload, t)
    if backup_first is not None:
        guard += backup_section(backup_first, t)
    prechecked = precheck is not None and tmp is not None
    if prechecked:
        # First of all: the hash re-check and the journal below stay next to the rename. A
        # refused file leaves nothing behind: no companion was made, every temp file goes.
        q = shlex.quote(tmp or "")
        guard += [
            mark("checking"),
            f"out=$( {{ {(precheck or '').replace('{config}', q)} ; }} 2>&1 ); st=$?",
            mark("validated", "$st"),
            f'if [ "$st" -ne 0 ]; then {t}printf "%s\\n" "$out"; '
            f"exit {Activation.REFUSED_UNTOUCHED.value}; fi",
            'checked=$out',
        ]
    refuse = f"{{ echo '@@sw changed'; {t}exit {Activation.CHANGED_MEANWHILE.value}; }}"
    guard.extend(f"{{ {c.guard}; }} || {refuse}" for c in companions)
    if expect_sha is not None or expect_absent:
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
    restore = " && ".join([*restore_lines(dest, backup, disable_cmds, reenable),
                           *(c.undo for c in reversed(companions))])
    enable = "".join(f"{cmd} && " for cmd in enable_cmds)
    # Checked before the rename: only the enable commands run after it — unless companions
    # changed other files with it, which the tree's checker must see together.
    check = (["out=$( { " + (" && ".join(enable_cmds) or ":") + " ; } 2>&1 ); st=$?",
              'out="$checked$out"'] if prechecked and not companions else
             [f"out=$( {{ {enable}{validate_cmd} ; }} 2>&1 ); st=$?",
              mark("validated", "$st")])
    put = " && ".join([*(c.put for c in companions), put])
    undo = "".join(f"{c.undo}; " for c in reversed(companions))
    ctemps = [c.tmp for c in companions if c.tmp is not None]
    ct = f"rm -f -- {' '.join(shlex.quote(x) for x in ctemps)}; " if ctemps else ""
    return "\n".join([
        "trap '' HUP PIPE",
        *guard,
        f"{put} || {{ {undo}echo '@@sw rename failed'; {ct}{unjournal}"
        f"exit {Activation.RENAME_FAILED.value}; }}",
        mark("renamed"),
        *check,
        'if [ "$st" -ne 0 ]; then',
        f"  if {restore}; then {unjournal}rs={Activation.REFUSED_RESTORED.value}; "
        f"else rs={Activation.REFUSED_RESTORE_FAILED.value}; fi",
        # What is there now, so the caller need not read it back (``restored_sha``).
        f"  if [ -f {d} ] && [ ! -L {d} ]; then rh=$(sha256sum < {d}); rh=${{rh%% *}}; "
        f"elif [ ! -e {d} ] && [ ! -L {d} ]; then rh=absent; else rh=other; fi",
        '  echo "@@sw restored $rh"',
        '  printf "%s\\n" "$out"',
        '  exit "$rs"',
        "fi",
        'printf "%s\\n" "$out"',
        *(reload_lines(*reload) if reload is not None else ()),
        "exit 0",
    ])


def reload_lines(command: str, seconds: float) -> list[str]:
    """Reload the validated config (``activation_script``): under GNU ``timeout`` when the
    host has it, its output after the ``@@sw reloaded`` line."""
    limited = guarded(command, seconds)
    return [
        f"if command -v timeout >/dev/null 2>&1; then rout=$( {{ {limited} ; }} 2>&1 ); "
        f"else rout=$( {{ {command} ; }} 2>&1 ); fi; rst=$?",
        mark("reloaded", "$rst"),
        'printf "%s" "$rout"',
    ]


@dataclass(frozen=True)
class Upload:
    """The new file's bytes as the activation script receives them on stdin."""

    size: int
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> Upload:
        return cls(len(data), hashlib.sha256(data).hexdigest())


def upload_lines(tmp: str, upload: Upload, cleanup: str) -> list[str]:
    """Shell lines that write exactly ``upload.size`` bytes of stdin to ``tmp`` (0600 while it
    is written, then 0644 like a new config; the activation gives it the replaced file's mode
    and owner), check their sha256 and flush them to disk. ``cleanup`` removes every temp file
    of the run when the bytes are not whole."""
    q = shlex.quote(tmp)
    fail = f"{{ {cleanup}echo '@@sw upload failed'; exit {Activation.UPLOAD_FAILED.value}; }}"
    return [
        mark("start"),
        f"if [ -e {q} ] || [ -L {q} ]; then rm -f -- {q}; fi",
        f"( umask 077; head -c {int(upload.size)} > {q} ) || {fail}",
        f"got=$(sha256sum -- {q} 2>/dev/null) || got=",
        f'[ "${{got%% *}}" = {shlex.quote(upload.sha256)} ] || {fail}',
        f"chmod 0644 -- {q} && {{ sync -- {q} 2>/dev/null || sync; }} || {fail}",
        mark("uploaded"),
    ]


@dataclass(frozen=True)
class Backup:
    """The backup the activation script makes before it changes anything
    (``activation_script(backup=...)``): ``script`` (``backup_script``) and the sha256 each
    copy it makes must have — the bytes the client read — in the order it prints them."""

    script: str
    sums: tuple[str, ...]


def backup_script(dest: str, backup_dir: str, backup: str | None, entry: dict[str, Any],
                  extra: Sequence[str] = ()) -> str:
    """Copy ``dest`` into the backup dir (bytes, mode, owner), print its sha256, and append
    the run's provisional history record (``wizard.deploy.history``). ``extra``: the
    companions' backup lines (each prints its own sha256 after the file's)."""
    b = shlex.quote(backup_dir)
    lines = ["set -e", "umask 077", f"[ -d {b} ] || mkdir -p -- {b}"]
    if backup is not None:
        lines.append(f"cp -p -- {shlex.quote(dest)} {shlex.quote(backup)}")
        lines.append(f"sha256sum -- {shlex.quote(backup)}")
    lines.extend(extra)
    lines += history.append_lines(posixpath.join(backup_dir, INDEX_NAME), entry)
    return "\n".join(lines)


def backup_section(backup: Backup, cleanup: str) -> list[str]:
    """Shell lines of the activation script that run ``backup.script`` in a subshell (its
    ``set -e`` and umask stay there) and refuse to go on — every temp file removed
    (``cleanup``), nothing else done — unless it worked and each copy has the sha256 of the
    bytes the client read. Each copy's sha256 is printed as ``@@sw backup SHA`` for the client
    to check before it trusts the run (``ActivationReport.backup_sums``)."""
    fail = Activation.BACKUP_FAILED.value
    want = " ".join(backup.sums)
    return [
        f"bk=$( ( {backup.script}\n) 2>&1 ); bst=$?",
        # sha256sum's "HASH  PATH" lines become our markers (and $got, the hashes in order);
        # anything else is shown as is. `read` and `case`: no sed, no tr.
        "got=; while IFS= read -r swl; do case \"$swl\" in "
        f"{'[0-9a-f]' * 64}\"  \"*) swl=${{swl%%\"  \"*}}; got=\"$got$swl \"; "
        "echo \"@@sw backup $swl\" ;; *) printf '%s\\n' \"$swl\" ;; esac; done <<SWBK",
        "$bk",
        "SWBK",
        f'if [ "$bst" -ne 0 ]; then {cleanup}echo \'@@sw backup failed\'; exit {fail}; fi',
        f'[ "$got" = {shlex.quote(want + " " if want else "")} ] || '
        f"{{ {cleanup}echo '@@sw backup mismatch'; exit {fail}; }}",
        mark("backedup"),
    ]
