"""A config id the proxy sends back, so the deploy knows when the *new* config is serving.

Called by ``wizard.deploy`` (and through it the sandbox) right after ``render``. Measured here:
for up to ~0.2 s after ``nginx -s reload`` returns, old workers still answer new connections
with the *old* config, interleaved with the new ones. A probe that happens to reach an old worker
would pass a broken deploy (a dead backend) and skip the rollback. So every deployed config
carries a response header ``X-Sockwizard-Config: <id>`` on every response of its site (errors
included), and the deploy polls until it sees its own id before probing: no fixed sleep, and no
false pass.

The id is a hash of the config text without the header, so the same spec always gives the same
bytes (a second deploy is a no-op) and a different config a different id. The header only says
"this config came from sockwizard, version <hash>"; it names no path, backend or version.

The insertion is per proxy and anchored on the block openers our templates emit (``server {``,
``<VirtualHost …>``, a Caddy site address, node's ``handleRequest``). If the templates ever emit
the header themselves, ``stamp`` leaves the text alone and reads the id back.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from wizard.model import ProxyKind

HEADER = "X-Sockwizard-Config"
_ID_RE = re.compile(re.escape(HEADER) + r"""["']?[ ,:]*["']?([0-9a-f]{12})""")


@dataclass(frozen=True)
class Stamped:
    """The text to deploy and the id the proxy will answer with (None: no anchor found)."""

    text: str
    config_id: str | None


def config_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def existing_id(text: str) -> str | None:
    """The id already in a config (a previous sockwizard deploy), or None."""
    m = _ID_RE.search(text)
    return m.group(1) if m else None


def stamp(kind: ProxyKind, text: str) -> Stamped:
    """``text`` with the marker header added after each site block opener."""
    found = existing_id(text)
    if found is not None:
        return Stamped(text, found)
    cid = config_id(text)
    out: list[str] = []
    inserted = 0
    for line in text.splitlines(keepends=True):
        out.append(line)
        extra = _marker_after(kind, line, cid)
        if extra is not None:
            out.append(extra)
            inserted += 1
    if not inserted:
        return Stamped(text, None)
    return Stamped("".join(out), cid)


_NGINX_SERVER = re.compile(r"^(\s*)server\s*\{\s*$")
_APACHE_VHOST = re.compile(r"^(\s*)<VirtualHost\b[^>]*>\s*$", re.IGNORECASE)
# A Caddy site block: an address at the start of a line (not the global `{` nor a `(snippet)`).
_CADDY_SITE = re.compile(r"^(?![({#\s])\S[^{]*\{\s*$")
_NODE_HANDLER = re.compile(r"^(\s*)function handleRequest\(req, res\) \{\s*$")


def _marker_after(kind: ProxyKind, line: str, cid: str) -> str | None:
    if kind is ProxyKind.NGINX:
        m = _NGINX_SERVER.match(line)
        # `always`: the 502 of a dead backend carries it too (that is the answer we wait for).
        return f'{m.group(1)}    add_header {HEADER} "{cid}" always;\n' if m else None
    if kind is ProxyKind.APACHE:
        m = _APACHE_VHOST.match(line)
        return f'{m.group(1)}    Header always set {HEADER} "{cid}"\n' if m else None
    if kind is ProxyKind.CADDY:
        return f'\theader {HEADER} "{cid}"\n' if _CADDY_SITE.match(line) else None
    m = _NODE_HANDLER.match(line)
    return f'{m.group(1)}  res.setHeader("{HEADER}", "{cid}");\n' if m else None
