"""``sockwizard diagnose URL``: the probe plus, over SSH, the proxy's live config -> findings.

Findings (most serious first) go to stdout as a report or, with ``--json``, as one object
``{"findings": [...], "probe": {...}, "config": {...}, ...}``; progress lines go to stderr.
Exit ``OK`` when no finding is an error, ``FAILED`` otherwise (``wizard.errors.ExitCode``).
The SSH flags and the probe flags are the ones ``deploy`` and ``probe`` use (``_flags``).

``--fix`` prints the config-edit fixes as one unified diff on stdout (the report goes to
stderr): ``cd / && patch -p0 < fix.diff`` applies it. ``--apply`` deploys it through the
guarded transaction (``wizard.repair``) and exits with deploy's codes.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from wizard.commands._flags import (
    PROXY_CHOICES,
    add_change_options,
    add_command,
    add_probe_options,
    add_ssh_auth_options,
    backup_dir,
    connect_from_args,
    open_early,
    probe_options,
)
from wizard.commands._print import StageProgress
from wizard.errors import BadInput, ExitCode
from wizard.model import PROXY_NAMES

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
    g.add_argument("--proxy", metavar="KIND", help=PROXY_CHOICES)
    g.add_argument("--config", metavar="PATH",
                   help="the main config file on the host (default: the proxy's own; node: the "
                        "script listening on the URL's port)")
    add_ssh_auth_options(g)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    g = p.add_argument_group("fixing (needs --host/--proxy)")
    g.add_argument("--fix", action="store_true",
                   help="print the config-edit fixes as a unified diff on stdout (the report "
                        "goes to stderr); apply it with `cd / && patch -p0`")
    g.add_argument("--apply", action="store_true",
                   help="make that change on the host, guarded like deploy (backup, validate "
                        "in place, reload, probe, roll back on failure), then diagnose again")
    add_change_options(g, validate="checker for the whole tree, run with sudo (default: the "
                                   "proxy's, on --config when given)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.host is None and (args.proxy or args.config):
        raise BadInput("--proxy/--config need --host to read the config.",
                       "Add --host TARGET (or --host local on the proxy host itself).")
    if args.host is not None and not args.proxy:
        raise BadInput("--host needs --proxy to know which config to read.",
                       f"Add --proxy {PROXY_NAMES}.")
    fixing = args.fix or args.apply
    if fixing and args.host is None:
        raise BadInput("--fix/--apply need --host and --proxy: the fix is made to the live "
                       "config files.", "Add --host TARGET --proxy KIND.")
    if (args.validate_cmd or args.reload_cmd or args.backup_dir) and not args.apply:
        raise BadInput("--validate-cmd/--reload-cmd/--backup-dir are for --apply.",
                       "Add --apply, or leave them out.")
    if args.apply:
        backup_dir(args)  # a path the host cannot use is refused before connecting
    connect = connect_from_args(args) if args.host is not None else None
    opening = open_early(args.host, connect) if connect is not None else None
    try:
        # Imported while the connect is under way (wizard.remote.Opening).
        from wizard.diagnose import format_diagnosis, run_diagnosis
        from wizard.remote import open_host

        options = probe_options(args, sessions=max(0, args.sessions))
        remote = (opening.remote() if opening is not None
                  else open_host(args.host, connect) if connect is not None else None)
    except BaseException:
        if opening is not None:
            opening.discard()
        raise
    progress = StageProgress()
    try:
        try:
            diagnosis = run_diagnosis(args.url, options, remote=remote, proxy=args.proxy,
                                      config_path=args.config,
                                      on_stage=None if args.json else progress)
        finally:
            progress.close()  # before anything else is printed on the terminal
        if fixing and remote is not None:
            return _fix(args, diagnosis, remote, options)
    finally:
        if remote is not None:
            remote.close()
    if args.json:
        print(json.dumps(diagnosis.to_dict(), indent=2, default=str))
    else:
        sys.stdout.write(format_diagnosis(diagnosis))
    return int(ExitCode.OK if diagnosis.ok else ExitCode.FAILED)


def _fix(args: argparse.Namespace, diagnosis: Any, remote: Any, options: Any) -> int:
    """--fix: the diff on stdout, the report and the printed-only fixes on stderr;
    --apply: that change through the guarded transaction, then the findings before/after."""
    from wizard.commands._print import Progress
    from wizard.deploy import DeployOptions
    from wizard.diagnose import format_diagnosis
    from wizard.remote import host_address
    from wizard.repair import apply_fixes, plan_fixes, summary

    err = sys.stderr
    err.write(format_diagnosis(diagnosis))
    fixes = plan_fixes(diagnosis, remote, args.proxy)
    for finding, why in fixes.plan.printed:
        if finding.severity != "info":
            err.write(f"sockwizard: {finding.code}: printed only ({why})\n")
    for check in fixes.checks:
        err.write(f"sockwizard: checked here: {check.command}: "
                  f"{'ok' if check.ok else 'REFUSED'}\n"
                  + (f"{check.output}\n" if not check.ok and check.output else ""))
    if not fixes.plan.patches:
        err.write("sockwizard: no config edit to make\n")
        return int(ExitCode.OK if diagnosis.ok else ExitCode.FAILED)
    if not args.apply:
        sys.stdout.write(fixes.plan.diff)
        err.write("sockwizard: apply with: cd / && patch -p0 < this.diff   (or --apply)\n")
        return int(ExitCode.FAILED if fixes.refused else ExitCode.OK)
    err.write(fixes.plan.diff)
    deploy = DeployOptions(validate_cmd=args.validate_cmd, reload_cmd=args.reload_cmd,
                           backup_dir=backup_dir(args),
                           probe_timeout=options.timeout)
    repair = apply_fixes(fixes, remote, deploy, options, config_path=args.config,
                         on_event=Progress(err, show_host=False),
                         probe_host=host_address(args.host), host=args.host)
    for result in repair.results:
        err.write(f"sockwizard: {result.title if result.ok else result.message()}\n")
    if repair.fixes.refused:
        err.write("sockwizard: the proxy's checker refused the fix here: nothing was changed\n")
    sys.stdout.write(summary(repair))
    return repair.exit_code
