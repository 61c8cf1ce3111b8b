"""The activation's step times (issue #15 follow-up): each step is its own host-side span, the
round trip is reported apart, and a coarse host clock is said to be coarse.

``parse_activation`` on the marks a real script prints — coarse (``/proc/uptime``, dash as a
user: 10 ms steps) and fine (``/proc/timer_list`` as root, ``$EPOCHREALTIME`` in bash) — and
the clock lines run in the real shells, as root and as the rig's deploy user. The deploy over
a slow link is in ``test_deploy_step_times``.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import pytest

from tests import rig
from wizard.commands._print import Progress
from wizard.deploy.events import Step, StepFinished
from wizard.deploy.hostclock import CLOCK_LINES, Timeline, mark
from wizard.deploy.scripts import Activation, parse_activation


def marks(clock: str, *stamps: tuple[str, int]) -> str:
    return "".join([f"@@sw clock {clock}\n@@sw locked\n",
                    *(f"@@sw {name} {ns}\n" for name, ns in stamps)])


# A deploy's answer from dash as a user: /proc/uptime, read as centiseconds. Every step but
# the checker fits in one 10 ms step; the client waited 180 ms (a 100 ms round trip and more).
COARSE = marks("u 2", ("begin", 35420_170_000_000), ("locked", 35420_170_000_000),
               ("start", 35420_170_000_000), ("uploaded", 35420_170_000_000),
               ("backedup", 35420_180_000_000), ("renamed", 35420_180_000_000),
               ("validated 0", 35420_200_000_000)) + "nginx: syntax is ok\n" \
    "@@sw reloaded 0 35420200000000\n"
# The same from root: /proc/timer_list, nanoseconds since boot.
FINE = marks("t 9", ("begin", 1_000_000_000), ("locked", 1_002_100_000),
             ("start", 1_002_150_000), ("uploaded", 1_003_350_000),
             ("backedup", 1_005_350_000), ("renamed", 1_005_650_000),
             ("validated 0", 1_015_750_000)) + "nginx: syntax is ok\n" \
    "@@sw reloaded 0 1016250000\n"


def test_coarse_marks_give_each_step_its_span_and_say_the_clock_is_coarse() -> None:
    report = parse_activation(0, COARSE, "", 0.180)
    assert report.outcome is Activation.VALIDATED
    # The rename did not take the client's wait minus the other steps (0.150 s before).
    assert report.rename_s == 0.0
    assert (report.upload_s, report.backup_s) == (0.0, pytest.approx(0.010))
    assert report.validate_s == pytest.approx(0.020)
    assert report.reload is not None and report.reload.seconds == 0.0
    assert report.times.resolution == pytest.approx(0.010)
    assert report.times.clock == "/proc/uptime"
    assert report.times.wait == pytest.approx(0.150)
    assert report.output == "nginx: syntax is ok"  # the checker's words, no marks
    words = report.times.summary()
    assert "150.0 ms the round trip and starting it" in words and "counts in 10 ms steps" in words, words
    # Shown as what the clock can tell, not as "0.0 ms".
    rename = StepFinished("h", Step.RENAME, "ok", report.rename_s, "/etc/x",
                          resolution=report.times.resolution, wait=report.times.wait)
    validate = StepFinished("h", Step.VALIDATE, "ok", report.validate_s, "nginx -t",
                            resolution=report.times.resolution)
    assert (rename.coarse_time(), validate.coarse_time()) == ("< 10 ms", "20±10 ms")
    stream = io.StringIO()
    progress = Progress(stream, show_host=False)
    progress(rename)
    progress(validate)
    assert stream.getvalue().splitlines() == ["rename     ok       < 10 ms  /etc/x",
                                              "validate   ok      20±10 ms  nginx -t"]
    # --json: "ms" stays as it was; the resolution and the round trip are fields beside it.
    data = json.loads(json.dumps(rename.to_dict()))
    assert (data["ms"], data["resolution_ms"], data["wait_ms"]) == (0.0, 10.0, 150.0)


def test_fine_marks_give_each_step_its_own_span() -> None:
    report = parse_activation(0, FINE, "", 0.130)
    assert report.upload_s == pytest.approx(0.0012)
    assert report.backup_s == pytest.approx(0.0020)
    assert report.rename_s == pytest.approx(0.0003)
    assert report.validate_s == pytest.approx(0.0101)
    assert report.reload is not None and report.reload.seconds == pytest.approx(0.0005)
    assert report.times.resolution == pytest.approx(1e-9)
    assert report.times.between("begin", "locked") == pytest.approx(0.0021)
    assert report.times.host == pytest.approx(0.01625)
    assert report.times.wait == pytest.approx(0.130 - 0.01625)
    words = report.times.summary()
    assert "16.2 ms of work on the host (the lock 2.1 ms)" in words, words
    assert "counts in" not in words
    assert StepFinished("h", Step.RENAME, "ok", report.rename_s,
                        resolution=report.times.resolution).coarse_time() is None


def test_a_file_checked_before_its_rename_counts_both_checks_as_the_validate() -> None:
    """A watched file (``precheck``) with companions: checked where it lies, renamed, checked
    again with them; the rename is what lies between."""
    out = marks("e 6", ("begin", 10_000_000), ("backedup", 11_000_000),
                ("checking", 11_000_000), ("validated 0", 15_000_000),
                ("renamed", 15_400_000), ("validated 0", 19_400_000))
    report = parse_activation(0, out, "", 0.2)
    assert report.validate_s == pytest.approx(0.008)
    assert report.rename_s == pytest.approx(0.0004)
    assert report.times.resolution == pytest.approx(1e-6)


def test_a_host_cannot_claim_more_time_than_the_client_waited() -> None:
    out = marks("t 9", ("begin", 1), ("renamed", 99_000_000_000_000),
                ("validated 0", 5)) + "@@sw renamed 12x\n@@sw clock z 2\n"
    report = parse_activation(0, out, "", 0.05)
    assert report.rename_s == 0.05 and report.validate_s == 0.0
    assert report.times.wait >= 0.0 and report.times.host <= 0.05
    bare = parse_activation(0, "ok\n", "", 0.05)  # no marks at all: nothing is made up
    assert (bare.rename_s, bare.validate_s, bare.times.resolution) == (0.0, 0.0, 0.0)
    assert "the host printed no times" in bare.times.summary()


def clock_run(argv: list[str], user: str | None = None) -> Timeline:
    script = "\n".join([*CLOCK_LINES, mark("begin"), "sleep 0.05", mark("renamed")])
    proc = subprocess.run([*argv, script], capture_output=True, text=True, timeout=30,
                          user=user, cwd="/")
    assert proc.returncode == 0 and proc.stderr == "", proc
    return Timeline.parse(proc.stdout, 10.0)


@pytest.mark.skipif(not rig.is_root(), reason="needs root: /proc/timer_list and the rig's users")
@pytest.mark.parametrize(("shell", "as_user", "clock", "resolution"), [
    ("dash", False, "/proc/timer_list", 1e-9),
    ("dash", True, "/proc/uptime", 0.01),
    ("bash", False, "$EPOCHREALTIME", 1e-6),
    ("bash", True, "$EPOCHREALTIME", 1e-6),
])
def test_each_shell_reads_its_best_clock(shell: str, as_user: bool, clock: str,
                                         resolution: float) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"no {shell}")
    if as_user:
        rig.ensure_test_users()
    times = clock_run([shell, "-c"], rig.DEPLOY_USER if as_user else None)
    assert (times.clock, times.resolution) == (clock, pytest.approx(resolution))
    # The sleep is seen, to the clock's resolution (no upper bound: a busy machine).
    assert times.step("renamed") >= 0.05 - resolution, times
