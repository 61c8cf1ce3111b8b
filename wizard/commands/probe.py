"""``sockwizard probe URL``: the staged live Socket.IO probe, for scripts and CI.

Progress (one line per stage) goes to stderr; the table or ``--json`` report to stdout.
Exit 0 only when the WebSocket transport works end to end.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from wizard.errors import ExitCode


def add_probe_options(p: argparse.ArgumentParser) -> None:
    """Options shared with ``diagnose``."""
    p.add_argument("--path", default="/socket.io/", metavar="P",
                   help="the Socket.IO path (default /socket.io/)")
    p.add_argument("--header", action="append", default=[], metavar="K:V",
                   help="extra request header; repeatable")
    p.add_argument("--origin", metavar="O", help="send this Origin header")
    p.add_argument("--insecure", action="store_true", help="accept self-signed TLS certificates")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="seconds per stage (default 5)")
    p.add_argument("--hold", type=float, default=0.0, metavar="SECONDS",
                   help="keep an idle connection open this long and report if it drops")
    p.add_argument("--connect-to", metavar="ADDR",
                   help="connect to this address; the URL's host stays the Host header and "
                        "TLS name (like curl --connect-to): one host behind a load balancer, "
                        "or a name before its DNS")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "probe", help="probe a live Socket.IO endpoint through the proxy, stage by stage",
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


def probe_options(args: argparse.Namespace, **extra: Any) -> Any:
    from wizard.probe import ProbeOptions, parse_header

    connect_to = args.connect_to
    if connect_to is not None and not extra.get("emit"):
        # Our own Socket.IO CONNECT on the upgraded WebSocket honours the address;
        # python-socketio (needed for --emit) resolves the URL itself.
        extra.setdefault("raw_connect", True)
    return ProbeOptions(
        path=args.path, headers=tuple(parse_header(h) for h in args.header), origin=args.origin,
        insecure=args.insecure, timeout=args.timeout, hold=args.hold, connect_to=connect_to,
        **extra)


def print_stage(stage: Any) -> None:
    mark = "ok " if stage.ok else ("-- " if stage.data.get("skipped") else "ERR")
    print(f"  [{mark}] {stage.name:<12} {stage.ms:8.1f} ms  {stage.detail}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from wizard.probe import format_report, run_probe

    options = probe_options(args, emit=args.emit, data=args.data, expect=args.expect,
                            sessions=args.sessions, clients=args.clients)
    report = run_probe(args.url, options, on_stage=None if args.json else print_stage)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
    return int(ExitCode.OK if report.ok else ExitCode.FAILED)
