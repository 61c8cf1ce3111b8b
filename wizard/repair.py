"""``diagnose --fix`` / ``--apply`` and the TUI's "Apply this fix": findings' edits made real.

The one place the diagnosis and the guarded deploy meet (a layer above both; the CLI command
and the TUI's findings screen are thin layers over these functions):

* :func:`plan_fixes` — read the live config files the findings' edits name (over the Remote
  the diagnosis used), make the edits (``wizard.diagnose.patch``), and check each new file
  locally with the proxy's own checker where a file can be checked alone (``standalone_check``
  in ``wizard.proxies``: node's script, a Caddyfile; nginx and Apache check the whole tree,
  which only the host has, so theirs run in place on the host by the transaction).
* :func:`apply_fixes` — each patched file through ``wizard.deploy.apply_bytes`` (the lock,
  backup, write beside, validate in place, reload, settle, probe, byte-for-byte restore on any
  failure), one file after another, stopping at the first that fails; then the diagnosis again,
  so the findings before and after can be shown side by side.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from wizard.deploy import DeployOptions, DeployResult, EventSink, LiveChecks, apply_bytes
from wizard.deploy.settle import LIVE
from wizard.diagnose import Diagnosis, run_diagnosis
from wizard.diagnose.patch import FilePatch, FixPlan, plan
from wizard.errors import ExitCode
from wizard.model import ProxyKind
from wizard.proxies import profile
from wizard.remote import path_problem

if TYPE_CHECKING:
    from wizard.probe import ProbeOptions
    from wizard.remote import Remote

LOCAL_CHECK_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class LocalCheck:
    """The proxy's own checker run here on one patched file (a copy)."""

    file: str
    command: str
    ok: bool
    output: str = ""


@dataclass(frozen=True)
class Fixes:
    """The fix plan for one diagnosis, with the local checks of its files."""

    diagnosis: Diagnosis
    kind: ProxyKind
    plan: FixPlan
    checks: tuple[LocalCheck, ...] = ()

    @property
    def refused(self) -> tuple[LocalCheck, ...]:
        return tuple(c for c in self.checks if not c.ok)


@dataclass(frozen=True)
class Repair:
    """What ``--apply`` did: the deploys (one per file, in order) and the findings after."""

    fixes: Fixes
    results: tuple[DeployResult, ...] = ()
    after: Diagnosis | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def exit_code(self) -> int:
        """The first failed deploy's code (deploy's codes); else 0 when the diagnosis after
        has no error, 1 when it still has one."""
        for result in self.results:
            if result.exit_code != ExitCode.OK:
                return int(result.exit_code)
        if self.fixes.refused:
            return int(ExitCode.FAILED)
        return int(ExitCode.OK if self.after is None or self.after.ok else ExitCode.FAILED)


def plan_fixes(diagnosis: Diagnosis, remote: Remote, kind: ProxyKind | str, *,
               check_locally: bool = True) -> Fixes:
    """The patches for ``diagnosis``'s config-edit fixes, against the files as they are now."""
    kind = ProxyKind(str(kind).lower()) if not isinstance(kind, ProxyKind) else kind
    files = diagnosis.facts.files if diagnosis.facts is not None else ()
    wanted = {e.file for f in diagnosis.findings for e in f.edits}
    # The names came from the live config: only files the diagnosis read, and only paths
    # that can go into a command (absolute, no control characters).
    readable = {f for f in wanted if f in files and f.startswith("/") and path_problem(f) is None}
    contents = {f: remote.read_file(f) for f in sorted(readable)}
    fix_plan = plan(diagnosis.findings, contents, readable)
    checks = tuple(c for p in fix_plan.patches
                   if (c := local_check(kind, p)) is not None) if check_locally else ()
    return Fixes(diagnosis, kind, fix_plan, checks)


def local_check(kind: ProxyKind, patch: FilePatch) -> LocalCheck | None:
    """The proxy's standalone checker on a copy of the new file, here; None when there is no
    standalone checker, it is not installed here, or the file as it is now fails it too (it
    needs its tree: inconclusive)."""
    template = profile(kind).standalone_check
    if template is None or shutil.which(template.split()[0]) is None:
        return None
    with tempfile.TemporaryDirectory(prefix="sockwizard-fix-") as scratch:
        copy = os.path.join(scratch, os.path.basename(patch.file) or "config")
        command = template.replace("{config}", shlex.quote(copy))

        def run(data: bytes) -> tuple[bool, str]:
            with open(copy, "wb") as handle:
                handle.write(data)
            try:
                proc = subprocess.run(command, shell=True, cwd=scratch, capture_output=True,
                                      text=True, timeout=LOCAL_CHECK_TIMEOUT_S,
                                      env={**os.environ, "HOME": scratch,
                                           "XDG_CONFIG_HOME": scratch, "XDG_DATA_HOME": scratch})
            except subprocess.TimeoutExpired:
                return False, f"timed out after {LOCAL_CHECK_TIMEOUT_S:g} s"
            return proc.returncode == 0, (proc.stdout + proc.stderr).strip()[-2000:]

        if not run(patch.old)[0]:
            return None
        ok, output = run(patch.new)
    shown = template.replace("{config}", patch.file)
    return LocalCheck(patch.file, shown, ok, output)


def apply_fixes(fixes: Fixes, remote: Remote, options: DeployOptions, probe: ProbeOptions, *,
                config_path: str | None = None, on_event: EventSink | None = None,
                checks: LiveChecks = LIVE, probe_host: str = "127.0.0.1",
                host: str | None = None) -> Repair:
    """Deploy each patched file through the guarded transaction, then diagnose again. A file
    the local checker refused is not deployed (nothing changes); the first failed deploy
    stops the rest (its file is restored byte for byte; files before it passed their probe)."""
    if fixes.refused or not fixes.plan.patches:
        return Repair(fixes)
    before = fixes.diagnosis
    options = replace(options, probe_url=options.probe_url or before.url)
    main = config_path or None
    results: list[DeployResult] = []
    for patch in fixes.plan.patches:
        result = apply_bytes(
            remote, fixes.kind, patch.file, patch.new, patch.old, options, path=before.path,
            main_config=main, entry={"fix": list(patch.codes)},
            on_event=on_event or (lambda _e: None), checks=checks, probe_host=probe_host,
            host=host)
        results.append(result)
        if result.exit_code != ExitCode.OK:
            break
    after = run_diagnosis(before.url, probe, remote=remote, proxy=fixes.kind,
                          config_path=config_path)
    return Repair(fixes, tuple(results), after)


def summary(repair: Repair) -> str:
    """The findings before and after, one line each (the CLI and the TUI show it)."""
    def line(d: Diagnosis | None) -> str:
        if d is None:
            return "(not diagnosed)"
        return ", ".join(f"{f.code} ({f.severity})" for f in d.findings) or "no findings"

    out = [f"before: {line(repair.fixes.diagnosis)}"]
    for result in repair.results:
        out.append(f"{result.outcome.value}: {result.title}")
    if repair.after is not None:
        out.append(f"after:  {line(repair.after)}")
    return "\n".join(out) + "\n"
