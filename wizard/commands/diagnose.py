"""``sockwizard diagnose URL``: the probe plus, over SSH, the proxy's live config -> findings.

Findings (most serious first) go to stdout as a report or, with ``--json``, as one object
``{"findings": [...], "probe": {...}, "config": {...}, ...}``; progress lines go to stderr.
Exit ``OK`` when no finding is an error, ``FAILED`` otherwise (``wizard.errors.ExitCode``).
The SSH flags and the probe flags are the ones ``deploy`` and ``probe`` use (``_flags``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from wizard.commands._flags import (
    add_command,
    add_probe_options,
    add_ssh_auth_options,
    connect_from_args,
    probe_options,
)
from wizard.commands._print import StageProgress
from wizard.errors import BadInput, ExitCode

DEFAULT_SESSIONS = 6  # polling sessions: catches a missing sticky setup with two backends


def register(sub: Any) -> None:
    p = add_command(
        sub, "diagnose", help="find why Socket.IO clients drop, stay on polling or fail",
        description="Probe URL and, with --host/--proxy, read the proxy's live config over SSH; "
                    "print each problem with its evidence (config file:line, probe stage) and "
                    "the exact lines to change. Exit 0 when no finding is an error.",
        examples="examples:\n"
                 "  sockwizard diagnose https://chat.example.com\n"
                 "  sockwizard diagnose https://chat.example.com --host deploy@chat.example.com "
                 "--proxy nginx\n"
                 "  sockwizard diagnose http://127.0.0.1:8080 --host local --proxy caddy "
                 "--config /srv/Caddyfile --json")
    p.add_argument("url", metavar="URL", help="the URL clients use, e.g. https://chat.example.com")
    add_probe_options(p)
    p.add_argument("--sessions", type=int, default=DEFAULT_SESSIONS, metavar="N",
                   help=f"polling sessions to check sticky sessions (default {DEFAULT_SESSIONS}; "
                        "0 = skip)")
    g = p.add_argument_group("the proxy's live config (over SSH)")
    g.add_argument("--host", dest="host", metavar="TARGET",
                   help="[USER@]HOST[:PORT], an ~/.ssh/config alias, or `local`")
    g.add_argument("--proxy", metavar="KIND", help="nginx | apache | caddy | node")
    g.add_argument("--config", metavar="PATH",
                   help="the main config file on the host (default: the proxy's own; node: the "
                        "script listening on the URL's port)")
    add_ssh_auth_options(g)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from wizard.diagnose import format_diagnosis, run_diagnosis

    if args.host is None and (args.proxy or args.config):
        raise BadInput("--proxy/--config need --host to read the config.",
                       "Add --host TARGET (or --host local on the proxy host itself).")
    if args.host is not None and not args.proxy:
        raise BadInput("--host needs --proxy to know which config to read.",
                       "Add --proxy nginx|apache|caddy|node.")
    options = probe_options(args, sessions=max(0, args.sessions))
    remote = None
    if args.host is not None:
        from wizard.remote import open_host

        remote = open_host(args.host, connect_from_args(args))
    progress = StageProgress()
    try:
        diagnosis = run_diagnosis(args.url, options, remote=remote, proxy=args.proxy,
                                  config_path=args.config,
                                  on_stage=None if args.json else progress)
    finally:
        progress.close()
        if remote is not None:
            remote.close()
    if args.json:
        print(json.dumps(diagnosis.to_dict(), indent=2, default=str))
    else:
        sys.stdout.write(format_diagnosis(diagnosis))
    return int(ExitCode.OK if diagnosis.ok else ExitCode.FAILED)
