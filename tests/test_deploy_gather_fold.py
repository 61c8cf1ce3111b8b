"""Issue #15 item 1, second pass: the gather (inspect + lock + read) rides on the detect script
for the destination as guessed before the host's facts — detect + gather in one exchange.

Against the real scripts on this machine (``LocalRemote``): a deploy runs no gather of its
own; the speculation's lock and bytes are the run's when the facts resolve to the guess; a lock
taken for a destination the facts moved is given back; a sudo that wants a password runs
nothing speculative (the gather then runs on its own, as before).
"""

# ruff: noqa: F811  (host: the fixture, imported from test_deploy_unit)
from __future__ import annotations

from pathlib import Path

from tests.test_deploy_unit import (  # noqa: F401  (host: the fixture)
    OLD,
    SPEC,
    Host,
    RecordingRemote,
    host,
)
from wizard.deploy import gather, hoststate
from wizard.deploy.context import Context
from wizard.deploy.detect import HostTarget, detect_script
from wizard.remote import LocalRemote


def speculate(host: Host, guess: str, **options: object) -> tuple[Context, str]:
    ctx = Context(LocalRemote(), SPEC, host.options(**options), "local")
    also = gather.speculation(ctx, guess)
    return ctx, LocalRemote().run(detect_script(SPEC, guess, also), sudo=False).stdout


def ours(ctx: Context, dest: str) -> bool:
    owner = Path(hoststate.lock_path(ctx.options.backup_dir, dest)) / "owner"
    return owner.is_file() and f"token={ctx.lock_token}" in owner.read_text()


def test_a_deploy_gathers_in_its_detect_command(host: Host) -> None:
    remote = RecordingRemote()
    result = host.deploy(remote=remote)
    assert result.ok, result.message()
    claims = [cmd for cmd, _ in remote.ran if "@@sw claim" in cmd]
    assert len(claims) == 1 and claims[0] == remote.ran[0][0], [c[:80] for c, _ in remote.ran]
    assert "@@sw also" in claims[0]
    # The lock was the run's and is gone with it.
    assert not Path(hoststate.lock_path(str(host.root / "backups"), str(host.dest))).exists()


def test_the_guess_confirmed_is_the_runs_lock_and_bytes(host: Host) -> None:
    guess = str(host.dest)
    ctx, out = speculate(host, guess)
    assert ours(ctx, guess)
    ctx.target = HostTarget(dest=guess, real_dest=guess, validate_cmd="true", reload_cmd="true")
    assert gather.adopt(ctx, guess, out).endswith("; locked")
    assert ctx.locked and ctx.gathered_early
    assert ctx.readback is not None and ctx.readback.data == OLD


def test_a_guess_the_facts_moved_gives_its_lock_back(host: Host) -> None:
    guess = str(host.dest)
    ctx, out = speculate(host, guess)
    assert ours(ctx, guess)
    moved = str(host.root / "elsewhere" / "sockwizard.conf")
    ctx.target = HostTarget(dest=moved, real_dest=moved, validate_cmd="true", reload_cmd="true")
    assert gather.adopt(ctx, guess, out) == ""
    assert not ctx.locked and not ctx.gathered_early and ctx.readback is None
    assert not ours(ctx, guess)


def test_no_speculation_for_a_dry_run(host: Host) -> None:
    ctx = Context(LocalRemote(), SPEC, host.options(dry_run=True), "local")
    assert gather.speculation(ctx, str(host.dest)) == ""
    dry = host.deploy(dry_run=True)
    assert dry.ok and not Path(str(host.root / "backups")).exists()
