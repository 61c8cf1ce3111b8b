"""``sockwizard rollback --host TARGET``: undo sockwizard's newest change in effect on a host.

What may come back is decided from the host's history (``wizard.deploy.history``: the
semantics table): a second rollback goes further back or says there is nothing left, and
never re-applies a config that failed or was rolled away from. ``--to ID`` returns to the
config of a listed deploy; ``--list`` prints the history of the file(s) and what a plain
rollback would do; ``--dry-run`` shows the diff and the plan and changes nothing. The restore
itself is ``wizard.deploy.rollback_host``: a guarded transaction of its own (the current file
is backed up first, the restored one validated in place, reloaded and probed; a failure puts
the current config back). Exit codes: ``wizard.errors.ExitCode``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from wizard.commands._flags import (
    add_change_options,
    add_command,
    add_connect_options,
    backup_dir,
    connect_from_args,
    host_path,
    open_early,
)
from wizard.commands._print import Progress, report
from wizard.errors import ExitCode

if TYPE_CHECKING:
    from wizard.deploy import Record


def register(sub: Any) -> None:
    p = add_command(
        sub, "rollback", help="undo sockwizard's newest change on a host (or go back to one)",
        description="Undo the newest deploy still in effect on the host (run again: the one "
                    "before it), or return to a listed deploy with --to ID; validate the "
                    "restored file in place and reload; a failure puts the current config "
                    "back. Failed and rolled-away configs never come back.",
        examples="examples:\n"
                 "  sockwizard rollback --host deploy@web1 --list\n"
                 "  sockwizard rollback --host deploy@web1 --dry-run\n"
                 "  sockwizard rollback --host deploy@web1 --to 3f2a9c01e4")
    add_connect_options(p, multiple=False)
    g = p.add_argument_group("what to restore")
    g.add_argument("--dest", "--file", dest="dest", metavar="PATH",
                   help="only this file (default: the file changed most recently)")
    g.add_argument("--to", metavar="ID", help="return to the config of this deploy (see --list)")
    g.add_argument("--list", action="store_true",
                   help="list the deploys and rollbacks, and what a rollback would undo")
    g.add_argument("--dry-run", action="store_true",
                   help="show the diff and the commands; change nothing")
    add_change_options(g, validate="override the recorded checker",
                       reload="override the recorded reload", backups="backups on the host")
    g.add_argument("--probe-url", metavar="URL", help="probe here after the reload")
    g.add_argument("--no-probe", action="store_true", help="do not probe after the reload")
    g.add_argument("--json", action="store_true", help="print one JSON report on stdout")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import sys

    connect = connect_from_args(args)
    backups = backup_dir(args)
    host_path("--dest", args.dest, "the config file the deploy replaced")
    if args.list:
        return list_choices(args, backups, connect)
    opening = open_early(args.hosts, connect)
    try:
        # Imported while the connect is under way (wizard.remote.Opening).
        from wizard.deploy import RollbackOptions, rollback_host

        options = RollbackOptions(
            dest=args.dest, validate_cmd=args.validate_cmd, reload_cmd=args.reload_cmd,
            probe_url=args.probe_url, probe=not args.no_probe, backup_dir=backups,
            to=args.to, dry_run=args.dry_run)
    except BaseException:
        if opening is not None:
            opening.discard()
        raise
    result = rollback_host(args.hosts, options, connect, opening=opening,
                           on_event=Progress(sys.stderr, show_host=False))
    return report([result], as_json=args.json, dry_run=args.dry_run)


def list_choices(args: argparse.Namespace, backup_dir: str, connect: Any) -> int:
    """``--list``: the history of the file(s), then what a plain rollback would undo."""
    import json

    from wizard.commands.history import table
    from wizard.deploy import NoChoice, history_host, rollback_choice, stack

    records = history_host(args.hosts, backup_dir, connect, dest=args.dest)
    try:
        choice = rollback_choice(records, dest=args.dest)
        nxt = (f"`sockwizard rollback` would undo {', '.join(r.id for r in choice.undo)} "
               f"on {choice.dest}, back to "
               + (f"the config of {choice.to.id}." if choice.to is not None
                  else f"the file as it was before {choice.restore.id}."))
    except NoChoice as exc:
        nxt = exc.title
    in_effect: list[Record] = [r for d in {r.dest for r in records}
                               for r in stack(records, d)]
    if args.json:
        print(json.dumps({"host": args.hosts, "entries": [r.to_dict() for r in records],
                          "in_effect": [r.id for r in in_effect], "next": nxt}, indent=2))
        return int(ExitCode.OK)
    print(table(records) if records else f"(no deploy recorded on {args.hosts})")
    print(f"\nin effect (--to can return to these): "
          f"{', '.join(r.id for r in in_effect) or 'none'}\n{nxt}")
    return int(ExitCode.OK)
