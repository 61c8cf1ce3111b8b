"""What a deploy or a rollback is asked to do: the flags, how to connect, a preset target.

Built by ``wizard.commands`` (from flags), the TUI and the sandbox; read by the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wizard.deploy.detect import HostTarget, Overrides
from wizard.remote.connect import ConnectOptions as ConnectOptions  # its home: where it is used

DEFAULT_BACKUP_DIR = "/var/backups/sockwizard"
# After a reload that hung, the rollback reloads the restored config once more, briefly: the
# same daemon is likely to hang again, and the deploy must end (issue #10, item 8).
RERELOAD_TIMEOUT = 15.0


@dataclass(frozen=True)
class DeployOptions:
    """The deploy flags (everything but the spec and how to connect)."""

    dest: str | None = None
    validate_cmd: str | None = None
    reload_cmd: str | None = None
    probe_url: str | None = None
    # probe_url is the one a deploy recorded (a rollback's), not the user's: a URL naming the
    # site still connects to the host itself (Context.probe_connect_to), as the deploy did.
    probe_url_recorded: bool = False
    probe: bool = True
    rollback: bool = True
    dry_run: bool = False
    probe_timeout: float = 5.0
    settle_timeout: float = 20.0  # Apache's first connection after a graceful can stall 1-2 s
    command_timeout: float = 120.0  # per command on the host (npm install can be slow)
    # The reload gets less: a reload that hangs is killed, and the rollback's reload of the
    # restored config gets a short try (RERELOAD_TIMEOUT), so a deploy stays bounded.
    reload_timeout: float = 60.0
    backup_dir: str = DEFAULT_BACKUP_DIR
    state_dir: Path | None = None  # default: $XDG_STATE_HOME/sockwizard
    # Write through a symlinked destination whose target is outside its config tree (or not
    # readable by others). Devices, FIFOs and directories are refused regardless.
    follow_symlink: bool = False
    # Run the checker, reload and file moves through sudo (a no-op for root). The sandbox, and
    # anyone deploying into directories they own, turn it off.
    sudo: bool = True
    # Stock hosts (wizard.deploy.stock): add the main config's include line for the site
    # directory, and disable the distro default site that answers first — in the same
    # transaction. Without them a deploy that needs either stops before changing anything.
    edit_main_config: bool = False
    disable_default_site: bool = False

    @property
    def overrides(self) -> Overrides:
        return Overrides(self.dest, self.validate_cmd, self.reload_cmd)


@dataclass(frozen=True)
class RollbackOptions:
    """``sockwizard rollback`` flags: which file and which deploy (default: undo the newest
    change in effect, ``wizard.deploy.history``), and overrides."""

    dest: str | None = None
    validate_cmd: str | None = None
    reload_cmd: str | None = None
    probe_url: str | None = None
    probe: bool = True
    backup_dir: str = DEFAULT_BACKUP_DIR
    state_dir: Path | None = None
    probe_timeout: float = 5.0
    settle_timeout: float = 20.0
    command_timeout: float = 120.0
    to: str | None = None  # a deploy's id (``rollback --to``): return to its config
    dry_run: bool = False  # show the diff and the plan, change nothing


@dataclass(frozen=True)
class Preset:
    """Deploy given bytes to a known target instead of rendering and detecting: what
    ``sockwizard rollback`` uses, so that a rollback is itself a guarded transaction (backed
    up, validated in place, reloaded, probed, and undone if that fails). ``content`` None
    removes the file (the first deploy created it)."""

    target: HostTarget
    content: bytes | None
    config_id: str | None
    entry: dict[str, Any] = field(default_factory=dict)  # extra keys for the index entry
    source: str = "the backup index"  # where the target came from (the detect step says it)
    # The sha256 the file must have now (``content`` was made from those bytes: diagnose's
    # fixes); None: any. A file changed meanwhile is left alone.
    base_sha256: str | None = None
