"""Issue #15 item 1 on a stock Debian layout (no --dest): the stock check's reads ride on the
detect command — no SFTP read and no `readlink` command after it.

Each case is one real deploy over real SSH (the rig's sshd started inside a Debian host's
namespaces: ``tests/stock_turns.py``) to a copy of Debian's /etc/<proxy> with its default
site answering port 80: nginx (sites-enabled/default, ``--disable-default-site``), Apache
(000-default.conf, ``--disable-default-site``) and Caddy (the stock Caddyfile: its include
line and its ``:80`` placeholder, ``--edit-main-config --disable-default-site``). Before
this, the stock check read the main config over SFTP (a channel, several round trips) and ran
a ``readlink`` command per default site after detect. Counts are printed (``-s``).
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.test_debian_layouts_real import (  # noqa: F401 - fixtures
    ROOT,
    DebianHost,
    debian_caddy,
    debian_host,
    debian_nginx,
)

pytestmark = [pytest.mark.needs_root, pytest.mark.slow, pytest.mark.timeout(180)]

# proxy: (fixture, the flags, the default site's link (None: a block in the main config)).
CASES = {
    "nginx": ("debian_nginx", ("--disable-default-site",), "/etc/nginx/sites-enabled/default"),
    "apache": ("debian_host", ("--disable-default-site",),
               "/etc/apache2/sites-enabled/000-default.conf"),
    "caddy": ("debian_caddy", ("--edit-main-config", "--disable-default-site"), None),
}


@pytest.mark.parametrize("proxy", list(CASES))
def test_a_stock_layout_deploy_reads_nothing_after_detect(
        proxy: str, request: pytest.FixtureRequest) -> None:
    fixture, flags, link = CASES[proxy]
    host: DebianHost = request.getfixturevalue(fixture)
    done = host.run(sys.executable, "-m", "tests.stock_turns", proxy, *flags,
                    env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=150)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.splitlines()[-1])
    commands: list[str] = got["commands"]
    print(f"\n{proxy}: channels={len(got['channels'])} execs={len(commands)} "
          f"sftp={got['subsystems']} opens={got['sftp_opens']} turns={got['turns']}")
    for c in commands:
        print("  exec:", c[:140].replace("\n", "; "))
    assert got["outcome"] == "deployed", got["message"]
    # The main config (and Caddy's default-site block) came with detect: no SFTP read.
    assert [o for o in got["sftp_opens"] if "r" in o[1]] == [], got["sftp_opens"]
    if proxy != "caddy":  # Caddy's edited Caddyfile is still uploaded over SFTP (a write)
        assert got["subsystems"] == [], got["subsystems"]
    # The default site's link target was read by the detect command itself, not by a command
    # of its own after it (the activation script checks the link again before removing it).
    if link is not None:
        assert f"readlink -- {link}" in commands[0]
        apart = f"[ -L {link} ] && readlink -- {link}"
        assert not [c for c in commands if apart in c], commands
