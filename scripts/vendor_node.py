#!/usr/bin/env python3
"""Copy http-proxy and its dependencies into wizard/vendor/node/ (shipped in the wheel).

sockwizard uploads them with a node proxy.js, so a host needs neither npm nor a registry
(issue #13, item 2). The versions are the ones tests/node/package-lock.json pins (installed
and integrity-checked by `npm ci` in scripts/setup): run this after changing that pin, then
commit wizard/vendor/node/. Only what runs is copied — package.json, the licence, the
JavaScript — and MANIFEST.json records each package's version, licence and lockfile
integrity (tests/test_node_vendor.py keeps them in step with the lockfile).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "tests" / "node" / "package-lock.json"
SOURCE = ROOT / "tests" / "node" / "node_modules"
TARGET = ROOT / "wizard" / "vendor" / "node"
# The packages and the files of each that run (and the licence each ships).
PACKAGES = {
    "http-proxy": ["package.json", "LICENSE", "index.js", "lib/http-proxy.js",
                   "lib/http-proxy/common.js", "lib/http-proxy/index.js",
                   "lib/http-proxy/passes/web-incoming.js",
                   "lib/http-proxy/passes/web-outgoing.js",
                   "lib/http-proxy/passes/ws-incoming.js"],
    "eventemitter3": ["package.json", "LICENSE", "index.js"],
    "requires-port": ["package.json", "LICENSE", "index.js"],
    "follow-redirects": ["package.json", "LICENSE", "index.js", "debug.js", "http.js",
                         "https.js"],
}


def main() -> int:
    lock = json.loads(LOCK.read_text())["packages"]
    if TARGET.exists():
        shutil.rmtree(TARGET)
    manifest = {}
    for name, files in PACKAGES.items():
        pinned = lock[f"node_modules/{name}"]
        have = json.loads((SOURCE / name / "package.json").read_text())["version"]
        if have != pinned["version"]:
            print(f"{name}: node_modules has {have}, the lockfile pins {pinned['version']}: "
                  "run `npm ci` in tests/node first", file=sys.stderr)
            return 1
        for rel in files:
            out = TARGET / name / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SOURCE / name / rel, out)
        manifest[name] = {"version": pinned["version"], "license": pinned.get("license"),
                          "integrity": pinned["integrity"], "files": files}
    (TARGET / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print("vendored " + ", ".join(f"{n}@{m['version']}" for n, m in manifest.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
