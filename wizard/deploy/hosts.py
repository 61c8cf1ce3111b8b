"""The entry points: run the transaction on an open remote, or connect to hosts first.

``apply`` and ``rollback`` take an open ``Remote`` — the seam the TUI, the sandbox and the
tests use (an in-memory or local remote, no patching). ``deploy_host``, ``deploy_many`` and
``rollback_host`` (``sockwizard deploy`` / ``rollback``) connect first, through the one
connect preamble here (``open_host`` -> ``wizard.remote.open_remote``), then call the same
two functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import posixpath
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from wizard.deploy import history
from wizard.deploy.backups import read_history, rollback_preset, sha
from wizard.deploy.context import Context
from wizard.deploy.detect import HostTarget, Overrides, detect
from wizard.deploy.events import DeployEvent, EventSink, Step, StepFinished, StepStarted, ignore
from wizard.deploy.options import (
    DEFAULT_BACKUP_DIR,
    ConnectOptions,
    DeployOptions,
    Preset,
    RollbackOptions,
)
from wizard.deploy.preload import preload
from wizard.deploy.result import DeployResult, Outcome
from wizard.deploy.settle import LIVE, LiveChecks
from wizard.deploy.transaction import Transaction
from wizard.errors import BadInput, ExitCode, SockwizardError
from wizard.model import DeploySpec, Layout, ProxyKind
from wizard.remote import Opening, Remote, host_address
from wizard.remote import open_host as remote_open_host


def apply(remote: Remote, spec: DeploySpec, options: DeployOptions, *,
          on_event: EventSink = ignore, checks: LiveChecks = LIVE,
          probe_host: str = "127.0.0.1", reconnect: Callable[[], Remote] | None = None,
          host: str | None = None) -> DeployResult:
    """Run the transaction on an already open remote (the TUI, the sandbox, the tests)."""
    return _deploy(remote, spec.validated(), options, host=host or remote.name,
                   on_event=on_event, checks=checks, probe_host=probe_host,
                   reconnect=reconnect)


def rollback(remote: Remote, host: str, options: RollbackOptions, *,
             undo_id: str | None = None, on_event: EventSink = ignore,
             checks: LiveChecks | None = None, probe_host: str = "127.0.0.1") -> DeployResult:
    """Roll back over an open remote, as a guarded transaction of its own: undo the newest
    change in effect (``sockwizard rollback``; ``options.to``: back to that deploy's config),
    or the deploy whose id is ``undo_id``. What may come back: ``wizard.deploy.history``."""
    return _rollback(remote, host, options, undo_id, on_event=on_event, checks=checks,
                     probe_host=probe_host, session=None)


def rollback_result(remote: Remote, result: DeployResult, *, on_event: EventSink = ignore,
                    checks: LiveChecks | None = None, probe_host: str = "127.0.0.1",
                    options: RollbackOptions | None = None) -> DeployResult:
    """Undo one finished deploy over an open remote (the TUI's Rollback button): put back
    what was there before it (its backup; or no file, when it made the file), guarded like
    any deploy. ``options``: where its history is, when not beside its backup (a new file
    has none: the default backup dir)."""
    if result.id is None:
        return DeployResult(host=result.host, outcome=Outcome.FAILED,
                            exit_code=ExitCode.BAD_INPUT,
                            title="This deploy changed nothing on the host (it recorded no "
                                  "history entry): there is nothing to undo.")
    # The index lives beside the backups this deploy wrote.
    opts = options or RollbackOptions(backup_dir=posixpath.dirname(result.backup)
                                      if result.backup else DEFAULT_BACKUP_DIR)
    return rollback(remote, result.host, opts, undo_id=result.id, on_event=on_event,
                    checks=checks, probe_host=probe_host)


def apply_bytes(remote: Remote, kind: ProxyKind, dest: str, content: bytes, base: bytes,
                options: DeployOptions, *, path: str = "/socket.io/",
                main_config: str | None = None, entry: dict[str, object] | None = None,
                on_event: EventSink = ignore, checks: LiveChecks = LIVE,
                probe_host: str = "127.0.0.1", host: str | None = None) -> DeployResult:
    """Put ``content`` in place of the existing file ``dest`` (made from its bytes ``base``:
    diagnose's fixes) through the same guarded transaction as a deploy: the lock, backup,
    write beside, validate in place, reload, settle, probe, byte-for-byte restore on any
    failure. The checker and the reload are the host's (``detect``: the whole tree from
    ``main_config`` when given, else the proxy's default tree), or ``options``' overrides;
    nothing is prepared or enabled (the file exists and is already part of the config)."""
    name = host or remote.name
    spec = DeploySpec(proxy=kind, path=path,
                      layout=Layout.FULL if main_config else Layout.SITE)
    try:
        found = detect(remote, spec, Overrides(main_config or dest, options.validate_cmd,
                                               options.reload_cmd), sudo=options.sudo)
    except SockwizardError as exc:
        return DeployResult(host=name, outcome=Outcome.FAILED, exit_code=exc.exit_code,
                            title=exc.title, hint=exc.hint, detail=exc.detail,
                            failed_step=Step.DETECT, dest=dest)
    target = HostTarget(dest=dest, real_dest=dest, validate_cmd=found.validate_cmd,
                        reload_cmd=found.reload_cmd, overridden=found.overridden,
                        facts=found.facts, commands=found.commands)
    preset = Preset(target=target, content=content, config_id=None, entry=dict(entry or {}),
                    source="the diagnosis (an existing file)", base_sha256=sha(base))
    ctx = Context(remote, spec, options, name, on_event=on_event, checks=checks,
                  probe_host=probe_host, preset=preset)
    return Transaction(ctx).execute()


# -- connecting ------------------------------------------------------------------------------


def open_host(host: str, connect: ConnectOptions) -> Remote:
    """``--host`` + the connect flags -> an open Remote (``wizard.remote.open_host``)."""
    return remote_open_host(host, connect)


def probe_host_for(host: str, connect: ConnectOptions) -> str:
    """The address the probe uses to reach ``host`` (``local``: loopback)."""
    return host_address(host, ssh_config=connect.ssh_config)


@dataclass
class _Session:
    """One connection to one host, opened by ``_connected``; every remote it opens (the
    first, and any reconnect after a drop) is closed at the end."""

    host: str
    connect: ConnectOptions
    remote: Remote
    probe_host: str
    started: float
    connected: StepFinished
    opened: list[Remote] = field(default_factory=list)

    def reconnect(self) -> Remote:
        remote = open_host(self.host, self.connect)
        self.opened.append(remote)
        return remote


def _connected(host: str, connect: ConnectOptions, on_event: EventSink,
               work: Callable[[_Session], DeployResult], *, dest: str | None = None,
               check: Callable[[], None] = lambda: None,
               opening: Opening | None = None,
               meanwhile: Callable[[], None] = lambda: None) -> DeployResult:
    """The connect step, then ``work`` over the open connection; a connection that cannot be
    opened (or a ``check`` that fails) is a failed connect step, never an exception.
    ``opening``: this host's connect, already under way (the step counts from its start);
    ``meanwhile`` runs while it is (work the transaction does anyway, moved ahead)."""
    if opening is not None and opening.host != host:
        opening.discard()
        opening = None
    started = opening.started if opening is not None else time.monotonic()
    on_event(StepStarted(host, Step.CONNECT, f"connect to {host}"))
    try:
        try:
            check()
            probe_host = probe_host_for(host, connect)
            if opening is not None:
                meanwhile()
        except BaseException:
            if opening is not None:
                opening.discard()
            raise
        remote = opening.remote() if opening is not None else open_host(host, connect)
    except SockwizardError as exc:
        done = StepFinished(host, Step.CONNECT, "failed", _took(started, opening), exc.title,
                            exc.detail)
        on_event(done)
        return DeployResult(host=host, outcome=Outcome.FAILED, exit_code=exc.exit_code,
                            title=exc.title, hint=exc.hint, detail=exc.detail,
                            failed_step=Step.CONNECT, dest=dest, steps=(done,),
                            seconds=time.monotonic() - started)
    connected = StepFinished(host, Step.CONNECT, "ok", _took(started, opening), remote.name)
    on_event(connected)
    session = _Session(host, connect, remote, probe_host, started, connected, [remote])
    try:
        return work(session)
    finally:
        for opened in session.opened:
            with contextlib.suppress(Exception):
                opened.close()


def _took(started: float, opening: Opening | None) -> float:
    """The connect step's time: the connect's own when it ran on its thread (not the wait
    for this one to get to it)."""
    if opening is not None and opening.seconds is not None:
        return opening.seconds
    return time.monotonic() - started


def deploy_host(host: str, spec: DeploySpec, options: DeployOptions, connect: ConnectOptions,
                *, on_event: EventSink = ignore, checks: LiveChecks | None = None,
                opening: Opening | None = None) -> DeployResult:
    """Connect to ``host`` and run the transaction; never raises for a failed deploy.
    ``opening``: the connect to ``host``, started early by the caller (``Opening``)."""
    valid: list[DeploySpec] = []
    return _connected(
        host, connect, on_event,
        lambda s: _deploy(s.remote, valid[0], options, host=host, on_event=on_event,
                          checks=checks if checks is not None else LIVE,
                          probe_host=s.probe_host, reconnect=s.reconnect, session=s),
        dest=options.dest, check=lambda: valid.append(spec.validated()), opening=opening,
        meanwhile=lambda: preload([valid[0]]))


def deploy_many(hosts: Sequence[str], spec: DeploySpec, options: DeployOptions,
                connect: ConnectOptions, *, on_event: EventSink = ignore,
                checks: LiveChecks | None = None, opening: Opening | None = None
                ) -> list[DeployResult]:
    """Deploy to every host at once, each its own transaction and backup (threads: the work
    is waiting on the network). Results come back in the order of ``hosts``. ``opening``:
    the one host's connect, started early (``Opening``; discarded for several hosts)."""
    if opening is not None and len(hosts) != 1:
        opening.discard()
        opening = None
    if len(set(hosts)) != len(hosts):
        raise BadInput("The same --host is given twice.",
                       "Give each host once: two transactions on one file would race.")
    lock = threading.Lock()

    def sink(event: DeployEvent) -> None:
        with lock:  # one line at a time on stderr, one message at a time in the TUI
            on_event(event)

    if len(hosts) == 1:
        return [deploy_host(hosts[0], spec, options, connect, on_event=sink, checks=checks,
                            opening=opening)]
    with ThreadPoolExecutor(max_workers=min(32, len(hosts)),
                            thread_name_prefix="sockwizard-deploy") as pool:
        futures = [pool.submit(deploy_host, h, spec, options, connect, on_event=sink,
                               checks=checks) for h in hosts]
        return [f.result() for f in futures]


def rollback_host(host: str, options: RollbackOptions, connect: ConnectOptions, *,
                  on_event: EventSink = ignore, checks: LiveChecks | None = None,
                  opening: Opening | None = None) -> DeployResult:
    """``sockwizard rollback``: connect, then ``rollback`` (the current file is backed up
    first; ``options.dry_run`` shows the diff and changes nothing). ``opening``: the
    connect to ``host``, started early by the caller (``Opening``)."""
    return _connected(host, connect, on_event, lambda s: _rollback(
        s.remote, host, options, None, on_event=on_event, checks=checks,
        probe_host=s.probe_host, session=s), opening=opening)


def history_host(host: str, backup_dir: str, connect: ConnectOptions, *,
                 dest: str | None = None) -> list[history.Record]:
    """``sockwizard history``: connect, read the host's history (oldest first), close.
    Raises a SockwizardError (ConnectionFailed, ...) when the host cannot be read."""
    with open_host(host, connect) as remote:
        return host_history(remote, backup_dir, dest=dest)


def host_history(remote: Remote, backup_dir: str, *, dest: str | None = None,
                 limit: int | None = None) -> list[history.Record]:
    """The history over an open remote, oldest first (``history_host``; the TUI's Deploy
    step shows the last ``limit``)."""
    records = [r for r in read_history(remote, backup_dir) if dest is None or r.dest == dest]
    return records[-limit:] if limit else records


# -- the two transactions ---------------------------------------------------------------------


def _deploy(remote: Remote, spec: DeploySpec, options: DeployOptions, *, host: str,
            on_event: EventSink, checks: LiveChecks, probe_host: str,
            reconnect: Callable[[], Remote] | None, session: _Session | None = None
            ) -> DeployResult:
    ctx = Context(remote, spec, options, host, on_event=on_event, checks=checks,
                  probe_host=probe_host, reconnect=reconnect)
    _continue(ctx, session)
    return Transaction(ctx).execute()


def _continue(ctx: Context, session: _Session | None) -> None:
    """A transaction after the connect step: it counts from the connect on."""
    if session is not None:
        ctx.steps.append(session.connected)
        ctx.started = session.started


def _rollback(remote: Remote, host: str, options: RollbackOptions, undo_id: str | None, *,
              on_event: EventSink, checks: LiveChecks | None, probe_host: str,
              session: _Session | None) -> DeployResult:
    started = session.started if session is not None else time.monotonic()
    try:
        chosen = rollback_preset(remote, host, options, undo_id=undo_id)
    except SockwizardError as exc:
        return DeployResult(host=host, outcome=Outcome.FAILED, exit_code=exc.exit_code,
                            title=exc.title, hint=exc.hint, detail=exc.detail,
                            failed_step=Step.DETECT,
                            steps=(session.connected,) if session is not None else (),
                            seconds=time.monotonic() - started)
    preset = chosen.preset
    probe_url = options.probe_url or preset.entry.get("probe_url")
    # Going back to "no file" takes sockwizard's Socket.IO route away: nothing to probe (the
    # probe would fail and undo the rollback).
    removes = preset.content is None
    deploy_options = DeployOptions(
        probe_url=probe_url, probe_url_recorded=options.probe_url is None,
        probe=options.probe and bool(probe_url) and not removes,
        backup_dir=options.backup_dir, state_dir=options.state_dir, dry_run=options.dry_run,
        probe_timeout=options.probe_timeout, settle_timeout=options.settle_timeout,
        command_timeout=options.command_timeout)
    ctx = Context(remote, chosen.spec, deploy_options, host, on_event=on_event,
                  checks=checks if checks is not None else LIVE, probe_host=probe_host,
                  preset=preset, started=started)
    _continue(ctx, session)
    for note in chosen.notes:
        ctx.notice(Step.DETECT, note)
    result = Transaction(ctx).execute()
    # The main config / default site those deploys changed go back too (their diff is shown).
    beside = ", ".join(c.path for c in preset.target.companions)
    if result.outcome is Outcome.PLANNED:
        what = _undone_words(chosen.choice, removes, ("would undo", "remove"))
        what += f"; {beside} would be put back as before" if beside else ""
        result = dataclasses.replace(
            result, title=f"Dry run of a rollback on {host}: {what}. Nothing was changed.")
    elif result.outcome in (Outcome.DEPLOYED, Outcome.UNCHANGED):
        what = _undone_words(chosen.choice, removes, ("undid", "removed"))
        what += f"; put {beside} back as before" if beside else ""
        result = dataclasses.replace(
            result, title=f"Rolled back {result.dest} on {host}: {what}"
                          + ("; the probe passed." if deploy_options.probe else "."))
    return result


def _undone_words(choice: history.Choice, removes: bool, verbs: tuple[str, str]) -> str:
    ids = ", ".join(r.id for r in choice.undo)
    undone = f"{verbs[0]} deploy{'s' if len(choice.undo) > 1 else ''} {ids}"
    if removes:
        return f"{undone} and {verbs[1]} it, as it did not exist before"
    if choice.to is not None:
        cid = choice.to.get("config_id")
        return f"{undone}, back to the config of deploy {choice.to.id}" + \
            (f" (config {cid})" if cid else "")
    return f"{undone}, back to the file as it was before {choice.restore.id}"
