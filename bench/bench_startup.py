"""How long sockwizard takes to start, against what any Python / Textual program pays.

Three measurements, each case interleaved with its anchors in one run (see _common.py):

1. CLI wall time (spawn to exit, like hyperfine): ``sockwizard --help`` and ``sockwizard
   render --proxy nginx ...`` against ``python -c pass`` and ``python -c "import jinja2"``
   (render cannot be faster than importing its template engine).
2. The TUI's time to its first screen against a bare Textual hello-world app (goal <= 1.3x):
   each runs in a real pseudo-terminal (100x32, TERM=xterm-256color), and the clock stops when
   the screen's text reaches the terminal ("Deploy a new config" — the Start step's first
   choice — or "Hello, World!"). That is what a user waits for: interpreter, imports, driver
   set-up, compose, first paint. Diagnostic rows split the gap: hello world after our imports;
   the TUI with CPython's default GIL switch interval instead of run_app's 1 ms (Textual writes
   frames from a thread); the TUI with the garbage collector left on during start-up. A
   second, in-process figure (``App.run_test()``, imports
   already done) isolates the app's own mount-to-screen work.
   Then step changes: the wizard walked from Start to Target in a pty, a person's pause on
   each step, the time from each key to the next step's text on the first visit; as shipped
   against the same app without its start-up prefetch and GC pause.
3. ``python -X importtime`` of the CLI and the TUI start, medians over several runs: which
   imports cost, ours and third-party.

Run: ``python3 bench/bench_startup.py`` (about a minute). Nothing here asserts a time.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import select
import signal
import statistics
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402 - the bench dir is not a package
    PYTHON,
    REPO,
    BenchError,
    Sample,
    Series,
    base_parser,
    dump_json,
    fmt,
    interleave,
    machine_line,
    ratio,
    repo_env,
    sockwizard_argv,
    spread,
    table,
    timed_command,
    use_repo,
)

HELLO_APP = """\
from textual.app import App, ComposeResult
from textual.widgets import Static


class Hello(App[None]):
    def compose(self) -> ComposeResult:
        yield Static("Hello, World!")


Hello().run()
"""

TERM_SIZE = (32, 100)  # rows, columns
START_MARKER = b"Deploy a new config"
HELLO_MARKER = b"Hello, World!"

# CSI, OSC, DCS and two-byte escapes: stripped before looking for the marker text.
_ESCAPES = re.compile(
    rb"\x1b(?:\[[0-9;?<>=$]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|P[^\x1b]*\x1b\\"
    rb"|[()][0-9A-Za-z]|[=>78cDEHM])")


# --------------------------------------------------------------------------------------------
# 1. CLI wall time
# --------------------------------------------------------------------------------------------

RENDER_ARGS = ("render", "--proxy", "nginx", "--backend", "127.0.0.1:3000")


def cli_cases() -> dict[str, Callable[[], Sample]]:
    env = repo_env()
    return {
        "python -c pass": timed_command([PYTHON, "-c", "pass"], env=env, cwd=REPO),
        'python -c "import jinja2"': timed_command([PYTHON, "-c", "import jinja2"], env=env,
                                                   cwd=REPO),
        "sockwizard --help": timed_command(sockwizard_argv("--help"), env=env, cwd=REPO),
        "sockwizard render --proxy nginx": timed_command(sockwizard_argv(*RENDER_ARGS),
                                                         env=env, cwd=REPO),
        # what every SSH command (deploy, diagnose --host, rollback) loads, against paramiko
        # alone: invoke (Match exec only) is deferred (wizard.remote.ssh.lazy_invoke)
        'python -c "import paramiko"': timed_command([PYTHON, "-c", "import paramiko"],
                                                     env=env, cwd=REPO),
        'python -c "import wizard.remote.ssh"': timed_command(
            [PYTHON, "-c", "import wizard.remote.ssh"], env=env, cwd=REPO),
    }


def cli_table(series: dict[str, Series]) -> str:
    bare = series["python -c pass"].median("wall_ms")
    jinja = series['python -c "import jinja2"'].median("wall_ms")
    rows = []
    for name, s in series.items():
        wall = s.median("wall_ms")
        rows.append([
            name, spread(s, "wall_ms"), fmt(s.median("cpu_ms")),
            ratio(wall, bare), ratio(wall, jinja),
            fmt(None if wall is None or bare is None else wall - bare),
        ])
    return table(["command", "wall ms median (min–max)", "CPU ms",
                  "vs python -c pass", "vs import jinja2", "+ms over bare python"], rows)


# --------------------------------------------------------------------------------------------
# 2. TUI: time to first screen in a real pty
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PtyRun:
    first_screen_s: float
    output_bytes: int


def time_to_text(argv: Sequence[str], marker: bytes, *, timeout: float = 30.0) -> PtyRun:
    """Start `argv` on a fresh pseudo-terminal; seconds until `marker` appears in what it
    writes (escape sequences removed). The process is then killed: its exit is not measured,
    and a pty needs no terminal restore."""
    master, slave = os.openpty()
    rows, cols = TERM_SIZE
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = repo_env({"TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)})
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave, env=env,
                            cwd=REPO, start_new_session=True)
    os.close(slave)
    buf = b""
    seen: float | None = None
    try:
        while seen is None and time.perf_counter() - t0 < timeout:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            buf += data
            if marker in _ESCAPES.sub(b"", buf):
                seen = time.perf_counter() - t0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        os.close(master)
    if seen is None:
        tail = _ESCAPES.sub(b"", buf)[-600:].decode("utf-8", "replace")
        raise BenchError(f"{argv!r} never showed {marker!r} (exit {proc.returncode}):\n{tail}")
    return PtyRun(first_screen_s=seen, output_bytes=len(buf))


def tui_pty_cases() -> dict[str, Callable[[], Sample]]:
    def case(argv: list[str], marker: bytes) -> Callable[[], Sample]:
        def run() -> Sample:
            return {"wall_ms": time_to_text(argv, marker).first_screen_s * 1000}
        return run

    return {
        "Textual hello world": case([PYTHON, "-c", HELLO_APP], HELLO_MARKER),
        "sockwizard (TUI)": case(sockwizard_argv(), START_MARKER),
        # Diagnostics: the hello-world app after sockwizard's imports splits the gap into
        # import time and the app's own work (compose, CSS, first paint).
        HELLO_AFTER_ALL: case([PYTHON, "-c", f"import wizard.tui.app\n{HELLO_APP}"],
                              HELLO_MARKER),
        HELLO_AFTER_FIRST: case([PYTHON, "-c", f"{FIRST_SCREEN_IMPORTS}\n{HELLO_APP}"],
                                HELLO_MARKER),
        # What two start-up settings buy, each undone alone: run_app's 1 ms GIL switch
        # interval (back to CPython's 5 ms), and the garbage collector paused until the first
        # step is up (left on, as a plain Python program has it).
        DEFAULT_SWITCH: case([PYTHON, "-c", "import gc\ngc.disable()\n"
                              "import wizard.tui.app as tui\n"
                              "tui.UI_SWITCH_INTERVAL_S = 0.005\ntui.run_app()"], START_MARKER),
        GC_ON: case([PYTHON, "-c", "import gc\ngc.disable = lambda: None\n"
                     "import wizard.tui.app as tui\ntui.resume_gc = lambda: None\n"
                     "tui.run_app()"], START_MARKER),
    }


HELLO_AFTER_ALL = "hello world after `import wizard.tui.app`"
HELLO_AFTER_FIRST = "hello world after the first screen's imports only"
DEFAULT_SWITCH = "sockwizard (TUI) with CPython's default 5 ms switch interval"
GC_ON = "sockwizard (TUI) with the garbage collector on during start-up"


# In-process: App.run_test(), imports already paid; the clock runs from App() to the first
# screen being mounted and the app idle (its first frame composed).


async def _first_screen_in_process(make_app: Callable[[], object], ready: Callable[[object],
                                   bool]) -> float:
    from textual.app import App

    t0 = time.perf_counter()
    app = make_app()
    assert isinstance(app, App)
    async with app.run_test(headless=True, size=(TERM_SIZE[1], TERM_SIZE[0])) as pilot:
        while not ready(app):
            await pilot.pause()
        await pilot.pause()
        elapsed = time.perf_counter() - t0
        app.exit()
    return elapsed


def tui_inprocess_cases() -> dict[str, Callable[[], Sample]]:
    use_repo()
    from textual.app import App, ComposeResult
    from textual.widgets import Static

    from wizard.tui.app import SockwizardApp
    from wizard.tui.screens.start import StartScreen

    class Hello(App[None]):
        def compose(self) -> ComposeResult:
            yield Static("Hello, World!")

    def hello_ready(app: object) -> bool:
        assert isinstance(app, App)
        return bool(app.screen.is_mounted and app.screen.query(Static))

    def wizard_ready(app: object) -> bool:
        assert isinstance(app, App)
        return isinstance(app.screen, StartScreen) and app.screen.is_mounted

    def case(make: Callable[[], object], ready: Callable[[object], bool]) -> Callable[[], Sample]:
        def run() -> Sample:
            return {"wall_ms": asyncio.run(_first_screen_in_process(make, ready)) * 1000}
        return run

    return {
        "Textual hello world": case(Hello, hello_ready),
        "sockwizard (TUI)": case(SockwizardApp, wizard_ready),
    }


def tui_table(pty: dict[str, Series], inproc: dict[str, Series] | None) -> str:
    hello = pty["Textual hello world"].median("wall_ms")
    rows = []
    for name, s in pty.items():
        row = [name, spread(s, "wall_ms"), ratio(s.median("wall_ms"), hello)]
        if inproc is not None:
            if name in inproc:
                h2 = inproc["Textual hello world"].median("wall_ms")
                row += [spread(inproc[name], "wall_ms"),
                        ratio(inproc[name].median("wall_ms"), h2)]
            else:
                row += ["", ""]
        rows.append(row)
    headers = ["app", "first screen in a pty, ms (min–max)", "vs hello (goal <= 1.30x)"]
    if inproc is not None:
        headers += ["in-process run_test, ms", "vs hello"]
    return table(headers, rows)


def tui_split(pty: dict[str, Series]) -> str:
    """Where the TUI's extra time goes, from the diagnostic rows (medians)."""
    hello = pty["Textual hello world"].median("wall_ms") or 0.0
    ours = pty["sockwizard (TUI)"].median("wall_ms") or 0.0
    after_all = pty[HELLO_AFTER_ALL].median("wall_ms") or 0.0
    after_first = pty[HELLO_AFTER_FIRST].median("wall_ms") or 0.0
    return (f"Of the {ours - hello:.0f} ms the TUI takes beyond hello world, about "
            f"{after_all - hello:.0f} ms is imports (of which {after_all - after_first:.0f} ms "
            f"are modules the first screen does not need) and {ours - after_all:.0f} ms the "
            "app's own work before its first paint (compose, CSS, layout). At 1.30x the budget "
            f"is {1.3 * hello:.0f} ms.")


# --------------------------------------------------------------------------------------------
# 2b. TUI: step changes, first visit
# --------------------------------------------------------------------------------------------

# The deploy walk up to the target step, one key each: what the next step shows first.
WALK = (("enter", b"\r", b"2. Proxy"), ("ctrl+n", b"\x0e", b"3. Path"),
        ("ctrl+n", b"\x0e", b"4. Backends"), ("ctrl+n", b"\x0e", b"5. Preview"),
        ("ctrl+n", b"\x0e", b"6. Target"))
READ_PAUSE_S = 0.6  # a person reads each step before the next key (and the prefetch runs)
STEPS_AS_SHIPPED = "as shipped"
STEPS_PLAIN = "no prefetch, GC on"


def _read_until(master: int, marker: bytes, timeout: float = 15.0) -> float:
    """Read the pty until `marker` shows (escapes removed); the time it showed."""
    buf = b""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            buf += os.read(master, 1 << 16)
            if marker in _ESCAPES.sub(b"", buf):
                return time.perf_counter()
    raise BenchError(f"{marker!r} never showed:\n{_ESCAPES.sub(b'', buf)[-400:]!r}")


def walk_steps(argv: Sequence[str]) -> Sample:
    """Start the wizard in a pty, then per step: ms from its key to the next step's text."""
    master, slave = os.openpty()
    rows, cols = TERM_SIZE
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = repo_env({"TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)})
    proc = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave, env=env,
                            cwd=REPO, start_new_session=True)
    os.close(slave)
    sample: Sample = {}
    try:
        _read_until(master, START_MARKER, timeout=30)
        time.sleep(READ_PAUSE_S)
        for _, key, marker in WALK:
            sent = time.perf_counter()
            os.write(master, key)
            sample[marker.decode()] = (_read_until(master, marker) - sent) * 1000
            time.sleep(READ_PAUSE_S)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        os.close(master)
    return sample


def steps_cases() -> dict[str, Callable[[], Sample]]:
    plain = ("import gc\ngc.disable = lambda: None\nimport wizard.tui.app as tui\n"
             "tui.resume_gc = lambda: None\ntui.prefetch_steps = lambda: None\ntui.run_app()")
    return {
        STEPS_AS_SHIPPED: lambda: walk_steps(sockwizard_argv()),
        STEPS_PLAIN: lambda: walk_steps([PYTHON, "-c", plain]),
    }


def steps_table(series: dict[str, Series]) -> str:
    rows = []
    for _, _, marker in WALK:
        name = marker.decode()
        shipped = series[STEPS_AS_SHIPPED].median(name)
        plain = series[STEPS_PLAIN].median(name)
        rows.append([name, spread(series[STEPS_AS_SHIPPED], name),
                     spread(series[STEPS_PLAIN], name), ratio(shipped, plain)])
    return table(["key to step (first visit)", f"{STEPS_AS_SHIPPED}, ms (min–max)",
                  f"{STEPS_PLAIN}, ms (min–max)", "as shipped / plain"], rows)


# --------------------------------------------------------------------------------------------
# 3. Import profile
# --------------------------------------------------------------------------------------------

_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


@dataclass(frozen=True)
class ImportRow:
    module: str
    depth: int
    self_us: float
    cumulative_us: float
    parent: str


def import_profile(argv: Sequence[str], runs: int) -> list[ImportRow]:
    """Median self/cumulative import time per module over `runs` runs of `argv` (with -X
    importtime inserted after the interpreter)."""
    per_module: dict[str, list[tuple[int, int]]] = {}
    info: dict[str, tuple[int, str]] = {}
    cmd = [argv[0], "-X", "importtime", *argv[1:]]
    for _ in range(runs):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=repo_env(), cwd=REPO,
                              timeout=60, stdin=subprocess.DEVNULL)
        # importtime prints children before their parent: the parent of a line at depth d is
        # the next line below it at depth d - 1.
        lines = [m for m in map(_IMPORT_LINE.match, proc.stderr.splitlines()) if m]
        pending: dict[int, list[str]] = {}
        for m in lines:
            depth = len(m.group(3)) // 2
            name = m.group(4)
            per_module.setdefault(name, []).append((int(m.group(1)), int(m.group(2))))
            for child in pending.pop(depth + 1, []):
                info[child] = (info[child][0], name)
            pending.setdefault(depth, []).append(name)
            info.setdefault(name, (depth, ""))
    rows = []
    for name, samples in per_module.items():
        depth, parent = info[name]
        rows.append(ImportRow(name, depth, statistics.median(s for s, _ in samples),
                              statistics.median(c for _, c in samples), parent))
    return rows


def import_report(title: str, rows: list[ImportRow], top: int = 12) -> str:
    """Top modules by cumulative time (where the parent is not ours or stdlib noise), and the
    total self time of sockwizard's own modules."""
    ours = sorted((r for r in rows if r.module.startswith("wizard")),
                  key=lambda r: -r.cumulative_us)
    total_ours = sum(r.self_us for r in ours)
    # Top-level imports that matter: direct imports of one of our modules, or depth 0.
    entry = [r for r in rows if r.parent.startswith("wizard") or r.depth == 0]
    entry.sort(key=lambda r: -r.cumulative_us)
    lines = [f"#### {title}", "",
             f"sockwizard's own modules: {total_ours / 1000:.1f} ms of self time (compile "
             "cached).", ""]
    lines.append(table(
        ["module (imported by)", "cumulative ms", "self ms"],
        [[f"{r.module} ({r.parent or 'top'})", fmt(r.cumulative_us / 1000),
          fmt(r.self_us / 1000)] for r in entry[:top]]))
    return "\n".join(lines)


# What the first screen needs: the app shell's widgets and the Start step. Everything else that
# `import wizard.tui.app` loads could wait until its step is pushed.
FIRST_SCREEN_IMPORTS = ("import textual.app, textual.widgets._header, textual.widgets._footer, "
                        "textual.widgets._static, wizard.tui.state, wizard.tui.screens.base, "
                        "wizard.tui.screens.start")


def lazy_report(full: list[ImportRow], first: list[ImportRow], top: int = 10) -> str:
    """Self time of the modules the TUI imports before its first screen but that screen does
    not need, grouped by package: what lazy imports of the other steps would save."""
    needed = {r.module for r in first} | {"wizard.tui.app"}
    extra = [r for r in full if r.module not in needed]
    groups: dict[str, float] = {}
    for r in extra:
        parts = r.module.split(".")
        key = ".".join(parts[:3]) if parts[0] == "wizard" else parts[0]
        groups[key] = groups.get(key, 0.0) + r.self_us
    total = sum(groups.values())
    rows = [[name, fmt(us / 1000)] for name, us in sorted(groups.items(), key=lambda kv: -kv[1])]
    return "\n".join([
        "#### TUI: imports the first screen does not need", "",
        f"{len(extra)} modules, {total / 1000:.1f} ms of self time, are imported by "
        "`wizard.tui.app` but not by the Start step and the app shell "
        f"(`{FIRST_SCREEN_IMPORTS}`):", "",
        table(["package", "self ms"], rows[:top])])


# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0], runs=15, warmup=2)
    p.add_argument("--skip-tui", action="store_true", help="only the CLI and its profile")
    p.add_argument("--profile-runs", type=int, default=7, help="-X importtime runs (median)")
    p.add_argument("--steps-runs", type=int, default=5,
                   help="walks through the first six steps (0: skip)")
    args = p.parse_args(argv)

    print(f"### sockwizard start-up\n\n{machine_line()}\n")
    print("CLI wall time (spawn to exit), medians over "
          f"{args.runs} interleaved runs:", file=sys.stderr)
    cli = interleave(cli_cases(), args.runs, warmup=args.warmup)
    print(f"#### CLI wall time, {args.runs} interleaved runs\n")
    print(cli_table(cli) + "\n")

    pty: dict[str, Series] | None = None
    inproc: dict[str, Series] | None = None
    if not args.skip_tui:
        print("TUI first screen in a pty:", file=sys.stderr)
        pty = interleave(tui_pty_cases(), args.runs, warmup=args.warmup)
        print("TUI first screen in-process (run_test):", file=sys.stderr)
        inproc = interleave(tui_inprocess_cases(), args.runs, warmup=args.warmup)
        print(f"#### TUI time to first screen, {args.runs} interleaved runs\n")
        print(tui_table(pty, inproc) + "\n")
        print(tui_split(pty) + "\n")

    steps: dict[str, Series] | None = None
    if not args.skip_tui and args.steps_runs:
        print("TUI step changes:", file=sys.stderr)
        steps = interleave(steps_cases(), args.steps_runs, warmup=1)
        print(f"#### TUI step changes, first visit, {args.steps_runs} interleaved walks\n")
        print(steps_table(steps) + "\n")

    print("#### Import profile (python -X importtime, medians of "
          f"{args.profile_runs} runs)\n")
    profiles = {
        "sockwizard --help": import_profile(sockwizard_argv("--help"), args.profile_runs),
        "sockwizard render": import_profile(sockwizard_argv(*RENDER_ARGS), args.profile_runs),
    }
    if not args.skip_tui:
        profiles["TUI start (import wizard.tui.app)"] = import_profile(
            [PYTHON, "-c", "import wizard.tui.app"], args.profile_runs)
    for title, rows in profiles.items():
        print(import_report(title, rows) + "\n")
    if not args.skip_tui:
        first = import_profile([PYTHON, "-c", FIRST_SCREEN_IMPORTS], args.profile_runs)
        print(lazy_report(profiles["TUI start (import wizard.tui.app)"], first) + "\n")

    dump_json(args.json, {"machine": machine_line(), "cli": cli, "tui_pty": pty,
                          "tui_inprocess": inproc, "tui_steps": steps,
                          "imports": {k: [r.__dict__ for r in v] for k, v in profiles.items()}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
