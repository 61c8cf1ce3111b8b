"""What a deploy hands back: the outcome, the documented exit code, the plan and the evidence.

``DeployResult`` is built by the transaction (``wizard.deploy.transaction``) and read by the
CLI (``--json`` and the verdict lines), the TUI and the sandbox. Nothing in the deploy raises
for a failed deploy; this is how a failure travels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from wizard.deploy.events import Step, StepFinished
from wizard.errors import ExitCode, paragraph

if TYPE_CHECKING:
    from wizard.probe import ProbeReport


class Outcome(StrEnum):
    DEPLOYED = "deployed"
    UNCHANGED = "unchanged"  # the host already had these bytes
    PLANNED = "planned"  # --dry-run
    ROLLED_BACK = "rolled back"
    KEPT = "kept"  # failed after the rename, kept on purpose (--no-rollback)
    FAILED = "failed"  # failed before anything on the host changed (or the probe of a no-op)
    ROLLBACK_FAILED = "rollback failed"


@dataclass(frozen=True)
class PlanItem:
    """One thing the transaction does, in order (``wizard.deploy.plan``).

    ``shell``: ``command`` is the exact text run on the host (else a file transfer, or what
    this machine does, in words). ``on_failure``: it runs only to undo the change."""

    step: Step
    command: str
    sudo: bool = False
    shell: bool = True
    on_failure: bool = False

    def __str__(self) -> str:
        first, *rest = self.command.splitlines() or [""]
        lead = ("on failure: " if self.on_failure else "") + ("sudo " if self.sudo else "")
        return "\n".join([f"{self.step.value:>10}  {lead}{first}",
                          *(f"{'':>10}    {line}" for line in rest)])

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step.value, "command": self.command, "sudo": self.sudo,
                "shell": self.shell, "on_failure": self.on_failure}


@dataclass(frozen=True)
class DeployResult:
    """What happened on one host; ``exit_code`` is the documented process exit code."""

    host: str
    outcome: Outcome
    exit_code: ExitCode
    title: str
    hint: str = ""
    detail: str = ""  # the checker's / reload's own output, or the probe's findings
    failed_step: Step | None = None
    dest: str | None = None
    config_id: str | None = None
    diff: str = ""
    plan: tuple[PlanItem, ...] = ()
    backup: str | None = None  # on the host
    # Its history record's id (`rollback --to ID`, the TUI's Rollback); None when it
    # recorded none (stopped before the backup step, or changed nothing).
    id: str | None = None
    new_file: bool = False  # the destination did not exist: the deploy creates it
    local_backup: str | None = None
    steps: tuple[StepFinished, ...] = ()
    warnings: tuple[str, ...] = ()
    probe: ProbeReport | None = None
    seconds: float = 0.0
    # Stock-host flags (--edit-main-config, --disable-default-site) a real run still needs:
    # set by a dry run, so the TUI can show the change and ask (wizard.deploy.stock).
    needs: tuple[str, ...] = ()
    needs_text: str = ""  # what those flags change and why, with the exact diff

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK

    def message(self) -> str:
        """One paragraph: what happened, the evidence, what to do next."""
        return paragraph(self.title, self.detail, self.hint)

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "outcome": self.outcome.value,
            "exit_code": int(self.exit_code),
            "ok": self.ok,
            "title": self.title,
            "hint": self.hint,
            "detail": self.detail,
            "failed_step": self.failed_step.value if self.failed_step else None,
            "dest": self.dest,
            "config_id": self.config_id,
            "diff": self.diff,
            "plan": [p.to_dict() for p in self.plan],
            "id": self.id,
            "new_file": self.new_file,
            "backup": self.backup,
            "local_backup": self.local_backup,
            "steps": [s.to_dict() for s in self.steps],
            "warnings": list(self.warnings),
            "probe": self.probe.to_dict() if self.probe is not None else None,
            "seconds": round(self.seconds, 3),
            "needs": list(self.needs),
            "needs_text": self.needs_text,
        }


def combined_exit_code(results: Sequence[DeployResult]) -> ExitCode:
    """The process exit code for several hosts: the most serious one."""
    order = [ExitCode.ROLLBACK_FAILED, ExitCode.CONNECTION, ExitCode.PROBE_ROLLED_BACK,
             ExitCode.RELOAD_ROLLED_BACK, ExitCode.VALIDATE_ROLLED_BACK, ExitCode.FAILED,
             ExitCode.BAD_INPUT]
    codes = {r.exit_code for r in results}
    return next((c for c in order if c in codes), ExitCode.OK)
