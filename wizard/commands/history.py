"""``sockwizard history --host TARGET``: every deploy and rollback sockwizard made on a host.

Reads the host's ``index.jsonl`` (``wizard.deploy.history_host``; the records and what they
mean: ``wizard.deploy.history``) and prints one line per run, oldest first — when, what
(``deployed``, ``failed, rolled back``, ``rolled back (ids)``, ``unchanged``, ...), the file,
the config id and who — or, with ``--json``, ``{"host": ..., "entries": [...]}`` on stdout.
``rollback --list`` prints the same table (``table``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wizard.commands._flags import (
    add_backup_dir_option,
    add_command,
    add_connect_options,
    backup_dir,
    connect_from_args,
)
from wizard.errors import ExitCode

if TYPE_CHECKING:
    from wizard.deploy import Record

HEADINGS = ("id", "time", "what", "file", "config", "who")


def register(sub: Any) -> None:
    p = add_command(
        sub, "history", help="list every deploy and rollback sockwizard made on a host",
        description="List every deploy and rollback sockwizard recorded on the host (oldest "
                    "first): when, what happened (failed and rolled-back deploys marked as "
                    "such), the file, the config id and who. `sockwizard rollback --to ID` "
                    "returns to a listed deploy.",
        examples="examples:\n"
                 "  sockwizard history --host deploy@web1\n"
                 "  sockwizard history --host deploy@web1 --file /etc/nginx/conf.d/sock.conf "
                 "--json")
    add_connect_options(p, multiple=False)
    g = p.add_argument_group("what to list")
    g.add_argument("--file", "--dest", dest="dest", metavar="PATH",
                   help="only this file (default: every file sockwizard deployed there)")
    add_backup_dir_option(g, "sockwizard's backups on the host")
    g.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(handler=run)


def table(records: Sequence[Record]) -> str:
    """The records as aligned columns, one line each (``HEADINGS``)."""
    rows = [HEADINGS, *(r.row() for r in records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADINGS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def run(args: argparse.Namespace) -> int:
    import sys

    from wizard.deploy import history_host

    records = history_host(args.hosts, backup_dir(args),
                           connect_from_args(args), dest=args.dest)
    if args.json:
        print(json.dumps({"host": args.hosts, "entries": [r.to_dict() for r in records]},
                         indent=2))
    elif records:
        print(table(records))
    else:
        where = f" for {args.dest}" if args.dest else ""
        print(f"sockwizard: no deploy recorded on {args.hosts}{where}.", file=sys.stderr)
    return int(ExitCode.OK)
