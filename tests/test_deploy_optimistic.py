"""Issue #15 item 1, third pass: detect + read in one exchange, read-only; the activation script
takes the lock and checks the file is still the one read (optimistic concurrency).

Against the real scripts on this machine (``LocalRemote``: a real /bin/sh runs them on files in
tmp_path): a hook runs just before the activation script — after the run read the destination
without a lock — and edits the file by hand, or takes the lock as another live deploy would.
The activation then refuses with nothing changed (every file byte for byte as the hook left
it, the lock given back); a stale lock is taken over; the detect command creates nothing; an
unchanged run takes no lock and still writes its history record.
"""

# ruff: noqa: F811  (host: the fixture, imported from test_deploy_unit)
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from tests.test_deploy_unit import (  # noqa: F401  (host: the fixture)
    OLD,
    Host,
    RecordingRemote,
    host,
    new_text,
)
from wizard.deploy import Outcome, hoststate
from wizard.errors import ExitCode
from wizard.remote import CommandResult

ACTIVATION = "trap '' HUP PIPE\n"  # the activation script's first line


class HookedRemote(RecordingRemote):
    """Runs ``hook`` once, right before the activation script (after detect read the file)."""

    def __init__(self, hook: Callable[[], None]) -> None:
        super().__init__()
        self.hook: Callable[[], None] | None = hook

    def run(self, command: str, *, sudo: bool = False, timeout: float = 60,
            input: str | None = None) -> CommandResult:
        if command.startswith(ACTIVATION) and self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        return super().run(command, sudo=sudo, timeout=timeout, input=input)


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None: a directory)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def lock_dir(host: Host) -> Path:
    return Path(hoststate.lock_path(str(host.root / "backups"), str(host.dest)))


def live_owner() -> str:
    """An owner line whose holder is alive: this test process (pid and start time)."""
    start = Path("/proc/self/stat").read_text().rsplit(") ", 1)[1].split()[19]
    return (f"pid={os.getpid()} start={start} time={int(time.time())} token=0123456789abcdef "
            "client=other:1\n")


def test_a_file_edited_between_read_and_activation_is_refused_untouched(host: Host) -> None:
    edited = b"# edited by hand while the deploy was deciding\n"
    snapshot: dict[str, bytes | None] = {}

    def edit() -> None:
        host.dest.write_bytes(edited)
        snapshot.update(tree(host.root))

    remote = HookedRemote(edit)
    result = host.deploy(remote=remote)
    assert (result.outcome, result.exit_code) == (Outcome.FAILED, ExitCode.FAILED), \
        result.message()
    assert "changed on local since it was read" in result.title
    assert "nothing was changed: run again" in result.title
    assert snapshot, "the hook never ran: no activation script"
    # Byte for byte as the hand edit left it: no backup, no temp file, no journal, no
    # history record; the lock given back (only the flock guard file stays in locks/).
    after = tree(host.root)
    created = {p for p in after if p not in snapshot}
    assert created <= {"backups", "backups/locks", "backups/locks/.guard"}, created
    assert {p: after[p] for p in snapshot} == snapshot
    assert host.dest.read_bytes() == edited
    assert not lock_dir(host).exists()
    assert not (host.root / "backups" / "index.jsonl").exists()
    # Three commands: detect (+ the read-only peek), the activation; nothing to release.
    assert len(remote.ran) == 2, [c[:60] for c, _ in remote.ran]


def test_a_lock_taken_between_read_and_activation_is_refused_and_left_alone(
        host: Host) -> None:
    owner = live_owner()

    def take() -> None:
        lock_dir(host).mkdir(parents=True)
        (lock_dir(host) / "owner").write_text(owner)

    result = host.deploy(remote=HookedRemote(take))
    assert (result.outcome, result.exit_code) == (Outcome.FAILED, ExitCode.FAILED), \
        result.message()
    assert result.title.startswith(f"Another deploy to {host.dest} on local is running")
    assert "Nothing was changed" in result.title
    assert host.dest.read_bytes() == OLD
    assert (lock_dir(host) / "owner").read_text() == owner  # the other run's, untouched
    assert not (host.root / "backups" / "index.jsonl").exists()


def test_a_lock_held_at_detect_stops_the_run_there_with_the_same_words(host: Host) -> None:
    lock_dir(host).mkdir(parents=True)
    (lock_dir(host) / "owner").write_text(live_owner())
    remote = RecordingRemote()
    result = host.deploy(remote=remote)
    assert result.outcome is Outcome.FAILED and "is running" in result.title, result.message()
    assert len(remote.ran) == 1  # the detect command saw it
    assert host.dest.read_bytes() == OLD


def test_a_stale_lock_is_taken_over_by_the_activation(host: Host) -> None:
    def stale() -> None:  # a holder that is gone (pid 1 never has start time 1)
        lock_dir(host).mkdir(parents=True)
        (lock_dir(host) / "owner").write_text(f"pid=1 start=1 time={int(time.time())} "
                                              "token=0123456789abcdef client=gone:1\n")

    result = host.deploy(remote=HookedRemote(stale))
    assert result.outcome is Outcome.DEPLOYED, result.message()
    assert any("Took over a stale deploy lock" in e.text for e in host.events
               if hasattr(e, "text"))
    assert host.dest.read_bytes() == new_text()
    assert not lock_dir(host).exists()


def test_the_read_creates_nothing_and_an_unchanged_run_takes_no_lock(host: Host) -> None:
    host.dest.write_bytes(new_text())
    before = tree(host.root)
    dry = host.deploy(dry_run=True)
    assert dry.outcome is Outcome.PLANNED and tree(host.root) == before

    remote = RecordingRemote()
    result = host.deploy(remote=remote)
    assert result.outcome is Outcome.UNCHANGED, result.message()
    assert len(remote.ran) == 2  # detect (+ the read), the history record
    assert "mkdir" not in remote.ran[0][0]
    assert not (host.root / "backups" / "locks").exists()
    assert [r["outcome"] for r in host.index()] == ["unchanged"]
