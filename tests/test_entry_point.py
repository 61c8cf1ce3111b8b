"""The console script's exit: ``wizard.cli.entry`` freezes the collector before the interpreter
tears down, so its last collection does not walk every object the run made (~45 ms of a
deploy's exit, bench/RESULTS.md); ``main``, which tests call in-process, does not.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Registered first, so it runs last: after the command's own atexit work, as the interpreter
# is about to tear down.
WATCH = r"""
import atexit, gc, runpy, sys
atexit.register(lambda: sys.stderr.write(f"\n@@frozen {gc.get_freeze_count()}\n"))
sys.argv = ["wizard", "render", "--proxy", "nginx", "--backend", "127.0.0.1:3000"]
"""


def frozen_at_exit(run: str) -> tuple[int, int, str]:
    proc = subprocess.run([sys.executable, "-c", WATCH + run], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("@@frozen ")]
    assert lines, proc.stderr
    return proc.returncode, int(lines[-1].split()[1]), proc.stdout


def test_the_console_entry_exits_with_the_heap_frozen() -> None:
    code, frozen, stdout = frozen_at_exit('runpy.run_module("wizard", run_name="__main__")')
    assert code == 0
    assert "proxy_pass" in stdout  # the command ran and printed its config first
    assert frozen > 10_000  # every object of the run, not a handful


def test_main_leaves_the_collector_alone() -> None:
    code, frozen, stdout = frozen_at_exit(
        "from wizard.cli import main\nsys.exit(main(sys.argv[1:]))")
    assert code == 0
    assert "proxy_pass" in stdout
    assert frozen == 0
