"""Where backups live and how ``sockwizard rollback`` finds the one to restore.

Each deploy copies the file it replaces into the host's backup dir and appends an entry to
``index.jsonl`` there (the script is ``wizard.deploy.scripts.backup_script``), and mirrors both
under the user's state dir (``$XDG_STATE_HOME/sockwizard/backups/<host>/``). A rollback
(``wizard.deploy.hosts``) reads the index, picks the newest deploy not yet undone, and hands
the transaction a ``Preset``: restoring is itself a guarded deploy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wizard.deploy.detect import HostTarget
from wizard.deploy.marker import existing_id
from wizard.deploy.options import Preset, RollbackOptions
from wizard.errors import BadInput
from wizard.model import DeploySpec, ProxyKind
from wizard.remote import Remote

INDEX_NAME = "index.jsonl"


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


def parse_index(text: str) -> list[dict[str, Any]]:
    """The entries of index.jsonl that parse (a torn last line is skipped)."""
    entries = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and isinstance(entry.get("dest"), str):
                entries.append(entry)
    return entries


def pick_entry(entries: Sequence[dict[str, Any]], current: Callable[[str], bytes | None],
               dest: str | None) -> dict[str, Any] | None:
    """The newest deploy whose backup differs from what the file holds now and that no
    rollback has undone yet: successive rollbacks walk back through the history, and a deploy
    that was already rolled back automatically (its backup equals the file) is passed over."""
    undone = {e.get("undoes") for e in entries if e.get("kind") == "rollback"}
    entry: dict[str, Any]
    for entry in reversed(entries):
        if entry.get("kind", "deploy") != "deploy" or entry.get("time") in undone:
            continue
        if dest is not None and entry["dest"] != dest:
            continue
        now = current(entry["dest"])
        now_sha = sha(now) if now is not None else None
        if now_sha != entry.get("sha256"):
            return entry
    return None


def local_entries(state: Path, host: str) -> list[dict[str, Any]]:
    """The local copies' metadata for ``host`` (oldest first), with ``local`` set."""
    directory = state / "backups" / host_key(host)
    entries = []
    for meta in sorted(directory.glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            entry = json.loads(meta.read_text())
            if isinstance(entry, dict) and isinstance(entry.get("dest"), str):
                entry["local"] = str(meta.with_suffix(""))
                entries.append(entry)
    return entries


def rollback_preset(remote: Remote, host: str, options: RollbackOptions, *,
                    backup: str | None = None) -> tuple[Preset, DeploySpec]:
    """Find the backup to restore (the newest one, or the entry of ``backup``) and build the
    guarded transaction that puts it back. Raises BadInput when there is nothing to restore."""
    cache: dict[str, bytes | None] = {}

    def current(path: str) -> bytes | None:
        if path not in cache:
            cache[path] = remote.read_file(path)
        return cache[path]

    def choose(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
        if backup is None:
            return pick_entry(entries, current, options.dest)
        return next((e for e in reversed(entries) if e.get("backup") == backup), None)

    index = remote.read_file(posixpath.join(options.backup_dir, INDEX_NAME))
    entry = choose(parse_index(index.decode("utf-8", "replace")) if index else [])
    source = "host"
    if entry is None:
        entry = choose(local_entries(state_dir(options.state_dir), host))
        source = "local"
    if entry is None:
        where = f" for {options.dest}" if options.dest else ""
        raise BadInput(
            f"Nothing to roll back on {host}{where}: no sockwizard backup differs from the "
            "config there now.",
            f"sockwizard keeps its backups in {options.backup_dir} on the host (index.jsonl) "
            f"and under {state_dir(options.state_dir) / 'backups'} here. Check --host/--dest.")
    content: bytes | None = None
    if entry.get("backup"):
        content = remote.read_file(str(entry["backup"])) if source == "host" else None
        if content is None or sha(content) != entry.get("sha256"):
            # The host lost (or damaged) its copy: use ours of the same backup.
            local = entry if source == "local" else next(
                (e for e in local_entries(state_dir(options.state_dir), host)
                 if e.get("backup") == entry["backup"]), {})
            with contextlib.suppress(OSError, KeyError):
                content = Path(str(local["local"])).read_bytes()
        if content is None or sha(content) != entry.get("sha256"):
            raise BadInput(
                f"The backup {entry['backup']} of {entry['dest']} is missing or damaged on "
                f"{host} and has no intact local copy.",
                "Restore the file by hand from another copy; nothing was changed.")
    kind = ProxyKind(str(entry.get("proxy", "nginx")))
    spec = DeploySpec(proxy=kind, path=str(entry.get("path") or "/socket.io/"))
    validate = options.validate_cmd or str(entry.get("validate_cmd") or "")
    reload_cmd = options.reload_cmd or str(entry.get("reload_cmd") or "")
    if not validate or not reload_cmd:
        raise BadInput("The backup index does not say how to validate and reload.",
                       "Pass --validate-cmd and --reload-cmd.")
    dest = str(entry["dest"])
    disable = tuple(str(c) for c in entry.get("disable_cmds") or ())
    enable = tuple(str(c) for c in entry.get("enable_cmds") or ())
    from wizard.deploy.stock import undo_of  # the main config / default site it changed

    target = HostTarget(dest=dest, real_dest=dest, validate_cmd=validate,
                        reload_cmd=reload_cmd, enable_cmds=enable, disable_cmds=disable,
                        overridden=("backup index",),
                        companions=undo_of(entry.get("companions") or (), remote.read_file,
                                           sha))
    old_id = existing_id(content.decode("utf-8", "replace")) if content is not None else None
    preset = Preset(target=target, content=content, config_id=old_id,
                    entry={"kind": "rollback", "undoes": entry.get("time"),
                           "probe_url": entry.get("probe_url")})
    return preset, spec
