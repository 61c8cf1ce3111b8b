"""The exact host commands of a transaction, built once: the steps run them, the plan lists them.

Every script the transaction runs on the host comes from a function here (over the
transaction's ``Context``), and ``build`` lists the same functions' output for ``--dry-run``
and the TUI's Plan tab — so the plan is the commands, not a description of them, and cannot
drift (tests/test_deploy_unit.py runs a deploy and compares). Only what is not known before
the run is a placeholder: the temp file's random suffix (``XXXXXXXX``). File transfers and what
this machine does (the local copy, settle, probe) are listed in words (``shell=False``).
"""

from __future__ import annotations

import posixpath
import shlex
import socket
from typing import Any

from wizard.deploy import bundle, companions, history, hoststate
from wizard.deploy.backups import backup_name, local_dir, sha
from wizard.deploy.companions import Companion
from wizard.deploy.context import Context
from wizard.deploy.events import Step
from wizard.deploy.marker import HEADER, existing_id
from wizard.deploy.result import Outcome, PlanItem
from wizard.deploy.scripts import (
    Backup,
    CompanionScript,
    LockStep,
    Upload,
    activation_script,
    backup_script,
    restore_lines,
)
from wizard.remote import local_user

RELEASE_TIMEOUT = 15.0
# Who deploys, for the history: the local user at this machine (the SSH user is recorded too).
WHO = f"{local_user()}@{socket.gethostname()}"[:200]


def backup_path(ctx: Context) -> str | None:
    """Where this run backs the current file up on the host (None: there is no file)."""
    if ctx.old is None:
        return None
    return posixpath.join(ctx.options.backup_dir, backup_name(ctx.stamp, ctx.tgt.real_dest))


def companion_backup(ctx: Context, c: Companion) -> str | None:
    """Where this run backs up a companion file (None: a link, whose target is its state)."""
    return companions.backup_path(c, ctx.options.backup_dir, backup_name(ctx.stamp, c.path))


def companion_scripts(ctx: Context) -> list[CompanionScript]:
    """The companions as the activation script takes them (temp names as uploaded, or as
    the plan shows them)."""
    out = []
    for c in ctx.tgt.companions:
        tmp = None if c.link else ctx.companion_tmps.get(c.path, companions.planned_temp(c))
        out.append(CompanionScript(companions.is_as(c, c.old), companions.put_line(c, tmp),
                                   companions.undo_line(c, companion_backup(ctx, c)), tmp))
    return out


def index_entry(ctx: Context, outcome: str = history.PENDING, *,
                backup: str | None = None) -> dict[str, Any]:
    """The run's history record (``index.jsonl`` and the local copy's ``.json``;
    ``wizard.deploy.history``): ``outcome`` pending at the backup, the result's at the end.
    ``backup``: the one made (default: the one this run makes)."""
    t = ctx.tgt
    entry: dict[str, Any] = {
        "id": ctx.lock_token[:10], "outcome": outcome, "by": WHO,
        "ssh_user": getattr(ctx.remote, "user", None),
        "time": ctx.stamp, "host": ctx.host, "proxy": ctx.spec.proxy.value,
        "dest": t.real_dest, "backup": backup or backup_path(ctx),
        "sha256": sha(ctx.old) if ctx.old is not None else None,
        "new_sha256": sha(ctx.new) if ctx.new is not None else None,
        "config_id": ctx.config_id, "kind": "deploy",
        "old_config_id": existing_id(ctx.old.decode("utf-8", "replace"))
        if ctx.old is not None else None,
        "validate_cmd": t.validate_cmd, "reload_cmd": t.reload_cmd,
        "disable_cmds": list(t.disable_cmds), "enable_cmds": list(t.enable_cmds),
        "probe_url": ctx.probe_url() if ctx.options.probe else None,
        "path": ctx.spec.path,
    }
    if t.companions:
        entry["companions"] = [c.entry(companion_backup(ctx, c)) for c in t.companions]
    if ctx.preset is not None:
        entry.update(ctx.preset.entry)
    return entry


def inspect_cmd(ctx: Context) -> str:
    return hoststate.inspect_script(ctx.tgt.dest)


def files_cmd(ctx: Context) -> str:
    """Write every extra file in one command, their tar on its stdin (``bundle``)."""
    return bundle.write_script(ctx.tgt.extra_files)


def prepare_cmd(ctx: Context) -> str | None:
    """The prepare step as ONE command (each is a round trip and a sudo; ~1.5 s on a slow
    host): the directory, the extra files (their tar on its stdin), the prepare commands
    (the node unit enabled), stopping at the first that fails. None: nothing to prepare."""
    t = ctx.tgt
    parts = [t.make_dir] if t.make_dir else []  # one simple command (detect.resolve)
    if t.extra_files:
        parts.append(f"(\n{files_cmd(ctx)}\n)")  # its own shell: `set -e`, its trap
    parts += [f"{{ {cmd}\n}}" for cmd in t.prepare_cmds]
    return " &&\n".join(parts) or None


def peek_cmd(ctx: Context, dest: str | None = None, real_dest: str | None = None) -> str:
    """Inspect the destination, see its lock and journal, read it — read-only, in one script
    (``hoststate.peek_script``); ``dest``: as guessed before the host's facts (default: the
    target's)."""
    return hoststate.peek_script(ctx.options.backup_dir, dest or ctx.tgt.dest,
                                 real_dest or dest or ctx.tgt.real_dest, ctx.lock_token)


def writes_before_activation(ctx: Context) -> bool:
    """Something is written on the host before the activation script (which takes the lock
    itself): prepare (a directory, extra files, modules) or a companion's upload. Then the
    lock is claimed apart, first (``claim_cmd``)."""
    t = ctx.tgt
    return bool(t.make_dir or t.extra_files or t.prepare_cmds
                or any(not c.link and c.new is not None for c in t.companions))


def claim_cmd(ctx: Context) -> str:
    return hoststate.claim_script(ctx.options.backup_dir, ctx.tgt.real_dest, ctx.lock_token,
                                  ctx.client)


def release_cmd(ctx: Context, *, clear_journal: bool, record: dict[str, Any] | None = None
                ) -> str:
    """Drop the lock; append the run's final history record (``record``) in the same script."""
    script = hoststate.release_script(ctx.options.backup_dir, ctx.tgt.real_dest,
                                      ctx.lock_token, clear_journal=clear_journal)
    if record is None:
        return script
    index = posixpath.join(ctx.options.backup_dir, history.INDEX_NAME)
    # An unchanged run took no lock: the backup dir may not exist yet.
    b = shlex.quote(ctx.options.backup_dir)
    made = f"[ -d {b} ] || ( umask 077; mkdir -p -- {b} )"
    return "\n".join([made, *history.append_lines(index, record), script])


def backup_first(ctx: Context) -> Backup:
    """The backup the activation script makes first (``scripts.backup_section``): the file
    and the companions it replaces, each to match the bytes read; the pending history record."""
    t = ctx.tgt
    extra = [line for c in t.companions
             for line in companions.backup_lines(c, companion_backup(ctx, c))]
    sums = [sha(ctx.old)] if ctx.old is not None else []
    sums += [sha(c.old or b"") for c in t.companions if companion_backup(ctx, c)]
    return Backup(backup_script(t.real_dest, ctx.options.backup_dir, backup_path(ctx),
                                index_entry(ctx), extra), tuple(sums))


def upload_name(ctx: Context) -> str:
    """Where the new bytes go first: in ``hoststate.temp_dir`` (made by the lock step), named
    after this destination so that the next run's sweep finds it if cut off. The activation
    script writes them there from its stdin (``scripts.upload_lines``)."""
    real = ctx.tgt.real_dest
    return posixpath.join(hoststate.temp_dir(real), f"{hoststate.state_key(real)}.new")


def planned_temp(ctx: Context) -> str:
    """The temp file as the plan shows it (the remote picks the random part)."""
    directory, base = posixpath.split(upload_name(ctx))
    return posixpath.join(directory, f".{base}.sockwizard-XXXXXXXX.tmp")


def activation_cmd(ctx: Context, tmp: str | None) -> str:
    """Lock + compare-and-swap + backup + rename + validate + restore if refused + reload
    (``scripts.activation_script``)."""
    t, backups = ctx.tgt, ctx.options.backup_dir
    record = {"time": ctx.stamp, "dest": t.real_dest, "backup": backup_path(ctx),
              "old_sha256": sha(ctx.old) if ctx.old is not None else None,
              "new_sha256": sha(ctx.new) if ctx.new is not None else None,
              "config_id": ctx.config_id}
    return activation_script(tmp, t.real_dest, backup_path(ctx), t.validate_cmd,
                             t.enable_cmds if ctx.old is None else (),
                             t.disable_cmds, remove_cmds=t.disable_cmds,
                             reenable_cmds=t.enable_cmds,
                             expect_sha=sha(ctx.old) if ctx.old is not None else None,
                             expect_absent=ctx.old is None,
                             journal=hoststate.journal_lines(backups, t.real_dest, record),
                             clear_journal=hoststate.journal_path(backups, t.real_dest),
                             precheck=t.precheck_cmd,
                             companions=companion_scripts(ctx),
                             upload=Upload.of(ctx.new) if ctx.new is not None else None,
                             reload=(t.reload_cmd, reload_timeout(ctx)),
                             backup_first=backup_first(ctx),
                             lock=LockStep(backups, ctx.lock_token, ctx.client,
                                           sha(ctx.old) if ctx.old is not None else None,
                                           len(ctx.new) if ctx.new is not None and tmp
                                           else 0))


def activation_timeout(ctx: Context) -> float:
    """The activation script checks and then reloads: both limits."""
    return ctx.options.command_timeout + reload_timeout(ctx)


def restore_cmd(ctx: Context) -> str:
    """Put the backed-up bytes back (a change that removed the file had also disabled it:
    enable it again)."""
    t = ctx.tgt
    reenable = t.enable_cmds if ctx.new is None else ()
    # Before the backup step ran (the plan), the backup it will make.
    backup = ctx.backup if ctx.backup is not None else backup_path(ctx)
    lines = restore_lines(t.real_dest, backup, t.disable_cmds, reenable,
                          old_sha=sha(ctx.old) if ctx.old is not None else None)
    if not t.companions:
        return "\n".join(lines)
    # Every part is tried, whichever fails: the host gets back as much as it can.
    undo = [companions.undo_line(c, companion_backup(ctx, c)) for c in reversed(t.companions)]
    return "\n".join(["rc=0", *(f"{line} || rc=1" for line in [*lines, *undo]), 'exit "$rc"'])


def reload_timeout(ctx: Context) -> float:
    return min(ctx.options.reload_timeout, ctx.options.command_timeout)


def build(ctx: Context) -> list[PlanItem]:
    """Everything the transaction runs, in order, for --dry-run and the TUI's Plan tab."""
    t, sudo = ctx.tgt, ctx.options.sudo
    items = [PlanItem(Step.DETECT, cmd, privileged) for cmd, privileged in t.commands]
    items += [*(PlanItem(Step.DETECT, cmd, sudo) for cmd in ctx.peeks),
              *([PlanItem(Step.DETECT, claim_cmd(ctx), sudo)] if ctx.claimed_apart else []),
              PlanItem(Step.DIFF, f"read {t.real_dest}" + (" (printed by the script above)"
                                                           if ctx.readback is not None
                                                           else ""), shell=False),
              *(PlanItem(Step.DIFF, f"read {c.path}", shell=False)
                for c in t.companions if not c.link),
              PlanItem(Step.BACKUP, (f"back up {t.real_dest} to {backup_path(ctx)}"
                                     if ctx.old is not None else "record the run") +
                       " (first thing the activation script below does)", shell=False),
              PlanItem(Step.BACKUP, f"copy to {local_dir(ctx.options.state_dir, ctx.host)}/"
                                    f"{backup_name(ctx.stamp, t.real_dest)}", shell=False)]
    if (prepare := prepare_cmd(ctx)) is not None:
        items.append(PlanItem(Step.PREPARE, prepare, sudo))
    items += [PlanItem(Step.UPLOAD, f"write {len(c.new or b'')} bytes to {s.tmp}", shell=False)
              for c, s in zip(t.companions, companion_scripts(ctx), strict=True) if s.tmp]
    tmp = None
    if ctx.new is not None:
        tmp = planned_temp(ctx)
        items.append(PlanItem(Step.UPLOAD, f"write {len(ctx.new)} bytes to {tmp} (sent on "
                                           "the stdin of the script below)", shell=False))
    items += [PlanItem(Step.RENAME, activation_cmd(ctx, tmp), sudo),
              # Run by the activation script above once the config is validated: listed
              # here, not run again (shell=False).
              PlanItem(Step.RELOAD, t.reload_cmd, sudo, shell=False)]
    if ctx.options.probe:
        url = ctx.probe_url()
        items += [PlanItem(Step.SETTLE, f"GET {url}{ctx.spec.path} until {HEADER}: "
                                        f"{ctx.config_id}", shell=False),
                  PlanItem(Step.PROBE, f"sockwizard probe {url} --path {ctx.spec.path}",
                           shell=False)]
    record = index_entry(ctx, Outcome.DEPLOYED.value)
    items.append(PlanItem(Step.DONE, release_cmd(ctx, clear_journal=True, record=record), sudo))
    undo = [PlanItem(Step.RESTORE, restore_cmd(ctx), sudo, on_failure=True),
            *(PlanItem(Step.RESTORE, cmd, sudo, on_failure=True) for cmd in t.unprepare_cmds),
            PlanItem(Step.RECHECK, t.validate_cmd, sudo, on_failure=True),
            PlanItem(Step.RERELOAD, t.reload_cmd, sudo, on_failure=True)]
    return items + undo
