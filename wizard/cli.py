"""Entry point: ``sockwizard`` (the TUI) and its plain commands for scripts and CI.

``main`` only parses, dispatches and maps a ``SockwizardError`` to its ``ExitCode`` (and Ctrl-C
to ``INTERRUPTED``); the flags live in ``wizard.commands``, the work in the core packages.
stdout carries data (a config or --json); progress and errors go to stderr. Textual is
imported only when no command is given (a test checks this).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from wizard import __version__
from wizard.errors import ExitCode, SockwizardError

if TYPE_CHECKING:
    import argparse

# Command modules, in the order --help lists them. Each has register(subparsers).
COMMANDS = ["render", "deploy", "rollback", "history", "sandbox", "probe", "diagnose", "serve",
            "export"]


def build_parser() -> argparse.ArgumentParser:
    import argparse  # here: plain `sockwizard` (the wizard) does not need it

    from wizard.commands._print import exit_codes_epilog

    epilog = f"{exit_codes_epilog()}\n\nRun without a command to open the interactive wizard."
    parser = argparse.ArgumentParser(
        prog="sockwizard",
        description="Get a Socket.IO server working behind a reverse proxy, and prove it works.",
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"sockwizard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"wizard.commands.{name}").register(sub)
    return parser


def run_tui() -> int:
    import gc

    gc.disable()  # for Textual's imports too; the wizard turns it back on (tui.app.resume_gc)
    # The only place the CLI reaches Textual, imported by name so commands never pay for it.
    tui = importlib.import_module("wizard.tui.app")
    return int(tui.run_app())


def main(argv: Sequence[str] | None = None) -> int:
    args_given = sys.argv[1:] if argv is None else list(argv)
    if not args_given:
        # Plain `sockwizard`: the wizard, without building the commands' parser first (it
        # imports every command module: ~15 ms the first screen would wait for).
        return run_tui()
    parser = build_parser()
    args = parser.parse_args(args_given)
    if args.command is None:  # only options such as --version/--help, which exit above
        return run_tui()
    try:
        return int(args.handler(args))
    except SockwizardError as exc:
        print(f"sockwizard: {exc.message()}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("sockwizard: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)


def entry() -> None:
    """The ``sockwizard`` script and ``python -m wizard``: ``main``, then exit without the
    interpreter's last garbage collection walking every object the run made (~45 ms of a
    deploy's exit with its stacks loaded, measured; atexit handlers and flushes still run).
    Tests call ``main``: freezing there would keep a test process's garbage for good."""
    code = main()
    import gc

    gc.freeze()
    raise SystemExit(code)


if __name__ == "__main__":
    entry()
