"""Issue #15 item 1, second pass: the backup is the activation script's first act, not a
command of its own — and keeps every guarantee it had as one.

Against the real activation script on this machine (``LocalRemote``): the copy failing or not
matching the bytes read ends the run with nothing changed (typed: ``Activation.BACKUP_FAILED``),
a run whose report does not show the backup's sha256 is not trusted (the old bytes are put back
from here), the local mirror is the host copy's bytes, and no command but the activation
script copies anything.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Callable
from pathlib import Path

# ruff: noqa: F811  (host: the fixture, imported from test_deploy_unit)
from tests.test_deploy_unit import (  # noqa: F401  (host: the fixture)
    ACTIVATION,
    BACKED_UP,
    LOST,
    OLD,
    FlakyRemote,
    Host,
    RecordingRemote,
    host,
)
from wizard.deploy import Outcome, Step
from wizard.deploy.backups import sha
from wizard.errors import ExitCode
from wizard.remote import CommandResult

BACKUP_START = "bk=$( ( set -e"


def rewriting(edit: Callable[[str], str], *, output: Callable[[str], str] = str
              ) -> FlakyRemote:
    """A LocalRemote whose activation script is edited by ``edit`` before it runs (the host
    doing something at that point of the script), its stdout by ``output`` after."""
    remote = FlakyRemote("none", LOST)
    original = remote.inner.run

    def run(command: str, *, sudo: bool = False, timeout: float = 60,
            input: str | None = None) -> CommandResult:
        if not command.startswith(ACTIVATION):
            return original(command, sudo=sudo, timeout=timeout, input=input)
        assert BACKUP_START in command and BACKED_UP in command
        result = original(edit(command), sudo=sudo, timeout=timeout, input=input)
        return dataclasses.replace(result, stdout=output(result.stdout))

    remote.inner.run = run  # type: ignore[method-assign]
    return remote


def leftovers(host: Host) -> list[Path]:
    """The run's temp files (the new bytes, written before the backup)."""
    return list(host.root.rglob("*.sockwizard-*.tmp"))


def test_one_command_backs_up_and_activates(host: Host) -> None:
    remote = RecordingRemote()
    result = host.deploy(remote=remote)
    assert result.ok, result.message()
    copies = [cmd for cmd, _ in remote.ran if "cp -p --" in cmd]
    assert len(copies) == 1 and copies[0].startswith(ACTIVATION), copies
    assert result.backup is not None and Path(result.backup).read_bytes() == OLD
    # The local mirror, written from the bytes read, is the host copy byte for byte.
    assert result.local_backup is not None and Path(result.local_backup).read_bytes() == OLD
    assert ("backup", "ok") in host.steps()
    # The pending record written with the backup, then the outcome at the release.
    lines = (host.root / "backups" / "index.jsonl").read_text().splitlines()
    assert [json.loads(line)["outcome"] for line in lines] == ["pending", "deployed"]


def test_a_failed_backup_changes_nothing(host: Host) -> None:
    def no_copy(command: str) -> str:
        return command.replace(f"cp -p -- {shlex.quote(str(host.dest))} ",
                               "cp -p -- /nonexistent/sockwizard-test ", 1)

    result = host.deploy(remote=rewriting(no_copy))
    assert (result.outcome, result.exit_code) == (Outcome.FAILED, ExitCode.FAILED), \
        result.message()
    assert result.failed_step is Step.BACKUP and "Could not back up" in result.title
    assert host.dest.read_bytes() == OLD and leftovers(host) == []
    assert result.backup is None and ("backup", "failed") in host.steps()
    assert not any(step == "rename" and status == "ok" for step, status in host.steps())


def test_a_file_changed_before_the_backup_is_not_backed_up_or_overwritten(host: Host) -> None:
    edited = b"# edited by hand before the backup\n"

    def edit_first(command: str) -> str:
        edit = f"printf '# edited by hand before the backup\\n' > {shlex.quote(str(host.dest))}; "
        return command.replace(BACKUP_START, edit + BACKUP_START, 1)

    result = host.deploy(remote=rewriting(edit_first))
    assert (result.outcome, result.exit_code) == (Outcome.FAILED, ExitCode.FAILED)
    assert result.failed_step is Step.BACKUP and "does not match" in result.title
    assert host.dest.read_bytes() == edited and leftovers(host) == []


def test_a_report_without_the_backup_sums_is_not_trusted(host: Host) -> None:
    """The script checked its copy; a report that does not say so (garbled, cut) is not
    believed: the validated config is put back to the old bytes from here."""
    def drop_sums(stdout: str) -> str:
        return "".join(line for line in stdout.splitlines(keepends=True)
                       if not line.startswith("@@sw backup "))

    result = host.deploy(remote=rewriting(lambda c: c, output=drop_sums))
    assert result.outcome is Outcome.ROLLED_BACK, result.message()
    assert host.dest.read_bytes() == OLD


def test_a_restore_before_any_backup_leaves_the_untouched_file(host: Host) -> None:
    """The rollback's restore of a file that still has its old bytes changes nothing (the
    script that makes the backup may never have run: sudo refused, the shell died)."""
    def die_first(command: str) -> str:
        return command.replace(BACKUP_START, "kill -9 $$; " + BACKUP_START, 1)

    result = host.deploy(remote=rewriting(die_first))
    assert result.outcome is Outcome.ROLLED_BACK, result.message()
    assert host.dest.read_bytes() == OLD and sha(host.dest.read_bytes()) == sha(OLD)
