"""The node proxy's http-proxy, carried by sockwizard: nothing on the host needs npm.

``wizard/vendor/node/`` holds http-proxy and its three dependencies at the versions
tests/node/package-lock.json pins, with their licences (``scripts/vendor_node.py`` copies them;
``MANIFEST.json`` lists each package's version, licence, lockfile integrity and files). It ships
in the wheel as package data. Called by ``wizard.deploy.detect.resolve``: a node deploy uploads
these files into ``node_modules/`` beside proxy.js (Debian's ``nodejs`` has no npm, and a host
may have no registry access).
"""

from __future__ import annotations

import functools
import json
from importlib.resources import files


@functools.cache
def manifest() -> dict[str, dict[str, object]]:
    """Package name -> {version, license, integrity, files}."""
    data = json.loads((files("wizard") / "vendor" / "node" / "MANIFEST.json").read_text())
    assert isinstance(data, dict)
    return data


@functools.cache
def node_modules() -> tuple[tuple[str, bytes], ...]:
    """Every vendored file as (its path under node_modules/, its bytes), in a stable order."""
    root = files("wizard") / "vendor" / "node"
    out = []
    for name, meta in sorted(manifest().items()):
        listed = meta.get("files")
        assert isinstance(listed, list)
        for rel in listed:
            out.append((f"{name}/{rel}", (root / name / str(rel)).read_bytes()))
    return tuple(out)


def pinned(name: str = "http-proxy") -> str:
    """``name@version`` as vendored (for the words: what the host gets)."""
    return f"{name}@{manifest()[name]['version']}"
