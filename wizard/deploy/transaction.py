"""The guarded deploy: put a rendered config on a host so that it is never left broken.

Called through ``wizard.deploy.hosts`` (``apply``, ``deploy_host``, ``rollback``) by
``sockwizard deploy`` / ``rollback``, the sandbox and the TUI. Every step is reported through a
callback as small frozen events (``wizard.deploy.events``); the result is a ``DeployResult``
with the documented exit code; nothing here raises for a failed deploy, so many hosts can run
side by side.

The transaction, one SSH connection for all of it::

    connect -> detect (+ inspect the destination, see its lock, read it: read-only) -> diff
    -> prepare -> lock + compare-and-swap -> backup (host + local copy) -> upload (temp file
    in ``.sockwizard-tmp`` beside the target's directory) -> rename -> validate -> reload ->
    settle -> probe -> done

On the wire (issue #15) that is three commands for a changed config: detect (with the host
probe, and the read-only peek at the destination as guessed: ``gather.riding``), lock +
compare-and-swap + backup + upload + rename + validate + reload (one script, the bytes on its
stdin: ``scripts.LockStep``), and the release with the history record after the probe; two
for an unchanged one (detect, the history record), one for a stock host refused without its
flags. Optimistic concurrency: the run decides from what it read without a lock, and the
activation takes the lock and refuses (nothing changed) when the file is no longer the one
read. The release stays a command of its own, waited for: the run then knows the outcome was
recorded (``recovery.release``). A redeploy over the host's last deploy (``warm``) sends
detect + a guard + the activation as one command: two commands; when the guard finds the host
changed, its answer is the detect answer and the run goes on as above.

This module is the control flow only: which step runs next and what a failure means. The
steps are in ``steps``, the undo in ``recovery``, the commands in ``plan``, the words in
``failures``, the state in ``context``; the lock, journal and temp dir in ``hoststate``.

Decisions:

* **Rename, then validate the whole tree in place.** ``nginx -t``, ``apache2ctl -t`` and
  ``caddy validate`` check the tree that *includes* the file, so a temp file outside the target's
  directory is invisible to them; validating a modified copy of the tree cannot work for
  arbitrary ``--validate-cmd`` values. So the temp file is renamed over the target and the real
  checker runs. That rename, the checker and — when it refuses — putting the old bytes back run
  as **one** shell script on the host, with SIGHUP/SIGPIPE ignored: a dropped SSH connection
  cannot stop it between "renamed" and "restored". The same script first writes the new
  bytes from its stdin (size and sha256 checked: a cut stream changes nothing) and, once the
  checker accepted, runs the reload under its own timeout. Its exit status is parsed once into
  ``scripts.Activation``. The proxy is not reloaded in between, so it keeps serving the old
  config throughout. A proxy that loads a changed file by itself (Traefik's file provider
  watches it: ``ProxyProfile.validate_before_rename``) would not wait for a reload: there the
  script checks the temp file first, with a checker that reads only that file, and a refused
  one never reaches the destination.
* **Backups** are ``cp -p`` copies (bytes, mode, owner) in ``/var/backups/sockwizard/`` (not
  beside the target: ``import sites/*`` or ``Include sites-enabled/*`` would load them), listed
  in ``index.jsonl`` there for ``sockwizard rollback``, and mirrored under the user's state dir
  (``$XDG_STATE_HOME/sockwizard/backups/<host>/``). A restore copies the backup beside the target
  and renames it over, then reads the file back and compares it byte for byte.
* **Settle by marker, not by sleep.** The deployed config answers with ``X-Sockwizard-Config:
  <id>`` (``wizard.deploy.marker``); the deploy polls until every answer carries the new id
  (each proxy's ``settle_quiet``: nginx's 100 ms overlap of worker generations), then probes.
* **Rollback** on a failed validate (already done by the script), reload, settle or probe —
  or any exception there (a probe crashing on a hostile answer counts as a failed probe):
  restore, validate, reload, settle on the old config's id when it has one. ``--no-rollback``
  keeps a config that failed reload or probe; one that fails validation is never kept. A
  reload that hangs is stopped after ``reload_timeout``; the rollback then gives the reload of
  the restored config one short try (``RERELOAD_TIMEOUT``) and says so.
"""

from __future__ import annotations

from wizard.deploy import failures, gather, hoststate, plan, recovery, steps, warm
from wizard.deploy.backups import sha
from wizard.deploy.context import ActivationFailed, Context, StepFailed
from wizard.deploy.detect import unshadow_advice
from wizard.deploy.events import Step
from wizard.deploy.result import DeployResult, Outcome
from wizard.deploy.scripts import Activation
from wizard.deploy.settle import probe_summary
from wizard.errors import (
    BadInput,
    ConnectionFailed,
    ExitCode,
    SockwizardError,
    SudoPasswordRequired,
)

# The steps whose failure, after the rename, is reported as itself (else: as the validate).
_LIVE_STEPS = (Step.RELOAD, Step.SETTLE, Step.PROBE)


class Transaction:
    """One deploy on one host, over an open Remote (``Context``). Use ``hosts.apply``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def execute(self) -> DeployResult:
        ctx = self.ctx
        result: DeployResult | None = None
        try:
            result = self._execute()
        except StepFailed as exc:  # a failure before anything changed
            result = ctx.result(Outcome.FAILED, ExitCode.FAILED, exc.title, detail=exc.output,
                                failed_step=exc.step)
        except SockwizardError as exc:
            result = ctx.result(Outcome.ROLLBACK_FAILED if ctx.changed else Outcome.FAILED,
                                exc.exit_code, exc.title, hint=exc.hint, detail=exc.detail,
                                failed_step=ctx.steps[-1].step if ctx.steps else None)
        except Exception as exc:  # a bug must not leave a half-done change behind
            result = self.unexpected(exc)
        finally:
            recovery.release(ctx, result)
        assert result is not None
        if result.outcome is Outcome.DEPLOYED:  # the next deploy may go warm (``warm``)
            warm.remember(ctx, ctx.facts_heard)
        return result

    def unexpected(self, exc: Exception) -> DeployResult:
        ctx = self.ctx
        what = f"{type(exc).__name__}: {exc}"
        if ctx.changed and ctx.target is not None:
            step = ctx.current if ctx.current in _LIVE_STEPS else Step.VALIDATE
            return self.failed_after_change(StepFailed(step, failures.unexpected(what)))
        words = failures.unexpected_unchanged(ctx.host, ctx.current, what)
        return ctx.result(Outcome.FAILED, ExitCode.FAILED, words.title, hint=words.hint,
                          failed_step=ctx.current)

    def _execute(self) -> DeployResult:
        ctx = self.ctx
        if ctx.options.probe:
            steps.check_probe_url(ctx.probe_url())
        steps.detect_target(ctx)
        steps.read_and_diff(ctx)
        unchanged = ctx.old == ctx.new and not ctx.tgt.companions
        # Read without a lock: the activation script takes it (and checks the file is still
        # the one read). Claimed apart only when something is written before it.
        ctx.claimed_apart = self.interrupted_earlier() or (
            not unchanged and plan.writes_before_activation(ctx))
        ctx.plan = plan.build(ctx)
        if ctx.options.dry_run:
            return ctx.result(Outcome.PLANNED, ExitCode.OK,
                              f"Dry run for {ctx.host}: nothing was changed."
                              + ("" if ctx.diff else " The host already has this config."))
        if ctx.claimed_apart:
            seen = ctx.journal
            gather.lock(ctx)
            if ctx.journal != seen:  # another run came and went since the peek
                raise StepFailed(Step.DETECT, failures.changed_before_write(ctx.tgt.real_dest,
                                                                            ctx.host))
        if self.interrupted_earlier():
            return self.finish_interrupted()
        if unchanged:
            for step in (Step.BACKUP, Step.UPLOAD, Step.RENAME, Step.VALIDATE, Step.RELOAD):
                ctx.skip(step, "unchanged")
            return self.verify_unchanged()
        try:
            steps.prepare(ctx)
            steps.activate(ctx, steps.upload(ctx))
        except ActivationFailed as exc:
            return self.activation_failed(exc)
        except StepFailed as exc:
            words = failures.not_changed(exc.title, recovery.undo_prepare(ctx))
            return ctx.result(Outcome.FAILED, ExitCode.FAILED, words.title, detail=exc.output,
                              failed_step=exc.step, hint=words.hint)
        except ConnectionFailed as exc:
            return self.connection_lost(exc)
        except SockwizardError as exc:
            if not ctx.changed:
                raise
            # e.g. the checker hung past the command timeout: we cannot know what the script
            # did, so put the old file back from here.
            return self.failed_after_change(StepFailed(Step.VALIDATE, exc.title, exc.detail))
        except Exception as exc:
            if not ctx.changed:
                raise
            return self.failed_after_change(StepFailed(
                Step.VALIDATE, failures.unexpected(f"{type(exc).__name__}: {exc}")))
        except BaseException:  # Ctrl-C, SystemExit: put the old file back, then go
            if ctx.changed:
                recovery.rollback(ctx, Step.RENAME, interrupted=True)
            raise
        return self.go_live()

    def go_live(self) -> DeployResult:
        """Reload, settle and probe the new config; roll back when one of them fails."""
        ctx = self.ctx
        try:
            steps.warn_websocket_drop(ctx)
            steps.reload(ctx)
            if ctx.options.probe:
                steps.settle_and_probe(ctx)
            else:
                why = ("the file was removed: no route left to probe" if ctx.new is None
                       else "--no-probe")
                ctx.skip(Step.SETTLE, why)
                ctx.skip(Step.PROBE, why)
        except StepFailed as exc:
            return self.failed_after_change(exc)
        except ConnectionFailed as exc:
            return self.connection_lost(exc)
        except SockwizardError as exc:  # e.g. the reload timed out: still roll back
            step = ctx.current if ctx.current in (Step.SETTLE, Step.PROBE) else Step.RELOAD
            return self.failed_after_change(StepFailed(step, exc.title, exc.detail))
        except Exception as exc:  # a crashing probe is a failed probe, never a kept config
            step = ctx.current if ctx.current in (Step.SETTLE, Step.PROBE) else Step.RELOAD
            return self.failed_after_change(StepFailed(
                step, failures.unexpected(f"{type(exc).__name__}: {exc}")))
        except BaseException:  # Ctrl-C, SystemExit: put the old config back, then go
            recovery.rollback(ctx, Step.RELOAD, interrupted=True)
            raise
        with ctx.step(Step.DONE, "done") as s:
            s.detail = (f"{ctx.target_dest} removed" if ctx.new is None else
                        f"{ctx.target_dest} serves config {ctx.config_id or '(unmarked)'}")
        return ctx.result(Outcome.DEPLOYED, ExitCode.OK,
                          f"Deployed to {ctx.host}: {ctx.target_dest} "
                          + ("is live and the probe passed over WebSocket."
                             if ctx.options.probe else "is live (not probed: --no-probe)."))

    # -- no change, or an earlier run's change -----------------------------------------------

    def verify_unchanged(self) -> DeployResult:
        ctx = self.ctx
        title = f"No change on {ctx.host}: {ctx.tgt.dest} already has this config."
        if not ctx.options.probe:
            ctx.skip(Step.SETTLE, "--no-probe")
            ctx.skip(Step.PROBE, "--no-probe")
            return ctx.result(Outcome.UNCHANGED, ExitCode.OK, title)
        try:
            steps.settle_and_probe(ctx, reloaded=False)
        except StepFailed as exc:
            words = failures.unchanged_probe_failed(title, exc.title, ctx.probe_url())
            return ctx.result(Outcome.UNCHANGED, ExitCode.FAILED, words.title,
                              detail=exc.output, failed_step=exc.step, hint=words.hint)
        return ctx.result(Outcome.UNCHANGED, ExitCode.OK, title + " The probe passed.")

    def interrupted_earlier(self) -> bool:
        """An earlier run put exactly these bytes in place and was never seen to finish
        (killed between validate and the probe): the config may be on disk but not live."""
        ctx, j = self.ctx, self.ctx.journal
        return (j is not None and ctx.old is not None and ctx.old == ctx.new
                and j.get("new_sha256") == sha(ctx.old))

    def finish_interrupted(self) -> DeployResult:
        """Finish what the interrupted run started: reload, settle, probe — and on failure
        roll back to the config it had replaced (its backup)."""
        ctx = self.ctx
        j = ctx.journal or {}
        backup = j.get("backup")
        journal = hoststate.journal_path(ctx.options.backup_dir, ctx.tgt.real_dest)
        old: bytes | None = None
        if isinstance(backup, str):
            old = ctx.remote.read_file(backup)
            if old is None or sha(old) != j.get("old_sha256"):
                words = failures.interrupted_backup_damaged(ctx.tgt.real_dest, ctx.host, backup,
                                                            ctx.tgt.reload_cmd, journal)
                raise BadInput(words.title, words.hint)
        elif backup is not None:
            words = failures.journal_damaged(journal)
            raise BadInput(words.title, words.hint)
        ctx.notice(Step.DIFF, f"An earlier deploy put this config in place at {j.get('time')} "
                              "and was interrupted before it was seen live: finishing it "
                              "(reload, settle, probe; rollback to its backup on failure).")
        for step in (Step.BACKUP, Step.UPLOAD, Step.RENAME, Step.VALIDATE):
            ctx.skip(step, "done by the interrupted deploy")
        ctx.old, ctx.backup, ctx.changed = old, backup if isinstance(backup, str) else None, True
        ctx.diff = steps.unified_diff(old, ctx.new, ctx.tgt.dest, ctx.host)
        return self.go_live()

    # -- failures after the change -----------------------------------------------------------

    def activation_failed(self, exc: ActivationFailed) -> DeployResult:
        """The activation script did not validate: by its typed outcome."""
        ctx, t = self.ctx, self.ctx.tgt
        match exc.activation:
            case (Activation.REFUSED_RESTORED | Activation.REFUSED_UNTOUCHED
                  ) if recovery.verify_restored(ctx):
                ctx.changed = False
                undone = recovery.undo_prepare(ctx)
                words = failures.refused_restored(
                    ctx.host, t.dest, t.validate_cmd, undone,
                    t.missing_modules if not t.unprepare_cmds else (),
                    untouched=exc.activation is Activation.REFUSED_UNTOUCHED)
                return ctx.result(Outcome.ROLLED_BACK, ExitCode.VALIDATE_ROLLED_BACK,
                                  words.title, detail=exc.output, failed_step=Step.VALIDATE,
                                  hint=words.hint)
            case Activation.UNKNOWN:
                # The script did not finish normally: put the old file back from here.
                return self.failed_after_change(StepFailed(
                    Step.VALIDATE, "the validation script failed", exc.output))
            case (Activation.REFUSED_RESTORED | Activation.REFUSED_RESTORE_FAILED
                  | Activation.REFUSED_UNTOUCHED):
                # Restored (or untouched), but the file read back differs; or the script's
                # restore failed.
                return self.rollback_failed(Step.VALIDATE, Step.RESTORE, exc.output,
                                            "restoring the previous file failed")
            case (Activation.VALIDATED | Activation.RENAME_FAILED | Activation.CHANGED_MEANWHILE
                  | Activation.UPLOAD_FAILED | Activation.BACKUP_FAILED
                  | Activation.CHANGED_SINCE_READ | Activation.LOCK_HELD
                  | Activation.LOCK_FAILED):
                raise AssertionError(f"not an activation failure: {exc.activation}")

    def failed_after_change(self, exc: StepFailed) -> DeployResult:
        ctx, t = self.ctx, self.ctx.tgt
        if not ctx.options.rollback:
            words = failures.kept(exc.step, ctx.host, exc.title, ctx.backup, ctx.local_backup)
            return ctx.result(Outcome.KEPT, ExitCode.FAILED, words.title, detail=exc.output,
                              failed_step=exc.step, hint=words.hint)
        problem = recovery.rollback(ctx, exc.step)
        if problem is not None:
            failed_at, output = problem
            return self.rollback_failed(exc.step, failed_at, exc.output + "\n" + output,
                                        f"{failures.WHAT_FAILED[exc.step].lower()} "
                                        f"({exc.title})")
        probe_fix = None
        if exc.step is Step.PROBE and ctx.probe_report is not None:
            probe_fix = probe_summary(ctx.probe_report)[2]
        hint = failures.rolled_back_hint(
            exc.step, validate_cmd=t.validate_cmd, reload_cmd=t.reload_cmd,
            probe_url=ctx.probe_url(), probe_fix=probe_fix, shadowing=t.shadowing_sites,
            unshadow=unshadow_advice(ctx.spec.proxy))
        words = failures.rolled_back(exc.step, ctx.host, exc.title, t.dest, hint)
        return ctx.result(Outcome.ROLLED_BACK, failures.ROLLED_BACK_CODE[exc.step], words.title,
                          detail=exc.output, failed_step=exc.step, hint=words.hint)

    def rollback_failed(self, failed: Step, at: Step, output: str, what: str) -> DeployResult:
        ctx, t = self.ctx, self.ctx.tgt
        words = failures.rollback_failed(what, ctx.host, at, ctx.backup, ctx.local_backup,
                                         t.real_dest, t.validate_cmd, t.reload_cmd)
        return ctx.result(Outcome.ROLLBACK_FAILED, ExitCode.ROLLBACK_FAILED, words.title,
                          detail=output, failed_step=failed, hint=words.hint)

    def connection_lost(self, exc: ConnectionFailed) -> DeployResult:
        ctx = self.ctx
        if not ctx.changed:
            leftover = (hoststate.temp_dir(ctx.tgt.real_dest)
                        if not isinstance(exc, SudoPasswordRequired)
                        and ctx.current is Step.UPLOAD else None)
            words = failures.connection_lost_unchanged(exc.title, exc.hint, leftover)
            return ctx.result(Outcome.FAILED, ExitCode.CONNECTION, words.title,
                              detail=exc.detail, failed_step=ctx.current, hint=words.hint)
        if ctx.reconnect is not None and ctx.options.rollback:
            try:
                ctx.remote = ctx.reconnect()
            except SockwizardError:
                pass
            else:
                ctx.notice(Step.RESTORE, "Reconnected after the connection dropped; rolling "
                                         "back.", "info")
                if recovery.rollback(ctx, Step.RELOAD) is None:
                    words = failures.reconnected_and_rolled_back(exc.title)
                    return ctx.result(Outcome.ROLLED_BACK, ExitCode.CONNECTION, words.title,
                                      detail=exc.detail, hint=words.hint)
        words = failures.connection_lost_changed(exc.title, ctx.host, ctx.backup,
                                                 ctx.local_backup)
        return ctx.result(Outcome.FAILED, ExitCode.CONNECTION, words.title, detail=exc.detail,
                          hint=words.hint)
