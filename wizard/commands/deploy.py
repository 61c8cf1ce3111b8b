"""``sockwizard deploy``: render the config and put it on one or more hosts, guarded.

The transaction itself lives in ``wizard.deploy``; this module only turns flags into options,
prints one progress line per step on stderr (with its time), and ends with the verdict — or a
per-host table when several ``--host`` values deploy at once. ``--json`` prints one report on
stdout; ``--dry-run`` prints the plan and the diff on stdout. ``sockwizard rollback`` (and the
``diagnose`` command's SSH mode) reuse the connection flags from here.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from wizard.commands.spec_args import add_spec_options, spec_from_args
from wizard.errors import BadInput

if TYPE_CHECKING:
    from wizard.deploy import ConnectOptions, DeployEvent, DeployResult

EXIT_CODES = """exit codes:
  0  deployed (or nothing to change, or --dry-run), and the probe passed
  1  failed before changing anything (e.g. another deploy holds the file's lock), or kept
     a failing config (--no-rollback)
  2  bad input: nothing was changed
  3  cannot connect: unreachable, auth, host key, sudo password; or the connection dropped
  4  validation failed: the previous config was put back at once
  5  reload failed: the previous config was restored and reloaded
  6  probe failed: the previous config was restored and reloaded
  7  rollback failed: the host needs attention (the message says where the backup is)"""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "deploy", help="deploy the config over SSH: validate, reload, probe, roll back",
        description="Render the proxy config, back up the current one, upload, validate in "
                    "place, reload, and probe Socket.IO through it; any failure restores the "
                    "previous config.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_spec_options(p)
    add_connect_options(p)
    g = p.add_argument_group("what to run on the host (detected when not given)")
    g.add_argument("--dest", metavar="PATH", help="the config file to replace")
    g.add_argument("--validate-cmd", metavar="CMD",
                   help="checker for the whole tree ({config} = the file), run with sudo")
    g.add_argument("--reload-cmd", metavar="CMD", help="reload/restart command, run with sudo")
    g.add_argument("--backup-dir", metavar="DIR", default=None,
                   help="backups, locks and journals on the host (default "
                        "/var/backups/sockwizard)")
    g.add_argument("--follow-symlink", action="store_true",
                   help="write through a --dest symlink whose target is outside the config "
                        "tree (devices and FIFOs are refused regardless)")
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


def add_connect_options(p: argparse.ArgumentParser, *, multiple: bool = True) -> None:
    g = p.add_argument_group("where (SSH)")
    g.add_argument("--host", action="append" if multiple else "store", dest="hosts",
                   required=True, metavar="TARGET",
                   help="[USER@]HOST[:PORT] or an ~/.ssh/config alias; `local` = this machine"
                        + ("; repeat to deploy to several hosts at once" if multiple else ""))
    add_ssh_auth_options(g)


def add_ssh_auth_options(g: Any) -> None:
    """How to log in and whom to trust: shared by deploy, rollback and diagnose."""
    g.add_argument("--identity", "-i", type=Path, metavar="FILE", help="private key file")
    g.add_argument("--known-hosts", type=Path, metavar="FILE",
                   help="known_hosts to check the host key against (default ~/.ssh/known_hosts)")
    g.add_argument("--accept-host-key", metavar="SHA256:...",
                   help="trust this host key fingerprint (after checking it) and record it")
    g.add_argument("--password-stdin", action="store_true",
                   help="read the SSH password from the first line of stdin")
    g.add_argument("--sudo-password-stdin", action="store_true",
                   help="read the sudo password from stdin (the next line)")
    g.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for the SSH connection (default 10)")


def connect_from_args(args: argparse.Namespace, stdin: TextIO | None = None) -> ConnectOptions:
    """Connection flags -> ConnectOptions; passwords come from stdin, never from argv."""
    from wizard.deploy import ConnectOptions

    stream = stdin if stdin is not None else sys.stdin
    password = _read_secret(stream, "--password-stdin") if args.password_stdin else None
    sudo_password = (_read_secret(stream, "--sudo-password-stdin")
                     if args.sudo_password_stdin else None)
    if args.connect_timeout <= 0:
        raise BadInput("--connect-timeout must be positive.", "Give a number of seconds.")
    return ConnectOptions(
        known_hosts=args.known_hosts, accept_host_key=args.accept_host_key,
        identity=args.identity, password=password, sudo_password=sudo_password,
        connect_timeout=args.connect_timeout,
        passphrase_prompt=_passphrase_prompt if sys.stdin.isatty() else None)


def _read_secret(stream: TextIO, flag: str) -> str:
    line = stream.readline()
    if not line:
        raise BadInput(f"{flag}: stdin is empty.",
                       "Pipe the password in, e.g. `printf '%s\\n' \"$PW\" | sockwizard ...`.")
    return line.rstrip("\r\n")


def _passphrase_prompt(prompt: str) -> str:
    return getpass.getpass(prompt)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


class Progress:
    """One stderr line per finished step (with its time), warnings as they come."""

    MARK: ClassVar[dict[str, str]] = {"ok": "ok", "failed": "FAIL", "skipped": "skip"}

    def __init__(self, stream: TextIO, *, show_host: bool) -> None:
        self.stream = stream
        self.show_host = show_host

    def __call__(self, event: DeployEvent) -> None:
        from wizard.deploy import Notice, StepFinished

        prefix = f"{event.host}  " if self.show_host else ""
        if isinstance(event, StepFinished):
            ms = f"{event.seconds * 1000:8.1f} ms" if event.status != "skipped" else " " * 11
            detail = event.detail.splitlines()[0] if event.detail else ""
            line = f"{prefix}{event.step.value:<10} {self.MARK[event.status]:<4} {ms}  {detail}"
            print(line.rstrip(), file=self.stream, flush=True)
        elif isinstance(event, Notice):
            print(f"{prefix}{event.level}: {event.text}", file=self.stream, flush=True)


def print_plan(result: DeployResult, stream: TextIO) -> None:
    stream.write(f"# sockwizard deploy --dry-run: plan for {result.host} (nothing was changed)\n")
    for item in result.plan:
        stream.write(f"{item}\n")
    if result.diff:
        stream.write(f"\n# diff against {result.host}:{result.dest}\n{result.diff}")
    else:
        stream.write(f"\n# no change: {result.dest} already has this config\n")


def summary_table(results: Sequence[DeployResult]) -> str:
    rows = [("host", "outcome", "exit", "time", "failed step")]
    for r in results:
        rows.append((r.host, r.outcome.value, str(int(r.exit_code)), f"{r.seconds:.2f}s",
                     r.failed_step.value if r.failed_step else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(results: Sequence[DeployResult], *, as_json: bool, dry_run: bool) -> int:
    """Print the verdicts (stderr), the plan or JSON (stdout); return the exit code."""
    from wizard.deploy import combined_exit_code

    code = combined_exit_code(results)
    if as_json:
        print(json.dumps({"exit_code": int(code), "hosts": [r.to_dict() for r in results]},
                         indent=2))
    elif dry_run:
        for r in results:
            if r.ok:
                print_plan(r, sys.stdout)
    for r in results:
        prefix = f"sockwizard: {r.host}: " if len(results) > 1 else "sockwizard: "
        if r.ok:
            print(f"{prefix}{r.title}", file=sys.stderr)
        else:
            print(f"{prefix}{r.message()}", file=sys.stderr)
    if len(results) > 1:
        print("\n" + summary_table(results), file=sys.stderr)
    return int(code)


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds in (0, 3600]")
    return value


def run(args: argparse.Namespace) -> int:
    from wizard.deploy import DEFAULT_BACKUP_DIR, DeployOptions, deploy_many

    spec = spec_from_args(args)
    hosts: list[str] = args.hosts
    connect = connect_from_args(args)
    options = DeployOptions(
        dest=args.dest, validate_cmd=args.validate_cmd, reload_cmd=args.reload_cmd,
        probe_url=args.probe_url, probe=not args.no_probe, rollback=not args.no_rollback,
        dry_run=args.dry_run, backup_dir=args.backup_dir or DEFAULT_BACKUP_DIR,
        follow_symlink=args.follow_symlink,
        settle_timeout=args.settle_timeout)
    if args.dest and len(hosts) > 1:
        print("sockwizard: note: --dest applies to every host", file=sys.stderr)
    progress = Progress(sys.stderr, show_host=len(hosts) > 1)
    results = deploy_many(hosts, spec, options, connect, on_event=progress)
    return report(results, as_json=args.json, dry_run=args.dry_run)
