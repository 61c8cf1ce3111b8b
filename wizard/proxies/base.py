"""What sockwizard knows about one proxy: templates, where configs go, how to check and reload.

One ``ProxyProfile`` per proxy kind (see the sibling modules). The deploy step picks its
defaults from here; ``--dest``/``--validate-cmd``/``--reload-cmd`` override them. Commands are
templates with ``{config}`` (the file being checked) so a temp file can be validated in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from wizard.model import DeploySpec, Layout


@dataclass(frozen=True)
class ProxyProfile:
    kind: str
    title: str  # shown in the TUI
    when_to_pick: str  # one line, from the Socket.IO docs' point of view
    templates: dict[Layout, str]
    default_dest: dict[Layout, str]
    binary: str
    version_cmd: str
    validate_cmd: dict[Layout, str]  # {config}: the file to check
    reload_cmd: str
    install_hint: str
    # Modules the rendered config needs (Apache only; others need none).
    modules: Callable[[DeploySpec], list[str]] = field(default=lambda spec: [])
    # Reloads that close live WebSockets (clients reconnect all at once).
    reload_drops_websockets: Callable[[DeploySpec], bool] = field(default=lambda spec: False)

    # ---- deploy side: detection, the config marker, settling after a reload -------------
    # (fields added here by the deploy package's needs; keep this block together)

    # ---- diagnose side: fix snippets, sticky-session wording ------------------------------
    # (fields added here by the diagnose package's needs; keep this block together)

    # ---- tui side: what the wizard's forms say and offer per proxy -----------------------
    # How the rendered config keeps one client on one backend (Backends step, 2+ servers).
    sticky_how: str = field(kw_only=True)
    # DeploySpec fields only this proxy reads: the Backends step's "Only for <kind>" panel.
    own_settings: tuple[str, ...] = ()
    # A line under that panel's settings (or in place of them when there are none).
    own_settings_note: str = ""
