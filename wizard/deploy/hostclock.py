"""The host's clock in a deploy script: the step marks it prints, and the spans read from them.

The activation script (``wizard.deploy.scripts.activation_script``) backs up, uploads, renames,
validates and reloads in one host-side run; the client sees only when the whole answer came
back. So the script stamps each step's end (``mark``) and the parser (``Timeline``) gives
every step its own host-side span, and the rest of the client's wait — the round trip, SSH
starting the command, the wait for the answer — as what it is (issue #15 follow-up).

The clock is picked once per run (``CLOCK_LINES``): the best one the shell can read without a
process per mark (bench/bench_hostclock.py; CPU per mark here, bench/RESULTS.md):
``$EPOCHREALTIME`` (bash, mksh, busybox ash: µs, ~19 µs), else ``/proc/timer_list``'s "now
at" (root, i.e. a sudo deploy under dash: ns, ~22 µs), else ``/proc/uptime`` (dash as a user:
10 ms steps, ~9 µs), else ``date +%s%N`` (a fork + exec, ~1.3 ms: only where no /proc can be
read). ``@@sw clock KIND DIGITS`` says which, so a coarse clock's spans are reported with
its resolution (``StepFinished.resolution``) instead of as a false 0.0 ms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# swck KIND: one reading of that clock into $swt (nanoseconds as digits; $swd: how many
# fraction digits it had), false when it cannot be read. A reading is only ever digits.
CLOCK_LINES = [
    'swfix() { swd=${#2}; swt=${2}000000000; swt=$1${swt%"${swt#?????????}"}; }',
    "swck() { case $1 in "
    'e) case ${EPOCHREALTIME-} in *[!0-9.,]*|*[.,]*[.,]*|[.,]*|*[.,]) return 1 ;; '
    '*[.,]*) swfix "${EPOCHREALTIME%[.,]*}" "${EPOCHREALTIME#*[.,]}" ;; *) return 1 ;; esac ;; '
    't) [ -r /proc/timer_list ] || return 1; '
    '{ read -r _ _ && read -r _ _ && read -r swa swb swt _; } 2>/dev/null </proc/timer_list '
    '|| return 1; [ "$swa $swb" = "now at" ] || return 1; '
    'case $swt in ""|*[!0-9]*) return 1 ;; esac; swd=9 ;; '
    'u) read -r swt _ 2>/dev/null </proc/uptime || return 1; '
    'case $swt in *[!0-9.]*|*.*.*|.*|*.) return 1 ;; *.*) swfix "${swt%.*}" "${swt#*.}" ;; '
    '*) return 1 ;; esac ;; '
    'd) swt=$(date +%s%N 2>/dev/null); case $swt in ""|*[!0-9]*) return 1 ;; esac; swd=9 ;; '
    "*) return 1 ;; esac; }",
    "swk=; for swc in e t u d; do if swck $swc; then swk=$swc; "
    'echo "@@sw clock $swk $swd"; break; fi; done',
    'swclock() { swck "$swk" || swt=; }',
]

# The marks a step ends at, in the order the script prints them (``validated`` twice when a
# watched file is checked before the rename and again with its companions after it).
MARKS = ("begin", "locked", "start", "uploaded", "backedup", "checking", "renamed",
         "validated", "reloaded")
_MARK = re.compile(r"^@@sw (" + "|".join(MARKS) + r")(?: -?\d{1,4})? (\d{1,20})$", re.M)
_CLOCK = re.compile(r"^@@sw clock ([etud]) (\d{1,3})$", re.M)
CLOCK_NAMES = {"e": "$EPOCHREALTIME", "t": "/proc/timer_list", "u": "/proc/uptime",
               "d": "date"}


def mark(name: str, status: str = "") -> str:
    """Shell that prints the step mark ``@@sw NAME [STATUS] NS`` (``Timeline``)."""
    return f'swclock; echo "@@sw {name} {status + " " if status else ""}$swt"'


@dataclass(frozen=True)
class Timeline:
    """The step marks one run printed, in order, and the clock they were read from.

    ``resolution``: the clock's step in seconds (10 ms for ``/proc/uptime``; 0.0: no clock
    line, nothing known). Every span is clamped to ``[0, total]`` — the client's own wait
    for the answer: a host cannot claim more time than it took to answer."""

    marks: tuple[tuple[str, int], ...]
    clock: str
    resolution: float
    total: float

    @classmethod
    def parse(cls, stdout: str, total: float) -> Timeline:
        marks = tuple((m.group(1), int(m.group(2))) for m in _MARK.finditer(stdout))
        clock = _CLOCK.search(stdout)
        digits = min(int(clock.group(2)), 9) if clock else -1
        return cls(marks, CLOCK_NAMES[clock.group(1)] if clock else "",
                   10.0 ** -digits if clock else 0.0, max(total, 0.0))

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self.marks)

    def step(self, name: str) -> float:
        """Seconds up to each mark ``name`` from the mark just before it, summed: that
        step's own host-side span (0.0 when it was not marked)."""
        spans = [self._clamp(ns - self.marks[i - 1][1])
                 for i, (n, ns) in enumerate(self.marks) if n == name and i > 0]
        return min(sum(spans), self.total)

    def between(self, first: str, then: str) -> float:
        """Seconds from the first mark ``first`` to the last mark ``then``."""
        a = next((ns for n, ns in self.marks if n == first), None)
        b = next((ns for n, ns in reversed(self.marks) if n == then), None)
        return 0.0 if a is None or b is None else self._clamp(b - a)

    @property
    def host(self) -> float:
        """Seconds from the first mark to the last: the script's own work on the host."""
        return self._clamp(self.marks[-1][1] - self.marks[0][1]) if self.marks else 0.0

    @property
    def wait(self) -> float:
        """The rest of the client's wait: the round trip, SSH starting the command and the
        shell, the wait for the answer (the host's own work taken out)."""
        return max(0.0, self.total - self.host)

    def _clamp(self, ns: int) -> float:
        return min(max(0.0, ns / 1e9), self.total)

    def summary(self) -> str:
        """The script's time in words: its own work on the host, the rest of the wait, and
        the clock's resolution when it is coarse (the info line after the validate step)."""
        words = (f"the activation script answered after {_ms(self.total)}: {_ms(self.host)} "
                 f"of work on the host")
        if self.has("locked"):
            words += f" (the lock {_ms(self.between('begin', 'locked'))})"
        words += (f", {_ms(self.wait)} the round trip and starting it (the connection, "
                  "sudo, the shell) — not any step's")
        if self.resolution >= 0.001:
            words += (f"; the host's clock ({self.clock}) counts in "
                      f"{self.resolution * 1000:.0f} ms steps: its times are shown to that")
        elif not self.marks:
            words += " (the host printed no times)"
        return words


UNTIMED = Timeline((), "", 0.0, 0.0)  # a report made without the script's marks


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"
