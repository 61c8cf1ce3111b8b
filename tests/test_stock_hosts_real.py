"""Stock Debian hosts without hand edits (issue #13, item 1): --edit-main-config and
--disable-default-site on copies of Debian's /etc/nginx, /etc/apache2, /etc/caddy and
/etc/haproxy (+ /etc/default/haproxy), with Debian's own tools, in private mount and network
namespaces (the fixtures of tests/test_debian_layouts_real.py and
tests/test_debian_haproxy_real.py; no systemd: HAProxy's unit is a stand-in `systemctl`).

For each proxy, on a main config that does not load the site directory (Debian's own
Caddyfile and /etc/default/haproxy; an nginx.conf / apache2.conf without its conf.d /
sites-enabled include line) and with the distro's default site answering port 80 (HAProxy
has none; its edit needs a restart, not a reload, both ways):
- without the flags: refused before any change (exit 2, naming both flags, the diff shown),
  every file under /etc/<proxy> byte-identical, no backup made;
- --dry-run lists the extra changes (the diff and the exact commands);
- with the flags and a dead backend: the probe fails and the main config and the default
  site are back byte for byte (the link with its old target);
- with the flags: deployed and probed; a second deploy changes nothing;
- `sockwizard rollback` undoes the main config edit and re-enables the default site (its
  --dry-run shows that first; `history` records the rollback).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.test_debian_haproxy_real import debian_haproxy_unit  # noqa: F401 - fixture
from tests.test_debian_layouts_real import (  # noqa: F401 - fixtures
    DebianHost,
    debian_caddy,
    debian_host,
    debian_nginx,
)

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]

# proxy: (fixture, main config, the include line removed first (None: stock already lacks it),
#         the default site's link ("" : a block in the main config, None: no default site),
#         the site file). The main config is under /etc/<proxy> unless it starts with "/".
CASES = {
    "nginx": ("debian_nginx", "nginx.conf", r"(?m)^\s*include /etc/nginx/conf\.d/\*\.conf;\n",
              "sites-enabled/default", "conf.d/sockwizard.conf"),
    "apache": ("debian_host", "apache2.conf", r"(?m)^IncludeOptional sites-enabled/\*\.conf\n",
               "sites-enabled/000-default.conf", "sites-available/sockwizard.conf"),
    "caddy": ("debian_caddy", "Caddyfile", None, "", "sites/sockwizard.caddy"),
    "haproxy": ("debian_haproxy_unit", "/etc/default/haproxy", None, None,
                "conf.d/sockwizard.cfg"),
}
# Main configs outside /etc/<proxy>: their copy in the test's temp dir.
ELSEWHERE = {"/etc/default/haproxy": "etc-default/haproxy"}


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes | str]:
    """Every file under ``root``: its bytes, or a link's target (links are not followed)."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if rel.startswith(skip):
                continue
            out[rel] = ("-> " + os.readlink(path)) if path.is_symlink() else path.read_bytes()
    return out


@pytest.mark.parametrize("proxy", list(CASES))
def test_stock_host_deploys_with_the_flags_and_is_put_back_exactly(
        proxy: str, request: pytest.FixtureRequest) -> None:
    fixture, main_name, drop, link_name, site_name = CASES[proxy]
    host: DebianHost = request.getfixturevalue(fixture)
    main_path = main_name if main_name.startswith("/") else f"/etc/{host.etc_name}/{main_name}"
    main = (host.tmp / ELSEWHERE[main_path]) if main_path in ELSEWHERE else \
        host.etc / main_name
    site = host.etc / site_name
    if drop is not None:  # a main config that does not load the site directory
        text, n = re.subn(drop, "", main.read_text())
        assert n == 1, f"Debian's {main_name} changed: no include line to remove"
        main.write_text(text)
    assert not link_name or (host.etc / link_name).is_symlink()

    def state() -> dict[str, bytes | str]:  # /etc/<proxy>, and the main config if elsewhere
        return {**snapshot(host.etc), main_name: main.read_bytes()}

    before = state()
    backups = host.tmp / "backups"
    deploy = ("deploy", "--proxy", proxy, "--host", "local", "--settle-timeout", "4")
    ok_backend = ("--backend", "127.0.0.1:3000")
    flags = ("--edit-main-config", "--disable-default-site")

    # 1. Without the flags: stopped before any change, naming the flags and the change.
    refused = host.sockwizard(*deploy, *ok_backend)
    assert refused.returncode == 2, refused.stderr
    assert "--edit-main-config" in refused.stderr
    assert f"{main_path} does not load" in refused.stderr
    if link_name is not None:
        assert "--disable-default-site" in refused.stderr
        assert "answers port 80 first" in refused.stderr
    assert "Nothing was changed" in refused.stderr
    assert state() == before
    assert not (backups / "sockwizard" / "index.jsonl").exists()

    # 2. The dry run lists the extra changes: the main config's diff, the link or block.
    dry = host.sockwizard(*deploy, *ok_backend, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"+++ {main_path} (sockwizard)" in dry.stdout
    if link_name:
        assert f"-/etc/{host.etc_name}/{link_name} -> " in dry.stdout
    elif link_name is not None:
        assert "+# :80 {" in dry.stdout
    assert "A real deploy needs --edit-main-config" in dry.stderr
    assert state() == before

    # 3. A dead backend: the probe fails, and everything is put back byte for byte.
    dead = host.sockwizard(*deploy, "--backend", "127.0.0.1:3999", *flags)
    assert dead.returncode == 6, dead.stderr
    assert state() == before, "the main config / default site were not restored"

    # 4. With the flags: deployed and probed through the proxy on port 80.
    done = host.sockwizard(*deploy, *ok_backend, *flags)
    assert done.returncode == 0, done.stderr
    assert "Socket.IO connected on websocket" in done.stderr
    assert site.exists() and main.read_bytes() != before[main_name]
    assert not link_name or not os.path.lexists(host.etc / link_name)
    if proxy == "haproxy":  # restarted, not reloaded: the master reads the new arguments
        assert "systemctl restart haproxy" in done.stderr and "only at start" in done.stderr
        assert "/etc/haproxy/conf.d" in master_argv(host)
    probe = host.sockwizard("probe", "http://127.0.0.1/")
    assert probe.returncode == 0, probe.stdout + probe.stderr
    again = host.sockwizard(*deploy, *ok_backend, *flags)
    assert again.returncode == 0 and "No change" in again.stderr, again.stderr

    # 5. rollback takes the site away, restores the main config and the default site; its
    # dry run shows that first and changes nothing; the history records the rollback.
    deployed = state()
    plan = host.sockwizard("rollback", "--host", "local", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert re.search(rf"{main_path}[^\n]* would be put back as before",
                     plan.stderr), plan.stderr
    assert f"--- {main_path}\n" in plan.stdout
    assert state() == deployed
    back = host.sockwizard("rollback", "--host", "local")
    assert back.returncode == 0, back.stderr
    listed = json.loads(host.sockwizard("history", "--host", "local", "--json").stdout)
    last = listed["entries"][-1]
    assert (last["kind"], last["what"]) == ("rollback", "rolled back"), last
    assert main_path in [c["path"] for c in last["companions"]]
    # a2enmod's modules stay enabled after a deploy that succeeded (as before this issue).
    after = {**snapshot(host.etc, skip=("mods-enabled",)), main_name: main.read_bytes()}
    assert after == {k: v for k, v in before.items() if not k.startswith("mods-enabled")}
    if proxy == "haproxy":  # restarted again with the stock arguments
        assert "/etc/haproxy/conf.d" not in master_argv(host)


def master_argv(host: DebianHost) -> list[str]:
    """The HAProxy master's arguments (its pid file is in the namespace's own /run)."""
    pid = host.run("cat", "/run/haproxy.pid").stdout.split()[0]
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
