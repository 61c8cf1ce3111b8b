"""The host's deploy history (``index.jsonl``) and what ``sockwizard rollback`` may restore.

Pure: the transaction appends records with the shell lines built here (``append_lines``, part
of its backup and lock-release scripts: no extra round trip); ``wizard.deploy.backups`` reads
the file (``read_script``) and asks ``rollback_choice`` what to restore; ``sockwizard
history`` / ``rollback --list`` and the TUI's Deploy step show ``parse``'s records.

**The records.** Every deploy and every rollback that took the host-side lock appends one
line when it ends (its ``outcome``); a run that makes a backup also appends a provisional line
(outcome ``pending``) when it backs up, so a run killed in between is still on record. Lines
with the same ``id`` are one record; the last line wins. Who: ``by`` (local user@client host)
and ``ssh_user``. Each record says what the file held before (``sha256``, kept in ``backup``)
and after (``new_sha256``, ``config_id``), and what it changed beside it (``companions``:
the main config's include line, a default site disabled); a rollback also says which deploys
it ``undoes`` and which backup it ``restores``.

**The semantics** (per destination file, oldest record first). The *stack* is the deploys
whose change is in effect now:

================================  ===========================================================
record                            effect on the stack
================================  ===========================================================
deploy, ``deployed``              pushed
deploy, ``kept`` (--no-rollback)  pushed (a failed config, left live on purpose)
deploy, ``unchanged``             none: the file already had those bytes
deploy, ``rolled back``           none: it failed and the previous file was put back
deploy, ``failed``                none: it stopped before changing the file
deploy, ``rollback failed``       none: never a state to return to
rollback, ``deployed``/``unchanged``  the deploys it ``undoes`` are popped
rollback, anything else           none: the rollback itself was undone (or never ran)
``pending``/``interrupted``       as if it succeeded only when the next record of the file
                                  starts from its new bytes (or the file holds them now)
================================  ===========================================================

``rollback`` (no ``--to``) undoes the top of the stack, and also every ``kept`` deploy that
would then be on top (it never re-applies a config that failed), restoring the file the
lowest undone deploy had backed up: run twice, it goes further back, then says there is
nothing left. It never re-applies a config that failed or that a rollback went away from:
those are never on the stack. ``rollback --to ID`` returns to the config deploy ``ID`` put in
place: ``ID`` must be on the stack (a ``deployed`` one, not the top), and everything above it
is undone, restoring the backup the deploy right above it made. Either way the undone
deploys' companions go back as they were before the oldest of them (``Choice.companions``).

**Hostile input.** The index is read through ``tail -c MAX_BYTES`` (a partial first line is
dropped); lines longer than ``MAX_LINE`` or that are not JSON objects are skipped (a torn
last line too); every field is type-checked and cut; at most ``MAX_RECORDS`` are kept.
Appends run under ``flock`` when the host has it and first end a torn last line, so a crash
never glues two records together.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

INDEX_NAME = "index.jsonl"
MAX_BYTES = 4 * 1024 * 1024
MAX_LINE = 16 * 1024
MAX_RECORDS = 5000
_MAX_STR = 4096
_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,40}")
_SHA_RE = re.compile(r"[0-9a-f]{64}")

# Outcomes (``wizard.deploy.Outcome`` values, plus two of the index's own).
PENDING = "pending"  # backed up, outcome not (yet) recorded
INTERRUPTED = "interrupted"  # Ctrl-C / a crash: the run ended without an outcome
_PUSHES = {"deployed", "kept"}
_ROLLBACK_DONE = {"deployed", "unchanged"}
_UNKNOWN = {PENDING, INTERRUPTED}

_STR_FIELDS = ("time", "kind", "dest", "outcome", "by", "ssh_user", "config_id",
               "old_config_id", "backup", "sha256", "new_sha256", "to", "restores", "proxy",
               "path", "validate_cmd", "reload_cmd", "probe_url", "host", "local")
_LIST_FIELDS = ("undoes", "enable_cmds", "disable_cmds")
# A deploy's changes beside the file (``wizard.deploy.companions``: a main config edited, a
# default site disabled), as ``Companion.entry`` writes them.
_COMPANION_FIELDS = ("path", "backup", "sha256", "new_sha256", "old_target", "new_target",
                     "on_cmd", "off_cmd", "restart_cmd")
_MAX_COMPANIONS = 8
_BEFORE = ("backup", "sha256", "old_target")  # a companion's state before its deploy


@dataclass(frozen=True)
class Record:
    """One deploy or rollback, as the host recorded it (every field checked)."""

    id: str
    time: str
    kind: str  # "deploy" or "rollback"
    dest: str
    outcome: str
    data: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def get(self, key: str) -> Any:
        return self.data.get(key)

    @property
    def undoes(self) -> tuple[str, ...]:
        return tuple(self.data.get("undoes") or ())

    @property
    def what(self) -> str:
        """The outcome in words: ``deployed``, ``failed, rolled back``, ``rolled back``, ..."""
        if self.kind == "rollback":
            return {"deployed": "rolled back", "unchanged": "rolled back (no change)",
                    "rolled back": "rollback failed, undone", "failed": "rollback refused",
                    }.get(self.outcome, f"rollback {self.outcome}")
        return {"rolled back": "failed, rolled back", "kept": "failed, kept (--no-rollback)",
                "failed": "failed, nothing changed"}.get(self.outcome, self.outcome)

    @property
    def when(self) -> str:
        """The start time as ``2026-12-06 10:12:58 UTC`` (the stamp itself if it is not one)."""
        m = re.fullmatch(r"(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)(?:\.\d+)?Z", self.time)
        return (f"{m[1]}-{m[2]}-{m[3]} {m[4]}:{m[5]}:{m[6]} UTC" if m else self.time[:40])

    def row(self) -> tuple[str, str, str, str, str, str]:
        """(id, when, what, file, config id, who) for the CLI's table and the TUI's."""
        who = str(self.get("by") or "?")
        if self.get("ssh_user"):
            who += f" as {self.get('ssh_user')}"
        what = self.what
        if self.kind == "rollback" and self.undoes:
            what += f" ({', '.join(self.undoes)})"
        return (self.id, self.when, what, self.dest, str(self.get("config_id") or "-"), who)

    def to_dict(self) -> dict[str, Any]:
        blank: dict[str, Any] = {**dict.fromkeys(_STR_FIELDS), "companions": [],
                                 **{k: [] for k in _LIST_FIELDS}}
        return {**blank, **self.data, "id": self.id, "time": self.time, "kind": self.kind,
                "dest": self.dest, "outcome": self.outcome, "what": self.what}


# -- reading --------------------------------------------------------------------------------


UNSAFE = "@@sw unsafe-index "


def read_script(index: str) -> str:
    """Print the last ``MAX_BYTES`` of the index (nothing when there is none) — unless the
    index or its directory could be written by someone else than root or the reading user:
    a rollback runs the commands recorded there (validate, reload, a2ensite...), so such an
    index is refused (``UNSAFE`` line) instead of read."""
    q, d = shlex.quote(index), shlex.quote(posixpath.dirname(index) or "/")
    check = (f'me=$(id -u); for f in {d} {q}; do [ -e "$f" ] || continue; '
             'o=$(stat -L -c %u -- "$f") || exit 1; '
             'if { [ "$o" != 0 ] && [ "$o" != "$me" ]; } || '
             '[ -n "$(find "$f" -maxdepth 0 -perm /022 2>/dev/null)" ]; then '
             f'printf "{UNSAFE}%s owner %s mode %s\\n" "$f" "$o" "$(stat -L -c %a -- "$f")"; '
             'exit 0; fi; done')
    return f"{check}; if [ -f {q} ]; then tail -c {MAX_BYTES} -- {q}; fi"


def unsafe_reason(text: str) -> str | None:
    """What ``read_script`` refused (``path owner UID mode MODE``), or None."""
    first = text.split("\n", 1)[0]
    return first[len(UNSAFE):][:300] if first.startswith(UNSAFE) else None


def parse(text: str) -> list[Record]:
    """The records of an index, oldest first (see the module docstring for the caps)."""
    if len(text) >= MAX_BYTES:  # cut by tail -c: the first line may be partial
        text = text[text.find("\n") + 1:] if "\n" in text else ""
    merged: dict[str, Record] = {}
    for line in text.splitlines():
        if len(line) > MAX_LINE:
            continue
        record = _record(line)
        if record is not None:
            merged.pop(record.id, None)  # re-insert: a record sorts by its last line
            merged[record.id] = record
    return list(merged.values())[-MAX_RECORDS:]


def _record(line: str) -> Record | None:
    raw: Any = None
    with contextlib.suppress(ValueError, RecursionError):
        raw = json.loads(line)
    if not isinstance(raw, dict):
        return None
    data: dict[str, Any] = {}
    for key in _STR_FIELDS:
        value = raw.get(key)
        if isinstance(value, str):
            data[key] = value[:_MAX_STR]
    for key in _LIST_FIELDS:
        value = raw.get(key)
        if isinstance(value, str):  # an older index: "undoes" was one time stamp
            value = [value]
        if isinstance(value, list):
            data[key] = [v[:_MAX_STR] for v in value[:50] if isinstance(v, str)]
    for key in ("sha256", "new_sha256"):
        if key in data and not _SHA_RE.fullmatch(data[key]):
            del data[key]
    if companions := _companions(raw.get("companions")):
        data["companions"] = companions
    dest, time = data.get("dest"), data.get("time", "")
    ident = raw["id"] if isinstance(raw.get("id"), str) else time
    if not dest or not dest.startswith("/") or not _ID_RE.fullmatch(ident):
        return None
    kind = data.get("kind", "deploy")
    if kind not in ("deploy", "rollback"):
        return None
    # An index written before outcomes were recorded: the run's outcome is unknown.
    outcome = data.get("outcome") or PENDING
    return Record(ident, time, kind, dest, outcome[:40], data)


def _companions(value: Any) -> list[dict[str, Any]]:
    """A record's ``companions``, each field checked (absolute paths, sha256 shapes)."""
    out: list[dict[str, Any]] = []
    for raw in value[:_MAX_COMPANIONS] if isinstance(value, list) else ():
        if not isinstance(raw, dict):
            continue
        c: dict[str, Any] = {k: raw[k][:_MAX_STR] for k in _COMPANION_FIELDS
                             if isinstance(raw.get(k), str)}
        for key in ("sha256", "new_sha256"):
            if key in c and not _SHA_RE.fullmatch(c[key]):
                del c[key]
        if c.get("path", "").startswith("/"):
            out.append({**c, "link": raw.get("link") is True})
    return out


# -- the semantics --------------------------------------------------------------------------


Current = Callable[[str], str | None]


def _unknown(dest: str) -> str | None:
    return None


def _effective(record: Record, after: str | None) -> bool:
    """Whether an unknown outcome took effect: what came next starts from its new bytes."""
    new = record.get("new_sha256")
    return after is not None and after == (new or "absent")


def stack(records: Sequence[Record], dest: str, current: Current = _unknown) -> list[Record]:
    """The deploys of ``dest`` whose change is in effect now, oldest first. ``current``: the
    file's sha256 now ("absent" when there is none; None: not known), for a last record
    without an outcome."""
    mine = [r for r in records if r.dest == dest]
    live: list[Record] = []
    for i, r in enumerate(mine):
        nxt = (mine[i + 1].get("sha256") or "absent") if i + 1 < len(mine) else current(dest)
        if r.kind == "deploy":
            if r.outcome in _PUSHES or (r.outcome in _UNKNOWN and _effective(r, nxt)):
                live.append(r)
        elif r.outcome in _ROLLBACK_DONE or (r.outcome in _UNKNOWN and _effective(r, nxt)):
            gone = set(r.undoes)
            live = [x for x in live if x.id not in gone]
    return live


def dests(records: Iterable[Record]) -> list[str]:
    """The files in the history, the most recently changed last."""
    order: dict[str, None] = {}
    for r in records:
        order.pop(r.dest, None)
        order[r.dest] = None
    return list(order)


@dataclass(frozen=True)
class Choice:
    """What a rollback does: undo these deploys (newest first) and put back ``restore``'s
    backup (the file as it was before the oldest of them)."""

    dest: str
    undo: tuple[Record, ...]
    to: Record | None  # the deploy whose config comes back (None: the file before them all)

    @property
    def restore(self) -> Record:
        return self.undo[-1]

    @property
    def companions(self) -> list[dict[str, Any]]:
        """What the undone deploys changed beside the file, one entry per path: as it was
        before the oldest of them and after the newest (``stock.undo_of`` puts it back)."""
        by_path: dict[str, dict[str, Any]] = {}
        for r in reversed(self.undo):  # oldest first
            for c in r.get("companions") or ():
                first = by_path.get(c["path"])
                by_path[c["path"]] = c if first is None else {
                    **{k: v for k, v in c.items() if k not in _BEFORE},
                    **{k: first[k] for k in _BEFORE if k in first}}
        return list(by_path.values())


class NoChoice(ValueError):
    """Nothing to roll back, or ``--to`` names something that cannot come back: the words."""

    def __init__(self, title: str, hint: str = "") -> None:
        super().__init__(title)
        self.title, self.hint = title, hint


def rollback_choice(records: Sequence[Record], *, dest: str | None = None,
                    to: str | None = None, current: Current = _unknown) -> Choice:
    """What ``sockwizard rollback [--dest D] [--to ID]`` restores (see the table above);
    raises NoChoice with the reason when nothing can be."""
    if to is not None:
        return _choice_to(records, to, dest, current)
    for d in reversed(dests(records)):
        if dest is not None and d != dest:
            continue
        live = stack(records, d, current)
        if not live:
            continue
        undo = [live.pop()]
        while live and live[-1].outcome == "kept":  # never back onto a failed config
            undo.append(live.pop())
        return Choice(d, tuple(undo), live[-1] if live else None)
    where = f" for {dest}" if dest else ""
    raise NoChoice(f"Nothing to roll back{where}: every deploy sockwizard recorded there has "
                   "been rolled back, failed, or changed nothing.",
                   "`sockwizard history --host H` lists them.")


def find(records: Sequence[Record], ident: str) -> Record:
    """The record ``ident`` names (its id, or a unique prefix of at least 4 characters)."""
    exact = [r for r in records if r.id == ident]
    hits = exact or ([r for r in records if r.id.startswith(ident)] if len(ident) >= 4 else [])
    if len(hits) != 1:
        raise NoChoice(f"{'No' if not hits else 'More than one'} deploy in the history has the "
                       f"id {ident[:40]!r}.", "`sockwizard rollback --list` shows the ids.")
    return hits[0]


def _choice_to(records: Sequence[Record], ident: str, dest: str | None,
               current: Current) -> Choice:
    target = find(records, ident)
    if dest is not None and target.dest != dest:
        raise NoChoice(f"{target.id} changed {target.dest}, not {dest}.")
    if target.kind == "rollback":
        raise NoChoice(f"{target.id} is a rollback, not a deploy.",
                       "Name the deploy whose config you want back (`rollback --list`).")
    if target.outcome not in _PUSHES | _UNKNOWN:
        raise NoChoice(f"{target.id} ({target.what}) never became the live config: "
                       "sockwizard does not put it back.", "Deploy it again if you want it.")
    live = stack(records, target.dest, current)
    if target not in live:
        undone = next((r for r in records if r.kind == "rollback" and target.id in r.undoes
                       and r.outcome in _ROLLBACK_DONE), None)
        why = f"rollback {undone.id} at {undone.time} went away from it" if undone else \
            "it is no longer in effect"
        raise NoChoice(f"{target.id} cannot come back: {why}.",
                       "sockwizard never re-applies a config it rolled away from; deploy it "
                       "again if you want it.")
    if target.outcome == "kept":
        raise NoChoice(f"{target.id} failed its checks (kept with --no-rollback): "
                       "sockwizard does not return to it.")
    above = live[live.index(target) + 1:]
    if not above:
        raise NoChoice(f"Nothing to roll back: {target.dest} already has the config of "
                       f"{target.id}.")
    return Choice(target.dest, tuple(reversed(above)), target)


# -- writing --------------------------------------------------------------------------------


def append_lines(index: str, record: dict[str, Any]) -> list[str]:
    """Shell that appends ``record`` as one line: under ``flock`` on the index when the host
    has it, after ending a torn last line (a crash mid-append) so the two never merge."""
    q = shlex.quote(index)
    line = shlex.quote(json.dumps(record, sort_keys=True))
    return ["( if command -v flock >/dev/null 2>&1; then flock -w 10 9; fi",
            f"  if [ -s {q} ] && [ -n \"$(tail -c 1 -- {q})\" ]; then printf '\\n' >&9; fi",
            f"  printf '%s\\n' {line} >&9 ) 9>>{q}"]


def undo_choice(records: Sequence[Record], ident: str, current: Current = _unknown) -> Choice:
    """Undo the deploy recorded as ``ident`` (and every later one still in effect): the TUI's
    Rollback button after a deploy — a first one too, whose file was new (no backup: undoing
    it removes the file)."""
    made = [r for r in records if r.kind == "deploy" and r.id == ident]
    if not made:
        raise NoChoice(f"No deploy in the history has the id {ident[:40]}.")
    live = stack(records, made[-1].dest, current)
    if made[-1] not in live:
        raise NoChoice(f"Deploy {ident[:40]} is no longer in effect: nothing to undo.")
    at = live.index(made[-1])
    return Choice(made[-1].dest, tuple(reversed(live[at:])), live[at - 1] if at else None)
