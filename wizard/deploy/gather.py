"""The detect step's host-side half: inspect the destination, see its lock, read it — read-only.

Called by ``wizard.deploy.steps.detect_target``. Optimistic concurrency (issue #15): the run
reads the destination without a lock, decides everything from what it read (dry run, stock
refusal, diff, unchanged), and the activation script takes the lock and checks the file is
still the one read before it writes (``scripts.LockStep``). The read is one script
(``plan.peek_cmd``: ``hoststate.peek_script``) that rides on the detect script for the
destination as guessed before the facts (``riding``): detect + read is one round trip. When
the facts resolve another destination (RHEL's conf.d, a symlink, ``sudo`` that wants a
password) it runs once more on its own — still read-only. Nothing here creates anything on the
host: a run that stops after detect (a stock host without consent) leaves no trace.

The lock is claimed apart (``lock``) only when something is written before the activation
(``plan.writes_before_activation``) or to finish an interrupted run. The scripts and their
parsers are in ``hoststate`` and ``readback``; this module decides what their answers mean.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable

from wizard.deploy import failures, hoststate, plan, readback
from wizard.deploy.context import Context, StepFailed, tail
from wizard.deploy.detect import ALSO
from wizard.deploy.events import Step
from wizard.deploy.scripts import Activation, ActivationReport
from wizard.errors import BadInput, DeployFailed, ExitCode

# The module list's answer riding before the peek (``riding(modules=...)``), between these.
MODULES = "@@sw modules"
MODULES_END = "@@sw modules end"


def riding(ctx: Context, dest: str, modules: str | None = None) -> str:
    """The peek for ``dest`` — the destination as guessed before the host's facts — as shell
    for the end of the detect script (``detect(also=...)``). Privileged as the peek is (root,
    or ``sudo -n``; a sudo that wants a password runs nothing here, and the peek runs on its
    own). Read-only, so a dry run rides too. ``modules``: the module list's command as
    guessed (``detect.guessed_modules_command``), its output first, between markers."""
    script = plan.peek_cmd(ctx, dest)
    if modules is not None:
        script = (f"echo '{MODULES}'; {{ {modules}\n}} </dev/null 2>&1; "
                  f"echo; echo '{MODULES_END}'\n{script}")
    if not ctx.options.sudo:
        return f"(\n{script}\n)"
    return privileged_peek(script)


def privileged_peek(script: str) -> str:
    """``script`` as root: directly, or through ``sudo -n`` — tried once, no ``sudo -n true``
    first (each sudo is ~0.2-1 s on a slow host): a sudo that refuses (a password wanted, no
    rights, none installed) prints nothing on stdout, which is what ``inspect_and_read`` takes
    for "run the peek apart"; the detect script's stderr is not read."""
    q = shlex.quote(script)
    return (f'if [ "$(id -u)" -eq 0 ]; then sh -c {q}; '
            f"else LC_ALL=C sudo -n -- sh -c {q}; fi")


def inspect_and_read(ctx: Context, heard: str | None = None, guess: str | None = None) -> str:
    """Part of the detect step, after the stock check: the destination checked (``inspect_dest``),
    a lock held by a live deploy refused (the same words as ever), the journal and the file's
    bytes kept for the diff. ``heard``: the detect script's stdout with the peek for ``guess``
    riding on it. Returns words for the step's detail."""
    t = ctx.tgt
    out = heard.partition(f"\n{ALSO}\n")[2] if heard is not None and guess == t.dest else ""
    out = split_modules(out)[1]
    if not out.strip():  # the facts moved the destination, or sudo -n was refused
        out = _apart(ctx, plan.peek_cmd(ctx))
    marker = f"\n{hoststate.claim_marker(ctx.lock_token)}\n"
    inspected, found, rest = f"\n{out}".partition(marker)
    detail = inspect_dest(ctx, hoststate.parse_inspect(inspected))
    real = ctx.tgt.real_dest
    if not found and real != t.dest:  # a symlink the inspection allows: peek at its target
        rest = f"\n{_apart(ctx, plan.peek_cmd(ctx, real, real))}".partition(marker)[2]
    # No marker at all (a host whose shell printed nothing of it): the file is read the
    # ordinary way; the activation's compare-and-swap still guards the write.
    claim = hoststate.parse_claim(rest)
    if claim.holder:
        if not ctx.options.dry_run:
            held(ctx, claim.holder)
        ctx.notice(Step.DETECT, f"Another deploy holds the lock on {ctx.tgt.real_dest} "
                                f"({hoststate.describe_owner(claim.holder)}): a real run "
                                "would stop here.")
    ctx.journal = claim.journal
    ctx.readback = readback.parse(rest)
    return detail + ("; read without a lock" if not ctx.options.dry_run else "")


def split_modules(out: str) -> tuple[str | None, str]:
    """What rode after the detect script -> (the module list's answer or None, the peek's)."""
    if out.startswith(f"{MODULES}\n"):
        section, found, rest = out[len(MODULES) + 1:].partition(f"\n{MODULES_END}\n")
        if found:
            return section, rest
    return None, out


def speculated_modules(heard: list[str], asked: str | None) -> Callable[[str], str | None]:
    """For ``detect(speculated=...)``: the riding answer when the real command is ``asked``."""
    def answer(command: str) -> str | None:
        if asked is None or command != asked or not heard:
            return None
        return split_modules(heard[0].partition(f"\n{ALSO}\n")[2])[0]
    return answer


def _apart(ctx: Context, command: str) -> str:
    ctx.peeks += (command,)
    return ctx.run(command).stdout


def inspect_dest(ctx: Context, info: hoststate.DestInfo) -> str:
    """Refuse what must not be written through, by the destination as resolved on the host:
    before anything reads it, so a secret elsewhere never reaches a backup (hoststate)."""
    t = ctx.tgt
    if not info.real and not info.is_link:  # its directory does not exist yet
        info = dataclasses.replace(info, real=t.real_dest, kind="absent")
    problem = hoststate.dest_problem(t.dest, info, follow_symlink=ctx.options.follow_symlink)
    if problem is not None:
        words = failures.bad_dest(ctx.host, problem, may_follow=info.kind in ("file", "absent"))
        raise BadInput(words.title, words.hint)
    if info.real != t.real_dest:
        ctx.target = dataclasses.replace(t, real_dest=info.real)
    return f"; symlink to {info.real}" if info.is_link else ""


def lock(ctx: Context) -> None:
    """Take the host-side lock on the destination apart, before anything is written (prepare,
    a companion's upload, finishing an interrupted run): one deploy per file at a time. Also
    sweeps this destination's leftover temp files and reads the journal again, under it."""
    result = ctx.run(plan.claim_cmd(ctx))
    take(ctx, hoststate.parse_claim(result.stdout), result.output)


def take(ctx: Context, claim: hoststate.Claim, output: str) -> None:
    """The lock as the claim script (or the activation's lock step) answered: ours, or who
    holds it."""
    if not claim.locked:
        if not claim.holder:
            path = hoststate.lock_path(ctx.options.backup_dir, ctx.tgt.real_dest)
            raise StepFailed(Step.DETECT, failures.lock_failed(path, ctx.host), tail(output))
        held(ctx, claim.holder)
    ctx.locked = True
    ctx.journal = claim.journal
    stale(ctx, claim)


def stale(ctx: Context, claim: hoststate.Claim) -> None:
    if claim.stale:
        path = hoststate.lock_path(ctx.options.backup_dir, ctx.tgt.real_dest)
        ctx.notice(Step.DETECT, f"Took over a stale deploy lock ({path}: "
                                f"{hoststate.describe_owner(claim.holder)}).", "info")


def held(ctx: Context, holder: str) -> None:
    """A live deploy holds the destination's lock: stop, nothing changed."""
    t = ctx.tgt
    path = hoststate.lock_path(ctx.options.backup_dir, t.real_dest)
    words = failures.lock_held(t.real_dest, ctx.host, hoststate.describe_owner(holder),
                               path, hoststate.LOCK_STALE_S // 60)
    raise DeployFailed(words.title, words.hint, exit_code=ExitCode.FAILED)


NOT_LOCKED = (Activation.LOCK_HELD, Activation.LOCK_FAILED, Activation.CHANGED_SINCE_READ)


def locked_by_activation(ctx: Context, report: ActivationReport, first: Step,
                         total: float) -> None:
    """The activation script's lock step (``scripts.LockStep``) as it answered: a stale lock
    taken over (a notice), or the run stopped before anything — a live deploy holds the lock
    (the words of a lock seen at detect), no lock could be made, or the destination is not
    the file this run read. Then nothing was changed and the lock was given back."""
    if report.outcome not in NOT_LOCKED:
        stale(ctx, hoststate.Claim(True, report.lock_holder, report.lock_stale, None))
        return
    t, output = ctx.tgt, report.output
    ctx.record(Step.BACKUP, "skipped", 0.0, "stopped before the backup: nothing was changed", "")
    ctx.record(first, "failed", total, report.outcome.name.lower().replace("_", " "), output)
    if report.outcome is Activation.CHANGED_SINCE_READ:
        raise StepFailed(first, failures.changed_before_write(t.real_dest, ctx.host), output)
    take(ctx, hoststate.Claim(False, report.lock_holder, False, None), output)
