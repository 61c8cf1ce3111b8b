"""What every config reader shares: the read budget, the one-round-trip file reader, safe paths.

The per-proxy readers (siblings of this module) fetch a host's config over a
:class:`~wizard.remote.Remote` (SSH, this machine, or an in-memory fake) whose files may be
hostile: every path is checked (:func:`path_problem`) and quoted, every file is stat'ed and read
through ``head -c`` (:func:`cat_files`), and one :class:`ReadBudget` caps the whole read's
wall time, file count and bytes. (:func:`path_problem` lives in ``wizard.remote``:
``wizard.deploy``'s detection uses it too.)
"""

from __future__ import annotations

import re
import secrets
import shlex
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from wizard.errors import SockwizardError, SudoPasswordRequired
from wizard.remote import path_problem

if TYPE_CHECKING:
    from wizard.remote import CommandResult, Remote


class ConfigReadError(SockwizardError):
    """The proxy's config could not be read or understood (the diagnosis goes on without it)."""


# --------------------------------------------------------------------------- helpers


def line_of(text: str, offset: int) -> int:
    """1-based line number of a character offset."""
    return text.count("\n", 0, offset) + 1


def search(pattern: str, text: str, *, nocase: bool = False) -> re.Match[str] | None:
    """``re.search`` with a pattern from the live config: one Python cannot compile (PCRE-only
    syntax, or broken) matches nothing, as if the rule were not there."""
    try:
        return re.search(pattern, text, re.I if nocase else 0)
    except re.error:
        return None


def expand_groups(template: str, match: re.Match[str]) -> str:
    """``$1``..``$9`` in a rewrite target -> the regex groups of ``match``."""
    return re.sub(r"\$(\d)", lambda g: match.group(int(g.group(1))) or "", template)


def join_upstream_path(base: str, rest: str) -> str:
    """A proxy target's path plus what is left of the request path after the route prefix."""
    if not base:
        base = "/"
    if base.endswith("/") and rest.startswith("/"):
        return base + rest[1:]
    return base + rest


# Caps for reading a config tree from a host whose files may be hostile (an include loop, a
# symlink to /dev/zero, a FIFO, a 64 GB sparse file, a 50 MB "script"): every file is stat'ed
# first, only regular files are read, each through `head -c`, and the whole read has a file
# count, a byte total and a deadline. Real configs are far below these.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_TOTAL_BYTES = 16 * 1024 * 1024
MAX_FILES = 256
CONFIG_DEADLINE_S = 30.0
COMMAND_TIMEOUT_S = 30.0
# How deep includes/imports nest before a reader stops following them (a loop ends here), and
# the expanded tree's size cap: the same files included over and over (a loop, or a diamond
# chain a -> b b -> c c ...) would otherwise expand exponentially.
MAX_INCLUDE_DEPTH = 16
MAX_TREE_NODES = 200_000


class ReadBudget:
    """What one config read may still spend: wall time, files and bytes (shared by all of a
    reader's round trips). Files refused on the way are remembered as notes."""

    def __init__(self, deadline_s: float = CONFIG_DEADLINE_S, *,
                 max_file_bytes: int = MAX_FILE_BYTES, max_total_bytes: int = MAX_TOTAL_BYTES,
                 max_files: int = MAX_FILES) -> None:
        self.seconds = deadline_s
        self.deadline = time.monotonic() + deadline_s
        self.max_file_bytes = max_file_bytes
        self.bytes_left = max_total_bytes
        self.files_left = max_files
        self.notes: list[str] = []
        self.refused: list[str] = []  # files skipped as not regular or too large

    def timeout(self, cap: float = COMMAND_TIMEOUT_S) -> float:
        """The timeout for the next remote command; ConfigReadError when time is up."""
        left = self.deadline - time.monotonic()
        if left <= 0.05:
            raise ConfigReadError(
                f"Reading the config took longer than {self.seconds:g} s",
                "The host or its proxy binary is slow or hangs (a FIFO or device in the config "
                "tree?); run the proxy's config test on the host.")
        return min(cap, left)

    def spend(self, files: int, size: int) -> None:
        self.files_left -= files
        self.bytes_left -= size


def sudo_run(remote: Remote, command: str, *, timeout: float = COMMAND_TIMEOUT_S,
             budget: ReadBudget | None = None) -> CommandResult:
    """Run with sudo; fall back to the login user when sudo wants a password nobody gave
    (reading world-readable configs still works, and the error says what was missing)."""
    if budget is not None:
        timeout = budget.timeout(timeout)
    try:
        return remote.run(command, sudo=True, timeout=timeout)
    except SudoPasswordRequired:
        return remote.run(command, sudo=False, timeout=timeout)


def capped(command: str, limit: int, marker: str) -> str:
    """``command`` with its stdout cut at ``limit`` bytes and ``MARKER STATUS`` appended, so a
    cut output (no marker at the end) is told apart from a whole one."""
    return f"{{ {command}; echo \"{marker} $?\"; }} | head -c {int(limit)}"


def uncap(stdout: str, marker: str) -> tuple[str, int | None]:
    """Split what :func:`capped` printed: (output, status), status None when it was cut."""
    body, sep, tail = stdout.rpartition(marker + " ")
    status = tail.strip()
    if not sep or not status.lstrip("-").isdigit():
        return stdout, None
    return body, int(status)


def new_marker() -> str:
    return f"==sockwizard-{secrets.token_hex(6)}=="


def cat_files(remote: Remote, paths: Sequence[str],
              budget: ReadBudget | None = None) -> dict[str, str]:
    """Read several files (globs allowed) in one round trip; absent files are left out.

    Globs are expanded by the remote shell with IFS empty and without re-parsing, so a path
    from a config cannot inject a command (parameter expansion never runs ``$(...)``); paths
    are validated first (:func:`path_problem`). Only regular files are read (``[ -f ]`` does
    not open a FIFO or a device), each at most ``budget.max_file_bytes`` through ``head -c``,
    and no more files or bytes than the budget has left; what is skipped is noted in the
    budget.
    """
    budget = budget if budget is not None else ReadBudget()
    wanted = []
    for p in paths:
        problem = path_problem(p)
        if problem is not None:
            budget.notes.append(f"not read: {problem}")
        else:
            wanted.append(p)
    if not wanted or budget.files_left <= 0 or budget.bytes_left <= 0:
        if wanted:
            budget.notes.append(f"not read (file or size budget spent): {', '.join(wanted)[:300]}")
        return {}
    marker = new_marker()
    per_file = budget.max_file_bytes
    m = shlex.quote(marker)
    nl = shlex.quote("\n")
    # n: files left, t: bytes left. A file that is not regular, too big or over budget gets a
    # `MARKER! reason path` line instead of its content.
    script = (f"IFS=; n={budget.files_left}; t={budget.bytes_left}; "
              f"skip() {{ printf '%s! %s %s\\n' {m} \"$1\" \"$2\"; }}; " + " ".join(
        f"p={shlex.quote(p)}; for f in $p; do "
        f"case $f in *{nl}*) continue;; esac; "
        "[ -e \"$f\" ] || continue; "
        "[ -f \"$f\" ] || { skip not-a-regular-file \"$f\"; continue; }; "
        "[ $n -gt 0 ] || { skip over-file-budget \"$f\"; continue; }; "
        "s=$(stat -L -c %s -- \"$f\" 2>/dev/null) || s=0; "
        f"[ \"$s\" -le {per_file} ] 2>/dev/null || {{ skip too-large:$s \"$f\"; continue; }}; "
        # Size 0 may be a pseudo file (/proc) whose reads never end: read at most 64 KiB.
        "c=$s; [ \"$c\" -gt 0 ] || c=65536; "
        "[ \"$c\" -le $t ] || { skip over-size-budget \"$f\"; continue; }; "
        "n=$((n-1)); t=$((t-c)); "
        f"printf '%s %s\\n' {m} \"$f\"; "
        f"r=$(readlink -f -- \"$f\") && printf '%s= %s\\n' {m} \"$r\"; "
        "head -c \"$c\" -- \"$f\"; echo; done;"
        for p in wanted
    ))
    result = sudo_run(remote, f"sh -c {shlex.quote(script)}", budget=budget)
    out: dict[str, str] = {}
    real: set[str] = set()
    chunks = re.split(rf"^{re.escape(marker)}([!=]?) (.*)\n", result.stdout, flags=re.M)
    path = ""
    for i in range(1, len(chunks) - 2, 3):
        kind, name, body = chunks[i], chunks[i + 1], chunks[i + 2]
        if kind == "!":
            why, _, skipped = name.partition(" ")
            budget.notes.append(f"not read: {skipped} ({why.replace('-', ' ')})")
            if not why.startswith("over-"):
                budget.refused.append(skipped)
            continue
        text = body[:-1] if body.endswith("\n") else body  # the echo we added
        if kind == "":
            path = name
            out[path] = text
        elif name in real:  # the same file under another name (a symlink): read once
            out.pop(path, None)
            budget.notes.append(f"not read twice: {path} (the same file as {name})")
        else:
            real.add(name)
            out[path] = text
    budget.spend(len(out), sum(len(t) for t in out.values()))
    return out


class ToolRun(NamedTuple):
    """What :func:`run_tool` got back: the version line(s), the capped check's output and exit
    status (None when the output was cut), and the whole command result."""

    head: str
    output: str
    status: int | None
    result: CommandResult


def run_tool(remote: Remote, budget: ReadBudget, *, path: str, version: str, check: str,
             kill_s: float, limit: int, tool: str, name: str, missing: str = "") -> ToolRun:
    """One round trip: ``version`` (its output is ``head``), then ``check`` under ``timeout -s
    KILL kill_s`` (when the host has ``timeout``; ``$T`` in ``check`` stands for it) with its
    output cut at ``limit`` bytes. ConfigReadError when the proxy binary ``tool`` is not there
    (``missing`` is added to that message)."""
    marker, end = new_marker(), new_marker()
    result = sudo_run(remote, f"{path}; {version}; echo {marker}; T=; command -v timeout "
                              f">/dev/null && T='timeout -s KILL {kill_s:g}'; "
                              + capped(check, limit, end), budget=budget)
    head, _, rest = result.stdout.partition(marker + "\n")
    if f"{tool}: not found" in head or "command not found" in head:
        raise ConfigReadError(f"{name} is not installed on {remote.name}{missing}",
                              f"Check --proxy, or give the host that runs {name}.")
    output, status = uncap(rest, end)
    return ToolRun(head, output, status, result)


def read_tree(remote: Remote, main: str, budget: ReadBudget, *, depth: int,
              includes: Callable[[str], Iterable[str]]) -> dict[str, str]:
    """Read ``main`` and, level by level (at most ``depth`` levels), the files that
    ``includes(text)`` names in what was read (absolute paths or globs): each path once (a
    loop ends), within the budget's files, bytes and time. The Caddy and nginx readers
    follow their ``import``/``include`` lines with it."""
    files: dict[str, str] = {}
    asked: set[str] = set()
    pending = [main]
    for _ in range(depth):
        pending = [p for p in dict.fromkeys(pending) if p not in asked]
        if not pending or budget.files_left <= 0:
            break
        asked.update(pending)
        got = cat_files(remote, pending, budget)
        new = {k: v for k, v in got.items() if k not in files}
        files.update(new)
        pending = [p for text in new.values() for p in includes(text)]
    return files
