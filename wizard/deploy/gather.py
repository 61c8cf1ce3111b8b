"""The detect step's host-side half: inspect the destination, take the lock, read the file.

Called by ``wizard.deploy.steps.detect_target``. A real run does all three in ONE script
(``plan.gather_cmd``: ``hoststate.gather_script``) when the inspection alone shows nothing to
decide — not a symlink, a regular file or none — and falls back to a separate claim
otherwise; the dry run only inspects. That script first rides on the detect script itself, for
the destination as guessed before the facts (``speculation``/``adopt``): when the facts
confirm the guess, detect + gather is one round trip; else it runs once the target is known.
The scripts and their parsers are in ``hoststate`` and ``readback``; this module decides what
their answers mean.
"""

from __future__ import annotations

import dataclasses

from wizard.deploy import failures, hoststate, plan, readback
from wizard.deploy.context import Context, StepFailed, tail
from wizard.deploy.events import Step
from wizard.errors import BadInput, DeployFailed, ExitCode


def inspect_and_lock(ctx: Context) -> str:
    """Part of the detect step: resolve and check the destination, then (unless this is a
    dry run) take the lock. Returns words for the step's detail."""
    if ctx.options.dry_run:
        return inspect_dest(ctx, hoststate.parse_inspect(ctx.run(plan.inspect_cmd(ctx)).stdout))
    # One script inspects, locks and reads when the inspection alone allows it.
    result = ctx.run(plan.gather_cmd(ctx))
    marker = f"\n{hoststate.claim_marker(ctx.lock_token)}\n"
    inspected, claimed, rest = result.stdout.partition(marker)
    if not claimed:
        detail = inspect_dest(ctx, hoststate.parse_inspect(inspected))
        ctx.claimed_apart = True
        return detail + lock(ctx)
    locked = take(ctx, hoststate.parse_claim(rest), result.output)
    ctx.readback = readback.parse(rest)
    return inspect_dest(ctx, hoststate.parse_inspect(inspected)) + locked


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


def lock(ctx: Context) -> str:
    """Take the host-side lock on the destination (one deploy per file at a time), sweep
    this destination's leftover temp files, and read an interrupted run's journal."""
    result = ctx.run(plan.claim_cmd(ctx))
    return take(ctx, hoststate.parse_claim(result.stdout), result.output)


def take(ctx: Context, claim: hoststate.Claim, output: str) -> str:
    """The lock as the claim script answered: ours, or who holds it."""
    t = ctx.tgt
    path = hoststate.lock_path(ctx.options.backup_dir, t.real_dest)
    if not claim.locked:
        if not claim.holder:
            raise StepFailed(Step.DETECT, failures.lock_failed(path, ctx.host), tail(output))
        words = failures.lock_held(t.real_dest, ctx.host, hoststate.describe_owner(claim.holder),
                                   path, hoststate.LOCK_STALE_S // 60)
        raise DeployFailed(words.title, words.hint, exit_code=ExitCode.FAILED)
    ctx.locked = True
    ctx.journal = claim.journal
    if claim.stale:
        ctx.notice(Step.DETECT, f"Took over a stale deploy lock ({path}: "
                                f"{hoststate.describe_owner(claim.holder)}).", "info")
    return "; locked"
