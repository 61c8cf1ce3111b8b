"""Findings' config edits -> the new text of each live config file, and the unified diff.

Called by ``wizard.repair`` (``sockwizard diagnose --fix`` / ``--apply`` and the TUI's "Apply
this fix") with the files' current bytes, read over the same Remote the diagnosis used. Pure:
no I/O. Each :class:`~wizard.findings.Edit` names its line and the text it expects there (from
the reader's ``Where``), so an edit that no longer matches the file — changed since it was
read, or a reader that placed it wrong — is refused with the reason, never applied blindly.

The diff's file names are the absolute paths without the leading ``/``, old and new alike:
``cd / && patch -p0 < fix.diff`` applies it on the host (GNU patch refuses absolute names),
``patch -p0 -d COPY`` to a copy of the tree under COPY.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from wizard.findings import Edit, Finding

INDENT = "    "  # the one level a fix's lines carry (wizard.findings.Edit)
_LEAD = re.compile(r"^[ \t]*")


class EditMismatch(ValueError):
    """An edit does not fit the file as it is now (the words say which and why)."""


@dataclass(frozen=True)
class FilePatch:
    """One config file: its bytes now, after the edits, the diff, and the findings fixed."""

    file: str
    old: bytes
    new: bytes
    diff: str
    codes: tuple[str, ...]


@dataclass(frozen=True)
class FixPlan:
    """What ``--fix`` prints and ``--apply`` deploys: the patches, and the findings whose fix
    stays printed (client- or server-side, or an edit that did not fit, with why)."""

    patches: tuple[FilePatch, ...]
    printed: tuple[tuple[Finding, str], ...]

    @property
    def diff(self) -> str:
        return "".join(p.diff for p in self.patches)


def _indent_of(line: str) -> str:
    match = _LEAD.match(line)
    return match.group(0) if match else ""


def _dedent(text: str) -> list[str]:
    """The fix's lines without the one level they are printed with."""
    return [ln[len(INDENT):] if ln.startswith(INDENT) else ln.lstrip(" ")
            for ln in text.splitlines()]


def apply_edits(text: str, edits: Iterable[Edit]) -> str:
    """``text`` with ``edits`` made (bottom up, so line numbers hold). Raises EditMismatch
    when an edit's line does not hold its ``old`` text, or two edits touch one line."""
    lines = text.splitlines(keepends=True)
    done: set[int] = set()
    for edit in sorted(edits, key=lambda e: (e.line, e.insert), reverse=True):
        index = edit.line - 1
        if not 0 <= index < len(lines):
            raise EditMismatch(f"{edit.file} has no line {edit.line} (it has {len(lines)})")
        line = lines[index]
        if edit.old not in line:
            raise EditMismatch(f"{edit.file}:{edit.line} no longer reads `{edit.old}`: the "
                               "file changed since it was read; run diagnose again")
        if edit.line in done:
            raise EditMismatch(f"two fixes change {edit.file}:{edit.line}; apply them one at "
                               "a time")
        done.add(edit.line)
        eol = "\r\n" if line.endswith("\r\n") else "\n"
        indent = _indent_of(line)
        new = _dedent(edit.new)
        if edit.insert:
            # Inside the block this line opens: one level deeper, in the file's own style.
            step = "\t" if indent.startswith("\t") or (not indent and "\t" in text) else INDENT
            added = [f"{indent}{step}{ln}{eol}" if ln.strip() else eol for ln in new]
            if not line.endswith(("\n", "\r")):
                lines[index] = line + eol
            lines[index + 1:index + 1] = added
            continue
        if line.count(edit.old) != 1:
            raise EditMismatch(f"{edit.file}:{edit.line} holds `{edit.old}` more than once")
        first, *rest = new or [""]
        tail = "".join(f"{indent}{ln}{eol}" if ln.strip() else eol for ln in rest)
        head, _, after = line.partition(edit.old)
        replaced = head + first + after
        if rest:
            if not replaced.endswith(("\n", "\r")):
                replaced += eol
            replaced += tail
        lines[index] = replaced
    return "".join(lines)


def unified_diff(file: str, old: str, new: str) -> str:
    """A diff ``patch -p0`` applies from ``/`` (names without the leading slash)."""
    name = file.lstrip("/")
    out = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                               fromfile=name, tofile=name)
    return "".join(ln if ln.endswith("\n") else ln + "\n\\ No newline at end of file\n"
                   for ln in out)


def plan(findings: Iterable[Finding], files: Mapping[str, bytes | None],
         allowed: Iterable[str]) -> FixPlan:
    """The patches the findings' edits make to ``files`` (their bytes now; None: unreadable).
    A finding's edits go in together or not at all; ``allowed`` are the files the diagnosis
    read (an edit elsewhere is refused: the path came from the live config)."""
    known = set(allowed)
    texts: dict[str, str] = {}
    originals: dict[str, str] = {}
    codes: dict[str, list[str]] = {}
    taken: dict[str, list[Edit]] = {}
    printed: list[tuple[Finding, str]] = []
    for finding in findings:
        if not finding.edits:
            printed.append((finding, "not a config edit"))
            continue
        why = _refusal(finding.edits, files, known)
        if why is None:
            try:
                trial = {f: apply_edits(_text(files, f), [
                    *taken.get(f, []), *(e for e in finding.edits if e.file == f)])
                    for f in {e.file for e in finding.edits}}
            except EditMismatch as exc:
                why = str(exc)
        if why is not None:
            printed.append((finding, why))
            continue
        for edit in finding.edits:
            taken.setdefault(edit.file, []).append(edit)
        for file, text in trial.items():
            originals.setdefault(file, _text(files, file))
            texts[file] = text
            codes.setdefault(file, []).append(finding.code)
    patches = tuple(
        FilePatch(f, originals[f].encode(), texts[f].encode(),
                  unified_diff(f, originals[f], texts[f]), tuple(dict.fromkeys(codes[f])))
        for f in sorted(texts) if texts[f] != originals[f])
    return FixPlan(patches, tuple(printed))


def _text(files: Mapping[str, bytes | None], file: str) -> str:
    data = files.get(file)
    assert data is not None
    return data.decode("utf-8")


def _refusal(edits: Iterable[Edit], files: Mapping[str, bytes | None],
             known: set[str]) -> str | None:
    for edit in edits:
        if edit.file not in known:
            return f"{edit.file} is not a file the diagnosis read"
        data = files.get(edit.file)
        if data is None:
            return f"{edit.file} could not be read"
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return f"{edit.file} is not UTF-8 text"
    return None
