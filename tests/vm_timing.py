"""Where the VM lane's minutes go: a light clock around every guest command and CLI run.

Used by tests/vm.py (``Vm.clock``: each ``run``/``sockwizard``/``reboot`` is measured) and by
tests/test_vm_debian.py (an autouse fixture opens a section per test and prints its summary).
Each call gets its wall time, the CPU qemu burnt meanwhile (the guest's side: under TCG every
guest instruction is qemu CPU) and, for a CLI run, the CPU of that subprocess (the host's
side). The summaries go to stderr and to ``REPORT``, which tests/conftest.py prints at the end
of the run, so CI's log shows them even when every test passes.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPORT: list[str] = []  # summary lines for pytest's terminal summary
SLOW_CALL = 3.0  # calls at least this long are listed one by one


def process_cpu(pid: int) -> float:
    """utime + stime of `pid` in seconds (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(stat[11]) + int(stat[12])) / 100


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Call:
    kind: str  # run | sockwizard | wait | reboot
    what: str
    wall: float
    guest: float  # qemu CPU seconds meanwhile
    host: float  # CPU seconds of the subprocess (sockwizard only)


@dataclass
class Clock:
    """Calls since the current section began; see the module docstring."""

    qemu_pid: int
    cpu_before: float = 0.0  # CPU of this VM's earlier qemu processes (Vm.reboot starts anew)
    section: str = "boot"
    started: float = field(default_factory=time.monotonic)
    guest_at_start: float = 0.0
    calls: list[Call] = field(default_factory=list)
    _depth: int = 0  # a reboot's own commands are part of the reboot, not counted twice

    def qemu_cpu(self) -> float:
        """The CPU the VM's qemu processes used so far."""
        return self.cpu_before + process_cpu(self.qemu_pid)

    def restarted(self, pid: int, cpu_before: float) -> None:
        """qemu was started anew (pid); the earlier ones used `cpu_before` in all (reaped
        now: their CPU is in this process's children's, which is not a CLI's)."""
        self.qemu_pid, self.cpu_before = pid, cpu_before

    def _cli_cpu(self) -> float:
        return _children_cpu() - self.cpu_before

    @contextlib.contextmanager
    def measure(self, kind: str, what: str) -> Iterator[None]:
        wall, guest, host = time.monotonic(), self.qemu_cpu(), self._cli_cpu()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.calls.append(Call(kind, " ".join(what.split())[:70],
                                       time.monotonic() - wall, self.qemu_cpu() - guest,
                                       self._cli_cpu() - host))

    def begin(self, section: str) -> None:
        self.section, self.started, self.calls = section, time.monotonic(), []
        self.guest_at_start = self.qemu_cpu()

    def summary(self) -> str:
        """One line of totals per kind of call, then the slow calls one by one."""
        wall = time.monotonic() - self.started
        guest = self.qemu_cpu() - self.guest_at_start
        lines = [f"[vm] {self.section}: {wall:.1f} s wall, qemu CPU {guest:.1f} s"]
        accounted = 0.0
        for kind in ("run", "sockwizard", "wait", "reboot"):
            mine = [c for c in self.calls if c.kind == kind]
            if mine:
                spent = sum(c.wall for c in mine)
                accounted += spent
                lines.append(f"  {kind:10} x{len(mine):<3} {spent:6.1f} s wall, qemu "
                             f"{sum(c.guest for c in mine):5.1f} s, host CLI "
                             f"{sum(c.host for c in mine):5.1f} s")
        lines.append(f"  {'other':15} {wall - accounted:6.1f} s (probes from outside, pytest)")
        lines += [f"    {c.wall:5.1f} s (qemu {c.guest:4.1f}, host {c.host:4.1f}) {c.kind} "
                  f"{c.what}" for c in self.calls if c.wall >= SLOW_CALL]
        return "\n".join(lines)

    def report(self) -> None:
        """The current section's summary, to stderr and REPORT."""
        self.report_line(self.summary())

    @staticmethod
    def report_line(text: str) -> None:
        sys.stderr.write(text + "\n")
        REPORT.append(text)
