"""The forward steps of a deploy, each a function over the transaction's ``Context``.

Called in order by ``wizard.deploy.transaction``: detect (+ inspect the destination, see its
lock, read it — read-only: ``gather``, in the same command when the destination is as
guessed) -> diff -> prepare -> lock + backup + upload + activate (the new bytes on the stdin
of one host script that locks, checks the file is still the one read, backs up, renames,
validates and reloads) -> reload (reported) -> settle -> probe. Host-side
steps share commands where the transaction's safety allows (issue #15: a deploy in as few
round trips as possible). A step that fails raises ``StepFailed`` (or
``ActivationFailed``, with the typed outcome of the activation script); what that means —
roll back, keep, report — is the transaction's decision, and the words are in ``failures``.
The commands come from ``wizard.deploy.plan``, the same builders the dry run lists.
"""

from __future__ import annotations

import dataclasses
import difflib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from wizard.deploy import backup_step, bundle, companions, failures, gather, plan, stock, warm
from wizard.deploy.backups import sha
from wizard.deploy.companions import DISABLE_DEFAULT_SITE, EDIT_MAIN_CONFIG
from wizard.deploy.context import ActivationFailed, Context, StepFailed, tail
from wizard.deploy.detect import (
    ALSO,
    HostTarget,
    detect,
    first_guess,
    guessed_modules_command,
)
from wizard.deploy.events import Step, StepStarted, StepStatus
from wizard.deploy.marker import stamp
from wizard.deploy.scripts import Activation, ActivationReport, parse_activation
from wizard.deploy.settle import probe_markers, probe_summary, settle_on_probe
from wizard.errors import (
    BadInput,
    ConnectionFailed,
    NotStarted,
    SockwizardError,
)
from wizard.model import DeploySpec, ProxyKind
from wizard.proxies import profile
from wizard.remote import Remote, temp_path_beside
from wizard.render import render

if TYPE_CHECKING:
    from wizard.deploy.settle import PendingProbe

_T = TypeVar("_T")


def check_probe_url(url: str) -> None:
    """Refuse a probe URL that cannot work before anything on the host changes."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise BadInput(f"Invalid probe URL {url!r}.",
                       "Give --probe-url as http(s)://HOST[:PORT], the address this machine "
                       "reaches the proxy at, or --no-probe.")


def unified_diff(old: bytes | None, new: bytes | None, dest: str, host: str) -> str:
    before = (old or b"").decode("utf-8", "replace").splitlines(keepends=True)
    after = (new or b"").decode("utf-8", "replace").splitlines(keepends=True)
    lines = difflib.unified_diff(before, after,
                                 fromfile="/dev/null" if old is None else f"{host}:{dest}",
                                 tofile="/dev/null" if new is None else f"{dest} (sockwizard)")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)


# -- detect ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostRender:
    """The config rendered for what the host has, with its marker."""

    spec: DeploySpec
    text: bytes
    config_id: str | None
    notes: tuple[str, ...]  # info: what was adapted to the host


def render_for_host(spec: DeploySpec, target: HostTarget) -> HostRender:
    """Render for what the host has: an Apache older than 2.4.47 needs the wstunnel recipe
    instead of ``upgrade=websocket``."""
    notes = []
    version = target.facts.version
    if spec.proxy is ProxyKind.APACHE and spec.apache_version is None and version:
        older = dataclasses.replace(spec, apache_version=version)
        if not older.apache_has_upgrade_param:
            spec = older
            notes.append(f"Apache {version} predates `upgrade=websocket` (2.4.47): rendering "
                         "the mod_proxy_wstunnel recipe.")
    stamped = stamp(spec.proxy, render(spec).text)
    return HostRender(spec, stamped.text.encode(), stamped.config_id, tuple(notes))


def detect_target(ctx: Context) -> None:
    if ctx.preset is not None:
        with ctx.step(Step.DETECT, f"target from {ctx.preset.source}") as s:
            ctx.target = ctx.preset.target
            ctx.new = ctx.preset.content
            ctx.config_id = ctx.preset.config_id
            s.detail = f"{ctx.tgt.dest}; {ctx.tgt.summary()}{gather.inspect_and_read(ctx)}"
        return
    with ctx.step(Step.DETECT, "what the host has") as s:
        # The read-only peek rides on the detect script for the destination as guessed; with
        # facts from the last deploy (``warm``) that one command also activates, if confirmed.
        guess = first_guess(ctx.spec, ctx.options.overrides)
        also = gather.riding(ctx, guess)
        answered = warm.first_exchange(ctx, also, derive)
        if ctx.warm is not None:
            s.detail = f"{ctx.tgt.dest}; {ctx.tgt.summary()}; {ctx.warm.detail}"
        else:
            if answered is not None:
                ctx.notice(Step.DETECT, warm.COLD, "info")
            heard: list[str] = []
            # Apache's module list rides too (not on the warm attempt: its entry has it)
            mods = (guessed_modules_command(ctx.spec, ctx.options.overrides)
                    if answered is None else None)
            if mods is not None:
                also = gather.riding(ctx, guess, mods)
            ctx.target = detect(ctx.remote, ctx.spec, ctx.options.overrides,
                                sudo=ctx.options.sudo, also=also, heard=heard.append,
                                first=answered,
                                speculated=gather.speculated_modules(heard, mods))
            derive(ctx, ctx.remote)
            ctx.facts_heard = heard[0].partition(f"\n{ALSO}\n")[0] if heard else None
            read = gather.inspect_and_read(ctx, heard[0] if heard else None, guess)
            s.detail = f"{ctx.tgt.dest}; {ctx.tgt.summary()}{read}"
    for note in ctx.tgt.notes:
        ctx.notice(Step.DETECT, note)


def derive(ctx: Context, remote: Remote) -> None:
    """Render for the target, then the stock-host changes (``remote``: none for ``warm``)."""
    rendered = render_for_host(ctx.spec, ctx.tgt)
    ctx.spec, ctx.new, ctx.config_id = rendered.spec, rendered.text, rendered.config_id
    for note in rendered.notes:
        ctx.notice(Step.DETECT, note, "info")
    if rendered.config_id is None:
        ctx.notice(Step.DETECT, "Could not add the config marker: the settle step cannot "
                                "tell the new config from the old one.")
    stock_changes(ctx, remote)


def stock_changes(ctx: Context, remote: Remote) -> None:
    """Part of the detect step, before the lock: the stock-host changes this deploy needs
    (``wizard.deploy.stock``). Without their flags a real run stops here, before anything
    changed; a dry run plans them anyway and says which flags a real run needs."""
    t, o = ctx.tgt, ctx.options
    ran: list[tuple[str, bool]] = []

    def run(command: str) -> str:
        ran.append((command, False))
        return remote.run(command, sudo=False, timeout=30).stdout

    found = stock.changes(remote, ctx.spec, t, run)
    allowed = {flag for flag, on in ((EDIT_MAIN_CONFIG, o.edit_main_config),
                                     (DISABLE_DEFAULT_SITE, o.disable_default_site)) if on}
    missing = stock.missing_flags(found, allowed)
    ctx.stock, ctx.needs = tuple(found), tuple(missing)
    if missing and not o.dry_run:
        raise stock.refusal(found, missing, ctx.host)
    for c in found:
        if c.flag in missing:
            ctx.notice(Step.DETECT, f"{c.title} A real deploy needs {c.flag} (planned here).")
    merged = stock.merged(found)
    reload_cmd = companions.reload_for(merged, t.reload_cmd)
    if reload_cmd != t.reload_cmd:
        ctx.notice(Step.DETECT, f"The proxy reads {', '.join(c.path for c in merged)} only "
                                f"at start: this deploy (and its rollback) runs `{reload_cmd}` "
                                "instead of a reload, closing every live connection once.")
    ctx.target = dataclasses.replace(t, companions=merged, reload_cmd=reload_cmd,
                                     commands=t.commands + tuple(ran))


# -- diff, backup, prepare, upload -----------------------------------------------------------


def read_and_diff(ctx: Context) -> None:
    with ctx.step(Step.DIFF, "compare with the file on the host") as s:
        ctx.old = (ctx.readback.data if ctx.readback is not None
                   else ctx.remote.read_file(ctx.tgt.real_dest))
        base = ctx.preset.base_sha256 if ctx.preset is not None else None
        if base is not None and (ctx.old is None or sha(ctx.old) != base):
            raise StepFailed(Step.DIFF, failures.changed_since_read(ctx.tgt.real_dest, ctx.host))
        ctx.diff = unified_diff(ctx.old, ctx.new, ctx.tgt.dest, ctx.host)
        ctx.diff += "".join(c.diff() for c in ctx.tgt.companions)
        if ctx.old == ctx.new and not ctx.tgt.companions:
            s.detail = "no change: the host already has this config"
        elif ctx.new is None:
            s.detail = "the file will be removed (it did not exist before)"
        else:
            lines = ctx.diff.splitlines()
            added = sum(1 for ln in lines if ln.startswith("+") and not ln.startswith("+++"))
            removed = sum(1 for ln in lines if ln.startswith("-") and not ln.startswith("---"))
            s.detail = ("new file" if ctx.old is None else "changed") + \
                f": +{added} -{removed} lines"
        s.output = ctx.diff


def prepare(ctx: Context) -> None:
    t = ctx.tgt
    command = plan.prepare_cmd(ctx)
    if command is None:
        return
    with ctx.step(Step.PREPARE, "prepare the host") as s:
        # From here a failure undoes what prepare made (unprepare_cmds: the unit, the
        # directory), even when it stopped half way; the commands tolerate a partial run.
        ctx.prepared = True
        # One command (``plan.prepare_cmd``); the files travel as a tar on its stdin
        # (``bundle``), not a round trip per file.
        check(ctx, Step.PREPARE, command,
              stdin=bundle.tar_stream(t.extra_files) if t.extra_files else None)
        s.detail = "; ".join([
            *([t.make_dir] if t.make_dir else []),
            *([f"wrote {len(t.extra_files)} files ({t.extra_files[0][0]}, ...)"]
              if t.extra_files else []),
            *t.prepare_cmds])


def check(ctx: Context, step: Step, cmd: str, *, stdin: bytes | None = None) -> str:
    result = ctx.run(cmd, stdin=stdin)
    if not result.ok:
        raise StepFailed(step, failures.command_failed(cmd, ctx.host, result.exit_status),
                         tail(result.output))
    return str(result.output)


def upload(ctx: Context) -> str | None:
    for c in ctx.tgt.companions:  # a main config's new bytes, beside it (companions)
        if not c.link and c.new is not None:
            with ctx.step(Step.UPLOAD, f"upload the new {c.path} beside it") as s:
                ctx.companion_tmps[c.path] = ctx.remote.upload_temp_beside(c.path, c.new)
                s.detail = f"{ctx.companion_tmps[c.path]} ({len(c.new)} bytes)"
    if ctx.new is None:
        return None
    if ctx.warm is not None:  # already sent, with the detect script
        return ctx.warm.tmp
    # The main file's bytes travel on the activation script's stdin (one channel, no SFTP
    # round trips): only its temp name is chosen here, unguessable as the remote's would be.
    return temp_path_beside(plan.upload_name(ctx))


# -- activate ------------------------------------------------------------------------------


def activate(ctx: Context, tmp: str | None) -> None:
    """Upload + rename + validate in one host-side script (``scripts.activation_script``; the
    new bytes on its stdin); its exit status is parsed once into ``Activation``, and each
    outcome handled here by name."""
    t = ctx.tgt
    streamed = tmp is not None and ctx.new is not None
    first = Step.UPLOAD if streamed else Step.RENAME
    backup_step.save_local_copy(ctx)
    # The script backs up first (the bytes are written to the temp file before that, the
    # backup before anything else): both steps are under way from here.
    ctx.emit(StepStarted(ctx.host, Step.BACKUP, "back up the current config (first in the "
                                                "activation script)"))
    ctx.current = first
    ctx.emit(StepStarted(ctx.host, first, f"send {len(ctx.new or b'')} bytes to {tmp}"
                         if streamed else f"rename over {t.real_dest}"))
    t0 = time.monotonic()
    script = plan.activation_cmd(ctx, tmp)
    ctx.changed = True  # from here on, assume the file may have changed
    # ... and that the backup the script makes first exists (it ignores a dropped link), and
    # that the lock it takes first is ours (the release only drops a lock with our token).
    ctx.backup = plan.backup_path(ctx)
    was_locked, ctx.locked = ctx.locked, True
    try:
        result = (warm.answer(ctx.warm) if ctx.warm is not None else
                  ctx.run(script, stdin=ctx.new if streamed else None,
                          timeout=plan.activation_timeout(ctx)))
    except NotStarted:  # the script never ran: nothing changed
        ctx.changed, ctx.backup, ctx.locked = False, None, was_locked
        ctx.record(Step.BACKUP, "failed", time.monotonic() - t0, "connection lost", "")
        ctx.record(first, "failed", time.monotonic() - t0, "connection lost", "")
        raise
    except BaseException:
        ctx.record(Step.BACKUP, "failed", time.monotonic() - t0, "connection lost", "")
        ctx.record(first, "failed", time.monotonic() - t0, "connection lost", "")
        raise
    # A warm run's answer came with detect's (``warm``): its wait is that command's.
    total = (result.seconds if ctx.warm is not None and result.seconds > 0
             else time.monotonic() - t0)
    report = parse_activation(result.exit_status, result.stdout, result.stderr, total)
    output = report.output
    ctx.restored_sha = (report.restored_sha if report.outcome is Activation.REFUSED_RESTORED
                        else None)
    if report.outcome in gather.NOT_LOCKED:  # before anything: given back, nothing changed
        ctx.changed, ctx.backup, ctx.locked = False, None, was_locked
    gather.locked_by_activation(ctx, report, first, total)
    if streamed and report.outcome is Activation.UPLOAD_FAILED:  # before the backup
        ctx.changed, ctx.backup = False, None
        ctx.skip(Step.BACKUP, "the new bytes did not arrive whole: no backup made")
        ctx.record(Step.UPLOAD, "failed", total, "the bytes did not arrive whole", output)
        raise StepFailed(Step.UPLOAD, failures.upload_incomplete(tmp or "", ctx.host), output)
    backup_step.backed_up(ctx, report, first)
    tick = report.times.resolution
    if streamed:
        ctx.record(Step.UPLOAD, "ok" if report.uploaded else "failed", report.upload_s,
                   f"{tmp} ({len(ctx.new or b'')} bytes)", "", resolution=tick)
        ctx.current = Step.RENAME
        ctx.emit(StepStarted(ctx.host, Step.RENAME, f"rename over {t.real_dest}"))
    match report.outcome:
        case Activation.CHANGED_MEANWHILE:
            ctx.changed = False
            ctx.record(Step.RENAME, "failed", total, "the file changed meanwhile", output)
            raise StepFailed(Step.RENAME, failures.changed_meanwhile(t.real_dest, ctx.host),
                             output)
        case Activation.RENAME_FAILED:
            ctx.changed = False
            if tmp is not None:
                ctx.remote.remove(tmp)
            ctx.record(Step.RENAME, "failed", total, "mv failed", output)
            raise StepFailed(Step.RENAME, failures.rename_failed(t.real_dest), output)
        case Activation.VALIDATED:
            renamed_and_checked(ctx, report, "ok", t.validate_cmd)
            ctx.notice(Step.VALIDATE, report.times.summary(), "info")
            ctx.reloaded = report.reload  # reported as its own step by ``reload``
        case Activation.REFUSED_UNTOUCHED:  # checked before the rename (a watched file)
            ctx.emit(StepStarted(ctx.host, Step.VALIDATE, t.precheck_cmd or t.validate_cmd))
            ctx.record(Step.VALIDATE, "failed", report.validate_s,
                       "the checker refused the uploaded file", tail(output), resolution=tick)
            ctx.skip(Step.RENAME, f"the refused file was never put at {t.real_dest}")
            raise ActivationFailed(report.outcome, tail(output))
        case Activation.REFUSED_RESTORED | Activation.REFUSED_RESTORE_FAILED:
            renamed_and_checked(ctx, report, "failed", "the checker refused the config")
            raise ActivationFailed(report.outcome, tail(output))
        case Activation.UNKNOWN:  # sudo refused, the shell died: we cannot tell what happened
            renamed_and_checked(ctx, report, "failed", f"exit {report.exit_status}")
            raise ActivationFailed(report.outcome, tail(output))
        case Activation.UPLOAD_FAILED:  # without a streamed upload: not ours to answer
            ctx.record(Step.RENAME, "failed", total, f"exit {report.exit_status}", output)
            raise ActivationFailed(Activation.UNKNOWN, tail(output))


def renamed_and_checked(ctx: Context, report: ActivationReport, status: StepStatus,
                        detail: str) -> None:
    """The rename and the checker as the host timed them; the rest of the wait for the
    script's answer (the round trip: no step's) goes beside the rename (``StepFinished.wait``)."""
    t, tick = ctx.tgt, report.times.resolution
    ctx.record(Step.RENAME, "ok", report.rename_s, t.real_dest, "", resolution=tick,
               wait=report.times.wait)
    ctx.emit(StepStarted(ctx.host, Step.VALIDATE, t.validate_cmd))
    ctx.record(Step.VALIDATE, status, report.validate_s, detail, tail(report.output),
               resolution=tick)


# -- live: reload, settle, probe -------------------------------------------------------------


def warn_websocket_drop(ctx: Context) -> None:
    prof = profile(ctx.spec.proxy)
    if prof.reload_drops_websockets(ctx.spec):
        ctx.notice(Step.RELOAD, prof.reload_drop_warning)


def reload(ctx: Context) -> None:
    """Reload the new config — or report the reload the activation script already ran."""
    cmd = ctx.tgt.reload_cmd
    timeout = plan.reload_timeout(ctx)
    done, ctx.reloaded = ctx.reloaded, None
    with ctx.step(Step.RELOAD, cmd) as s:
        if done is not None:
            s.output = tail(done.output)
            if done.hung:
                ctx.reload_hung = True
                raise StepFailed(Step.RELOAD, failures.reload_hung(cmd, timeout), s.output)
            if done.exit_status != 0:
                raise StepFailed(Step.RELOAD, failures.reload_exited(cmd, done.exit_status),
                                 s.output)
            s.detail, s.seconds, s.resolution = cmd, done.seconds, done.resolution
            return
        try:
            result = ctx.run(cmd, timeout=timeout)
        except ConnectionFailed:
            raise
        except SockwizardError as exc:  # timed out (and killed), or could not run
            ctx.reload_hung = True
            raise StepFailed(Step.RELOAD, failures.reload_hung(cmd, timeout),
                             exc.message()) from exc
        s.output = tail(result.output)
        if not result.ok:
            raise StepFailed(Step.RELOAD, failures.reload_exited(cmd, result.exit_status),
                             tail(result.output))
        s.detail = cmd


def settle_and_probe(ctx: Context, *, reloaded: bool = True) -> None:
    url = ctx.probe_url()
    # Without a reload there is no older generation of workers to wait out. nginx's old
    # workers answer for up to ~200 ms after a reload: rather than wait out a quiet period
    # before probing, accept only a probe whose handshake and upgrade both carry the new
    # config's marker, and probe again while an old worker answers.
    quiet = profile(ctx.spec.proxy).settle_quiet if reloaded else 0.0
    verify = quiet > 0 and ctx.config_id is not None
    opener = ctx.checks.open_probe
    if opener is not None and (verify or quiet == 0):
        # The settle is the probe's own handshake, on the connection the probe goes on with.
        with ctx.step(Step.SETTLE, f"wait until {url} serves config {ctx.config_id}") as s:
            settled = guard(Step.SETTLE, lambda: settle_on_probe(
                opener, url, ctx.spec.path, ctx.config_id, ctx.options.settle_timeout,
                ctx.options.probe_timeout, connect_to=ctx.probe_connect_to()))
            s.detail = f"{settled.result.detail} after {settled.result.answers} answer(s)"
            if settled.run is None:
                raise StepFailed(Step.SETTLE, settled.result.detail)
        probe_new_config(ctx, url, verify, settled.run)
        return
    with ctx.step(Step.SETTLE, f"wait until {url} serves config {ctx.config_id}") as s:
        done = guard(Step.SETTLE, lambda: ctx.checks.settle(
            url, ctx.spec.path, ctx.config_id, 0.0 if verify else quiet,
            ctx.options.settle_timeout, connect_to=ctx.probe_connect_to()))
        s.detail = f"{done.detail} after {done.answers} answer(s)"
        if not done.ok:
            raise StepFailed(Step.SETTLE, done.detail)
    probe_new_config(ctx, url, verify, None)


def probe_new_config(ctx: Context, url: str, verify: bool, opened: PendingProbe | None) -> None:
    """The probe step: finish ``opened`` (settled on its handshake) or probe afresh, and
    probe again while the markers show an older config answered some stage (``verify``)."""
    with ctx.step(Step.PROBE, f"probe {url} (path {ctx.spec.path})") as s:
        deadline = time.monotonic() + ctx.options.settle_timeout
        while True:
            if opened is not None:
                report = guard(Step.PROBE, opened.finish)
                opened = None
            else:
                report = guard(Step.PROBE, lambda: ctx.checks.probe(
                    url, ctx.spec.path, ctx.options.probe_timeout,
                    connect_to=ctx.probe_connect_to()))
            seen = probe_markers(report)
            if not verify or seen is None or all(m == ctx.config_id for m in seen):
                break
            if time.monotonic() > deadline:
                raise StepFailed(Step.SETTLE, failures.old_workers(seen, ctx.config_id))
            time.sleep(0.02)
        ctx.probe_report = report
        if not report.ok:
            reason, evidence, _ = probe_summary(report)
            raise StepFailed(Step.PROBE, reason, evidence)
        s.detail = f"Socket.IO connected on {report.transport}"


def guard(step: Step, check: Callable[[], _T]) -> _T:
    """Run a live check; any exception it raises (a probe tripping over a hostile answer) is a
    failed step, so the transaction rolls back instead of leaving the new config live."""
    try:
        return check()
    except (SockwizardError, StepFailed):
        raise
    except Exception as exc:
        words = failures.check_crashed(step, f"{type(exc).__name__}: {exc}")
        raise StepFailed(step, words.title, words.hint) from exc
