"""Undoing a change: put the old file back, check it, reload it, wait for its marker — and
drop the host-side lock at the end of every run.

Called by ``wizard.deploy.transaction`` when a step after the rename fails (or the run is
interrupted). ``rollback`` returns None when the old config is back and live, else the
rollback step that failed and its output; it never raises for a failed step, so the
transaction can still report what happened.
"""

from __future__ import annotations

import contextlib

from wizard.deploy import companions, history, plan
from wizard.deploy.backups import sha, update_local
from wizard.deploy.context import Context, StepFailed, tail
from wizard.deploy.events import Step
from wizard.deploy.marker import existing_id
from wizard.deploy.options import RERELOAD_TIMEOUT
from wizard.deploy.result import DeployResult, Outcome
from wizard.errors import ConnectionFailed, SockwizardError
from wizard.proxies import profile
from wizard.remote import CommandResult


def rollback(ctx: Context, failed: Step, *, interrupted: bool = False
             ) -> tuple[Step, str] | None:
    """Restore, validate, reload (and settle on the old config). Returns (step, output)
    of the rollback step that failed, or None when the old config is back and live."""
    t = ctx.tgt
    try:
        with ctx.step(Step.RESTORE, f"put the previous {t.real_dest} back") as s:
            result = ctx.run(plan.restore_cmd(ctx))
            if not result.ok:
                raise StepFailed(Step.RESTORE, "restore failed", tail(result.output))
            if not verify_restored(ctx):
                raise StepFailed(Step.RESTORE, "the restored file differs from the backup")
            ctx.changed = False
            s.detail = (f"from {ctx.backup} (verified byte for byte)" if ctx.backup
                        else "removed the new file (there was none before)")
            undone = undo_prepare(ctx)
            s.detail += "".join(f"; {cmd}" for cmd in undone)
        if failed is Step.VALIDATE:
            # The bytes are verified identical and the proxy never loaded the refused
            # config: the host is exactly as before, nothing to check or reload.
            return None
        if ctx.old is None and undone and t.unprepare_stops_proxy:
            # The deploy made the service too (node's first deploy): it is stopped and gone
            # with its file; there was nothing before to check or reload.
            return None
        with ctx.step(Step.RECHECK, t.validate_cmd) as s:
            result = ctx.run(t.validate_cmd)
            s.output = tail(result.output)
            if not result.ok:
                raise StepFailed(Step.RECHECK, "the restored config does not validate",
                                 tail(result.output))
        with ctx.step(Step.RERELOAD, t.reload_cmd) as s:
            result = reload_restored(ctx)
            s.output = tail(result.output)
            if not result.ok:
                raise StepFailed(Step.RERELOAD, "reloading the restored config failed",
                                 tail(result.output))
        old_id = existing_id(ctx.old.decode("utf-8", "replace")) if ctx.old else None
        if old_id and ctx.options.probe and not interrupted:
            settle_old(ctx, old_id)
    except StepFailed as exc:
        return exc.step, exc.title + ("\n" + exc.output if exc.output else "")
    except SockwizardError as exc:
        return ctx.current, exc.message()
    except Exception as exc:  # a crashing settle must not hide the restore's outcome
        return ctx.current, f"sockwizard failed unexpectedly ({type(exc).__name__}: {exc})"
    return None


def settle_old(ctx: Context, old_id: str) -> None:
    """Return only once the old config is what answers again (a miss is only a notice)."""
    url = ctx.probe_url()
    with ctx.step(Step.SETTLE, f"wait until {url} serves config {old_id} again") as s:
        settled = ctx.checks.settle(url, ctx.spec.path, old_id,
                                    profile(ctx.spec.proxy).settle_quiet,
                                    ctx.options.settle_timeout,
                                    connect_to=ctx.probe_connect_to())
        s.detail = settled.detail
        if not settled.ok:
            s.status = "failed"
            ctx.notice(Step.SETTLE, "The restored config is in place and reloaded, but its "
                                    "marker did not come back: " + settled.detail)


def reload_restored(ctx: Context) -> CommandResult:
    """The rollback's reload. After a reload that hung, the same daemon may hang again:
    say so, and give it one short try instead of the full timeout (item 8, issue #10)."""
    t = ctx.tgt
    if not ctx.reload_hung:
        return ctx.run(t.reload_cmd)
    short = min(RERELOAD_TIMEOUT, ctx.options.reload_timeout)
    ctx.notice(Step.RERELOAD, f"The reload of the new config hung; reloading the restored "
                              f"config once more with a {short:g} s limit.")
    try:
        return ctx.run(t.reload_cmd, timeout=short)
    except ConnectionFailed:
        raise
    except SockwizardError as exc:
        raise StepFailed(Step.RERELOAD, f"reloading the restored config hung too (stopped "
                         f"after {short:g} s)", exc.message()) from exc


def verify_restored(ctx: Context) -> bool:
    """The file reads back byte for byte as before, and every companion is as before (a
    main config's bytes, a default site's link target). Right after a refused activation
    the script's own sha256 of the file says it, without reading it back (one SFTP session
    fewer)."""
    reported, ctx.restored_sha = ctx.restored_sha, None
    if reported is not None and not ctx.tgt.companions:
        return reported == (sha(ctx.old) if ctx.old is not None else "absent")
    try:
        now = ctx.remote.read_file(ctx.tgt.real_dest)
        if now != ctx.old:
            return False
        for c in ctx.tgt.companions:
            if c.link:
                if not ctx.run(companions.is_as(c, c.old), timeout=30).ok:
                    return False
            elif ctx.remote.read_file(c.path) != c.old:
                return False
    except SockwizardError:
        return False
    return True


def undo_prepare(ctx: Context) -> tuple[str, ...]:
    """Best effort: run unprepare_cmds after the old config is back (a2dismod the modules
    this deploy enabled). The commands that ran, for the report (none: nothing undone)."""
    if not (ctx.prepared and ctx.tgt.unprepare_cmds):
        return ()
    ctx.prepared = False
    failed = [cmd for cmd in ctx.tgt.unprepare_cmds if not ctx.run(cmd).ok]
    if failed:
        ctx.notice(Step.RESTORE, "Could not undo " + "; ".join(f"`{c}`" for c in failed)
                   + ": what it enabled stays enabled (harmless for the old config).")
        return ()
    return ctx.tgt.unprepare_cmds


def release(ctx: Context, result: DeployResult | None) -> None:
    """Drop the host-side lock; forget the journal once the outcome is known; record the
    run's outcome in the history (same script: no extra round trip). An unchanged run holds
    no lock: only its record is written.

    The one command after the probe, on the session channel already opened while the
    activation ran (``wizard.remote.ssh.channels``): one round trip, waited for on purpose.
    Not waiting would save it but leave the run not knowing its record was written; a link
    dropped here leaves the lock (taken over as stale by the next run: its holder, this
    connection, is gone), the journal (the next run finishes the change: reload, settle,
    probe) and a ``pending`` history record."""
    unchanged = (result is not None and result.outcome is Outcome.UNCHANGED
                 and not ctx.options.dry_run)
    if not (ctx.locked or unchanged):
        return
    # No lock is needed not to write: an unchanged run only records itself (and leaves a
    # journal it saw to the run that holds the lock next).
    known = ctx.locked and result is not None and result.outcome in (
        Outcome.DEPLOYED, Outcome.ROLLED_BACK, Outcome.KEPT, Outcome.UNCHANGED)
    record = None
    if ctx.target is not None:
        outcome = result.outcome.value if result is not None else history.INTERRUPTED
        record = plan.index_entry(ctx, outcome, backup=ctx.backup)
        record["backup"] = ctx.backup  # none made (unchanged, or stopped before the backup)
        update_local(ctx.local_backup, record)
    with contextlib.suppress(Exception):  # a stale lock is taken over by the next run
        ctx.run(plan.release_cmd(ctx, clear_journal=known, record=record),
                timeout=plan.RELEASE_TIMEOUT)
        ctx.locked = False
