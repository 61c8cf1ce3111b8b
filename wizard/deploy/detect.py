"""What the host has, and so where the config goes and how it is checked and reloaded.

Called by the deploy's detect step (``wizard.deploy.steps``). One read-only
shell script answers everything in a single round trip: the login uid, the distro family, systemd
or not, which proxy binaries and helpers exist (searched with /usr/sbin and /sbin added: a
non-root SSH session on Debian has neither in its PATH, although ``sudo`` does), which of the
standard config directories exist, the proxy's version, and for node whether ``http-proxy``
resolves beside the destination, and what ``wizard.deploy.stock`` needs for the destination
(its main config, the default sites' links: ``stockread``, into ``HostFacts.stock``). Apache's
loaded modules (``<checker> -D DUMP_MODULES``, the same as ``apache2ctl -M``, under sudo) ride
on the same exchange when the checker can be guessed before the facts (the deploy's
``gather.riding``); else they cost one more round trip.

From those facts, :func:`resolve` picks the destination, the validate and reload commands and
the extra steps (``a2ensite`` / ``a2enmod`` on Debian; for node, sockwizard's own http-proxy
(``wizard.deploy.vendor``) and a systemd unit). ``--dest`` / ``--validate-cmd`` /
``--reload-cmd`` win over every detected value; with them, sockwizard runs no distro helper
at all (containers, hosts without systemd, test rigs).

What differs per proxy (binaries, version command, systemd unit, default sites, Debian's
a2ensite, RHEL's conf.d) is data in each proxy's profile (``wizard.proxies``, deploy side);
what is left here by kind is behaviour only node has (its http-proxy and a systemd unit of its
own). The main config's include line and the default site are ``wizard.deploy.stock``'s; a
site directory no one-line edit can load (Traefik's file provider) is refused here by the
profile's ``site_dir_check``.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from wizard.deploy import stockread
from wizard.deploy.companions import Companion
from wizard.deploy.vendor import node_modules, node_package_json, node_unit
from wizard.errors import BadInput
from wizard.model import DeploySpec, Layout, ProxyKind
from wizard.proxies import profile
from wizard.remote import CommandResult, Remote

EXTRA_PATH = "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin"
HELPERS = ("nginx", "apache2", "apache2ctl", "httpd", "apachectl", "caddy", "node", "haproxy",
           "traefik",
           "systemctl", "a2ensite", "a2dissite", "a2enmod")
KNOWN_DIRS = ("/etc/nginx/conf.d", "/etc/nginx/sites-available", "/etc/apache2/sites-available",
              "/etc/httpd/conf.d", "/etc/caddy", "/etc/traefik/dynamic", "/etc/traefik/conf.d")
NODE_UNIT = "/etc/systemd/system/sockwizard-proxy.service"


@dataclass(frozen=True)
class HostFacts:
    """Everything the detect script saw (read-only; nothing on the host was changed)."""

    uid: int | None = None
    os_family: str = "unknown"  # debian | rhel | unknown
    systemd: bool = False
    binaries: dict[str, str] = field(default_factory=dict)
    dirs: frozenset[str] = frozenset()
    dest_dir_exists: bool = True
    site_dir_loaded: bool = False  # the static config loads the site dir (site_dir_check)
    node_has_http_proxy: bool = False
    unit_exists: bool = False
    version_text: str = ""
    real_dest: str | None = None  # the destination with symlinks resolved (readlink -f)
    apache_modules: frozenset[str] | None = None  # None: unknown (not asked, or no answer)
    modules_answer: str | None = None  # the module list's raw answer (``warm`` keeps it)
    # Enabled sites that already catch requests naming no server on our port (Debian's
    # sites-enabled/default, 000-default.conf): a config without server_name loses to them.
    default_sites: tuple[str, ...] = ()
    # The files and links the stock check needs, read by the same script (stockread).
    stock: stockread.StockReads = field(default_factory=stockread.StockReads)

    @property
    def version(self) -> str | None:
        """The proxy's version number from its own banner, e.g. "1.22.1"."""
        m = re.search(r"(?:nginx/|Apache/|HAProxy version |^v?)(\d+\.\d+(?:\.\d+)?)",
                      self.version_text, re.M)
        return m.group(1) if m else None


@dataclass(frozen=True)
class HostTarget:
    """Where and how to deploy on this host: the detected values with the overrides applied."""

    dest: str
    validate_cmd: str  # "{config}" already replaced by the destination
    reload_cmd: str
    # The checker for the uploaded temp file before the rename ("{config}": that file), for
    # profiles with validate_before_rename whose checker takes {config}; None: rename first.
    precheck_cmd: str | None = None
    real_dest: str = ""  # dest with symlinks resolved: what is backed up and replaced
    # Run once before the upload, in this order: create the directory, write extra_files, then
    # prepare_cmds (enable modules, enable the unit).
    make_dir: str | None = None
    prepare_cmds: tuple[str, ...] = ()
    # Undo prepare_cmds when the deploy is rolled back (a2dismod what a2enmod enabled), so a
    # failed deploy leaves the host exactly as it was.
    unprepare_cmds: tuple[str, ...] = ()
    # unprepare_cmds stop and remove the service this deploy created (node's unit): when there
    # was no file before, a rollback has nothing left to check or reload after them.
    unprepare_stops_proxy: bool = False
    # Run after the rename and before validation when the file is new (a2ensite), and undone
    # (a2dissite) when that new file is taken away again.
    enable_cmds: tuple[str, ...] = ()
    disable_cmds: tuple[str, ...] = ()
    # Extra files uploaded with the config (node: package.json, node_modules/, the unit).
    extra_files: tuple[tuple[str, bytes], ...] = ()
    missing_modules: tuple[str, ...] = ()
    # Default sites that answer the new config's port for requests naming no server (set only
    # when the spec has no server_name): the likely cause when the new config never answers.
    shadowing_sites: tuple[str, ...] = ()
    overridden: tuple[str, ...] = ()  # which of dest/validate/reload came from flags
    notes: tuple[str, ...] = ()
    facts: HostFacts = field(default_factory=HostFacts)
    # The read-only commands detection ran, as (command, sudo): the plan lists them.
    commands: tuple[tuple[str, bool], ...] = ()
    # Changes made with the file in the same transaction: the main config's include line, a
    # default site disabled (wizard.deploy.stock), or a rollback undoing them.
    companions: tuple[Companion, ...] = ()

    def summary(self) -> str:
        f = self.facts
        parts = [f"{f.os_family}", "systemd" if f.systemd else "no systemd"]
        if f.version:
            parts.insert(0, f"version {f.version}")
        if self.overridden:
            parts.append("overrides: " + ", ".join(self.overridden))
        return "; ".join(parts)


# Between the facts and what the caller appended to the detect script (``detect(also=...)``).
ALSO = "@@sw also"


def detect_script(spec: DeploySpec, dest: str, also: str = "", *, stock: bool = True) -> str:
    """The read-only script behind the detect step (exposed for --dry-run and the tests);
    ``also``: shell the caller runs in the same exchange, its output after :data:`ALSO`;
    ``stock``: read what the stock check needs for ``dest`` too (``stockread``)."""
    d = shlex.quote(posixpath.dirname(dest) or "/")
    lines = [
        f'PATH="$PATH:{EXTRA_PATH}"; export PATH',
        # Builtins, no forks (each program or subshell is CPU on every host of a fleet:
        # bench/bench_hostcpu.py): the effective uid from /proc (`id -u` where there is none);
        # each helper's path printed by `command -v` itself, an empty path when it is absent.
        'u=; while read -r k _ e _; do [ "$k" = Uid: ] && u=$e; done 2>/dev/null '
        '</proc/self/status; echo "uid=${u:-$(id -u)}"',
        '( . /etc/os-release 2>/dev/null; echo "os=${ID:-} ${ID_LIKE:-}" )',
        "[ -d /run/systemd/system ] && echo systemd=1",
        f"for b in {' '.join(HELPERS)}; do printf 'bin %s ' \"$b\"; "
        'command -v "$b" 2>/dev/null || echo; done',
        f"for d in {' '.join(KNOWN_DIRS)}; do [ -d \"$d\" ] && echo \"dir $d\"; done",
        f"[ -d {d} ] && echo dest_dir=1",
        f'echo "real=$(readlink -f -- {shlex.quote(dest)} 2>/dev/null)"',
    ]
    check = profile(spec.proxy).site_dir_check
    if check is not None:
        lines.append(f"[ -d {shlex.quote(check.directory)} ] && echo "
                     f"dir {shlex.quote(check.directory)}")
        loaded = check.loaded.replace("{directory}", d)
        lines.append(f"{{ {loaded}; }} && echo site_dir_loaded=1")
    lines += _default_site_lines(spec)
    if spec.proxy is ProxyKind.NODE:
        # The copy beside the proxy (sockwizard's own, wizard.deploy.vendor) is the first place
        # require.resolve looks, and its index.js resolves: seen without starting node (~2 s
        # on a slow host). Anywhere else (a global install), node itself is asked.
        here = shlex.quote(posixpath.join(posixpath.dirname(dest) or "/", "node_modules",
                                          "http-proxy"))
        lines.append(f"{{ [ -f {here}/package.json ] && [ -f {here}/index.js ] || "
                     f"( cd {d} 2>/dev/null && node -e 'require.resolve(\"http-proxy\")' "
                     ">/dev/null 2>&1 ); } && echo node_has_http_proxy=1")
        lines.append(f"[ -f {NODE_UNIT} ] && echo unit=1")
    lines.append("echo @@version")
    # No `| head` (two processes): parse_facts keeps the first lines.
    lines.append(f"( {profile(spec.proxy).version_cmd} ) 2>&1")
    if stock:
        lines += stockread.lines(spec, dest)
    if also:
        lines += [f"echo {shlex.quote(ALSO)}", also]
    lines.append("exit 0")
    return "\n".join(lines)


def _default_site_lines(spec: DeploySpec) -> list[str]:
    """Shell lines printing ``default_site PATH`` for sites that would shadow ours."""
    if spec.server_name is not None:
        return []
    port = spec.tls_port if spec.tls else spec.listen_port
    return profile(spec.proxy).default_site_check(port, spec.layout)


def parse_facts(stdout: str, dest: str = "") -> HostFacts:
    """The detect script's answer; ``dest``: the destination it was asked about (for the
    stock reads: ``stockread``)."""
    mine = stdout.partition(f"\n{ALSO}\n")[0]
    head, _, version = mine.partition("@@version\n")
    version = version.partition(f"\n{stockread.SECTION}\n")[0]
    uid: int | None = None
    os_family = "unknown"
    binaries: dict[str, str] = {}
    dirs: set[str] = set()
    flags: set[str] = set()
    real: str | None = None
    default_sites: list[str] = []
    for line in head.splitlines():
        if line.startswith("real="):
            real = line[5:] or None
        elif line.startswith("uid="):
            uid = int(line[4:]) if line[4:].isdigit() else None
        elif line.startswith("os="):
            words = line[3:].split()
            if {"debian", "ubuntu"} & set(words):
                os_family = "debian"
            elif {"rhel", "fedora", "centos", "rocky", "almalinux"} & set(words):
                os_family = "rhel"
        elif line.startswith("bin "):
            _, name, path = [*line.split(" ", 2), "", ""][:3]
            if path:  # "bin NAME " alone: not on the host
                binaries[name] = path
        elif line.startswith("dir "):
            dirs.add(line[4:])
        elif line.startswith("default_site "):
            default_sites.append(line[len("default_site "):])
        elif line.endswith("=1"):
            flags.add(line[:-2])
    return HostFacts(
        uid=uid, os_family=os_family, systemd="systemd" in flags, binaries=binaries,
        dirs=frozenset(dirs), dest_dir_exists="dest_dir" in flags,
        site_dir_loaded="site_dir_loaded" in flags,
        node_has_http_proxy="node_has_http_proxy" in flags, unit_exists="unit" in flags,
        version_text="\n".join(version.strip().splitlines()[:3]), real_dest=real,
        default_sites=tuple(default_sites),
        stock=stockread.parse(mine, dest) if dest else stockread.StockReads(),
    )


def parse_apache_modules(output: str) -> frozenset[str] | None:
    """``foo_module (shared)`` lines -> {"foo"}; None when the output is not a module list."""
    mods = re.findall(r"^\s*(\w+)_module\s+\((?:static|shared)\)", output, re.M)
    return frozenset(mods) if mods else None


@dataclass(frozen=True)
class Overrides:
    dest: str | None = None
    validate_cmd: str | None = None
    reload_cmd: str | None = None


def detect(remote: Remote, spec: DeploySpec, overrides: Overrides, *,
           sudo: bool = True, also: str = "", heard: Callable[[str], None] | None = None,
           first: str | None = None, modules: str | None = None,
           speculated: Callable[[str], str | None] | None = None) -> HostTarget:
    """Run the detect script (and the module list, for a proxy with modules) and resolve the
    target. ``also`` rides on the first detect script (``heard`` gets that run's stdout):
    the deploy's speculative gather (``wizard.deploy.gather``), one round trip fewer.
    ``first``, ``modules``: that script's and the module list's answers, already known
    (``wizard.deploy.warm``): not asked again. ``speculated(command)``: the module list's
    answer when that very command rode on the first script, else None (asked apart)."""
    ran: list[tuple[str, bool]] = []

    def run(command: str, privileged: bool = False) -> CommandResult:
        ran.append((command, privileged))
        return remote.run(command, sudo=privileged, timeout=30)

    dest = first_guess(spec, overrides)
    stock = overrides.dest is None  # a given --dest needs no stock check (wizard.deploy.stock)
    script = first_script(spec, overrides, also)
    if first is None:
        first = run(script).stdout
    else:
        ran.append((script, False))
    if heard is not None:
        heard(first)
    facts = parse_facts(first, dest)
    dest = overrides.dest or _default_dest(spec, facts)
    if dest != first_guess(spec, overrides):
        # The distro moved the destination: ask again about the directory that counts.
        facts = parse_facts(run(detect_script(spec, dest, stock=stock)).stdout, dest)
    validate = overrides.validate_cmd or _default_validate(spec, facts)
    modules_cmd = modules_command(spec, validate, dest)
    if modules_cmd is not None:
        if modules is None and speculated is not None:
            modules = speculated(modules_cmd)
        if modules is None:
            out = run(modules_cmd, sudo)
            modules = out.stdout + out.stderr
        else:
            ran.append((modules_cmd, sudo))
        facts = _with_modules(facts, modules)
    return dataclasses.replace(resolve(spec, facts, overrides), commands=tuple(ran))


def modules_command(spec: DeploySpec, validate: str, dest: str) -> str | None:
    """The module list's command (``<checker> -D DUMP_MODULES`` for Apache), or None: the
    proxy has no modules, or the checker is not the proxy's own."""
    query = profile(spec.proxy).modules_query
    if query is None or not _runs_the_proxy(spec.proxy, validate):
        return None
    return validate.replace("{config}", shlex.quote(dest)) + query


def guessed_modules_command(spec: DeploySpec, overrides: Overrides) -> str | None:
    """:func:`modules_command` as it will most likely be once the facts are in (the profile's
    checker as written, the destination as guessed): asked on the first exchange, and used
    only if the real one turns out the same."""
    validate = overrides.validate_cmd or profile(spec.proxy).validate_cmd[spec.layout]
    return modules_command(spec, validate, first_guess(spec, overrides))


def first_script(spec: DeploySpec, overrides: Overrides, also: str = "") -> str:
    """The first detect script, for the destination as guessed: the one :func:`detect` runs
    and the warm path (``wizard.deploy.warm``) keys its entries on and runs again."""
    return detect_script(spec, first_guess(spec, overrides), also,
                         stock=overrides.dest is None)


def first_guess(spec: DeploySpec, overrides: Overrides) -> str:
    """The destination before the host's facts are known (they may move it: RHEL's Apache)."""
    return overrides.dest or _default_dest(spec, None)


def _with_modules(facts: HostFacts, answer: str) -> HostFacts:
    return dataclasses.replace(facts, apache_modules=parse_apache_modules(answer),
                               modules_answer=answer)


def _names(kind: ProxyKind) -> tuple[str, ...]:
    prof = profile(kind)
    return prof.daemon_binaries + prof.control_binaries


def _runs_the_proxy(kind: ProxyKind, cmd: str) -> bool:
    """``cmd`` is the proxy's own checker (not a --validate-cmd of some other tool)."""
    return bool(re.search(r"\b(" + "|".join(map(re.escape, _names(kind))) + r")\b", cmd))


def resolve(spec: DeploySpec, facts: HostFacts, overrides: Overrides) -> HostTarget:
    """Pure: facts + overrides -> where the file goes and which commands run."""
    prof = profile(spec.proxy)
    overridden = tuple(name for name, value in (
        ("dest", overrides.dest), ("validate", overrides.validate_cmd),
        ("reload", overrides.reload_cmd)) if value)
    dest = overrides.dest or _default_dest(spec, facts)
    binary = _binary(spec.proxy, facts)
    if binary is None and not (overrides.validate_cmd and overrides.reload_cmd):
        raise BadInput(
            f"{prof.title} is not installed on the host (no `{prof.binary}` in PATH or sbin).",
            f"Install it on the host first: {prof.install_hint}. Or pass --validate-cmd and "
            "--reload-cmd if it lives somewhere sockwizard cannot see.",
        )
    template = overrides.validate_cmd or _default_validate(spec, facts)
    validate = template.replace("{config}", shlex.quote(dest))
    precheck = template if prof.validate_before_rename and "{config}" in template else None
    reload_cmd = overrides.reload_cmd or _default_reload(spec, facts)
    if reload_cmd is None:
        raise BadInput(
            f"No way to reload {prof.title} on this host: it has no systemd.",
            "Pass --reload-cmd with the command your process manager uses (e.g. `pm2 restart "
            "proxy` or `kill -HUP $(cat /run/proxy.pid)`).",
        )
    reload_cmd = reload_cmd.replace("{config}", shlex.quote(dest))
    prepare: list[str] = []
    unprepare: list[str] = []
    enable: list[str] = []
    disable: list[str] = []
    extra: list[tuple[str, bytes]] = []
    notes: list[str] = []
    stops = False
    directory = posixpath.dirname(dest) or "/"
    make_dir = None if facts.dest_dir_exists else f"mkdir -p -m 0755 -- {shlex.quote(directory)}"
    missing = _missing_modules(spec, facts)
    enabling = prof.site_enabling
    debian_site = (enabling is not None and not overrides.dest
                   and dest.startswith(enabling[0].rstrip("/") + "/"))
    if missing:
        if "a2enmod" in facts.binaries and not overridden:
            prepare.append("a2enmod -q " + " ".join(missing))
            unprepare.append("a2dismod -q -f " + " ".join(reversed(missing)))
        else:
            notes.append("Apache lacks the module(s) " + ", ".join(missing) + ": the checker "
                         "will refuse the config. Load them (LoadModule, or a2enmod on Debian).")
    shadowing: tuple[str, ...] = ()
    if facts.default_sites and spec.server_name is None and not overrides.dest:
        shadowing = facts.default_sites
        # The ones sockwizard can disable are asked about (wizard.deploy.stock); the others
        # are only named.
        known = {site.path for site in prof.default_sites}
        port = spec.tls_port if spec.tls else spec.listen_port
        others = [site for site in shadowing if site not in known]
        if others:
            notes.append(
                f"{', '.join(others)} already answers requests on port {port} that name no "
                "server; without --server-name this config may never be used (the probe "
                f"would fail and the deploy roll back). {unshadow_advice(spec.proxy)}")
    if debian_site and enabling is not None:
        site = shlex.quote(posixpath.basename(dest).removesuffix(".conf"))
        enable.append(enabling[1].format(site=site))
        disable.append(enabling[2].format(site=site))
    check = prof.site_dir_check
    if (check is not None and spec.layout is Layout.SITE and not overrides.dest
            and check.directory in facts.dirs and not facts.site_dir_loaded):
        raise BadInput(check.problem, check.hint)
    if spec.proxy is ProxyKind.NODE:
        if not facts.node_has_http_proxy:
            # sockwizard's own pinned copy (wizard.deploy.vendor): no npm, no registry.
            modules = posixpath.join(directory, "node_modules")
            extra.append((posixpath.join(directory, "package.json"), node_package_json()))
            extra += [(posixpath.join(modules, rel), data) for rel, data in node_modules()]
            dirs = sorted({posixpath.dirname(p) for p, _ in extra} - {directory})
            make_dir = "mkdir -p -m 0755 -- " + " ".join(
                shlex.quote(d) for d in ([] if facts.dest_dir_exists else [directory]) + dirs)
        if overrides.reload_cmd is None and facts.systemd and not facts.unit_exists:
            extra.append((NODE_UNIT, node_unit(dest, facts.binaries.get("node")).encode()))
            # `enable` reloads the manager by itself (no --no-reload): a daemon-reload before
            # it would be a second one (~2.5 s each on a slow host, e.g. a VM under TCG).
            prepare.append("systemctl enable sockwizard-proxy")
            # A failed deploy leaves nothing it created: the unit stopped, disabled, gone. One
            # reload, once the file is gone (`disable` would reload first by itself).
            unprepare.append("systemctl disable --no-reload -q --now sockwizard-proxy; "
                             f"rm -f -- {NODE_UNIT}"
                             " && systemctl daemon-reload && { systemctl reset-failed "
                             "sockwizard-proxy 2>/dev/null; true; }")
            stops = True
        if not facts.dest_dir_exists:
            # ... and the directory it made, with the modules in it (the restore already took
            # the config out of it).
            unprepare.append(f"rm -rf -- {shlex.quote(directory)}")
    return HostTarget(
        dest=dest, real_dest=_real_dest(dest, facts), validate_cmd=validate,
        precheck_cmd=precheck,
        reload_cmd=reload_cmd, make_dir=make_dir, prepare_cmds=tuple(prepare),
        unprepare_cmds=tuple(unprepare), unprepare_stops_proxy=stops,
        enable_cmds=tuple(enable), disable_cmds=tuple(disable), extra_files=tuple(extra),
        shadowing_sites=shadowing,
        missing_modules=tuple(missing), overridden=overridden, notes=tuple(notes), facts=facts,
    )


def _real_dest(dest: str, facts: HostFacts) -> str:
    real = facts.real_dest
    # readlink -f of a path whose directory is missing prints nothing: keep the path as given.
    # The host's answer goes into later commands (quoted): refuse what quoting cannot fix.
    from wizard.remote import path_problem

    return real if real and path_problem(real) is None else dest


def _binary(kind: ProxyKind, facts: HostFacts) -> str | None:
    return next((facts.binaries[n] for n in _names(kind) if n in facts.binaries), None)


def _default_dest(spec: DeploySpec, facts: HostFacts | None) -> str:
    prof = profile(spec.proxy)
    dest = prof.default_dest[spec.layout]
    if facts is None or spec.layout is not Layout.SITE:
        return dest
    if posixpath.dirname(dest) not in facts.dirs:
        # e.g. RHEL's Apache: no sites-available, and conf.d/*.conf is included as is.
        return next((alt for directory, alt in prof.alt_site_dest.items()
                     if directory in facts.dirs), dest)
    return dest


def _stand_in(kind: ProxyKind, cmd: str, facts: HostFacts) -> str:
    """``cmd`` with a missing binary replaced by the first stand-in the host has."""
    for binary, stand_in in profile(kind).stand_ins:
        if binary in cmd and binary not in facts.binaries and stand_in in facts.binaries:
            return cmd.replace(binary, stand_in)
    return cmd


def _default_validate(spec: DeploySpec, facts: HostFacts) -> str:
    return _stand_in(spec.proxy, profile(spec.proxy).validate_cmd[spec.layout], facts)


def _default_reload(spec: DeploySpec, facts: HostFacts) -> str | None:
    prof = profile(spec.proxy)
    if facts.systemd and "systemctl" in facts.binaries:
        units = prof.systemd_reload
        return units.get(facts.os_family, units["*"])
    if not prof.reload_without_systemd:
        return None
    return _stand_in(spec.proxy, prof.reload_cmd[spec.layout], facts)


def _missing_modules(spec: DeploySpec, facts: HostFacts) -> list[str]:
    if facts.apache_modules is None:  # not asked (no modules_query), or no answer
        return []
    return [m for m in profile(spec.proxy).modules(spec) if m not in facts.apache_modules]


def unshadow_advice(proxy: ProxyKind) -> str:
    """What to do about a default site that answers before the new config."""
    how = profile(proxy).unshadow_how
    return f"Give --server-name (the name clients use), or disable that site ({how})."
