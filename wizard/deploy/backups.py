"""Where backups live, reading the host's history, and what ``sockwizard rollback`` restores.

Each deploy copies the file it replaces into the host's backup dir and records itself in
``index.jsonl`` there (``wizard.deploy.history``: the records and the rollback semantics), and
mirrors both under the user's state dir (``$XDG_STATE_HOME/sockwizard/backups/<host>/``). A
rollback (``wizard.deploy.hosts``) reads the history, asks ``history.rollback_choice`` what to
restore, and hands the transaction a ``Preset`` (``rollback_preset``): restoring is itself a
guarded deploy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wizard.deploy import history
from wizard.deploy.companions import reload_for
from wizard.deploy.detect import HostTarget
from wizard.deploy.history import INDEX_NAME
from wizard.deploy.marker import existing_id
from wizard.deploy.options import Preset, RollbackOptions
from wizard.deploy.stock import undo_of
from wizard.errors import BadInput, RemoteCommandFailed
from wizard.model import DeploySpec, ProxyKind
from wizard.proxies import profile
from wizard.remote import Remote


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def state_dir(explicit: Path | None = None) -> Path:
    """$XDG_STATE_HOME/sockwizard (default ~/.local/state/sockwizard)."""
    if explicit is not None:
        return explicit
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "sockwizard"


def host_key(name: str) -> str:
    """A host name as a directory name (local state)."""
    return re.sub(r"[^A-Za-z0-9@._-]+", "_", name).strip("._") or "host"


def dest_key(dest: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", dest.strip("/")) or "root"


def timestamp() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z"


def backup_name(stamp: str, real_dest: str) -> str:
    """The file name of one backup, on the host and locally."""
    return f"{stamp}-{dest_key(real_dest)}"


def local_dir(state: Path | None, host: str) -> Path:
    return state_dir(state) / "backups" / host_key(host)


def save_local(directory: Path, name: str, old: bytes | None, entry: dict[str, Any]) -> str:
    """Write the local copy (and its entry) of one backup; OSError when it cannot."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if old is not None:
        (directory / name).write_bytes(old)
    (directory / f"{name}.json").write_text(json.dumps(entry, indent=2, sort_keys=True))
    return str(directory / name)


def local_entries(state: Path, host: str) -> list[history.Record]:
    """The history as the local copies' metadata tell it for ``host`` (oldest first), with
    ``local`` set: the fallback when the host lost its index."""
    directory = state / "backups" / host_key(host)
    lines = []
    for meta in sorted(directory.glob("*.json"))[-history.MAX_RECORDS:]:
        with contextlib.suppress(OSError, ValueError, RecursionError):
            if meta.stat().st_size > history.MAX_LINE:
                continue
            entry = json.loads(meta.read_text())
            if isinstance(entry, dict):
                lines.append(json.dumps({**entry, "local": str(meta.with_suffix(""))}))
    return history.parse("\n".join(lines))


def update_local(local_backup: str | None, entry: dict[str, Any]) -> None:
    """Record the outcome in the local copy's entry too (best effort)."""
    if local_backup is None:
        return
    meta = Path(local_backup + ".json")
    with contextlib.suppress(OSError):
        if meta.exists():
            meta.write_text(json.dumps(entry, indent=2, sort_keys=True))


def read_history(remote: Remote, backup_dir: str, *, sudo: bool = True,
                 timeout: float = 30.0) -> list[history.Record]:
    """The host's history (``sockwizard history``, ``rollback``, the TUI's Deploy step):
    the last ``history.MAX_BYTES`` of its index, parsed defensively."""
    index = posixpath.join(backup_dir, INDEX_NAME)
    result = remote.run(history.read_script(index), sudo=sudo, timeout=timeout)
    if not result.ok:
        raise RemoteCommandFailed(
            f"Could not read {index} on {remote.name} (exit {result.exit_status}).",
            "Check --backup-dir, and that the login user may use sudo.",
            detail=result.stderr[-2000:])
    unsafe = history.unsafe_reason(result.stdout)
    if unsafe is not None:
        raise BadInput(
            f"The deploy history on {remote.name} can be written by other users ({unsafe}); "
            "a rollback would run the commands recorded there, so it is not read.",
            f"Make {backup_dir} and {index} owned by root and writable only by it "
            "(chown root: ...; chmod go-w ...), or pass another --backup-dir.")
    return history.parse(result.stdout)




@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback restores (``rollback_preset``): the transaction's preset, the spec it
    needs, the choice in words, and warnings for the user."""

    preset: Preset
    spec: DeploySpec
    choice: history.Choice
    notes: tuple[str, ...] = ()


def rollback_preset(remote: Remote, host: str, options: RollbackOptions, *,
                    undo_id: str | None = None) -> RollbackPlan:
    """Choose what to restore (``history.rollback_choice``: the newest change in effect, or
    ``options.to``; or undo the deploy whose id is ``undo_id``) and build the guarded
    transaction that puts it back. Raises BadInput when there is nothing to restore."""
    cache: dict[str, str | None] = {}

    def current(path: str) -> str | None:
        if path not in cache:
            data = remote.read_file(path)
            cache[path] = sha(data) if data is not None else "absent"
        return cache[path]

    def choose(records: list[history.Record]) -> history.Choice:
        if undo_id is not None:
            return history.undo_choice(records, undo_id, current)
        return history.rollback_choice(records, dest=options.dest, to=options.to,
                                       current=current)

    records = read_history(remote, options.backup_dir)
    source = "host"
    if not records:
        records, source = local_entries(state_dir(options.state_dir), host), "local"
    try:
        choice = choose(records)
    except history.NoChoice as exc:
        raise BadInput(exc.title, exc.hint or (
            f"sockwizard keeps its history in {options.backup_dir}/{INDEX_NAME} on the host "
            f"and under {state_dir(options.state_dir) / 'backups'} here. Check --host/--dest."
        )) from None
    restore, newest = choice.restore, choice.undo[0]
    content = _backup_bytes(remote, host, options, restore, source)
    notes = []
    if current(choice.dest) != (newest.get("new_sha256") or "absent"):
        notes.append(f"{choice.dest} was changed after deploy {newest.id} (by hand?): this "
                     "rollback backs up what is there now, then restores.")
    try:
        kind = ProxyKind(str(newest.get("proxy") or "nginx"))
    except ValueError:
        raise BadInput(f"The history names an unknown proxy ({str(newest.get('proxy'))[:40]!r})."
                       , "Restore the file by hand; nothing was changed.") from None
    spec = DeploySpec(proxy=kind, path=str(newest.get("path") or "/socket.io/"))
    validate = options.validate_cmd or str(newest.get("validate_cmd") or "")
    reload_cmd = options.reload_cmd or str(newest.get("reload_cmd") or "")
    if not validate or not reload_cmd:
        raise BadInput("The history does not say how to validate and reload.",
                       "Pass --validate-cmd and --reload-cmd.")
    # The recorded checker names the file; a watched file is checked before the rename
    # (validate_before_rename), so the same checker is pointed at the temp file instead.
    quoted = shlex.quote(choice.dest)
    template = validate if "{config}" in validate else validate.replace(quoted, "{config}")
    precheck = (template if profile(kind).validate_before_rename and "{config}" in template
                else None)
    # The main config / default site the undone deploys changed.
    undo = undo_of(choice.companions, remote.read_file, sha)
    target = HostTarget(dest=choice.dest, real_dest=choice.dest,
                        validate_cmd=template.replace("{config}", quoted),
                        precheck_cmd=precheck,
                        # A given --reload-cmd wins; else the restart an undone edit needs.
                        reload_cmd=options.reload_cmd or reload_for(undo, reload_cmd),
                        enable_cmds=tuple(newest.get("enable_cmds") or ()),
                        disable_cmds=tuple(newest.get("disable_cmds") or ()),
                        overridden=("history",), companions=undo)
    old_id = existing_id(content.decode("utf-8", "replace")) if content is not None else None
    preset = Preset(target=target, content=content, config_id=old_id, entry={
        "kind": "rollback", "undoes": [r.id for r in choice.undo],
        "to": choice.to.id if choice.to is not None else None,
        "restores": restore.get("backup"), "probe_url": restore.get("probe_url")})
    return RollbackPlan(preset, spec, choice, tuple(notes))


def _backup_bytes(remote: Remote, host: str, options: RollbackOptions,
                  restore: history.Record, source: str) -> bytes | None:
    """The bytes the file had before ``restore`` (None: it did not exist), checked against
    the recorded sha256; the local copy when the host lost or damaged its own."""
    path, want = restore.get("backup"), restore.get("sha256")
    if not path:
        if want:
            raise BadInput(f"The history has no backup of {restore.dest} before {restore.id}.",
                           "Restore the file by hand; nothing was changed.")
        return None
    content = remote.read_file(str(path)) if source == "host" else None
    if content is None or sha(content) != want:
        local = restore.get("local") or next(
            (r.get("local") for r in local_entries(state_dir(options.state_dir), host)
             if r.get("backup") == path), None)
        with contextlib.suppress(OSError, TypeError):
            content = Path(str(local)).read_bytes() if local else None
    if content is None or sha(content) != want:
        raise BadInput(
            f"The backup {path} of {restore.dest} is missing or damaged on {host} and has no "
            "intact local copy.", "Restore the file by hand from another copy; nothing was "
                                  "changed.")
    return content
