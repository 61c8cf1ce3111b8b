"""What each host clock of the deploy's step marks costs (wizard/deploy/hostclock.py).

The activation script prints ~9 marks per deploy; a fleet deploy is bound by the hosts' CPU
(bench_hostcpu.py), so the clock is picked by what a mark costs and what it can tell. For each
clock the real ``swck`` reading runs N times in a loop in the real shell (``dash``: Debian's
``sh``; ``bash``), minus the same loop empty: CPU per mark (user + system of the shell and its
children, from wait4) and the clock's resolution. Then one whole pick (``CLOCK_LINES`` + a
mark) per shell start, beside the bare shell's start.

Run as root (``/proc/timer_list`` is root's): ``python3 bench/bench_hostclock.py [--marks 500]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from wizard.deploy.hostclock import CLOCK_LINES, CLOCK_NAMES, Timeline, mark  # noqa: E402

KINDS = {"e": "bash", "t": "dash", "u": "dash", "d": "dash"}  # the shell that has the clock


def cpu_of(argv: list[str]) -> tuple[float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime), out


def per_mark(shell: str, kind: str, n: int) -> tuple[float, float]:
    """CPU µs per reading of clock ``kind`` in ``shell`` (the empty loop taken out), and the
    clock's resolution in seconds."""
    head = "\n".join(CLOCK_LINES[:2])
    loop = (f"i=0; while [ $i -lt {n} ]; do {{body}}; i=$((i+1)); done; "
            f'echo "@@sw clock {kind} $swd"')
    full, out = cpu_of([shell, "-c", f"{head}\n{loop.format(body=f'swck {kind}')}"])
    empty, _ = cpu_of([shell, "-c", f"{head}\nswck {kind}\n{loop.format(body=':')}"])
    return (full - empty) / n * 1e6, Timeline.parse(out, 1.0).resolution


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--marks", type=int, default=500)
    args = parser.parse_args()
    print(f"# {os.uname().release}, {os.cpu_count()} CPUs, {args.marks} readings per clock")
    print(f"{'clock':<18} {'shell':<5} {'CPU per mark':>13} {'resolution':>11}")
    for kind, shell in KINDS.items():
        if shutil.which(shell) is None:
            continue
        cpu, res = per_mark(shell, kind, args.marks)
        print(f"{CLOCK_NAMES[kind]:<18} {shell:<5} {cpu:10.1f} µs {res * 1e3:9.6f} ms")
    pick = "\n".join([*CLOCK_LINES, mark("begin")])
    for shell in ("dash", "bash"):
        runs = 100
        bare = sum(cpu_of([shell, "-c", ":"])[0] for _ in range(runs)) / runs
        picked = sum(cpu_of([shell, "-c", pick])[0] for _ in range(runs)) / runs
        print(f"{shell}: start {bare * 1e6:.0f} µs CPU; the clock's pick + one mark "
              f"{(picked - bare) * 1e6:+.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
