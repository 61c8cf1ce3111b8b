"""The backup step, made by the activation script itself (issue #15: one channel fewer).

Called by ``wizard.deploy.steps.activate``: ``save_local_copy`` before the script runs,
``backed_up`` on its report. The script's part is ``scripts.backup_section`` (copy, check the
copies' sha256 against the bytes read, refuse to go on otherwise); this module turns its report
into the BACKUP step, and into "nothing changed" (BACKUP_FAILED) or "not trusted" (a report
without the sums the script checked).
"""

from __future__ import annotations

from wizard.deploy import failures, plan
from wizard.deploy.backups import backup_name, local_dir, save_local
from wizard.deploy.context import ActivationFailed, Context, StepFailed, tail
from wizard.deploy.events import Step
from wizard.deploy.scripts import Activation, ActivationReport


def save_local_copy(ctx: Context) -> None:
    """The local mirror of the backup the activation script makes on the host, written from
    the bytes already read (the script checks its copy has their sha256). Written before the
    script runs, so that a connection lost in the middle still leaves a local copy."""
    directory = local_dir(ctx.options.state_dir, ctx.host)
    name = backup_name(ctx.stamp, ctx.tgt.real_dest)
    try:
        ctx.local_backup = save_local(directory, name, ctx.old, plan.index_entry(ctx))
    except OSError as exc:
        # The host copy is the one a restore uses; a missing local copy is only a warning.
        ctx.local_backup = str(directory / name)
        ctx.notice(Step.BACKUP, f"Could not write the local backup copy in {directory}: "
                                f"{exc.strerror or exc}")


def backed_up(ctx: Context, report: ActivationReport, first: Step) -> None:
    """The backup step as the activation script reported it: made and matching the bytes
    read, else ``StepFailed`` (BACKUP_FAILED: nothing changed). A run that went on but does
    not show the sums the script itself checked is not trusted (``ActivationFailed``,
    UNKNOWN): the transaction puts the old bytes back from here and verifies them."""
    t, want = ctx.tgt, plan.backup_first(ctx).sums
    backup = plan.backup_path(ctx)
    if report.outcome is Activation.BACKUP_FAILED:
        ctx.changed, ctx.backup = False, None
        title = (failures.backup_mismatch(t.real_dest) if report.backup_fault == "mismatch"
                 else failures.backup_failed(t.real_dest, ctx.host))
        ctx.record(Step.BACKUP, "failed", report.backup_s, title, report.output,
                   resolution=report.times.resolution)
        ctx.record(first, "skipped", 0.0, "the backup failed: nothing was changed", "")
        raise StepFailed(Step.BACKUP, title, report.output)
    if report.backup_sums != want:
        ctx.record(Step.BACKUP, "failed", report.backup_s,
                   "the activation script did not report the backup it made", report.output)
        if report.outcome is not Activation.UNKNOWN:  # UNKNOWN: handled as such by activate
            ctx.record(first, "failed", 0.0, "the run's report is not whole", "")
            raise ActivationFailed(Activation.UNKNOWN, tail(report.output))
        return
    ctx.record(Step.BACKUP, "ok", report.backup_s,
               f"{backup} (+ local {ctx.local_backup})" if backup
               else f"no current file; local note {ctx.local_backup}", "",
               resolution=report.times.resolution)
