"""A config id the proxy sends back, so the deploy knows when the *new* config is serving.

Called by the deploy's detect step (``wizard.deploy.steps``, and through it the sandbox)
right after ``render``. Measured here:
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
``<VirtualHost …>``, a Caddy site address, node's ``handleRequest``): each proxy's profile
holds its anchor and its header line (``marker_anchor`` / ``marker_line`` in
``wizard.proxies``). If the templates ever emit
the header themselves, ``stamp`` leaves the text alone and reads the id back.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from wizard.model import ProxyKind
from wizard.proxies import profile

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
    prof = profile(kind)
    anchor = re.compile(prof.marker_anchor)
    out: list[str] = []
    inserted = 0
    for line in text.splitlines(keepends=True):
        out.append(line)
        m = anchor.match(line)
        if m is not None:
            indent = m.groupdict().get("indent") or ""
            out.append(prof.marker_line.format(indent=indent, header=HEADER, cid=cid))
            inserted += 1
    if not inserted:
        return Stamped(text, None)
    return Stamped("".join(out), cid)
