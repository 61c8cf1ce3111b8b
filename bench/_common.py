"""Shared helpers of the benchmarks in bench/: run a command and time it, interleave the
cases of one comparison, summarise with medians, print the table.

Every bench script compares sockwizard with an anchor (a bare interpreter, a plain Node
client, OpenSSH by hand, Ansible) *in the same run*: the machine is noisy (2 shared cores),
so figures from different runs are not comparable, and the cases are interleaved round by
round (A B C, B C A, ...) so that a slow minute hurts all of them alike. Results are medians;
min and max are printed beside them so a reader sees the spread. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"
PYTHON = sys.executable


def use_repo() -> None:
    """Make `import wizard` and `from tests import rig` work from a bench script."""
    root = str(REPO)
    if root not in sys.path:
        sys.path.insert(0, root)


def sockwizard_argv(*args: str) -> list[str]:
    """How the benchmarks run sockwizard: `python -m wizard` from this checkout — the same
    `wizard.cli:entry` the installed `sockwizard` script calls (see README.md)."""
    return [PYTHON, "-m", "wizard", *args]


def repo_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for sockwizard subprocesses: the checkout on PYTHONPATH, no stray
    PYTHON* settings that would change start-up (e.g. PYTHONDONTWRITEBYTECODE)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(REPO)
    if extra:
        env.update(extra)
    return env


class BenchError(RuntimeError):
    """A measured command failed: a benchmark of a failing command would measure nothing."""


@dataclass(frozen=True)
class Measured:
    """One run of a child process: wall time, CPU (user + system) and peak RSS of that child,
    its exit code and output.

    ``max_rss_mb`` is wait4()'s ru_maxrss, which counts the forked copy of this process
    before exec: it is max(this process at fork, the child), so only meaningful for children
    bigger than the bench script itself."""

    wall_s: float
    cpu_s: float
    max_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin_text: str | None = None,
    timeout: float = 300.0,
    check: bool = True,
) -> Measured:
    """Run `argv` to completion; wall time from spawn to exit, CPU and RSS from wait4().

    Output goes to temporary files rather than pipes: no reader threads compete with the
    child for the two cores, and wait4() can be called directly for the child's rusage.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        stdin = subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd else None, stdin=stdin, stdout=out, stderr=err)
        if stdin_text is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin_text.encode())
            proc.stdin.close()
        # Block in wait4() (no polling: the parent must not compete for the CPUs); a timer
        # kills a child that hangs.
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        measured = Measured(
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            max_rss_mb=usage.ru_maxrss / 1024,  # Linux: KiB
            returncode=proc.returncode,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
        )
    if check and measured.returncode != 0:
        raise BenchError(
            f"{' '.join(argv)} exited with {measured.returncode}:\n"
            f"{measured.stdout[-2000:]}\n{measured.stderr[-3000:]}")
    return measured


# --------------------------------------------------------------------------------------------
# Interleaved repetitions
# --------------------------------------------------------------------------------------------

Sample = Mapping[str, float]
"""One run of one case: metric name -> value ("wall_ms" at least)."""


@dataclass
class Series:
    """All runs of one case."""

    name: str
    samples: list[dict[str, float]] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        return [s[metric] for s in self.samples if metric in s]

    def median(self, metric: str) -> float | None:
        vals = self.values(metric)
        return statistics.median(vals) if vals else None

    def min(self, metric: str) -> float | None:
        vals = self.values(metric)
        return min(vals) if vals else None

    def max(self, metric: str) -> float | None:
        vals = self.values(metric)
        return max(vals) if vals else None


def interleave(
    cases: Mapping[str, Callable[[], Sample]],
    runs: int,
    *,
    warmup: int = 1,
    progress: bool = True,
) -> dict[str, Series]:
    """Run every case `warmup` times (discarded), then `runs` rounds; round i starts at
    case i (mod n), so no case always runs first after a pause or last before one."""
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    series = {name: Series(name) for name in names}
    for i in range(runs):
        order = names[i % len(names):] + names[: i % len(names)]
        for name in order:
            series[name].samples.append(dict(cases[name]()))
        if progress:
            print(f"  round {i + 1}/{runs} done", file=sys.stderr, flush=True)
    return series


def timed_command(argv: Sequence[str], **kw: Any) -> Callable[[], Sample]:
    """A case that runs `argv` and reports wall_ms, cpu_ms and rss_mb of the child."""

    def case() -> Sample:
        m = run_measured(argv, **kw)
        return {"wall_ms": m.wall_s * 1000, "cpu_ms": m.cpu_s * 1000, "rss_mb": m.max_rss_mb}

    return case


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def ratio(ours: float | None, anchor: float | None) -> str:
    """ours / anchor as "1.23x" (below 1 = sockwizard is faster)."""
    if ours is None or anchor is None or anchor == 0:
        return "—"
    return f"{ours / anchor:.2f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (pipes line up in a terminal too)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def spread(s: Series, metric: str, digits: int = 1) -> str:
    """'median (min–max)'."""
    return f"{fmt(s.median(metric), digits)} ({fmt(s.min(metric), digits)}–" \
           f"{fmt(s.max(metric), digits)})"


# --------------------------------------------------------------------------------------------
# Command line and raw results
# --------------------------------------------------------------------------------------------


def base_parser(description: str, *, runs: int, warmup: int = 1) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--runs", type=int, default=runs,
                   help=f"measured rounds per case (default {runs}); medians are over these")
    p.add_argument("--warmup", type=int, default=warmup,
                   help=f"discarded rounds first (default {warmup})")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help="also write every sample as JSON here")
    return p


def machine_line() -> str:
    """Where the numbers came from, printed above every table."""
    load = os.getloadavg()
    return (f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
            f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}")


def dump_json(path: Path | None, payload: Mapping[str, object]) -> None:
    if path is None:
        return
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    print(f"raw samples written to {path}", file=sys.stderr)


def _jsonable(obj: object) -> object:
    if isinstance(obj, Series):
        return {"name": obj.name, "samples": obj.samples}
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
