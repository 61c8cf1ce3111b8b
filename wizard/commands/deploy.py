"""``sockwizard deploy``: render the config and put it on one or more hosts, guarded.

The transaction itself lives in ``wizard.deploy``; this module only turns flags into options
(``_flags``) and hands the events and results to ``_print``: one progress line per step on
stderr, then the verdict — or a per-host table when several ``--host`` values deploy at once.
``--json`` prints one report on stdout; ``--dry-run`` prints the plan and the diff on stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wizard.commands._flags import (
    SPEC_DESTS,
    add_change_options,
    add_command,
    add_connect_options,
    add_spec_options,
    backup_dir,
    connect_from_args,
    host_path,
    open_early,
    spec_from_args,
)
from wizard.commands._print import Progress, report
from wizard.errors import BadInput, SockwizardError

if TYPE_CHECKING:
    from wizard.model import DeploySpec
    from wizard.remote.connect import ConnectOptions, Opening


def register(sub: Any) -> None:
    p = add_command(
        sub, "deploy", help="deploy the config over SSH: validate, reload, probe, roll back",
        description="Render the proxy config, back up the current one, upload, validate in "
                    "place, reload, and probe Socket.IO through it; any failure restores the "
                    "previous config.")
    add_spec_options(p)
    g = add_connect_options(p, required=False)
    g.add_argument("--inventory", type=Path, metavar="FILE",
                   help="an Ansible inventory (INI or YAML): its hosts, their ansible_host/"
                        "port/user and any spec field as a host variable (instead of --host)")
    g.add_argument("--limit", metavar="PATTERN",
                   help="with --inventory: Ansible's host pattern (web:&prod:!web3, db*)")
    g.add_argument("--forks", type=_forks, default=None, metavar="N",
                   help="with --inventory: deploy to N hosts at once (default 5)")
    g = p.add_argument_group("what to run on the host (detected when not given)")
    g.add_argument("--dest", metavar="PATH", help="the config file to replace")
    add_change_options(g, validate="checker for the whole tree ({config} = the file), run with "
                                   "sudo")
    g.add_argument("--follow-symlink", action="store_true",
                   help="write through a --dest symlink whose target is outside the config "
                        "tree (devices and FIFOs are refused regardless)")
    g = p.add_argument_group("stock hosts (changed in the same transaction, undone on failure "
                             "and by rollback)")
    g.add_argument("--edit-main-config", action="store_true",
                   help="add the one line that makes the main config load the site directory "
                        "(Caddyfile `import sites/*.caddy`, nginx.conf's conf.d include, "
                        "apache2.conf's IncludeOptional, /etc/default/haproxy's `-f "
                        "/etc/haproxy/conf.d`: then HAProxy is restarted) when it lacks it")
    g.add_argument("--disable-default-site", action="store_true",
                   help="disable the distro's default site that answers the port first "
                        "(a2dissite 000-default, sites-enabled/default, Caddy's :80 "
                        "placeholder block)")
    g = p.add_argument_group("checks")
    g.add_argument("--probe-url", metavar="URL",
                   help="where to probe the proxy from here (default: the host, listen port)")
    g.add_argument("--no-probe", action="store_true", help="skip the settle and probe steps")
    g.add_argument("--settle-timeout", type=_positive_seconds, default=20.0, metavar="S",
                   help="how long the reloaded proxy may take to serve the new config "
                        "(default 20)")
    g.add_argument("--no-rollback", action="store_true",
                   help="keep a config that fails reload or probe (never one that fails "
                        "validation)")
    g.add_argument("--dry-run", action="store_true",
                   help="print the commands and the diff; change nothing")
    g.add_argument("--json", action="store_true", help="print one JSON report on stdout")
    p.set_defaults(handler=run)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds in (0, 3600]")
    return value


def _forks(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 200:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hosts in [1, 200]")
    return int(text)


def run(args: argparse.Namespace) -> int:
    if args.inventory is not None:
        return _run_inventory(args)
    if not args.hosts:
        raise BadInput("Where to deploy? Give --host TARGET (repeatable) or --inventory FILE.",
                       "e.g. --host deploy@web1.example.com or --inventory hosts.ini.")
    if args.limit is not None or args.forks is not None:
        raise BadInput("--limit and --forks go with --inventory.",
                       "Give --inventory FILE, or list the hosts with --host.")
    spec = spec_from_args(args)
    hosts: list[str] = args.hosts
    connect = connect_from_args(args)
    # Refused before any connection: the paths the deploy would use on the host.
    host_path("--dest", args.dest, "the config file, e.g. /etc/nginx/conf.d/sockwizard.conf")
    backups = backup_dir(args)
    opening = _open_early(hosts, spec, connect)
    try:
        # Imported while the connect is under way (wizard.remote.Opening).
        from wizard.deploy import deploy_many

        options = _options(args, backups)
    except BaseException:
        if opening is not None:
            opening.discard()
        raise
    if args.dest and len(hosts) > 1:
        print("sockwizard: note: --dest applies to every host", file=sys.stderr)
    progress = Progress(sys.stderr, show_host=len(hosts) > 1)
    results = deploy_many(hosts, spec, options, connect, on_event=progress, opening=opening)
    return report(results, as_json=args.json, dry_run=args.dry_run)


def _open_early(hosts: list[str], spec: DeploySpec, connect: ConnectOptions) -> Opening | None:
    """One SSH host and a spec the deploy takes: start the connect now (``open_early``)."""
    if len(hosts) != 1:
        return None
    try:
        spec.validated()
    except SockwizardError:
        return None  # no connect for a spec the deploy refuses before connecting
    return open_early(hosts[0], connect)


def _options(args: argparse.Namespace, backups: str) -> Any:
    from wizard.deploy import DeployOptions

    return DeployOptions(
        dest=args.dest, validate_cmd=args.validate_cmd, reload_cmd=args.reload_cmd,
        probe_url=args.probe_url, probe=not args.no_probe, rollback=not args.no_rollback,
        dry_run=args.dry_run, backup_dir=backups,
        follow_symlink=args.follow_symlink, settle_timeout=args.settle_timeout,
        edit_main_config=args.edit_main_config,
        disable_default_site=args.disable_default_site)


def _run_inventory(args: argparse.Namespace) -> int:
    """``--inventory``: the selected hosts, each with its own spec and target (wizard.fleet)."""
    from wizard.fleet import deploy_fleet, jobs_for, load_inventory, select
    from wizard.spec_file import load_raw

    if args.hosts:
        raise BadInput("--host and --inventory cannot be combined.",
                       "Put every host in the inventory (or pick some with --limit).")
    host_path("--dest", args.dest, "the config file, e.g. /etc/nginx/conf.d/sockwizard.conf")
    backups = backup_dir(args)
    inventory = load_inventory(args.inventory)
    hosts = select(inventory, args.limit)
    base = load_raw(args.spec) if args.spec else {}
    flags = {d: getattr(args, d) for d in SPEC_DESTS if getattr(args, d, None) is not None}
    given = frozenset(n for n in ("dest", "validate_cmd", "reload_cmd", "probe_url")
                      if getattr(args, n) is not None)
    jobs = jobs_for(inventory, hosts, base, flags, _options(args, backups),
                    connect_from_args(args),
                    option_flags=given)
    names = [job.name for job in jobs]
    # Progress lines carry the inventory name too, unless two names share one SSH target.
    by_target = {job.target: job.name for job in jobs}
    progress = Progress(sys.stderr, show_host=len(jobs) > 1,
                        names=by_target if len(by_target) == len(jobs) else None)
    results = deploy_fleet(jobs, forks=args.forks or 5, on_event=progress)
    return report(results, as_json=args.json, dry_run=args.dry_run, names=names)
