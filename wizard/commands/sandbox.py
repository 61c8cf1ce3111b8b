"""``sockwizard sandbox --proxy KIND [--break FAULT [--fix]]``: try the whole deploy flow on this
machine, no VM needed — or watch a classic fault happen, be diagnosed and fixed.

Starts one demo Socket.IO server per backend of the spec and the chosen proxy from a temp
directory on free loopback ports (``wizard.sandbox``), deploys the rendered config into it with
the real transaction, checks affinity when there are several backends, prints exactly what the
sandbox substituted, the URL to open, and tears everything down on Ctrl-C (or at once with
``--no-wait``). With ``--break`` the proxy starts with the faulty variation of the config; a
real client shows the symptom, ``diagnose`` runs on it, and ``--fix`` deploys the fix.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import TYPE_CHECKING, Any

from wizard.commands._flags import add_command, add_spec_options, spec_from_args
from wizard.commands._print import Progress
from wizard.errors import ExitCode

if TYPE_CHECKING:
    from wizard.sandbox import Sandbox


def register(sub: Any) -> None:
    from wizard.sandbox.fault_kinds import FAULT_TITLES

    faults = "\n".join(f"  {f.value:<11} {title}" for f, title in FAULT_TITLES.items())
    p = add_command(
        sub, "sandbox",
        help="run demo Socket.IO servers behind a real proxy, deployed by sockwizard",
        description="Start one demo Socket.IO server per --backend (each answering with its own "
                    "id) and the chosen proxy on free loopback ports in a temp directory, deploy "
                    "the rendered config into it (backup, validate, reload, probe; with several "
                    "backends, N polling sessions prove the stickiness), and keep it running "
                    "until Ctrl-C. Addresses and ports are the sandbox's own: it prints each "
                    "substitution.",
        examples=f"faults for --break:\n{faults}\n\nexamples:\n"
                 "  sockwizard sandbox --proxy caddy --backend app1:3000 --backend app2:3000\n"
                 "  sockwizard sandbox --proxy nginx --break timeout --fix --no-wait")
    add_spec_options(p)
    p.add_argument("--break", dest="fault", metavar="FAULT",
                   help="start with a classic fault: timeout | no-upgrade | no-sticky | path")
    p.add_argument("--fix", action="store_true",
                   help="with --break: deploy the fix after the diagnosis and check it")
    p.add_argument("--no-wait", action="store_true",
                   help="stop right after the deploy and the probe (scripts, CI)")
    p.add_argument("--keep", action="store_true", help="keep the temp directory at the end")
    p.set_defaults(handler=run)


def say(text: str) -> None:
    print(f"sockwizard: {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from wizard.errors import BadInput
    from wizard.sandbox import parse_fault, start_sandbox, wait_until_interrupted

    spec = spec_from_args(args)
    fault = parse_fault(args.fault) if args.fault else None
    if args.fix and fault is None:
        raise BadInput("--fix needs --break FAULT.", "Add --break timeout (or another fault).")
    article = "an" if spec.proxy.value[0] in "aeiou" else "a"  # an apache sandbox
    what = f"{article} {spec.proxy.value} sandbox" + (
        f" with the {fault.value} fault" if fault else "")
    say(f"starting {what}…")
    previous = _stop_on_hangup()
    try:
        box = start_sandbox(spec.proxy, spec, on_event=Progress(sys.stderr, show_host=False),
                            keep=args.keep, fault=fault)
    except BaseException:
        _restore(previous)
        raise
    try:
        say("the sandbox runs your config with these substitutions:")
        for sub in box.substitutions:
            print(f"  {sub}", file=sys.stderr)
        code = run_break(box, args.fix) if fault is not None else report_deploy(box)
        if code != ExitCode.OK:
            return int(code)
        print(box.url, flush=True)
        if args.no_wait:
            return int(ExitCode.OK)
        say(f"try `sockwizard probe {box.url} --path {box.path}`; Ctrl-C stops it and removes "
            f"{box.prefix}.")
        why = wait_until_interrupted(box)
        if why not in ("interrupted", "terminated"):
            say(why)
            return int(ExitCode.FAILED)
        return int(ExitCode.OK)
    finally:
        for signum in previous:  # a second signal must not cut the cleanup short
            signal.signal(signum, signal.SIG_IGN)
        try:
            box.stop()
            say("sandbox stopped" + (f"; kept {box.prefix}" if args.keep else ""))
        finally:
            _restore(previous)


def _stop_on_hangup() -> dict[int, Any]:
    """Closing the terminal (SIGHUP) or a SIGTERM ends the sandbox as Ctrl-C does: ``run``'s
    cleanup stops its proxy and demo servers and removes its temp dir. (The default action
    ended this process alone: they ran on, orphaned, with the dir left behind.)"""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    return {signum: signal.signal(signum, interrupt) for signum in (signal.SIGHUP, signal.SIGTERM)}


def _restore(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def report_deploy(box: Sandbox) -> ExitCode:
    result = box.result
    assert result is not None
    if not result.ok:
        say(result.message())
        return result.exit_code
    line = box.affinity_line()
    if line is not None and box.affinity is not None:
        say(line)
        if not box.affinity_ok:
            say("the balancing does not keep sessions on one backend: " + box.affinity.detail())
            return ExitCode.FAILED
    say(f"{box.kind.value} sandbox is live: Socket.IO on {box.url} (path {box.path}); "
        f"{len(box.backend_ports)} demo server(s) ({', '.join(box.backend_ids)}) answer `echo` "
        "with an ack naming themselves.")
    return ExitCode.OK


def run_break(box: Sandbox, fix: bool) -> ExitCode:
    """The symptom, the diagnosis, and the fix (deployed with --fix)."""
    from wizard.diagnose import format_diagnosis
    from wizard.sandbox.breaks import apply_fix, diagnose_box, show_symptom

    assert box.fault is not None
    plan = box.fault
    say(f"broken on purpose: {plan.title}; " + "; ".join(plan.notes))
    say("a real client, meanwhile:")
    symptom = show_symptom(box)
    print(f"  {'✗' if symptom.seen else '?'} {symptom.what}", file=sys.stderr)
    say(f"running diagnose {box.url} --host local --proxy {box.kind.value} (a few seconds)…")
    diagnosis = diagnose_box(box)
    print(format_diagnosis(diagnosis), file=sys.stderr)
    if not fix:
        say(f"run again with --fix to deploy the fix ({box.kind.value}'s config rendered from "
            "the spec) into this sandbox and check it.")
        return ExitCode.OK if symptom.seen else ExitCode.FAILED
    say("deploying the fix (backup, validate, reload, probe)…")
    result = apply_fix(box, Progress(sys.stderr, show_host=False))
    if not result.ok:
        say(result.message())
        return result.exit_code
    after = show_symptom(box)  # the same client, through the fixed config
    print(f"  {'✗' if after.seen else '✓'} after the fix: {after.what}", file=sys.stderr)
    return ExitCode.FAILED if after.seen else ExitCode.OK
