"""What the deploy says when something fails: every outcome's title and next step, by failure.

Pure wording, apart from the control flow that picks it (``wizard.deploy.transaction``,
``steps``, ``recovery``, ``hosts``): a message can be reworded here without reading the
transaction, and the transaction can change without touching a sentence. Each function takes
the facts it names and returns a ``Wording`` (a title and a hint: what happened, then what to
do next); the tables map a failed step to its words and exit code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wizard.deploy.events import Step
from wizard.errors import ExitCode


@dataclass(frozen=True)
class Wording:
    title: str
    hint: str = ""


# A failure after the new config was put in place: what failed, and the exit code of a
# rollback that worked.
WHAT_FAILED: dict[Step, str] = {
    Step.VALIDATE: "Validation failed",
    Step.RELOAD: "Reload failed",
    Step.SETTLE: "The proxy never served the new config",
    Step.PROBE: "The live probe through the new config failed",
}
ROLLED_BACK_CODE: dict[Step, ExitCode] = {
    Step.VALIDATE: ExitCode.VALIDATE_ROLLED_BACK,
    Step.RELOAD: ExitCode.RELOAD_ROLLED_BACK,
    Step.SETTLE: ExitCode.PROBE_ROLLED_BACK,
    Step.PROBE: ExitCode.PROBE_ROLLED_BACK,
}


def _saved(backup: str | None, local_backup: str | None) -> str:
    return f"{backup or '(none: new file)'} (local copy {local_backup})"


# -- before anything changed ---------------------------------------------------------------


def not_changed(title: str, undone: Sequence[str]) -> Wording:
    return Wording(title, "The config on the host was not changed"
                   + (f" (and `{'; '.join(undone)}` undid the preparation)." if undone else "."))


def bad_dest(host: str, problem: str, *, may_follow: bool) -> Wording:
    return Wording(
        f"Refusing to deploy to {host}: {problem}. Nothing was read or changed.",
        "Point --dest at the config file itself (a regular file in the proxy's config tree)"
        + (", or pass --follow-symlink if the link target is really the config to replace"
           if may_follow else "") + ".")


def lock_failed(lock: str, host: str) -> str:
    return f"Could not take the deploy lock {lock} on {host}"


def lock_held(real_dest: str, host: str, who: str, lock: str, stale_minutes: int) -> Wording:
    return Wording(
        f"Another deploy to {real_dest} on {host} is running ({who}). Nothing was changed.",
        "Wait for it to finish and deploy again. If no deploy is running, the lock is left "
        f"over: remove it with `sudo rm -rf {lock}` (it also counts as stale once that session "
        f"is gone or after {stale_minutes} minutes).")


def backup_failed(real_dest: str, host: str) -> str:
    return f"Could not back up {real_dest} on {host}"


def backup_mismatch(real_dest: str) -> str:
    return (f"The backup of {real_dest} does not match the file read a moment ago (changed "
            "meanwhile?)")


def command_failed(cmd: str, host: str, status: int) -> str:
    return f"`{cmd}` failed on {host} (exit {status})"


def changed_meanwhile(real_dest: str, host: str) -> str:
    return (f"{real_dest} changed on {host} after it was backed up (another deploy, or an "
            "edit by hand); the new config was not put in place")


def changed_since_read(real_dest: str, host: str) -> str:
    return (f"{real_dest} changed on {host} since the fix was made from it (another deploy, "
            "or an edit by hand); nothing was changed: diagnose again")


def changed_before_write(real_dest: str, host: str) -> str:
    return (f"{real_dest} changed on {host} since it was read (another deploy, or an edit by "
            "hand); nothing was changed: run again")


def upload_incomplete(tmp: str, host: str) -> str:
    return (f"The new config did not arrive whole at {tmp} on {host} (the connection or the "
            "disk failed mid-write); it was removed and nothing was changed")


def rename_failed(real_dest: str) -> str:
    return f"Could not rename the new file over {real_dest}"


def interrupted_backup_damaged(real_dest: str, host: str, backup: str, reload_cmd: str,
                               journal: str) -> Wording:
    return Wording(
        f"An earlier deploy to {real_dest} on {host} was interrupted after validation, and "
        f"its backup {backup} is missing or damaged.",
        f"Reload the proxy by hand (`{reload_cmd}`) and check it, or restore the previous "
        f"config from the local copy; then remove {journal}.")


def journal_damaged(journal: str) -> Wording:
    return Wording("The journal of an interrupted deploy is damaged.",
                   f"Remove {journal} and deploy again.")


def unexpected_unchanged(host: str, step: Step, what: str) -> Wording:
    return Wording(f"sockwizard failed unexpectedly on {host} at {step.value} ({what}); the "
                   "host's config was not changed.",
                   "Please report this with the command line that caused it.")


def unexpected(what: str) -> str:
    """The title of a step that raised something sockwizard did not expect."""
    return f"sockwizard failed unexpectedly ({what})"


# -- the new config live, or not -------------------------------------------------------------


def reload_hung(cmd: str, timeout: float) -> str:
    return f"`{cmd}` did not finish within {timeout:g} s and was stopped"


def reload_exited(cmd: str, status: int) -> str:
    return f"`{cmd}` exited {status}"


def old_workers(seen: Sequence[str | None], want: str | None) -> str:
    return f"old workers kept answering the probe (markers {list(seen)}, want {want})"


def check_crashed(step: Step, what: str) -> Wording:
    return Wording(f"the {step.value} crashed ({what})",
                   "sockwizard could not judge the new config, so it counts as failed.")


# -- after the new config was put in place ------------------------------------------------


def refused_restored(host: str, dest: str, validate_cmd: str, undone: Sequence[str],
                     missing_modules: Sequence[str], *, untouched: bool = False) -> Wording:
    modules = (f" Apache lacks the module(s) {', '.join(missing_modules)}."
               if missing_modules else "")
    where = (f"The new config was checked before it was put in place: {dest} was never "
             "changed (verified byte for byte)" if untouched else
             f"The previous {dest} was put back byte for byte at once")
    return Wording(
        f"Validation failed on {host}: the checker refused the new config. {where}"
        + (f" and what the deploy enabled was disabled again ({'; '.join(undone)})"
           if undone else "") + "; nothing was reloaded.",
        "Fix what the checker says above"
        + ("" if untouched else f" (run `{validate_cmd}` on the host to see it again)")
        + f", then deploy again.{modules}")


def kept(step: Step, host: str, why: str, backup: str | None, local_backup: str | None
         ) -> Wording:
    return Wording(
        f"{WHAT_FAILED[step]} on {host} ({why}); the new config was KEPT (--no-rollback).",
        f"The previous config is saved at {_saved(backup, local_backup)}. Restore it with "
        f"`sockwizard rollback --host {host}` if clients suffer.")


def rolled_back(step: Step, host: str, why: str, dest: str, hint: str) -> Wording:
    how = ("put back byte for byte; nothing was reloaded" if step is Step.VALIDATE
           else "restored byte for byte, validated and reloaded")
    return Wording(f"{WHAT_FAILED[step]} on {host} ({why}). Rolled back: the previous {dest} "
                   f"was {how}.", hint)


def rolled_back_hint(step: Step, *, validate_cmd: str, reload_cmd: str, probe_url: str,
                     probe_fix: str | None, shadowing: Sequence[str], unshadow: str) -> str:
    """What to do after a rollback that worked, by the step that failed."""
    if step is Step.VALIDATE:
        return f"Run `{validate_cmd}` on the host to see why it fails or hangs, then deploy again."
    if shadowing and step in (Step.SETTLE, Step.PROBE):
        # Detection warned about it before the change: by far the likeliest cause.
        return (f"Most likely {', '.join(shadowing)} answered instead of the new config (see "
                f"the warning above). {unshadow} Then deploy again.")
    if step is Step.RELOAD:
        return (f"Read the reload output above and the proxy's error log on the host; check "
                f"that the proxy is running (`{reload_cmd}` needs a live daemon). Then deploy "
                "again.")
    if step is Step.SETTLE:
        return ("Check that the reload command reloads the proxy that listens on "
                f"{probe_url} (--reload-cmd), and that this machine can reach it "
                "(--probe-url).")
    if probe_fix is not None:  # the probe failed, with its report
        return ((probe_fix + " " if probe_fix else "") + "Then deploy again; `sockwizard "
                f"diagnose {probe_url}` explains the cause in detail.")
    return ""


def rollback_failed(what: str, host: str, at: Step, backup: str | None,
                    local_backup: str | None, real_dest: str, validate_cmd: str,
                    reload_cmd: str) -> Wording:
    saved = backup or "(none: the file was new)"
    return Wording(
        f"{what.capitalize()} on {host}, and the rollback FAILED at {at.value}: the "
        "host needs attention.",
        f"The previous config is saved on the host at {saved} and locally at {local_backup}. "
        f"Put it back by hand (`sudo cp -p {saved} {real_dest}`), run `{validate_cmd}` and "
        f"`{reload_cmd}`, or run `sockwizard rollback --host {host}` once the cause is fixed.")


def connection_lost_unchanged(title: str, hint: str, leftover_dir: str | None) -> Wording:
    hint = hint or "Check the host and the network, then run the deploy again."
    if leftover_dir is not None:
        hint += (f" A temp file may remain in {leftover_dir} (outside every include glob); "
                 "the next deploy removes it.")
    return Wording(f"{title.rstrip('.')}. The host's config was not changed.", hint)


def reconnected_and_rolled_back(title: str) -> Wording:
    return Wording(f"{title}. Reconnected and rolled back: the previous config was restored "
                   "byte for byte, validated and reloaded.",
                   "Check the network, then deploy again.")


def connection_lost_changed(title: str, host: str, backup: str | None,
                            local_backup: str | None) -> Wording:
    return Wording(
        f"{title}, after the new config was put in place (it passed the checker if the "
        "validate step finished).",
        f"Run `sockwizard rollback --host {host}` to restore the previous config (saved at "
        f"{backup or '(none: new file)'}, local copy {local_backup}), or deploy again once the "
        "host is reachable.")


# -- no change -------------------------------------------------------------------------------


def unchanged_probe_failed(title: str, reason: str, probe_url: str) -> Wording:
    return Wording(f"{title} But the probe through it fails: {reason}",
                   "Nothing was changed. Is the proxy running and reloaded with this config? "
                   f"Run `sockwizard diagnose {probe_url}` for the cause.")
