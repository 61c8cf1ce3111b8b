"""nginx: the live config tree (``nginx -T``) parsed with crossplane -> RouteFacts.

``read`` runs ``nginx -v`` and ``nginx -T [-c CONFIG]`` in one round trip (with sudo: -T opens
the log files), splits the dump back into its files, parses each with crossplane and stitches
``include`` directives back in from the dump, so every directive keeps its own file:line. When
``-T`` refuses (an invalid config on disk), the files are read directly instead.

The semantics are nginx's own, reduced to what a Socket.IO route needs:

* server selection by the URL's port (``listen``), then ``server_name``, then ``default_server``;
* location selection: ``=`` exact, longest prefix (``^~`` stops), then regexes in order, nested;
* directive inheritance: the innermost level wins; ``proxy_set_header`` is an *array*
  directive, so a level that sets any header inherits none from outer levels (the classic way
  Upgrade/Connection get lost);
* ``proxy_pass`` with a URI replaces the location prefix; ``rewrite … break`` changes the path;
* defaults: ``proxy_read_timeout`` 60 s, ``proxy_http_version`` 1.0 before nginx 1.29.7,
  ``Host $proxy_host`` and ``Connection close`` when no header is set.
"""
from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from wizard.diagnose.facts import RouteFacts, RouteQuery
from wizard.diagnose.readers.base import (
    MAX_INCLUDE_DEPTH,
    ConfigReadError,
    ReadBudget,
    read_tree,
    run_tool,
)
from wizard.diagnose.readers.nginx_analysis import MAP_LINES, _Analysis
from wizard.diagnose.readers.nginx_syntax import (
    MAX_STITCHED_NODES,
    Node,
    parse_files,
    parse_time,
    split_dump,
    stitch,
)

if TYPE_CHECKING:
    from wizard.remote import Remote

DEFAULT_CONFIG = "/etc/nginx/nginx.conf"
DEFAULT_READ_TIMEOUT = 60.0
_PATH = "PATH=$PATH:/usr/sbin:/sbin:/usr/local/sbin"
_NGINX_T_SECONDS = 10


# --------------------------------------------------------------------------- reading


def read(remote: Remote, query: RouteQuery, config_path: str | None,
         budget: ReadBudget | None = None) -> RouteFacts:
    budget = budget if budget is not None else ReadBudget()
    conf = f" -c {shlex.quote(config_path)}" if config_path else ""
    # -T prints every file of the tree: cut at the byte budget. `timeout` stops an nginx that
    # blocks opening a FIFO in the tree (the files are then read directly, with caps).
    limit = budget.bytes_left
    head, dump, status, result = run_tool(
        remote, budget, path=_PATH, version="nginx -v 2>&1", check=f"$T nginx -T{conf}",
        kill_s=_NGINX_T_SECONDS, limit=limit, tool="nginx", name="nginx",
        missing=" (nginx -v failed)")
    if status is None and len(dump) >= 0.9 * limit:  # head cut it: no status line
        raise ConfigReadError(
            f"The nginx config on {remote.name} is larger than {limit} bytes "
            "(nginx -T)", "Check the include directives for huge or repeated files.")
    version = _version(head)
    source = f"nginx -T{conf} on {remote.name}"
    files = split_dump(dump) if status == 0 or (status is None and result.ok) else []
    if not files:
        # -T refuses an invalid config: read the files themselves so the diagnosis can still
        # point at the lines (the checker's own error is kept as a note).
        main = config_path or DEFAULT_CONFIG
        files = _read_tree(remote, main, budget)
        if not files:
            raise ConfigReadError(
                f"Cannot read the nginx config on {remote.name}",
                "Give the main config file with --config (e.g. /etc/nginx/nginx.conf).",
                detail=result.stderr.strip()[-2000:])
        source = f"{main} and its includes on {remote.name} (nginx -T failed)"
        facts = facts_from_files(files, query, version=version, source=source)
        why = " ".join(result.stderr.strip().splitlines()[-2:])[-500:] or (
            f"no answer within {_NGINX_T_SECONDS} s" if status in (124, 137) else
            f"exit status {status}")
        return _with_note(facts, "nginx -T failed: " + why)
    return facts_from_files(files, query, version=version, source=source)


def _with_note(facts: RouteFacts, note: str) -> RouteFacts:
    from dataclasses import replace

    return replace(facts, notes=(*facts.notes, note))


def _version(text: str) -> str | None:
    m = re.search(r"nginx/(\d+\.\d+(?:\.\d+)?)", text)
    return m.group(1) if m else None


def _read_tree(remote: Remote, main: str, budget: ReadBudget) -> list[tuple[str, str]]:
    """Read ``main`` and, level by level, the files its ``include`` directives name
    (:func:`read_tree`): ``main`` first, the others sorted."""
    conf_dir = posixpath.dirname(main)

    def includes(text: str) -> list[str]:
        out = []
        for m in _INCLUDE.finditer(text):
            arg = m.group(1).strip().strip("'\"")
            path = arg if arg.startswith("/") else posixpath.join(conf_dir, arg)
            out.append(posixpath.normpath(path))
        return out

    files = read_tree(remote, main, budget, depth=MAX_INCLUDE_DEPTH, includes=includes)
    ordered = [main, *sorted(k for k in files if k != main)]
    return [(k, files[k]) for k in ordered if k in files]


# Linear: no `\s*` that can span lines at a line start, a bounded argument.
_INCLUDE = re.compile(r"^[ \t]*include[ \t]+([^;\n]{1,1024});", re.M)


# --------------------------------------------------------------------------- semantics


def facts_from_dump(dump: str, query: RouteQuery, *, version: str | None = None,
                    source: str = "nginx -T") -> RouteFacts:
    return facts_from_files(split_dump(dump), query, version=version, source=source)


def facts_from_text(text: str, query: RouteQuery, *, file: str = "nginx.conf",
                    version: str | None = None) -> RouteFacts:
    """One self-contained file: a full nginx.conf, or a conf.d file (http context)."""
    return facts_from_files([(file, text)], query, version=version, source=file)


def facts_from_files(files: Sequence[tuple[str, str]], query: RouteQuery, *,
                     version: str | None = None, source: str = "nginx") -> RouteFacts:
    if not files:
        raise ConfigReadError("The nginx config is empty", "Check --config.")
    parsed = parse_files(files)
    tree = stitch(parsed, files[0][0])
    if not any(n.name == "http" for n in tree) and any(n.name == "server" for n in tree):
        # A conf.d file read on its own: its context is http{}.
        tree = (Node("http", (), files[0][0], 0, tree),)
    return _Analysis(tree, query, version, source, tuple(p for p, _ in files)).facts()


__all__ = ["MAP_LINES", "MAX_INCLUDE_DEPTH", "MAX_STITCHED_NODES", "Node", "facts_from_dump",
           "facts_from_files", "facts_from_text", "parse_files", "parse_time", "read",
           "split_dump", "stitch"]
