"""``sockwizard rollback --host TARGET``: put back the config sockwizard's last deploy replaced.

The backup is found in the host's ``/var/backups/sockwizard/index.jsonl`` (or, when the host
lost it, in the local copies under the state dir) and restored by ``wizard.deploy.rollback_host``
as a guarded transaction of its own: the current file is backed up first, the restored one is
validated in place and reloaded, and the probe runs when the deploy had one. Running it again
walks further back through the history.
"""

from __future__ import annotations

import argparse
from typing import Any

from wizard.commands._flags import add_command, add_connect_options, connect_from_args
from wizard.commands._print import Progress, report


def register(sub: Any) -> None:
    p = add_command(
        sub, "rollback", help="restore the config sockwizard's last deploy replaced",
        description="Restore the newest backup sockwizard made on the host, validate it in "
                    "place and reload; a failure puts the current config back.")
    add_connect_options(p, multiple=False)
    g = p.add_argument_group("what to restore")
    g.add_argument("--dest", metavar="PATH",
                   help="only backups of this file (default: the newest of any)")
    g.add_argument("--validate-cmd", metavar="CMD", help="override the recorded checker")
    g.add_argument("--reload-cmd", metavar="CMD", help="override the recorded reload")
    g.add_argument("--backup-dir", metavar="DIR", default=None,
                   help="backups on the host (default /var/backups/sockwizard)")
    g.add_argument("--probe-url", metavar="URL", help="probe here after the reload")
    g.add_argument("--no-probe", action="store_true", help="do not probe after the reload")
    g.add_argument("--json", action="store_true", help="print one JSON report on stdout")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from wizard.deploy import DEFAULT_BACKUP_DIR, RollbackOptions, rollback_host

    connect = connect_from_args(args)
    options = RollbackOptions(
        dest=args.dest, validate_cmd=args.validate_cmd, reload_cmd=args.reload_cmd,
        probe_url=args.probe_url, probe=not args.no_probe,
        backup_dir=args.backup_dir or DEFAULT_BACKUP_DIR)
    result = rollback_host(args.hosts, options, connect,
                           on_event=Progress(sys.stderr, show_host=False))
    return report([result], as_json=args.json, dry_run=False)
