"""The node proxy's http-proxy, carried by sockwizard: nothing on the host needs npm.

``wizard/vendor/node/`` holds http-proxy and its three dependencies at the versions
tests/node/package-lock.json pins, with their licences (``scripts/vendor_node.py`` copies them;
``MANIFEST.json`` lists each package's version, licence, lockfile integrity and files). It ships
in the wheel as package data. Called by ``wizard.deploy.detect.resolve``: a node deploy uploads
these files into ``node_modules/`` beside proxy.js (Debian's ``nodejs`` has no npm, and a host
may have no registry access). Beside them go ``package.json`` (naming the pinned version) and,
on systemd hosts, the unit that runs proxy.js (``node_unit``).
"""

from __future__ import annotations

import functools
import json
import posixpath
import re
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


def node_package_json() -> bytes:
    """package.json beside proxy.js: names the pinned http-proxy that node_modules/ holds."""
    version = manifest()["http-proxy"]["version"]
    return (b'{\n  "name": "sockwizard-proxy",\n  "private": true,\n'
            b'  "description": "Socket.IO reverse proxy deployed by sockwizard",\n'
            b'  "dependencies": {\n    "http-proxy": "' + str(version).encode() + b'"\n  }\n}\n')


# A node path from the host goes into the unit only when it is a plain absolute path.
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9._/+-]{1,255}")


def node_unit(dest: str, node: str | None = None) -> str:
    """The systemd unit that runs proxy.js: as a throwaway unprivileged user (DynamicUser)
    that may still bind ports below 1024 and nothing more, restarted when it fails, enabled
    (``WantedBy=multi-user.target``) so it comes back after a reboot."""
    directory = posixpath.dirname(dest)
    exe = node if node and _PLAIN_PATH.fullmatch(node) else "/usr/bin/env node"
    return f"""# Written by sockwizard: runs the Socket.IO reverse proxy (node http-proxy).
[Unit]
Description=Socket.IO reverse proxy (node http-proxy, deployed by sockwizard)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
WorkingDirectory={directory}
ExecStart={exe} {dest}
Restart=on-failure
RestartSec=1
# A user made for this service alone, with no privilege but binding ports below 1024 (80/443).
DynamicUser=yes
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes

[Install]
WantedBy=multi-user.target
"""
