"""``sockwizard probe URL``: the staged live Socket.IO probe, for scripts and CI.

Progress (one line per stage) goes to stderr; the table or ``--json`` report to stdout.
Exit 0 only when the WebSocket transport works end to end.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from wizard.commands._flags import add_command, add_probe_options, probe_options
from wizard.commands._print import StageProgress
from wizard.errors import ExitCode


def register(sub: Any) -> None:
    p = add_command(
        sub, "probe", help="probe a live Socket.IO endpoint through the proxy, stage by stage",
        description="TCP/TLS, Engine.IO handshake, WebSocket upgrade, Socket.IO connect and "
                    "round trip, each timed. Exit 0 only when WebSocket works end to end.")
    p.add_argument("url", metavar="URL", help="e.g. https://chat.example.com")
    add_probe_options(p)
    p.add_argument("--emit", metavar="EVENT", help="emit this event (with an ack) after connecting")
    p.add_argument("--data", metavar="JSON", help="data for --emit")
    p.add_argument("--expect", metavar="EVENT", help="wait for this event after --emit")
    p.add_argument("--sessions", type=int, default=0, metavar="N",
                   help="N polling sessions at once: checks sticky sessions")
    p.add_argument("--clients", type=int, default=0, metavar="N",
                   help="N concurrent WebSocket clients: connect latency p50/p95/p99")
    p.add_argument("--json", action="store_true", help="print one JSON report on stdout")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from wizard.probe import format_report, run_probe

    options = probe_options(args, emit=args.emit, data=args.data, expect=args.expect,
                            sessions=args.sessions, clients=args.clients)
    progress = StageProgress()
    try:
        report = run_probe(args.url, options, on_stage=None if args.json else progress)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
    return int(ExitCode.OK if report.ok else ExitCode.FAILED)
