"""What sockwizard knows about one proxy: templates, where configs go, how to check and reload.

One ``ProxyProfile`` per proxy kind (see the sibling modules). The deploy step picks its
defaults from here; ``--dest``/``--validate-cmd``/``--reload-cmd`` override them. Commands are
templates with ``{config}`` (the file being checked) so a temp file can be validated in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict

from wizard.model import DeploySpec, Layout
from wizard.proxies.causes import CauseFixes
from wizard.proxies.fixes import Fixes


@dataclass(frozen=True)
class LineExtension:
    """A main config line that already sets what ``SiteInclude.line`` would set (HAProxy's
    active ``EXTRAOPTS=…``: a second one would replace it): the edit extends that line
    instead. A line of another form, or two of them, cannot be edited safely: refused."""

    sets: str  # regex: an active line setting it
    form: str  # regex with groups head/tail: the one form sockwizard edits
    insert: str  # put between head and tail


@dataclass(frozen=True)
class SiteInclude:
    """The line a stock main config needs to load the site directory (``--edit-main-config``,
    applied by ``wizard.deploy.stock``)."""

    site_dir: str  # the directory the site file goes to (the deploy's destination's)
    main_config: str  # the file that must load it
    present: str  # regex (multiline): the main config already loads the directory
    line: str  # exactly the line added
    # Regex of the line to add it after (the first match); None: at the end of the file.
    after: str | None = None
    # An existing line the edit extends instead of adding ``line`` (see LineExtension).
    extend: LineExtension | None = None
    # The command that makes the proxy read ``main_config`` again when its reload does not
    # (HAProxy reads /etc/default/haproxy only at start: a restart). The deploy that edits
    # the file, its rollback on failure and ``sockwizard rollback`` run it instead of the
    # reload (a given --reload-cmd still wins). None: the reload reads it.
    restart_cmd: str | None = None


@dataclass(frozen=True)
class SiteDirCheck:
    """A refusal, for a proxy whose site directory is named in a main config sockwizard
    cannot edit with one line (Traefik's static configuration: YAML or TOML nesting, or the
    unit's ``--providers.file.directory`` flag): when ``directory`` exists on the host and the
    shell condition ``loaded`` fails, the deploy refuses before any change, saying ``problem``
    and ``hint``. In ``loaded``, ``{directory}`` is the site file's directory (shell-quoted).
    Where one line would do, the profile has a ``SiteInclude`` (an edit) instead."""

    directory: str
    loaded: str
    problem: str
    hint: str


@dataclass(frozen=True)
class DefaultSite:
    """A distro's default site that answers first for requests naming no server
    (``--disable-default-site``, applied by ``wizard.deploy.stock``). Either a link in
    sites-enabled (removed, and put back with the same target) or a block in a main config
    (commented out)."""

    path: str  # the link, or the file holding the block
    off_cmd: str = ""  # the distro's tool, run before the link is removed (a2dissite)
    on_cmd: str = ""  # and before it is put back (a2ensite)
    # A regex (with {port}) of the block's first line: comment the block out of ``path``.
    block: str | None = None


def by_layout(site: str, full: str | None = None) -> dict[Layout, str]:
    """A per-layout value (template, destination, checker); ``full`` defaults to ``site`` (a
    proxy whose one file is the whole config)."""
    return {Layout.SITE: site, Layout.FULL: site if full is None else full}


class OneDaemon(TypedDict):
    """The deploy fields of a proxy that is one executable: no control tool or stand-ins, no
    loadable modules, no Debian-style site enabling (all but Apache). A profile spreads
    ``**one_daemon(...)`` into its ``ProxyProfile``: the fields stay required there, so a
    profile without this (or its own values) still fails at import."""

    daemon_binaries: tuple[str, ...]
    control_binaries: tuple[str, ...]
    stand_ins: tuple[tuple[str, str], ...]
    alt_site_dest: dict[str, str]
    modules_query: str | None
    site_enabling: tuple[str, str, str] | None


def one_daemon(binary: str, *, alt_site_dest: dict[str, str] | None = None) -> OneDaemon:
    return OneDaemon(daemon_binaries=(binary,), control_binaries=(), stand_ins=(),
                     alt_site_dest=alt_site_dest or {}, modules_query=None, site_enabling=None)


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
    # {config}: as for validate_cmd. The full layout's reload names the tree it deployed: a
    # proxy started on another file (-c, -f, --config) is the one that must load it, not the
    # one the packaged default points at.
    reload_cmd: dict[Layout, str]
    install_hint: str
    # The config's language for highlighting (the TUI preview: a Pygments alias or one of
    # wizard.tui.widgets.code_view's own lexers).
    syntax: str = field(kw_only=True)
    # Modules the rendered config needs (Apache only; others need none).
    modules: Callable[[DeploySpec], list[str]] = field(default=lambda spec: [])
    # Reloads that close live WebSockets (clients reconnect all at once).
    reload_drops_websockets: Callable[[DeploySpec], bool] = field(default=lambda spec: False)

    # ---- deploy side: detection, the config marker, settling after a reload -------------
    # (fields added here by the deploy package's needs; keep this block together)
    # Every field is keyword-only and has no default: a profile that forgets one fails at
    # import (tests/test_deploy_registry.py iterates ProxyKind as well).
    #
    # Executables that run the server itself, in order of preference (the sandbox starts the
    # first one found; detect counts any of them, or of control_binaries, as "installed").
    daemon_binaries: tuple[str, ...] = field(kw_only=True)
    control_binaries: tuple[str, ...] = field(kw_only=True)  # apache2ctl and the like
    # (binary, stand-in) pairs, in order: when ``binary`` is missing on the host and the
    # stand-in is there, the default validate/reload commands use the stand-in.
    stand_ins: tuple[tuple[str, str], ...] = field(kw_only=True)
    # Site layout only: another directory that takes the site file when the default one's
    # directory is missing (RHEL's /etc/httpd/conf.d), as {directory: destination}.
    alt_site_dest: dict[str, str] = field(kw_only=True)
    # Appended to the checker to list the loaded modules (None: the proxy has no modules).
    modules_query: str | None = field(kw_only=True)
    # The default reload under systemd, by the host's os family ("*": any other). Debian's
    # units use `reload-or-restart`: a proxy installed but stopped is started (a plain reload
    # fails there, and so would the rollback's).
    systemd_reload: dict[str, str] = field(kw_only=True)
    # Without systemd the profile's reload_cmd needs a live daemon to signal; False: there is
    # none to fall back on (node runs under the systemd unit sockwizard writes).
    reload_without_systemd: bool = field(kw_only=True)
    # True: the activation script runs the checker on the uploaded temp file (outside every
    # watched or included directory) *before* the rename, and does not rename a refused one.
    # For proxies that load a changed file by themselves (Traefik's file provider watches it):
    # renaming first would put a refused config live until the restore. The checker must then
    # read only the file it is given ({config}); the others check the tree that includes the
    # file, so they rename first and nothing loads it before the reload.
    validate_before_rename: bool = field(kw_only=True)
    # Debian-style site enabling for the default site destination: (directory of the site
    # files, enable command, disable command) with {site} = the file name without ".conf".
    site_enabling: tuple[str, str, str] | None = field(kw_only=True)
    # Shell lines printing ``default_site PATH`` for enabled sites that catch requests naming
    # no server on ``port`` (they shadow a config without server_name), and what to do.
    default_site_check: Callable[[int, Layout], list[str]] = field(kw_only=True)
    unshadow_how: str = field(kw_only=True)
    # Stock hosts without hand edits (wizard.deploy.stock): the main config line that loads
    # the site directory, by that directory; and the default sites sockwizard may disable.
    site_includes: tuple[SiteInclude, ...] = field(kw_only=True)
    # Where no such line can be added safely: the check that refuses instead (None: none).
    site_dir_check: SiteDirCheck | None = field(kw_only=True)
    default_sites: tuple[DefaultSite, ...] = field(kw_only=True)
    # Said before a reload that closes every live WebSocket (reload_drops_websockets).
    reload_drop_warning: str = field(kw_only=True)
    # The config marker (wizard.deploy.marker): a regex for the lines that open a site block
    # (group "indent" optional) and the line added after each, with {indent}, {header} and
    # {cid} filled in.
    marker_anchor: str = field(kw_only=True)
    marker_line: str = field(kw_only=True)
    # After a reload, how long every answer must carry the new marker before the config
    # counts as settled (nginx's old and new workers overlap; see each module).
    settle_quiet: float = field(kw_only=True)

    # ---- diagnose side: fix snippets, sticky-session wording ------------------------------
    # (fields added here by the diagnose package's needs; keep this block together)
    # Required (no default): a new proxy without them does not construct, so nothing falls
    # through to another proxy's wording.
    display_name: str = field(kw_only=True)  # the proxy in findings: "nginx", "http-proxy"
    fixes: Fixes = field(kw_only=True)  # the config lines each finding's fix prints
    causes: CauseFixes = field(kw_only=True)  # issue 12's cause findings (proxies.causes)

    # A checker that judges one file alone ({config}: a copy of it), run here on a fix before
    # it goes to the host (wizard.repair); None: the checker needs the host's whole tree.
    standalone_check: str | None = field(default=None, kw_only=True)

    # ---- tui side: what the wizard's forms say and offer per proxy -----------------------
    # How the rendered config keeps one client on one backend (Backends step, 2+ servers).
    sticky_how: str = field(kw_only=True)
    # DeploySpec fields only this proxy reads: the Backends step's "Only for <kind>" panel.
    own_settings: tuple[str, ...] = ()
    # A line under that panel's settings (or in place of them when there are none).
    own_settings_note: str = ""

    # ---- sandbox side: `sockwizard sandbox --break KIND` (wizard.sandbox.faults) ----------
    # {fault: ((regex, replacement), ...)}: how the rendered config loses the lines that do
    # one job ("no-upgrade", "no-sticky"), applied with re.MULTILINE; every regex must match.
    # A fault missing here cannot be shown with this proxy (the sandbox says why).
    fault_edits: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
