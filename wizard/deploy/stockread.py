"""The stock check's reads, riding on the detect script: one round trip instead of several.

Called by ``wizard.deploy.detect`` (``lines`` goes into the detect script, ``parse`` reads its
answer into ``HostFacts.stock``) for ``wizard.deploy.stock``, which decides from it whether a
stock host needs its main config edited or a default site disabled. Without this, a deploy to
a distro layout (no ``--dest``) read the main config over SFTP (a channel and several round
trips) and ran a ``readlink`` per default site.

What is read comes from the proxy's profile only (``site_includes`` for the destination's
directory, ``default_sites``), never from the host. Every answer is hostile and checked:
a file is framed and capped by ``wizard.deploy.readback`` (size, base64, sha256); a link target
is printed only when every byte is one ``ln -s`` may put back (the shell checks, and
``stock`` checks again with its ``_SAFE_TARGET``). A file or link with no valid answer is
simply missing here, and ``stock`` reads it the ordinary way (``Remote.read_file``, a
``readlink`` command) — as it does when the destination is not the one these were read for.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from wizard.deploy import readback
from wizard.model import DeploySpec, Layout
from wizard.proxies import profile

# Opens the section, after the version's lines (so no earlier output can stand in for it:
# the parser takes the last one).
SECTION = "@@sw stock"
_FILE = "@@sw stock file "
_LINK = "@@sw stock link "
_MAX_TARGET = 255  # as stock._SAFE_TARGET: a longer one is not put back by sockwizard


@dataclass(frozen=True)
class StockReads:
    """What the detect script read for the stock check, for the destination ``dest``."""

    dest: str = ""  # "": nothing was read (the check reads everything itself)
    files: Mapping[str, bytes | None] = field(default_factory=dict)  # None: no such file
    links: Mapping[str, str] = field(default_factory=dict)  # "": not a link we may put back

    def for_dest(self, dest: str) -> StockReads:
        """These reads if they were made for ``dest``, else none (the facts moved it)."""
        return self if self.dest == dest else StockReads()


def wanted(spec: DeploySpec, dest: str) -> tuple[list[str], list[str]]:
    """(files, links) the stock check may need for a site file at ``dest``: the main config
    that must load its directory, and the default sites (blocks: their file; links: their
    target) when the spec names no server (only then can one shadow it)."""
    if spec.layout is not Layout.SITE:
        return [], []
    prof = profile(spec.proxy)
    site_dir = posixpath.dirname(dest)
    files = [i.main_config for i in prof.site_includes if i.site_dir == site_dir]
    links: list[str] = []
    if spec.server_name is None:
        for site in prof.default_sites:
            (files if site.block is not None else links).append(site.path)
    return list(dict.fromkeys(files)), links


def lines(spec: DeploySpec, dest: str) -> list[str]:
    """Shell for the detect script (run as the login user, read-only) printing the section.
    A file in a directory this user cannot search is left out (it could look absent)."""
    files, links = wanted(spec, dest)
    if not files and not links:
        return []
    out = [f"echo; echo {shlex.quote(SECTION)}"]
    for path in files:
        parent = shlex.quote(posixpath.dirname(path) or "/")
        out.append(f"if [ -x {parent} ]; then echo {shlex.quote(_FILE + path)}")
        out += readback.lines(path)
        out.append("fi")
    for path in links:
        q = shlex.quote(path)
        out.append(f"t=; if [ -L {q} ]; then t=$(readlink -- {q}) || t=; fi; "
                   "case \"$t\" in *[!A-Za-z0-9._/+@-]*) t= ;; esac; "
                   f"printf '%s %s\\n' {shlex.quote(_LINK + path)} \"$t\"")
    return out


def parse(stdout: str, dest: str) -> StockReads:
    """The section in the detect script's ``stdout`` (the part before its ``also``), for
    ``dest``; whatever does not check out is left out."""
    section = stdout.rpartition(f"\n{SECTION}\n")
    if not section[1]:
        return StockReads(dest)
    files: dict[str, bytes | None] = {}
    links: dict[str, str] = {}
    chunks = re.split(r"^(?=@@sw stock )", section[2], flags=re.M)
    for chunk in chunks:
        head, _, body = chunk.partition("\n")
        if head.startswith(_FILE):
            got = readback.parse(body)
            path = head[len(_FILE):]
            if got is not None and path not in files:
                files[path] = got.data
        elif head.startswith(_LINK):
            path, _, target = head[len(_LINK):].partition(" ")
            if path not in links:
                links[path] = target if len(target) <= _MAX_TARGET else ""
    return StockReads(dest, files, links)
