"""Apache httpd: config files + ``-M`` + ``-v`` -> RouteFacts for the Socket.IO path.

``read`` asks the host's own control script (``apache2ctl``/``apachectl``, which loads Debian's
envvars) three things in one round trip: ``-v`` (the version decides ``upgrade=websocket`` and the
tunnel timeout), ``-M`` (loaded modules decide ``<IfModule>`` and whether ws:// works) and
``-t -D DUMP_INCLUDES`` (every file Apache reads, in order). A second round trip reads those
files. Parsing is ours (Apache has no parser library worth the name): sections, quoting, line
continuations; ``Include`` is stitched from the dumped file list, ``<IfModule>``/``<IfVersion>``
are evaluated, ``<If>`` is skipped with a note (``apache_syntax``). The evaluation below is
``apache_analysis`` (routes: ``apache_route``; issue 12's facts: ``apache_more``).

What is evaluated, for a long-polling request and for a WebSocket request separately (they
can take different routes — the rewrite recipe sends only upgrades to ws://):

* the virtual host for the URL's port and host name (else the main server);
* mod_rewrite rules of that vhost first (conditions on ``%{HTTP:Upgrade}``/``Connection`` are
  evaluated for each request kind), then ``<Location>`` ProxyPass, then ``ProxyPass`` rules in
  order — the first match wins (measured: ``ProxyPass /`` above the Socket.IO rule shadows it);
* whether the WebSocket request is tunnelled: ``upgrade=websocket`` (>= 2.4.47) or a ws://
  target (``proxy_wstunnel``, or ``proxy_http`` itself from 2.4.47 on — measured on 2.4.71);
* timeouts: ``Timeout`` (default 60), ``ProxyTimeout`` (default ``Timeout``), a worker's
  ``timeout=``; the tunnel idles out after max(Timeout, worker timeout) from 2.4.53 on
  (measured: ``ProxyTimeout 5`` alone does not drop an idle socket);
* balancers: members, ``stickysession``, ``route=`` and the ``Header … Set-Cookie`` that sets
  the route cookie.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from wizard.diagnose.facts import (
    RouteFacts,
    RouteQuery,
)
from wizard.diagnose.readers.apache_analysis import _Analysis
from wizard.diagnose.readers.apache_syntax import (
    MAX_EXPANDED_NODES,
    ANode,
    Env,
    expand,
    module_name,
    parse_text,
    tokenize,
)
from wizard.diagnose.readers.base import (
    MAX_INCLUDE_DEPTH,
    ConfigReadError,
    ReadBudget,
    capped,
    cat_files,
    new_marker,
    sudo_run,
    uncap,
)

if TYPE_CHECKING:
    from wizard.remote import Remote

DEFAULT_SERVER_ROOTS = ("/etc/apache2", "/etc/httpd", "/usr/local/apache2")
_CTL = ("CTL=$(command -v apache2ctl || command -v apachectl || command -v httpd || "
        "command -v apache2)")
_PATH = "PATH=$PATH:/usr/sbin:/sbin:/usr/local/sbin:/usr/local/apache2/bin"


# --------------------------------------------------------------------------- reading


def read(remote: Remote, query: RouteQuery, config_path: str | None,
         budget: ReadBudget | None = None) -> RouteFacts:
    budget = budget if budget is not None else ReadBudget()
    marker, end = new_marker(), new_marker()
    conf = f" -f {shlex.quote(config_path)}" if config_path else ""
    # The three outputs are cut at 1 MiB: they list modules and file names, nothing more.
    # `timeout` stops an httpd that blocks opening a FIFO named by an Include.
    listing = capped(f"$T \"$CTL\"{conf} -v 2>&1; echo {marker}; $T \"$CTL\"{conf} -M 2>&1; "
                     f"echo {marker}; $T \"$CTL\"{conf} -t -D DUMP_INCLUDES 2>&1", 1 << 20, end)
    cmd = (f"{_PATH}; {_CTL}; [ -n \"$CTL\" ] || {{ echo 'apache: not found'; exit 127; }}; "
           "T=; command -v timeout >/dev/null && T='timeout -s KILL 10'; " + listing)
    result = sudo_run(remote, cmd, budget=budget)
    result = replace(result, stdout=uncap(result.stdout, end)[0])
    if result.exit_status == 127 and "apache: not found" in result.stdout:
        raise ConfigReadError(f"Apache httpd is not installed on {remote.name}",
                              "Check --proxy, or give the host that runs Apache.")
    parts = result.stdout.split(marker + "\n")
    if len(parts) < 3:
        raise ConfigReadError(f"Unexpected output from apachectl on {remote.name}",
                              "Run `apachectl -t -D DUMP_INCLUDES` on the host.",
                              detail=result.output[-2000:])
    version = parse_version(parts[0])
    modules = parse_modules(parts[1])
    listed = parse_dump_includes(parts[2])
    if not listed:
        main = config_path or "/etc/apache2/apache2.conf"
        listed = [main]
        note = "apachectl -t refused the config: " + " ".join(parts[2].strip().splitlines()[-2:])
    else:
        note = ""
    texts = cat_files(remote, listed, budget)
    if listed[0] not in texts:
        raise ConfigReadError(f"Cannot read {listed[0]} on {remote.name}",
                              "Check --config and the deploy user's sudo rights.",
                              detail=parts[2][-2000:])
    files = [(p, texts[p]) for p in listed if p in texts]
    source = f"apachectl{conf} -t -D DUMP_INCLUDES, -M, -v on {remote.name}"
    facts = facts_from_files(files, query, version=version, modules=modules, source=source,
                             config_path=config_path)
    return replace(facts, notes=(*facts.notes, note)) if note else facts


def parse_version(text: str) -> str | None:
    m = re.search(r"Apache/(\d+\.\d+\.\d+)", text)
    return m.group(1) if m else None


def parse_modules(text: str) -> frozenset[str] | None:
    found = re.findall(r"^[ \t]*(\w+_module)[ \t]+\((?:static|shared)\)", text, flags=re.M)
    return frozenset(found) if found else None


def parse_dump_includes(text: str) -> list[str]:
    # Linear: no `\s*` spanning lines, no lazy group before trailing blanks.
    return [m.rstrip() for m in
            re.findall(r"^[ \t]*\((?:\*|\d+)\)[ \t]+(\S[^\n]*)", text, flags=re.M)]


# --------------------------------------------------------------------------- semantics


def facts_from_text(text: str, query: RouteQuery, *, file: str = "httpd.conf",
                    version: str | None = None,
                    modules: Sequence[str] | None = None) -> RouteFacts:
    """One self-contained file (a full httpd.conf, or a site file with VirtualHost blocks)."""
    return facts_from_files([(file, text)], query, version=version,
                            modules=frozenset(modules) if modules is not None else None,
                            source=file)


def facts_from_files(files: Sequence[tuple[str, str]], query: RouteQuery, *,
                     version: str | None = None, modules: frozenset[str] | None = None,
                     source: str = "apache", config_path: str | None = None) -> RouteFacts:
    if not files:
        raise ConfigReadError("The Apache config is empty", "Check --config.")
    parsed = {path: parse_text(text, path) for path, text in files}
    main = files[0][0]
    roots = [*DEFAULT_SERVER_ROOTS]
    if config_path:
        roots.append(posixpath.dirname(config_path))
    roots.append(posixpath.dirname(main))
    vt = tuple(int(p) for p in version.split(".")) if version else None
    env = Env(parsed, roots, modules, vt)
    tree = expand(parsed[main], env)
    root = ANode("(main server)", (), main, 0, tree, "")
    return _Analysis(root, query, version, vt, modules, source, tuple(parsed), env.notes).facts()


__all__ = ["MAX_EXPANDED_NODES", "MAX_INCLUDE_DEPTH", "ANode", "expand", "facts_from_files",
           "facts_from_text", "module_name", "parse_dump_includes", "parse_modules",
           "parse_text", "parse_version", "read", "tokenize"]
