"""Entry point: ``sockwizard`` (the TUI) and its plain commands for scripts and CI.

``main`` only parses, dispatches and maps errors to the documented exit codes; the work lives
in the core modules. stdout carries data (a config or --json); progress and errors go to
stderr. Textual is imported only when no command is given (a test checks this).
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
COMMANDS = ["render", "deploy", "rollback", "sandbox", "probe", "diagnose"]

EPILOG = """exit codes:
  0  ok
  1  the check failed (probe not on WebSocket, findings)
  2  bad input: nothing was changed
  3  cannot connect: unreachable, auth, host key, sudo
  4  validation failed: the previous config was kept
  5  reload failed: the previous config was restored
  6  probe failed: the previous config was restored
  7  rollback failed: the host needs attention

Run without a command to open the interactive wizard."""


def build_parser() -> argparse.ArgumentParser:
    import argparse  # here: plain `sockwizard` (the wizard) does not need it

    parser = argparse.ArgumentParser(
        prog="sockwizard",
        description="Get a Socket.IO server working behind a reverse proxy, and prove it works.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
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


if __name__ == "__main__":
    raise SystemExit(main())
