"""``sockwizard sandbox --proxy KIND``: try the whole deploy flow on this machine, no VM needed.

Starts a demo Socket.IO server and the chosen proxy from a temp directory on free loopback
ports (``wizard.sandbox``), deploys the rendered config into it with the real transaction,
prints the URL to open, and tears everything down on Ctrl-C (or at once with ``--no-wait``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from wizard.commands._flags import add_command, add_spec_options, spec_from_args
from wizard.commands._print import Progress
from wizard.errors import ExitCode


def register(sub: Any) -> None:
    p = add_command(
        sub, "sandbox",
        help="run a demo Socket.IO server behind a real proxy, deployed by sockwizard",
        description="Start a demo Socket.IO server and the chosen proxy on free loopback ports "
                    "in a temp directory, deploy the rendered config into it (backup, validate, "
                    "reload, probe), and keep it running until Ctrl-C.")
    add_spec_options(p)
    p.add_argument("--no-wait", action="store_true",
                   help="stop right after the deploy and the probe (scripts, CI)")
    p.add_argument("--keep", action="store_true", help="keep the temp directory at the end")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from wizard.sandbox import start_sandbox, wait_until_interrupted

    spec = spec_from_args(args)
    ignored = [flag for flag, value in (("--backend", args.backends), ("--listen", args.listen),
                                        ("--tls-cert", args.tls_cert),
                                        ("--server-name", args.server_name)) if value]
    if ignored:
        print("sockwizard: the sandbox picks its own ports and host; ignoring "
              + ", ".join(ignored), file=sys.stderr)
    print(f"sockwizard: starting a {spec.proxy.value} sandbox…", file=sys.stderr)
    box = start_sandbox(spec.proxy, spec, on_event=Progress(sys.stderr, show_host=False),
                        keep=args.keep)
    try:
        result = box.result
        assert result is not None
        if not result.ok:
            print(f"sockwizard: {result.message()}", file=sys.stderr)
            return int(result.exit_code)
        print(f"sockwizard: {spec.proxy.value} sandbox is live: Socket.IO on {box.url} "
              f"(path {box.path}); the demo server answers `echo` with an ack.", file=sys.stderr)
        print(box.url, flush=True)
        if args.no_wait:
            return int(ExitCode.OK)
        print(f"sockwizard: try `sockwizard probe {box.url}`; Ctrl-C stops it and removes "
              f"{box.prefix}.", file=sys.stderr)
        why = wait_until_interrupted(box)
        if why not in ("interrupted", "terminated"):
            print(f"sockwizard: {why}", file=sys.stderr)
            return int(ExitCode.FAILED)
        return int(ExitCode.OK)
    finally:
        box.stop()
        print("sockwizard: sandbox stopped" + (f"; kept {box.prefix}" if args.keep else ""),
              file=sys.stderr)
