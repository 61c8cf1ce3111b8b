"""Apache config syntax: sections, quoting, line continuations, ``Include`` stitched from the
dumped file list, ``<IfModule>``/``<IfVersion>`` evaluated (``<If>`` skipped with a note).

Pure text -> :class:`ANode` trees; ``wizard.diagnose.readers.apache`` reads the files and
``apache_route`` walks the tree.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from wizard.diagnose.facts import Where
from wizard.diagnose.readers.base import MAX_INCLUDE_DEPTH, MAX_TREE_NODES, ConfigReadError

if TYPE_CHECKING:
    pass

MAX_EXPANDED_NODES = MAX_TREE_NODES


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class ANode:
    """A directive or a section (``block`` not None) with its place in the files."""

    name: str
    args: tuple[str, ...]
    file: str
    line: int
    block: tuple[ANode, ...] | None = None
    raw: str = ""

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def where(self) -> Where:
        return Where(self.file, self.line, self.raw)

    def children(self, *names: str) -> list[ANode]:
        wanted = {n.lower() for n in names}
        return [n for n in self.block or () if n.key in wanted]

    def last(self, name: str) -> ANode | None:
        found = self.children(name)
        return found[-1] if found else None


def tokenize(text: str) -> list[str]:
    """Apache's ap_getword_conf: words, "double" or 'single' quoted, backslash escapes."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        quote = text[i] if text[i] in "\"'" else None
        if quote:
            i += 1
            buf = []
            while i < n and text[i] != quote:
                if text[i] == "\\" and i + 1 < n and text[i + 1] in (quote, "\\"):
                    i += 1
                buf.append(text[i])
                i += 1
            i += 1
            words.append("".join(buf))
        else:
            start = i
            while i < n and not text[i].isspace():
                i += 1
            words.append(text[start:i])
    return words


def parse_text(text: str, file: str) -> tuple[ANode, ...]:
    """One file -> nodes; raises ConfigReadError on unbalanced sections."""
    root: list[ANode] = []
    stack: list[tuple[str, tuple[str, ...], int, str, list[ANode]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start = i
        parts = [lines[i].rstrip()]
        # Continuation lines joined once at the end (repeated + was quadratic).
        while parts[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            parts[-1] = parts[-1][:-1]
            parts.append(lines[i].strip())
        line = " ".join(parts)
        i += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        target = stack[-1][4] if stack else root
        if stripped.startswith("</"):
            name = stripped[2:].rstrip(">").strip()
            if not stack or stack[-1][0].lower() != name.lower():
                raise ConfigReadError(f"Unbalanced </{name}> in {file}:{start + 1}",
                                      "Run `apachectl configtest` on the host.")
            tag, args, at, raw, children = stack.pop()
            node = ANode(tag, args, file, at, tuple(children), raw)
            (stack[-1][4] if stack else root).append(node)
            continue
        if stripped.startswith("<") and stripped.endswith(">"):
            words = tokenize(stripped[1:-1])
            if words:
                stack.append((words[0], tuple(words[1:]), start + 1, stripped, []))
            continue
        words = tokenize(stripped)
        target.append(ANode(words[0], tuple(words[1:]), file, start + 1, None, stripped))
    if stack:
        tag, _args, at, _raw, _children = stack[-1]
        raise ConfigReadError(f"<{tag}> at {file}:{at} is never closed",
                              "Run `apachectl configtest` on the host.")
    return tuple(root)


@dataclass
class Env:
    files: dict[str, tuple[ANode, ...]]
    roots: list[str]
    modules: frozenset[str] | None
    version: tuple[int, ...] | None
    notes: list[str] = field(default_factory=list)
    count: int = 0  # directives expanded so far (the MAX_EXPANDED_NODES cap)


def module_name(arg: str) -> str:
    """``mod_proxy.c`` / ``proxy_module`` / ``mod_proxy`` -> ``proxy_module``."""
    name = arg.strip()
    if name.endswith(".c"):
        name = name[:-2]
    if name.startswith("mod_"):
        name = name[4:]
    return name if name.endswith("_module") else name + "_module"


def expand(nodes: Sequence[ANode], env: Env, depth: int = 0,
           stack: tuple[str, ...] = ()) -> tuple[ANode, ...]:
    """Stitch Includes and evaluate conditional sections. A file is not Included into itself
    again (a loop), and the tree is capped at MAX_EXPANDED_NODES directives."""
    out: list[ANode] = []
    for node in nodes:
        env.count += 1
        if env.count > MAX_EXPANDED_NODES:
            raise ConfigReadError(
                f"The Apache config expands to more than {MAX_EXPANDED_NODES} directives "
                "through its Includes",
                "Check the Include directives for loops or files included many times.")
        key = node.key
        if key == "serverroot" and node.args and node.args[0] not in env.roots:
            env.roots.insert(0, node.args[0])
        if key in ("include", "includeoptional") and node.args:
            if depth >= MAX_INCLUDE_DEPTH:
                continue
            for path in _include(node.args[0], env):
                if path not in stack and path != node.file:
                    out.extend(expand(env.files[path], env, depth + 1, (*stack, node.file)))
            continue
        if node.block is None:
            out.append(node)
            continue
        if key == "ifmodule":
            arg = node.args[0] if node.args else ""
            negate = arg.startswith("!")
            if env.modules is None:
                keep = not negate
            else:
                keep = (module_name(arg.lstrip("!")) in env.modules) != negate
            if keep:
                out.extend(expand(node.block, env, depth, stack))
            continue
        if key == "ifdefine":
            arg = node.args[0] if node.args else ""
            if arg.startswith("!"):
                out.extend(expand(node.block, env, depth, stack))
            continue
        if key == "ifversion":
            if _if_version(node.args, env.version):
                out.extend(expand(node.block, env, depth, stack))
            continue
        if key in ("iffile", "ifdirective", "ifsection"):
            out.extend(expand(node.block, env, depth, stack))
            continue
        if key in ("if", "elseif", "else"):
            env.notes.append(f"<{node.name}> at {node.file}:{node.line} was not evaluated")
            continue
        out.append(replace(node, block=expand(node.block, env, depth, stack)))
    return tuple(out)


def _if_version(args: Sequence[str], version: tuple[int, ...] | None) -> bool:
    if version is None or not args:
        return True
    op, want = ("=", args[0]) if len(args) == 1 else (args[0], args[1])
    if want.startswith("/") or op in ("~", "=~"):
        return True
    target = tuple(int(p) for p in want.split(".") if p.isdigit())
    have = version[: len(target)]
    return {"=": have == target, "==": have == target, ">": have > target,
            ">=": have >= target, "<": have < target, "<=": have <= target}.get(op, True)


def _include(pattern: str, env: Env) -> list[str]:
    candidates = [pattern] if pattern.startswith("/") else [
        posixpath.join(root, pattern) for root in env.roots]
    for full in candidates:
        full = posixpath.normpath(full)
        if full in env.files:
            return [full]
        if re.search(r"[*?\[]", full):
            wanted = full.split("/")
            found = sorted(p for p in env.files if len(p.split("/")) == len(wanted) and all(
                fnmatch.fnmatchcase(a, b) for a, b in zip(p.split("/"), wanted, strict=True)))
        else:
            found = sorted(p for p in env.files if p.startswith(full.rstrip("/") + "/"))
        if found:
            return found
    return []
