"""Entry point: ``sockwizard`` (the TUI) and its plain commands for scripts and CI.

``main`` only parses, dispatches and maps errors to the documented exit codes; the work lives
in the core modules. stdout carries data (a config or --json); progress and errors go to
stderr. Textual is imported only when no command is given (a test checks this).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from wizard import __version__
from wizard.errors import ExitCode, SockwizardError

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
    parser = argparse.ArgumentParser(
        prog="sockwizard",
        description="Get a Socket.IO server working behind a reverse proxy, and prove it works.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"sockwizard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"wizard.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        # The only place the CLI reaches Textual, imported by name so commands never pay for it.
        tui = importlib.import_module("wizard.tui.app")
        return int(tui.run_app())
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
