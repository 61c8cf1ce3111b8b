"""``sockwizard serve [--host 127.0.0.1] [--port 8000] [--public]``: the wizard in a web browser.

Serves the very same TUI through textual-serve (Textualize's own server for Textual apps: an
aiohttp page with xterm.js; each browser tab runs ``python -m wizard`` in a process of its own,
stopped — sandbox included — when the tab closes). Chosen over hand-written websocket glue
because it is the maintained way to put a Textual app in a browser.

The wizard can deploy to hosts with this user's SSH keys, so it binds loopback by default and
says so; any other address needs ``--public`` and prints a warning. textual-serve is imported
only here (``sockwizard --help`` does not pay for it).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from wizard.commands._flags import add_command
from wizard.errors import BadInput, ExitCode, MissingTool

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def register(sub: Any) -> None:
    p = add_command(
        sub, "serve", help="serve the wizard in a web browser (textual-serve)",
        description="Serve the interactive wizard as a web page: each browser tab runs its own "
                    "wizard on this machine. It can deploy to your hosts with your SSH keys, so "
                    "it listens on loopback unless you pass --public.",
        examples="examples:\n  sockwizard serve            # http://127.0.0.1:8000\n"
                 "  sockwizard serve --port 8765\n"
                 "  sockwizard serve --host 0.0.0.0 --public   # anyone who reaches the port")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}, loopback only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument("--public", action="store_true",
                   help="allow a non-loopback --host (anyone reaching it can deploy as you)")
    p.set_defaults(handler=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, port: int, public: bool) -> str | None:
    """BadInput for a bad or unasked-for public address; the warning to print, if any."""
    if not 1 <= port <= 65535:
        raise BadInput(f"--port {port} is out of range.", "Use 1..65535, e.g. --port 8000.")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if host != "localhost":
            raise BadInput(f"--host {host!r} is not an IP address.",
                           "Give the address to listen on, e.g. --host 127.0.0.1.") from None
    if is_loopback(host):
        return None
    if not public:
        raise BadInput(f"--host {host} is not a loopback address: anyone who reaches it could "
                       "deploy to your hosts with your SSH keys.",
                       "Keep the default (127.0.0.1) and use an SSH tunnel, or add --public.")
    return (f"WARNING: serving on {host}:{port}, not loopback. Anyone who reaches this port "
            "gets a wizard that can deploy configs to your hosts with your SSH keys and "
            "sudo. There is no login: put it behind a VPN or an authenticating proxy.")


def run(args: argparse.Namespace) -> int:
    warning = check_bind(args.host, args.port, args.public)
    try:
        from textual_serve.server import Server
    except ImportError:
        raise MissingTool("`sockwizard serve` needs textual-serve.",
                          "Install it: pip install 'textual-serve==1.1.3'.") from None
    if warning:
        print(f"sockwizard: {warning}", file=sys.stderr)
    else:
        print(f"sockwizard: listening on {args.host}:{args.port} only (loopback: this machine's "
              "users). Other machines need --host ADDRESS --public.", file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"sockwizard: open http://{host}:{args.port}/ in a browser; Ctrl-C stops it.",
          file=sys.stderr, flush=True)
    # Each tab runs this very package's wizard, installed or from a checkout.
    root = str(Path(__file__).resolve().parents[2])
    os.environ["PYTHONPATH"] = root + (os.pathsep + os.environ["PYTHONPATH"]
                                       if os.environ.get("PYTHONPATH") else "")
    server = Server(shlex.join([sys.executable, "-m", "wizard"]), host=args.host,
                    port=args.port, title="sockwizard", public_url=f"http://{host}:{args.port}")
    server.serve()
    return int(ExitCode.OK)
