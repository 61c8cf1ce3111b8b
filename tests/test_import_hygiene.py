"""The plain commands never load Textual: only ``sockwizard`` with no command opens the TUI.

Each case runs the real entry point in a fresh interpreter (``python -m wizard ...``, exactly
what the console script does) and then lists the modules that got imported; an import of
Textual (or Rich, which only the TUI needs) by the CLI would make every scripted call pay
for it and couple the core to the front end.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Runs the CLI like `python -m wizard ARGS`, then reports the loaded modules as JSON on the last
# line of stderr (stdout carries the command's own data).
PROBE = r"""
import json, runpy, sys
sys.argv = ["wizard", *json.loads(sys.argv[1])]
code = 0
try:
    runpy.run_module("wizard", run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("textual", "rich")
               or m.startswith("wizard.tui"))
watched = sorted(m for m in ("wizard.deploy", "wizard.sandbox.run", "paramiko", "jinja2")
                 if m in sys.modules)
sys.stderr.write("\n@@modules " + json.dumps({"code": code, "heavy": heavy,
                                              "watched": watched}) + "\n")
"""


def _report(*args: str) -> tuple[dict[str, object], str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args))], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    marker = [ln for ln in proc.stderr.splitlines() if ln.startswith("@@modules ")]
    assert marker, proc.stderr
    return json.loads(marker[-1].removeprefix("@@modules ")), proc.stdout


def run_cli(*args: str) -> tuple[int, list[str], str]:
    report, stdout = _report(*args)
    return int(report["code"]), list(report["heavy"]), stdout  # type: ignore[call-overload]


@pytest.mark.parametrize(("args", "allowed"), [
    (("--help",), []),
    (("render", "--proxy", "nginx"), ["jinja2"]),
    (("sandbox", "--help"), []),
])
def test_the_parser_does_not_load_the_deploy(args: tuple[str, ...], allowed: list[str]) -> None:
    """Building the commands' parser imports every command module; ``sandbox``'s help lists
    the faults. None of that may load the deploy, paramiko or (for --help) the renderer:
    `--help` went from ~50 to ~150 ms when it did (bench_startup.py)."""
    report, _ = _report(*args)
    assert report["code"] == 0
    assert report["watched"] == allowed, f"`sockwizard {' '.join(args)}`: {report['watched']}"


@pytest.mark.parametrize("args", [
    ("--help",),
    ("--version",),
    ("render", "--proxy", "nginx"),
    ("render", "--proxy", "caddy", "--path", "/chat/", "--snippets"),
    ("render", "--help"),
])
def test_cli_commands_do_not_import_textual(args: tuple[str, ...]) -> None:
    code, heavy, stdout = run_cli(*args)
    assert code == 0
    assert heavy == [], f"`sockwizard {' '.join(args)}` imported {heavy}"
    if args[0] == "render" and "--help" not in args:
        assert "Socket.IO" in stdout  # the command really ran


def test_a_failing_command_does_not_import_textual_either() -> None:
    code, heavy, _ = run_cli("render", "--proxy", "nginx", "--read-timeout", "10")
    assert code == 2  # bad input
    assert heavy == []


def test_the_probe_catches_an_import() -> None:
    """The check itself works: importing the TUI shows up in the list."""
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, wizard.tui.app; "
                               "print(sorted(m for m in sys.modules if m == 'textual'))"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "['textual']", proc.stderr


# The other way round: plain `sockwizard` goes straight to the wizard, without building the
# commands' parser (argparse and every command module), which the first screen would wait for.
TUI_PROBE = r"""
import json, sys
import wizard.cli as cli
cli.run_tui = lambda: 0  # stands in for the terminal UI: only what main() loads first counts
sys.argv = ["sockwizard", *json.loads(sys.argv[1])]
code = cli.main()
loaded = sorted(m for m in sys.modules if m == "argparse" or m.startswith("wizard.commands"))
print(json.dumps({"code": code, "loaded": loaded}))
"""


@pytest.mark.parametrize(("args", "builds_parser"), [
    ((), False),
    (("render", "--proxy", "nginx"), True),  # the control: a command needs the parser
])
def test_plain_sockwizard_skips_the_command_parser(args: tuple[str, ...],
                                                   builds_parser: bool) -> None:
    proc = subprocess.run([sys.executable, "-c", TUI_PROBE, json.dumps(list(args))], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, proc.stderr
    if builds_parser:
        assert "argparse" in report["loaded"] and "wizard.commands.render" in report["loaded"]
    else:
        assert report["loaded"] == []


def test_the_wizard_prefetches_every_step_and_lexer() -> None:
    """What the TUI loads in a thread while the first step is read: every step screen of both
    modes, the dialogs, and each lexer compiled (Pygments compiles a lexer's patterns on its
    first use; `_tokens` appears on the class then)."""
    script = r"""
import json, sys
import wizard.tui.app as app
before = {m for m in sys.modules if m.startswith("wizard.tui.screens.")}
app.prefetch_steps()
after = {m for m in sys.modules if m.startswith("wizard.tui.screens.")}
from pygments.lexers import find_lexer_class_by_name  # the class, not an instance
compiled = {name: "_tokens" in find_lexer_class_by_name(name).__dict__
            for name in ("nginx", "apacheconf", "javascript", "python", "toml", "diff")}
print(json.dumps({"new": sorted(after - before), "compiled": compiled}))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    steps = {"start", "proxy", "path", "backends", "preview", "target", "deploy", "verdict",
             "diagnose", "modals"}
    assert {m.rsplit(".", 1)[1] for m in report["new"]} >= steps - {"base"}, report
    assert all(report["compiled"].values()), report["compiled"]


# -- the TUI's wiring (DESIGN.md, problem 5) -------------------------------------------------

TUI = ROOT / "wizard" / "tui"
SCREENS = sorted((TUI / "screens").glob("*.py"))
# Screen modules a step may import: the frame, the shared step kinds, the dialogs. Anything a
# second step needs from a step module (the deploy helpers the preview uses) lives in a
# neutral module instead (wizard.tui.calls).
SHARED_SCREEN_MODULES = {"wizard.tui.screens.base", "wizard.tui.screens.shared",
                         "wizard.tui.screens.modals"}


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (function bodies, TYPE_CHECKING too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_screens_do_not_import_the_app_or_each_other() -> None:
    """Screens get the app's services handed in (wizard.tui.services): none imports the App
    (that was a cycle), and none imports another step's module."""
    assert len(SCREENS) >= 12
    for path in SCREENS:
        module = f"wizard.tui.screens.{path.stem}"
        imports = imported_modules(path)
        assert not any(m == "wizard.tui.app" or m.startswith("wizard.tui.app.")
                       for m in imports), f"{module} imports the App"
        steps = {m for m in imports if m.startswith("wizard.tui.screens.")
                 and m.count(".") == 3} - SHARED_SCREEN_MODULES - {module}
        assert not steps, f"{module} imports step modules {steps}"
    # The same, as Python sees it: every screen and widget imports without loading the App.
    script = ("import importlib, sys; "
              f"[importlib.import_module(m) for m in {sorted(_tui_modules())!r}]; "
              "print('wizard.tui.app' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.strip() == "False", proc.stderr


def _tui_modules() -> list[str]:
    paths = [*SCREENS, *sorted((TUI / "widgets").glob("*.py"))]
    return [f"wizard.tui.{p.parent.name}.{p.stem}".removesuffix(".__init__") for p in paths]


# Calls that start a thread and the callables they hand it: (name, index of the first argument
# that is the function run in the thread).
THREAD_STARTERS = {"in_thread": 0, "run_in_thread": 1, "run_worker": 0}
# What touches Textual's DOM or its non-thread-safe state.
DOM_NAMES = {"query", "query_one", "query_children", "query_exactly_one", "query_one_optional",
             "call_from_thread", "mount", "mount_all", "remove", "remove_children", "refresh",
             "update", "notify", "screen", "focused", "set_class", "add_class",
             "remove_class"}


class ThreadCode:
    """What runs in worker threads in some modules, found from the calls that start them.

    For ``in_thread(fn, *args, **kwargs)`` / ``run_in_thread(node, fn, ...)`` /
    ``run_worker(fn, thread=True)``: ``fn`` runs in the thread, and any ``self.method`` passed
    among the arguments (not called) is a callback the thread calls (an event sink, a stage
    callback). Callbacks may do one thing: ``self.post_message(...)``. Functions run in the
    thread (methods or module functions of these modules) may not touch the DOM.
    """

    def __init__(self, sources: dict[str, str]) -> None:
        self.trees = {name: ast.parse(text, name) for name, text in sources.items()}
        self.functions: dict[str, list[ast.FunctionDef]] = {}
        for tree in self.trees.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef):
                    self.functions.setdefault(node.name, []).append(node)
        self.callbacks: set[str] = set()
        self.run: set[str] = set()
        for tree in self.trees.values():
            for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
                self._thread_start(call)

    def _thread_start(self, call: ast.Call) -> None:
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name not in THREAD_STARTERS:
            return
        if name == "run_worker" and not any(
                k.arg == "thread" and isinstance(k.value, ast.Constant) and k.value.value
                for k in call.keywords):
            return
        first = THREAD_STARTERS[name]
        args = call.args[first:]
        if args:
            self.run.update(self._names(args[0], self_only=False))
        for arg in [*args[1:], *(k.value for k in call.keywords)]:
            self.callbacks.update(self._names(arg, self_only=True))

    def _names(self, node: ast.expr, *, self_only: bool) -> set[str]:
        """A method ``self.x`` or (``self_only`` off) a function ``x`` defined here."""
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "self":
            name = node.attr
        elif isinstance(node, ast.Name) and not self_only:
            name = node.id
        else:
            return set()
        defs = [d for d in self.functions.get(name, []) if not any(
            isinstance(dec, ast.Name) and dec.id == "property" for dec in d.decorator_list)]
        return {name} if defs else set()

    def problems(self) -> list[str]:
        found = []
        for tree in self.trees.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr == "call_from_thread":
                    found.append(f"line {node.lineno}: call_from_thread (post a message)")
        for name in sorted(self.callbacks):
            for fn in self.functions[name]:
                for node in ast.walk(fn):
                    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                            and node.value.id == "self" and node.attr != "post_message":
                        found.append(f"callback {name} uses self.{node.attr}")
        for name in sorted(self.run - self.callbacks):
            for fn in self.functions[name]:
                found.extend(f"{name} (runs in a thread) uses .{node.attr}"
                             for node in ast.walk(fn)
                             if isinstance(node, ast.Attribute) and node.attr in DOM_NAMES)
        return found


def test_worker_threads_only_post_messages() -> None:
    """Textual's workers guide: only post_message is thread-safe. Code handed to a worker
    thread in wizard/tui reaches the UI only by posting a message (wizard.tui.messages)."""
    sources = {str(p.relative_to(ROOT)): p.read_text() for p in sorted(TUI.rglob("*.py"))}
    code = ThreadCode(sources)
    # The check sees the real thread code: the deploy's sink, the probe's stage callback,
    # the core calls over the state, the prefetch.
    assert {"_event_from_thread", "_stage_seen"} <= code.callbacks, code.callbacks
    assert {"apply_on", "locked", "diagnose_state", "_prefetch", "write_text"} <= code.run
    assert code.problems() == []


def test_the_thread_check_catches_the_old_pattern() -> None:
    """The check itself works: a sink that queries the DOM before handing over is caught."""
    old = '''
class Screen:
    async def deploy(self):
        await self.in_thread(apply_on, self.state, self._event_from_thread)
        await self.in_thread(self._load)

    def _event_from_thread(self, event):
        self.app.call_from_thread(self.query_one(DeployLog).handle, event)

    def _load(self):
        self.query_one("#x").update("loading")

def apply_on(state, sink): ...
'''
    assert sorted(ThreadCode({"old.py": old}).problems()) == [
        "_load (runs in a thread) uses .query_one",
        "_load (runs in a thread) uses .update",
        "callback _event_from_thread uses self.app",
        "callback _event_from_thread uses self.query_one",
        "line 8: call_from_thread (post a message)",
    ]


# -- the seam to a host (DESIGN.md, problem 4) -----------------------------------------------

WIZARD = ROOT / "wizard"
SSH_PACKAGE = WIZARD / "remote" / "ssh"


def paramiko_importers(root: Path) -> set[str]:
    """Every module below ``root`` that imports paramiko anywhere (function bodies too)."""
    return {str(path.relative_to(root.parent)) for path in sorted(root.rglob("*.py"))
            if any(m == "paramiko" or m.startswith("paramiko.") for m in imported_modules(path))}


def test_paramiko_is_imported_only_under_wizard_remote_ssh() -> None:
    importers = paramiko_importers(WIZARD)
    assert importers, "the scan found no paramiko import at all"
    outside = {m for m in importers if not m.startswith("wizard/remote/ssh/")}
    assert outside == set(), f"paramiko imported outside wizard/remote/ssh: {sorted(outside)}"


def test_the_paramiko_scan_catches_a_lazy_import(tmp_path: Path) -> None:
    """The check itself works: a paramiko import inside a function is found."""
    pkg = tmp_path / "wizard"
    pkg.mkdir()
    (pkg / "screen.py").write_text("def hosts():\n    from paramiko import SSHConfig\n")
    assert paramiko_importers(pkg) == {"wizard/screen.py"}


def test_wizard_remote_imports_without_paramiko() -> None:
    """Importing the seam (every command does) loads no paramiko; asking for an SSH name does."""
    script = ("import sys, wizard.remote as r; before = 'paramiko' in sys.modules; "
              "r.SshRemote; print(before, 'paramiko' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.split() == ["False", "True"], proc.stderr
