"""What a deploy keeps on the host besides the config: its lock, its journal, its temp files.

Called by the deploy transaction only (``wizard.deploy.plan`` builds the commands from
here, ``steps`` parses the answers). Everything here is pure: shell scripts for
the host and parsers of what they print, so the dry run can show them and the tests can read
them. Decisions:

* **The destination is inspected before anything reads it.** A symlink is resolved on the
  host (``readlink -f``); the target must be a regular file (or absent) — never a device, a
  FIFO or a directory (a site "masked" as ``/dev/null``, or ``/dev/zero`` that never ends) —
  and must stay inside the destination's config tree (the parent of its directory:
  ``sites-enabled/x -> ../sites-available/x`` is Debian's layout) and be readable by others,
  unless ``--follow-symlink`` says otherwise. A refusal happens before the file is read, so a
  secret elsewhere is never copied into a backup.
* **One deploy per file at a time**: a lock directory (``mkdir`` is atomic) under the host's
  backup dir, per destination, holding who took it. Taken optimistically: the run reads the
  destination without it (``peek_script``, read-only) and the activation script takes it
  first, then checks the file is still the one read (``scripts.LockStep``). The holder is the
  process that runs our commands on the host (the SSH session's ``sshd``, or sockwizard itself
  for ``--host local``) with its start time, so a lock whose session is gone — a killed
  client, a cut connection — is stale at once; any lock older than ``LOCK_STALE_S`` is stale
  too. The stale check and the takeover run under ``flock`` when the host has it, so two
  takers cannot both win.
* **A journal before activation.** The activation script writes ``pending/<key>.json`` (new and
  old sha256, the backup) before it renames; the transaction removes it once the outcome is
  known (deployed, rolled back, kept). A rerun that finds it with the new bytes on disk knows
  the config was validated but maybe never reloaded (sockwizard killed in between), and
  finishes the job instead of calling it "unchanged".
* **Temp files live outside every include glob**: in ``.sockwizard-tmp/`` beside the
  destination's directory (same filesystem in practice, so the rename stays atomic), never in
  the directory itself — Caddy's ``import sites/*`` is a Go glob and matches dotfiles, so no
  name in that directory is safe. Leftovers of this destination are swept under the lock.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import shlex
from dataclasses import dataclass
from typing import Any

from wizard.deploy import readback

TEMP_DIR_NAME = ".sockwizard-tmp"
LOCK_STALE_S = 30 * 60  # longer than any deploy (npm install's timeout is 120 s)
# Process names between the command we run and the session that holds the connection.
_WRAPPERS = "sh|bash|dash|zsh|ksh|mksh|busybox|sudo|su|env|timeout|setsid|nice|ionice|flock"


def state_key(real_dest: str) -> str:
    """A file-name-safe key for one destination (readable, plus a hash against collisions)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", real_dest.strip("/"))[-80:] or "root"
    return f"{readable.lstrip('.')}-{hashlib.sha256(real_dest.encode()).hexdigest()[:8]}"


def tree_root(real_dest: str) -> str:
    """The config tree a destination belongs to: the parent of its directory
    (``/etc/nginx`` for ``/etc/nginx/sites-enabled/x``), or the directory itself when that
    parent would be ``/`` or a top-level directory (``/opt/app/proxy.js`` -> ``/opt/app``)."""
    directory = posixpath.dirname(real_dest) or "/"
    parent = posixpath.dirname(directory)
    return parent if parent.count("/") >= 2 else directory


def temp_dir(real_dest: str) -> str:
    """Where the temp files of a deploy to ``real_dest`` go (outside its directory)."""
    directory = posixpath.dirname(real_dest) or "/"
    parent = posixpath.dirname(directory)
    base = parent if parent != "/" and parent != directory else directory
    return posixpath.join(base, TEMP_DIR_NAME)


def lock_path(backup_dir: str, real_dest: str) -> str:
    return posixpath.join(backup_dir, "locks", state_key(real_dest))


def journal_path(backup_dir: str, real_dest: str) -> str:
    return posixpath.join(backup_dir, "pending", f"{state_key(real_dest)}.json")


# --------------------------------------------------------------------------------------------
# The destination
# --------------------------------------------------------------------------------------------


def inspect_script(dest: str) -> str:
    """Print what ``dest`` is: a link?, what it resolves to, and the target's type and mode.
    Reads no file content (a FIFO or /dev/zero never blocks ``stat``)."""
    d = shlex.quote(dest)
    return "\n".join([
        f"if [ -L {d} ]; then echo link=1; fi",
        f"r=$(readlink -f -- {d}) || r=",
        'printf "real=%s\\n" "$r"',
        '[ -n "$r" ] || exit 0',
        'if [ -L "$r" ]; then echo type=link',
        'elif [ -f "$r" ]; then echo "type=file $(stat -c %a -- "$r")"',
        'elif [ -e "$r" ]; then echo "type=$(stat -c %F -- "$r" | tr " " _)"',
        "else echo type=absent; fi",
    ])


def gather_script(dest: str, real_dest: str, then: str, read: list[str], token: str) -> str:
    """The destination inspected, and — when that alone shows nothing to refuse (not a
    symlink, a regular file at ``real_dest`` or none at all) — in the same script ``then``
    (``peek_script``: the lock seen, the journal) and the file printed (``read``:
    ``wizard.deploy.readback``), after the line ``claim_marker(token)`` (the run's random
    token: no path the inspection prints can forge it). Otherwise the caller decides on the
    inspection alone; nothing is read before that."""
    d, r = shlex.quote(dest), shlex.quote(real_dest)
    return "\n".join([
        "(", inspect_script(dest), ")",
        f"r=$(readlink -f -- {d} 2>/dev/null) || r=",
        f'if [ ! -L {d} ] && {{ [ "$r" = {r} ] || [ -z "$r" ]; }} && '
        f"{{ [ -f {d} ] || [ ! -e {d} ]; }}; then",
        f"echo {shlex.quote(claim_marker(token))}",
        "(", then, ")",
        *read,
        "fi",
    ])


def claim_marker(token: str) -> str:
    return f"@@sw claim {re.sub(r'[^0-9a-f]', '', token)}"


@dataclass(frozen=True)
class DestInfo:
    is_link: bool
    real: str  # "" when it cannot be resolved (a link loop)
    kind: str  # file, absent, character_special_file, fifo, directory, link, ...
    mode: int | None


def parse_inspect(stdout: str) -> DestInfo:
    fields: dict[str, str] = {}
    for line in stdout.splitlines():
        key, _, value = line.partition("=")
        fields.setdefault(key, value)
    kind, _, mode = fields.get("type", "unknown").partition(" ")
    return DestInfo(is_link="link" in fields, real=fields.get("real", ""), kind=kind,
                    mode=int(mode, 8) if re.fullmatch(r"[0-7]{3,4}", mode) else None)


def dest_problem(dest: str, info: DestInfo, *, follow_symlink: bool) -> str | None:
    """Why a deploy must not write through ``dest`` (None: it may)."""
    if not info.real.startswith("/"):
        return f"{dest} cannot be resolved (a symlink loop, or a missing directory on the way)"
    if info.kind not in ("file", "absent"):
        what = info.kind.replace("_", " ")
        return (f"{dest} resolves to {info.real}, which is a {what}, not a regular file"
                + (" (a masked site?)" if info.real == "/dev/null" else ""))
    if not info.is_link or follow_symlink:
        return None
    root = tree_root(dest)
    if not (info.real + "/").startswith(root.rstrip("/") + "/"):
        return (f"{dest} is a symlink to {info.real}, outside the config tree {root}")
    if info.mode is not None and not info.mode & 0o004:
        return (f"{dest} is a symlink to {info.real}, which others may not read (mode "
                f"{info.mode:04o}): not a config file")
    return None


# --------------------------------------------------------------------------------------------
# The lock (and the sweep and the journal, read under it)
# --------------------------------------------------------------------------------------------


def _holder_lines() -> list[str]:
    """Shell that sets $hp/$hs to the pid and start time of the process that holds our
    connection: walk up from our parent past shells and sudo."""
    return [
        "hp=$PPID",
        'while [ "$hp" -gt 1 ] 2>/dev/null; do',
        '  c=$(cat "/proc/$hp/comm" 2>/dev/null) || break',
        f'  case "$c" in {_WRAPPERS}) ;; *) break ;; esac',
        "  hp=$(sed 's/.*) //' \"/proc/$hp/stat\" | cut -d' ' -f2)",
        "done",
        "hs=$(sed 's/.*) //' \"/proc/$hp/stat\" 2>/dev/null | cut -d' ' -f20)",
    ]


def _owner_lines() -> list[str]:
    """Shell that reads the lock's owner line (``$owner``) and sets ``$stale`` when its holder
    is gone (another pid or start time, a zombie) or it is older than ``LOCK_STALE_S``. Needs
    ``$lock`` (the lock directory, quoted)."""
    return [
        "owner=$(head -c 400 \"$lock/owner\" 2>/dev/null | head -n 1)",
        "op=$(printf '%s' \"$owner\" | sed -n 's/^pid=\\([0-9]*\\) .*/\\1/p')",
        "os=$(printf '%s' \"$owner\" | sed -n 's/.* start=\\([0-9]*\\) .*/\\1/p')",
        "ot=$(printf '%s' \"$owner\" | sed -n 's/.* time=\\([0-9]*\\) .*/\\1/p')",
        "now=$(date +%s); stale=",
        'if [ -z "$op" ] || [ -z "$ot" ]; then',
        "  [ -n \"$(find \"$lock\" -maxdepth 0 -mmin +1 2>/dev/null)\" ] && stale=1",
        'elif [ $((now - ot)) -gt ' + str(LOCK_STALE_S) + ' ]; then stale=1',
        "else",
        # Same pid and start time, and not a zombie (PID 1 may reap those late).
        "  cs=$(sed 's/.*) //' \"/proc/$op/stat\" 2>/dev/null | cut -d' ' -f1,20)",
        '  case "$cs" in "Z "*|"X "*) stale=1 ;; *" $os") ;; *) stale=1 ;; esac',
        "fi",
    ]


def lock_lines(backup_dir: str, real_dest: str, token: str, client: str, *,
               held: str, failed: str) -> list[str]:
    """Shell that takes the lock for ``real_dest`` — or finds it already ours (``token``: a
    claim made apart earlier in the run) — printing ``@@sw locked`` (after ``@@sw stale
    OWNER`` when it took over a stale one) and setting ``$took`` when this script made it.
    A lock held by a live deploy prints ``@@sw held OWNER`` and runs ``held``; a lock that
    cannot be made runs ``failed``. Used by ``claim_script`` and, first of all, by the
    activation script (``wizard.deploy.scripts``)."""
    lock = shlex.quote(lock_path(backup_dir, real_dest))
    locks = shlex.quote(posixpath.join(backup_dir, "locks"))
    safe_client = re.sub(r"[^A-Za-z0-9._:@-]+", "_", client)[:100]
    token = re.sub(r"[^0-9a-f]", "", token)
    return [
        f"lock={lock}; took=",
        f"( umask 077; mkdir -p -- {locks} ) || {{ {failed}; }}",
        *_holder_lines(),
        f"me=\"pid=$hp start=$hs time=$(date +%s) token={token} client={safe_client}\"",
        # flock serialises the stale check and the takeover; mkdir alone stays atomic.
        f"if command -v flock >/dev/null 2>&1; then exec 9>{locks}/.guard; flock -w 10 9; fi",
        "take() {",
        '  ( umask 077; mkdir -- "$lock" ) 2>/dev/null || return 1',
        "  ( umask 077; printf '%s\\n' \"$me\" > \"$lock/owner\" ); took=1",
        "}",
        f"if grep -qs {shlex.quote('token=' + token + ' ')} \"$lock/owner\"; then :",
        "elif ! take; then",
        *("  " + line for line in _owner_lines()),
        f'  if [ -z "$stale" ]; then echo "@@sw held $owner"; {held}; fi',
        '  rm -rf -- "$lock"',
        '  echo "@@sw stale $owner"',
        f'  take || {{ echo "@@sw held (taken meanwhile)"; {held}; }}',
        "fi",
        "exec 9>&-",
        "echo '@@sw locked'",
    ]


def sweep_lines(real_dest: str) -> list[str]:
    """Under the lock: remove this destination's leftover temp files (others may be
    mid-deploy) and make the temp dir."""
    key = state_key(real_dest)
    tdir = shlex.quote(temp_dir(real_dest))
    ddir = shlex.quote(posixpath.dirname(real_dest) or "/")
    legacy = shlex.quote(f".{posixpath.basename(real_dest)}.sockwizard-") + "*.tmp"
    return [
        f"if [ -d {tdir} ]; then find {tdir} -mindepth 1 -maxdepth 1 \\( -name "
        f"{shlex.quote(key + '.*')} -o -name {shlex.quote('.' + key + '.*')} \\) "
        "-exec rm -rf -- {} + ; fi",
        f"mkdir -p -m 0700 -- {tdir}",
        f"rm -f -- {ddir}/{legacy}",
    ]


def _journal_lines(backup_dir: str, real_dest: str) -> list[str]:
    journal = shlex.quote(journal_path(backup_dir, real_dest))
    return [f"if [ -f {journal} ]; then printf '@@sw journal %s\\n' \"$(head -c 8192 {journal} "
            "| tr -d '\\n')\"; fi"]


def claim_script(backup_dir: str, real_dest: str, token: str, client: str) -> str:
    """Take the lock for ``real_dest`` (or report who holds it), sweep this destination's
    leftover temp files, and print its journal. Prints ``@@sw locked``, ``@@sw stale OWNER``
    then ``@@sw locked``, or ``@@sw held OWNER``; then ``@@sw journal JSON`` when one exists.
    Run apart only when something is written before the activation (prepare, a companion's
    upload) or to finish an interrupted run; otherwise the activation script locks."""
    return "\n".join([
        "umask 077",
        *lock_lines(backup_dir, real_dest, token, client, held="exit 0", failed="exit 1"),
        *[f"{line} || exit 1" if line.startswith("mkdir") else line
          for line in sweep_lines(real_dest)],
        *_journal_lines(backup_dir, real_dest),
        "exit 0",
    ])


def peek_script(backup_dir: str, dest: str, real_dest: str, token: str) -> str:
    """Read-only: the destination inspected and — when that alone shows nothing to refuse
    (``gather_script``'s rule) — after ``claim_marker(token)``: ``@@sw held OWNER`` when a
    live deploy holds its lock (a stale lock is not mentioned: the activation takes it over),
    its journal, and the file framed (``wizard.deploy.readback``). Creates nothing on the
    host: no lock, no temp dir, no index — so a run that stops after it (a dry run, a stock
    host without consent, no change) leaves no trace."""
    lock = shlex.quote(lock_path(backup_dir, real_dest))
    mine = shlex.quote("token=" + re.sub(r"[^0-9a-f]", "", token) + " ")
    peek = [
        f"lock={lock}",
        f'if [ -d "$lock" ] && ! grep -qs {mine} "$lock/owner"; then',
        *("  " + line for line in _owner_lines()),
        '  [ -n "$stale" ] || echo "@@sw held $owner"',
        "fi",
        *_journal_lines(backup_dir, real_dest),
    ]
    return gather_script(dest, real_dest, "\n".join(peek), readback.lines(real_dest), token)


@dataclass(frozen=True)
class Claim:
    locked: bool
    holder: str  # the owner line of the lock we found (held or stale)
    stale: bool
    journal: dict[str, Any] | None


def parse_claim(stdout: str) -> Claim:
    locked = stale = False
    holder = ""
    journal: dict[str, Any] | None = None
    for line in stdout.splitlines():
        if line == "@@sw locked":
            locked = True
        elif line.startswith("@@sw held "):
            holder = line[len("@@sw held "):]
        elif line.startswith("@@sw stale "):
            holder, stale = line[len("@@sw stale "):], True
        elif line.startswith("@@sw journal "):
            try:
                value = json.loads(line[len("@@sw journal "):])
            except ValueError:
                value = None
            journal = value if isinstance(value, dict) else {}
    return Claim(locked, holder, stale, journal)


def describe_owner(owner: str) -> str:
    """``pid=.. start=.. time=.. token=.. client=..`` as words for a message."""
    fields = dict(re.findall(r"(\w+)=(\S+)", owner))
    parts = []
    if fields.get("client"):
        parts.append(f"sockwizard on {fields['client']}")
    if fields.get("time", "").isdigit():
        from datetime import UTC, datetime

        when = datetime.fromtimestamp(int(fields["time"]), UTC)
        parts.append(f"since {when:%Y-%m-%d %H:%M:%S} UTC")
    if fields.get("pid"):
        parts.append(f"its session is process {fields['pid']} on the host")
    return ", ".join(parts) or (owner[:200] or "an unknown owner")


def release_script(backup_dir: str, real_dest: str, token: str, *, clear_journal: bool) -> str:
    """Drop our lock (only if it is still ours) and, when the outcome is known, the journal."""
    lock = shlex.quote(lock_path(backup_dir, real_dest))
    lines = []
    if clear_journal:
        lines.append(f"rm -f -- {shlex.quote(journal_path(backup_dir, real_dest))}")
    lines.append(f"if grep -qs {shlex.quote('token=' + token)} {lock}/owner; then "
                 f"rm -rf -- {lock}; fi")
    return "\n".join(lines)


def journal_lines(backup_dir: str, real_dest: str, record: dict[str, Any]) -> list[str]:
    """Shell that writes the journal atomically (part of the activation script)."""
    path = journal_path(backup_dir, real_dest)
    j, tmp = shlex.quote(path), shlex.quote(path + ".tmp")
    return [f"mkdir -p -- {shlex.quote(posixpath.dirname(path))}",
            f"printf '%s\\n' {shlex.quote(json.dumps(record, sort_keys=True))} > {tmp} "
            f"&& mv -f -- {tmp} {j}"]
