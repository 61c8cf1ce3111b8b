"""The plain commands never load Textual: only ``sockwizard`` with no command opens the TUI.

Each case runs the real entry point in a fresh interpreter (``python -m wizard ...``, exactly
what the console script does) and then lists the modules that got imported; an import of
Textual (or Rich, which only the TUI needs) by the CLI would make every scripted call pay
for it and couple the core to the front end.
"""

from __future__ import annotations

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
sys.stderr.write("\n@@modules " + json.dumps({"code": code, "heavy": heavy}) + "\n")
"""


def run_cli(*args: str) -> tuple[int, list[str], str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args))], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    marker = [ln for ln in proc.stderr.splitlines() if ln.startswith("@@modules ")]
    assert marker, proc.stderr
    report = json.loads(marker[-1].removeprefix("@@modules "))
    return int(report["code"]), list(report["heavy"]), proc.stdout


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
