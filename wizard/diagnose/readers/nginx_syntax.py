"""nginx config as a tree: crossplane per file, ``include`` stitched back in, and the
selection rules (server by port and ``server_name``, location by nginx's own order, rewrites).

Pure; ``wizard.diagnose.readers.nginx`` reads the files and ``nginx_analysis`` builds the facts.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wizard.diagnose.facts import Where
from wizard.diagnose.readers.base import (
    MAX_INCLUDE_DEPTH,
    MAX_TREE_NODES,
    ConfigReadError,
    expand_groups,
    search,
)

if TYPE_CHECKING:
    pass

MAX_STITCHED_NODES = MAX_TREE_NODES

# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class Node:
    """One directive with its place; ``block`` is None for simple directives."""

    name: str
    args: tuple[str, ...]
    file: str
    line: int
    block: tuple[Node, ...] | None = None

    @property
    def text(self) -> str:
        words = " ".join(_quote(a) for a in (self.name, *self.args))
        return words + (" {" if self.block is not None else ";")

    @property
    def where(self) -> Where:
        return Where(self.file, self.line, self.text)

    def children(self, name: str) -> list[Node]:
        return [n for n in self.block or () if n.name == name]

    def first(self, name: str) -> Node | None:
        found = self.children(name)
        return found[0] if found else None  # nginx refuses most duplicates; take the first


def _quote(word: str) -> str:
    if word == "" or re.search(r"[\s;{}'\"]", word):
        return "'" + word.replace("'", "\\'") + "'"
    return word


def split_dump(dump: str) -> list[tuple[str, str]]:
    """``nginx -T`` output -> [(path, content)] in the order nginx read the files."""
    parts = re.split(r"^# configuration file (.+):\n", dump, flags=re.M)
    files: list[tuple[str, str]] = []
    for i in range(1, len(parts) - 1, 2):
        files.append((parts[i], parts[i + 1]))
    return files


def parse_files(files: Sequence[tuple[str, str]]) -> dict[str, list[Node]]:
    """Parse each file on its own with crossplane (includes are stitched later)."""
    import crossplane  # lazy: only diagnose needs it

    out: dict[str, list[Node]] = {}
    with tempfile.TemporaryDirectory(prefix="sockwizard-nginx-") as tmp:
        for index, (path, content) in enumerate(files):
            local = os.path.join(tmp, f"{index}.conf")
            with open(local, "w", encoding="utf-8") as handle:
                handle.write(content)
            result = crossplane.parse(local, single=True, check_ctx=False, check_args=False,
                                      comments=False, catch_errors=True)
            config = result["config"][0]
            if config["errors"]:
                err = config["errors"][0]
                raise ConfigReadError(
                    f"Cannot parse the nginx config {path}:{err.get('line')}: {err.get('error')}",
                    "Run `nginx -t` on the host to see the same error.")
            out[path] = [_node(d, path) for d in config["parsed"]]
    return out


def _node(raw: dict[str, object], path: str) -> Node:
    block = raw.get("block")
    children = tuple(_node(b, path) for b in block) if isinstance(block, list) else None
    args = raw.get("args", [])
    assert isinstance(args, list)
    line = raw.get("line", 0)
    return Node(str(raw["directive"]), tuple(str(a) for a in args), path,
                int(line) if isinstance(line, int) else 0, children)


def stitch(parsed: dict[str, list[Node]], main: str) -> tuple[Node, ...]:
    """The main file's directives with every ``include`` replaced by the included ones.

    A file that (directly or not) includes itself is not expanded again (nginx itself crashes
    on such a loop), and the whole tree is capped at MAX_STITCHED_NODES directives
    (ConfigReadError beyond: a tree that large is an attack or a mistake)."""
    conf_dir = posixpath.dirname(main)
    count = 0

    def expand(nodes: Sequence[Node], depth: int, stack: tuple[str, ...]) -> tuple[Node, ...]:
        nonlocal count
        out: list[Node] = []
        for node in nodes:
            count += 1
            if count > MAX_STITCHED_NODES:
                raise ConfigReadError(
                    f"The nginx config expands to more than {MAX_STITCHED_NODES} directives "
                    "through its includes",
                    "Check the include directives for loops or files included many times.")
            if node.name == "include" and node.args and depth < MAX_INCLUDE_DEPTH:
                for path in _glob(node.args[0], conf_dir, parsed):
                    if path not in stack:
                        out.extend(expand(parsed[path], depth + 1, (*stack, path)))
                continue
            if node.block is not None:
                node = Node(node.name, node.args, node.file, node.line,
                            expand(node.block, depth, stack))
            out.append(node)
        return tuple(out)

    return expand(parsed.get(main, []), 0, (main,))


def _glob(pattern: str, conf_dir: str, parsed: dict[str, list[Node]]) -> list[str]:
    full = pattern if pattern.startswith("/") else posixpath.join(conf_dir, pattern)
    full = posixpath.normpath(full)
    if not re.search(r"[*?\[]", full):
        return [full] if full in parsed else []
    wanted = full.split("/")
    return sorted(p for p in parsed if _segments_match(p.split("/"), wanted))


def _segments_match(path: list[str], pattern: list[str]) -> bool:
    return len(path) == len(pattern) and all(
        fnmatch.fnmatchcase(a, b) for a, b in zip(path, pattern, strict=True))


def vtuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def split_listen(arg: str) -> tuple[str, int]:
    m = re.fullmatch(r"(?:\[([^\]]+)\]|([^:]+)):(\d+)", arg)
    if m:
        return (m.group(1) or m.group(2)), int(m.group(3))
    if arg.isdigit():
        return "*", int(arg)
    return arg, 80  # "listen example.com;" or "listen 127.0.0.1;"


def server_name_matches(server: Node, host: str) -> bool:
    host = host.lower().rstrip(".")
    for node in server.children("server_name"):
        for name in node.args:
            name = name.lower()
            if name.startswith("~"):
                if search(name[1:], host):
                    return True
            elif _name_matches(name, host):
                return True
    return False


def _name_matches(name: str, host: str) -> bool:
    """A non-regex server_name: exact, ``*.example.com``, ``.example.com``, ``www.*``."""
    if name.startswith("*."):
        return host.endswith(name[1:])
    if name.startswith("."):
        return host == name[1:] or host.endswith(name)
    if name.endswith(".*"):
        return host.startswith(name[:-1])
    return name == host


def loc_mod(loc: Node) -> str:
    return loc.args[0] if len(loc.args) >= 2 else ""


def loc_arg(loc: Node | None) -> str:
    if loc is None:
        return ""
    return loc.args[-1] if loc.args else ""


def location_chain(block: Node, uri: str) -> list[Node]:
    """nginx's location choice for ``uri`` inside ``block``, nested: outermost first."""
    locations = [n for n in block.children("location") if n.args and not n.args[-1].startswith("@")]
    if not locations:
        return []
    for loc in locations:
        if loc_mod(loc) == "=" and loc.args[-1] == uri:
            return [loc]
    prefixes = [loc for loc in locations
                if loc_mod(loc) in ("", "^~") and uri.startswith(loc.args[-1])]
    best = max(prefixes, key=lambda loc: len(loc.args[-1]), default=None)
    if best is not None and loc_mod(best) == "^~":
        return [best, *location_chain(best, uri)]
    if best is not None:
        nested = location_chain(best, uri)
        if nested and loc_mod(nested[-1]) in ("~", "~*"):
            return [best, *nested]
    for loc in locations:
        mod = loc_mod(loc)
        if mod in ("~", "~*") and search(loc.args[-1], uri, nocase=mod == "~*"):
            return [loc, *location_chain(loc, uri)]
    if best is not None:
        return [best, *location_chain(best, uri)]
    return []


def apply_rewrites(loc: Node, path: str) -> str | None:
    """The path after the location's ``rewrite`` directives (None: none applied)."""
    changed = None
    current = path
    for node in loc.children("rewrite"):
        if len(node.args) < 2:
            continue
        m = search(node.args[0], current)
        if not m:
            continue
        replacement = node.args[1]
        if replacement.startswith(("http://", "https://", "$scheme")):
            return None  # a redirect, not a rewrite
        current = expand_groups(replacement, m)
        current = current.split("?", 1)[0]
        changed = current
        if {"break", "last"} & set(node.args[2:]):
            break
    return changed


def upstream_affinity(upstream: Node) -> tuple[str | None, str | None]:
    """(what keeps a client on one server, why it does not work) for an upstream block."""
    if upstream.first("ip_hash") is not None:
        return "ip_hash", None
    sticky = upstream.first("sticky")
    if sticky is not None:
        return sticky.text.rstrip(";"), None
    hashed = upstream.first("hash")
    if hashed is not None and hashed.args:
        key = hashed.args[0]
        text = hashed.text.rstrip(";")
        if re.search(r"\$(binary_)?remote_addr|\$http_x_forwarded_for|\$http_x_real_ip|"
                     r"\$realip_remote_addr|\$cookie_|\$http_cookie", key):
            return text, None
        if re.search(r"\$arg_sid|\$args|\$query_string|\$request_uri|\$uri", key):
            return text, (f"`{text}` hashes the request URI: the handshake has no sid yet, so "
                          "it lands on another server than the requests that follow")
        return text, None
    return None, None


def parse_time(text: str) -> float | None:
    """nginx time: ``60``, ``60s``, ``1m30s``, ``500ms``, ``1h``."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000,
             "y": 31536000}
    if text.isdigit():
        return float(text)
    total = 0.0
    pos = 0
    for m in re.finditer(r"(\d+)(ms|s|m|h|d|w|M|y)", text):
        if m.start() != pos:
            return None
        total += int(m.group(1)) * units[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos else None
