"""What the subcommands print, in one place: stdout carries data, stderr carries the rest.

- the exit-code table, generated from ``wizard.errors.ExitCode`` for every ``--help`` epilog
  and for the README (``exit_codes_markdown``; tests/test_exit_codes.py keeps them equal);
- deploy/rollback/sandbox progress (``Progress``: one stderr line per step, with its time),
  the ``--dry-run`` plan, the per-host summary table and the verdicts (``report``);
- probe/diagnose progress (``StageProgress``: the stages as they finish, on stderr).
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from wizard.errors import ExitCode

if TYPE_CHECKING:
    from wizard.deploy import DeployEvent, DeployResult

# -- the exit-code table ----------------------------------------------------------------------

_EPILOG_WIDTH = 94  # argparse's own help is about as wide; the epilog is printed verbatim


def exit_codes_epilog() -> str:
    """The table for ``--help``: ``exit codes:`` then one wrapped entry per code."""
    lines = ["exit codes:"]
    for code in ExitCode:
        lines += textwrap.wrap(code.meaning, _EPILOG_WIDTH, initial_indent=f"  {int(code):<3}  ",
                               subsequent_indent=" " * 7)
    return "\n".join(lines)


def exit_codes_markdown() -> str:
    """The README's "Exit codes" table (the lines between the heading and the next one)."""
    rows = ["| code | meaning |", "|---|---|"]
    rows += [f"| {int(code)} | {code.meaning} |" for code in ExitCode]
    return "\n".join(rows) + "\n"


# -- deploy, rollback, sandbox ----------------------------------------------------------------


class Progress:
    """One stderr line per finished step (with its time), warnings as they come."""

    MARK: ClassVar[dict[str, str]] = {"ok": "ok", "failed": "FAIL", "skipped": "skip"}

    def __init__(self, stream: TextIO, *, show_host: bool,
                 names: dict[str, str] | None = None) -> None:
        self.stream = stream
        self.show_host = show_host
        self.names = names or {}  # SSH target -> inventory name (--inventory)

    def __call__(self, event: DeployEvent) -> None:
        from wizard.deploy import Notice, StepFinished

        prefix = f"{self.names.get(event.host, event.host)}  " if self.show_host else ""
        if isinstance(event, StepFinished):
            ms = (" " * 11 if event.status == "skipped" else
                  f"{event.coarse_time() or f'{event.seconds * 1000:.1f} ms':>11}")
            detail = event.detail.splitlines()[0] if event.detail else ""
            line = f"{prefix}{event.step.value:<10} {self.MARK[event.status]:<4} {ms}  {detail}"
            print(line.rstrip(), file=self.stream, flush=True)
        elif isinstance(event, Notice):
            print(f"{prefix}{event.level}: {event.text}", file=self.stream, flush=True)


def print_plan(result: DeployResult, stream: TextIO) -> None:
    stream.write(f"# sockwizard deploy --dry-run: plan for {result.host} (nothing was changed)\n")
    for item in result.plan:
        stream.write(f"{item}\n")
    if result.diff:
        stream.write(f"\n# diff against {result.host}:{result.dest}\n{result.diff}")
    else:
        stream.write(f"\n# no change: {result.dest} already has this config\n")


def summary_table(results: Sequence[DeployResult], names: Sequence[str] | None = None) -> str:
    """One row per host; with ``names`` (the inventory's, in the order of ``results``) the
    first column is the name the user wrote, and a ``target`` column shows where it went."""
    shown = list(names) if names is not None else [r.host for r in results]
    targets = any(n != r.host for n, r in zip(shown, results, strict=True))
    rows = [("host", *(("target",) if targets else ()), "outcome", "exit", "time",
             "failed step")]
    for name, r in zip(shown, results, strict=True):
        rows.append((name, *((r.host,) if targets else ()), r.outcome.value,
                     str(int(r.exit_code)), f"{r.seconds:.2f}s",
                     r.failed_step.value if r.failed_step else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(results: Sequence[DeployResult], *, as_json: bool, dry_run: bool,
           names: Sequence[str] | None = None) -> int:
    """Print the verdicts (stderr), the plan or JSON (stdout); return the exit code.
    ``names``: the inventory names of ``results`` (JSON adds them as ``name``)."""
    code = ExitCode.most_serious(r.exit_code for r in results)
    labels = list(names) if names is not None else [r.host for r in results]
    if as_json:
        hosts = [r.to_dict() | ({"name": n} if names is not None else {})
                 for r, n in zip(results, labels, strict=True)]
        print(json.dumps({"exit_code": int(code), "hosts": hosts}, indent=2))
    elif dry_run:
        for r in results:
            if r.ok:
                print_plan(r, sys.stdout)
    for r, label in zip(results, labels, strict=True):
        prefix = f"sockwizard: {label}: " if len(results) > 1 else "sockwizard: "
        if r.ok:
            print(f"{prefix}{r.title}", file=sys.stderr)
        else:
            print(f"{prefix}{r.message()}", file=sys.stderr)
    if len(results) > 1:
        print("\n" + summary_table(results, names), file=sys.stderr)
    return int(code)


# -- probe, diagnose --------------------------------------------------------------------------


class StageProgress:
    """The probe's stages as they finish, on stderr.

    When stdout is the same terminal, the table printed at the end lists every stage again:
    then each stage replaces the previous one on a single line (the user still sees the probe
    advance through a long hold) and ``close`` clears it. Piped or redirected stdout keeps
    one stderr line per stage.
    """

    def __init__(self) -> None:
        self.transient = sys.stderr.isatty() and sys.stdout.isatty()

    def __call__(self, stage: Any) -> None:
        from wizard.probe import format_ms

        mark = "ok " if stage.ok else ("-- " if stage.skipped else "ERR")
        line = f"  [{mark}] {stage.name:<12} {format_ms(stage.ms):>9}  {stage.detail}"
        if self.transient:
            width = shutil.get_terminal_size().columns - 1
            sys.stderr.write(f"\r\x1b[K{line[:width]}")
            sys.stderr.flush()
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self.transient:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
