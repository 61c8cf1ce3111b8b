"""The state of one transaction and its plumbing: events, timed steps, commands, the result.

Shared by the transaction's modules (``steps``, ``recovery``, ``plan``, ``transaction``):
each of them is functions over one ``Context``, so that the state of a deploy lives in one
place and each module keeps one job. Nothing here decides anything.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from wizard.deploy.backups import timestamp
from wizard.deploy.companions import Companion
from wizard.deploy.detect import HostTarget
from wizard.deploy.events import (
    DeployEvent,
    EventSink,
    Notice,
    Step,
    StepFinished,
    StepStarted,
    StepStatus,
    ignore,
)
from wizard.deploy.options import DeployOptions, Preset
from wizard.deploy.readback import Readback
from wizard.deploy.result import DeployResult, Outcome, PlanItem
from wizard.deploy.scripts import Activation, Reload
from wizard.deploy.settle import LIVE, LiveChecks
from wizard.errors import ExitCode, SockwizardError
from wizard.model import DeploySpec
from wizard.remote import CommandResult, Remote

if TYPE_CHECKING:
    from wizard.deploy.warm import WarmRun
    from wizard.probe import ProbeReport


class StepFailed(Exception):
    """A step's command failed; the transaction decides what that means."""

    def __init__(self, step: Step, title: str, output: str = "") -> None:
        super().__init__(title)
        self.step = step
        self.title = title
        self.output = output


class ActivationFailed(StepFailed):
    """The validate part of the activation script did not pass: the checker refused (the
    old file back, or not), or the script ended in a way that says nothing. ``activation`` is
    the typed outcome, parsed once from the script's exit status."""

    def __init__(self, activation: Activation, output: str) -> None:
        super().__init__(Step.VALIDATE, f"activation: {activation.name.lower()}", output)
        self.activation = activation


@dataclass
class Running:
    """The state of one step while it runs (set detail/output, or skip)."""

    detail: str = ""
    output: str = ""
    status: StepStatus = "ok"
    # Set when the host timed the step (the activation's reload): its span and clock step.
    seconds: float | None = None
    resolution: float = 0.0


def tail(text: str, lines: int = 40) -> str:
    kept = text.strip("\n").splitlines()
    return "\n".join(kept[-lines:])


def default_probe_url(spec: DeploySpec, probe_host: str) -> str:
    """Where the probe reaches the proxy from this machine, on the port the config listens on:
    the site's ``server_name`` when it has one (virtual hosts and certificates answer to that
    name), else the host we deploy to (or the listen address, deploying locally)."""
    scheme = "https" if spec.tls else "http"
    port = spec.tls_port if spec.tls else spec.listen_port
    host = probe_host
    wildcard = spec.listen_address in (None, "0.0.0.0", "::", "*")
    if spec.server_name and not spec.server_name.startswith("*."):
        host = spec.server_name
    elif not wildcard and probe_host in ("127.0.0.1", "localhost") and spec.listen_address:
        host = spec.listen_address
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


@dataclass
class Context:
    """One deploy on one host, over an open Remote, while it runs."""

    remote: Remote
    spec: DeploySpec
    options: DeployOptions
    host: str
    on_event: EventSink = ignore
    checks: LiveChecks = LIVE
    probe_host: str = "127.0.0.1"
    reconnect: Callable[[], Remote] | None = None
    preset: Preset | None = None
    started: float = field(default_factory=time.monotonic)
    # Fixed at the start, so the plan names the same backup, lock token and journal time as
    # the run (wizard.deploy.plan).
    stamp: str = field(default_factory=timestamp)
    lock_token: str = field(default_factory=lambda: secrets.token_hex(8))
    client: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    steps: list[StepFinished] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    target: HostTarget | None = None
    old: bytes | None = None
    new: bytes | None = b""  # None: the transaction removes the file (a rollback)
    config_id: str | None = None
    diff: str = ""
    plan: list[PlanItem] = field(default_factory=list)
    backup: str | None = None  # made on the host
    local_backup: str | None = None
    changed: bool = False  # the destination on the host may differ from self.old
    prepared: bool = False  # prepare_cmds ran: a rollback undoes them (unprepare_cmds)
    probe_report: ProbeReport | None = None
    current: Step = Step.DETECT
    locked: bool = False  # we hold the host-side lock on the destination (hoststate)
    journal: dict[str, Any] | None = None  # an earlier run's, seen by the peek
    reload_hung: bool = False  # the reload of the new config ran out of time
    reloaded: Reload | None = None  # the activation script's reload, not yet reported
    # The destination's bytes as the read-only peek printed them (None: read it the ordinary
    # way); ``peeks``: the peeks that needed a command of their own (the facts moved the
    # destination, a symlink, a sudo that wants a password); ``claimed_apart``: the lock
    # needed its own command (something is written before the activation, which locks).
    readback: Readback | None = None
    peeks: tuple[str, ...] = ()
    claimed_apart: bool = False
    restored_sha: str | None = None  # the activation script's word on a refused config's undo
    # The stock-host changes found (wizard.deploy.stock), one per flag; target.companions
    # holds them merged per path. ``needs``: the flags a real run would still need.
    stock: tuple[Companion, ...] = ()
    needs: tuple[str, ...] = ()
    companion_tmps: dict[str, str] = field(default_factory=dict)  # path -> uploaded temp
    # The warm path (``wizard.deploy.warm``): the one command's activation answer, and the
    # detect facts this run decided from (kept for the next run after a deploy).
    warm: WarmRun | None = None
    facts_heard: str | None = None

    # -- events -----------------------------------------------------------------------------

    def emit(self, event: DeployEvent) -> None:
        with contextlib.suppress(Exception):  # a broken sink must never break a deploy
            self.on_event(event)

    def notice(self, step: Step, text: str, level: Literal["warning", "info"] = "warning"
               ) -> None:
        if level == "warning":
            self.warnings.append(text)
        self.emit(Notice(self.host, step, level, text))

    @contextlib.contextmanager
    def step(self, step: Step, title: str) -> Iterator[Running]:
        """A timed step: StepStarted now, StepFinished (ok, or failed on any exception)."""
        self.current = step
        self.emit(StepStarted(self.host, step, title))
        state = Running()
        t0 = time.monotonic()
        try:
            yield state
        except StepFailed as exc:
            self.record(step, "failed", time.monotonic() - t0, exc.title,
                        exc.output or state.output)
            raise
        except SockwizardError as exc:
            self.record(step, "failed", time.monotonic() - t0, exc.title, exc.detail)
            raise
        except BaseException as exc:
            self.record(step, "failed", time.monotonic() - t0, f"{type(exc).__name__}: {exc}",
                        "")
            raise
        seconds = time.monotonic() - t0 if state.seconds is None else state.seconds
        self.record(step, state.status, seconds, state.detail, state.output,
                    resolution=state.resolution)

    def record(self, step: Step, status: StepStatus, seconds: float, detail: str,
               output: str, *, resolution: float = 0.0, wait: float | None = None) -> None:
        done = StepFinished(self.host, step, status, seconds, detail, output, resolution, wait)
        self.steps.append(done)
        self.emit(done)

    def skip(self, step: Step, why: str) -> None:
        self.emit(StepStarted(self.host, step, why))
        self.record(step, "skipped", 0.0, why, "")

    def needs_text(self) -> str:
        """The stock-host changes a real run still needs a flag for: why, then the diff."""
        asked = [c for c in self.stock if c.flag in self.needs]
        if not asked:
            return ""
        diffs = "".join(c.diff() for c in (self.target.companions if self.target else ()))
        return "\n".join(f"{c.flag}: {c.title}" for c in asked) + "\n\n" + diffs

    # -- the host -----------------------------------------------------------------------------

    def run(self, command: str, *, timeout: float | None = None,
            stdin: bytes | None = None) -> CommandResult:
        """``command`` on the host (sudo as the options say); ``stdin``: bytes it reads, sent
        exactly (a file's new content, streamed with the script that installs it)."""
        text = stdin.decode("utf-8", "surrogateescape") if stdin is not None else None
        return self.remote.run(command, sudo=self.options.sudo,
                               timeout=timeout if timeout is not None
                               else self.options.command_timeout, input=text)

    @property
    def tgt(self) -> HostTarget:
        assert self.target is not None
        return self.target

    @property
    def target_dest(self) -> str:
        return self.target.dest if self.target is not None else (self.options.dest or "?")

    def probe_url(self) -> str:
        return self.options.probe_url or default_probe_url(self.spec, self.probe_host)

    def probe_connect_to(self) -> str | None:
        """Where the settle and probe connect when the URL names the site (server_name):
        the host this deploy changed. DNS may not point there yet, or may spread the name over
        several hosts (each host of a fleet must answer for itself). None: the URL's host."""
        if self.options.probe_url is not None and not self.options.probe_url_recorded:
            return None  # the user said where
        host = urlsplit(self.probe_url()).hostname
        return self.probe_host if host and host != self.probe_host else None

    # -- the result ---------------------------------------------------------------------------

    @property
    def recorded(self) -> bool:
        """This run has a history record (id ``lock_token[:10]``): its local note is written
        before the activation script, which appends the host's (``backup_step``)."""
        return self.local_backup is not None

    def result(self, outcome: Outcome, code: ExitCode, title: str, *, hint: str = "",
               detail: str = "", failed_step: Step | None = None) -> DeployResult:
        return DeployResult(
            host=self.host, outcome=outcome, exit_code=code, title=title, hint=hint,
            detail=detail, failed_step=failed_step,
            dest=self.target.dest if self.target else self.options.dest,
            config_id=self.config_id, diff=self.diff, plan=tuple(self.plan),
            backup=self.backup, local_backup=self.local_backup, steps=tuple(self.steps),
            id=self.lock_token[:10] if self.recorded else None,
            new_file=self.old is None and bool(self.diff),
            warnings=tuple(self.warnings), probe=self.probe_report, needs=self.needs,
            needs_text=self.needs_text(),
            seconds=time.monotonic() - self.started)
