"""The guarded deploy: put a rendered config on a host so that it is never left broken.

Called by ``sockwizard deploy`` / ``rollback`` (``wizard.commands``), the sandbox and the TUI.
The package follows the transaction (see ``transaction``'s docstring for the decisions)::

    events    Step, StepStarted/StepFinished/Notice: the progress, out to the CLI and TUI
    options   DeployOptions, ConnectOptions, RollbackOptions, Preset: what is asked
    result    Outcome, PlanItem, DeployResult, combined_exit_code: what comes back
    detect    what the host has -> HostTarget (where the file goes, which commands run)
    marker    the X-Sockwizard-Config id stamped into every config
    hoststate the lock, the journal, the temp dir, the destination check (host scripts)
    scripts   backup / activation / restore scripts; Activation, the typed script outcome
    hostclock the scripts' step marks: the host's best clock, each step's own span, the wait
    readback  a file's bytes framed in a script's output (the lock step reads the target)
    bundle    many files in one command (a tar on stdin): the node proxy's vendored files
    history   the host's deploy history (index.jsonl): records, what a rollback may restore
    backups   local copies, reading the history, the rollback's preset
    stock     stock hosts: the main config's include line, the default site (the flags)
    companions  those changes as host script text: backed up, made, undone byte for byte
    settle    wait for the new config's marker, then probe (LiveChecks, replaceable)
    context   one transaction's state and plumbing
    plan      the exact commands, built once: run by the steps, listed by --dry-run
    steps     the forward steps;  gather  inspect + lock + read;  recovery  the undo
    warm      a redeploy from the last deploy's facts: detect + guard + activation, one command
    failures  every failure's words
    transaction  the control flow;  hosts  apply / rollback on a remote, or connect first
"""

from wizard.deploy.backups import local_entries, read_history, state_dir
from wizard.deploy.context import default_probe_url
from wizard.deploy.detect import HostFacts, HostTarget, Overrides, detect, resolve
from wizard.deploy.events import (
    DeployEvent,
    EventSink,
    Notice,
    Step,
    StepFinished,
    StepStarted,
    StepStatus,
)
from wizard.deploy.history import INDEX_NAME, Choice, NoChoice, Record, rollback_choice, stack
from wizard.deploy.hosts import (
    apply,
    apply_bytes,
    deploy_host,
    deploy_many,
    history_host,
    host_history,
    open_host,
    probe_host_for,
    rollback,
    rollback_host,
    rollback_result,
)
from wizard.deploy.marker import HEADER, Stamped, existing_id, stamp
from wizard.deploy.options import (
    DEFAULT_BACKUP_DIR,
    RERELOAD_TIMEOUT,
    ConnectOptions,
    DeployOptions,
    Preset,
    RollbackOptions,
)
from wizard.deploy.result import DeployResult, Outcome, PlanItem, combined_exit_code
from wizard.deploy.scripts import Activation, activation_script, backup_script, restore_lines
from wizard.deploy.settle import LIVE, LiveChecks, SettleResult, probe_live, settle_http
from wizard.deploy.steps import check_probe_url, render_for_host
from wizard.deploy.stock import consent
from wizard.deploy.transaction import Transaction

__all__ = [
    "DEFAULT_BACKUP_DIR",
    "HEADER",
    "INDEX_NAME",
    "LIVE",
    "RERELOAD_TIMEOUT",
    "Activation",
    "Choice",
    "ConnectOptions",
    "DeployEvent",
    "DeployOptions",
    "DeployResult",
    "EventSink",
    "HostFacts",
    "HostTarget",
    "LiveChecks",
    "NoChoice",
    "Notice",
    "Outcome",
    "Overrides",
    "PlanItem",
    "Preset",
    "Record",
    "RollbackOptions",
    "SettleResult",
    "Stamped",
    "Step",
    "StepFinished",
    "StepStarted",
    "StepStatus",
    "Transaction",
    "activation_script",
    "apply",
    "apply_bytes",
    "backup_script",
    "check_probe_url",
    "combined_exit_code",
    "consent",
    "default_probe_url",
    "deploy_host",
    "deploy_many",
    "detect",
    "existing_id",
    "history_host",
    "host_history",
    "local_entries",
    "open_host",
    "probe_host_for",
    "probe_live",
    "read_history",
    "render_for_host",
    "resolve",
    "restore_lines",
    "rollback",
    "rollback_choice",
    "rollback_host",
    "rollback_result",
    "settle_http",
    "stack",
    "stamp",
    "state_dir",
]
