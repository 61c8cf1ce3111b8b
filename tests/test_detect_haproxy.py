"""Detection of Debian's HAProxy layout (wizard.deploy.detect with the haproxy profile).

HAProxy 2.6 has no include: the site layout is /etc/haproxy/conf.d/sockwizard.cfg, loaded only
when /etc/default/haproxy passes a second `-f /etc/haproxy/conf.d`. The pure resolve() is
checked from hand-written detect output; the detect script itself runs on this machine, whose
haproxy package (scripts/setup installs it) ships the stock /etc/default/haproxy without it.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from wizard.deploy.detect import Overrides, detect, detect_script, parse_facts, resolve
from wizard.errors import BadInput
from wizard.model import Backend, DeploySpec, Layout, ProxyKind
from wizard.remote import LocalRemote

SPEC = DeploySpec(proxy=ProxyKind.HAPROXY, backends=(Backend("127.0.0.1", 3000),),
                  server_name="chat.example.com")
DEBIAN = ("uid=0\nos=debian\nbin haproxy /usr/sbin/haproxy\nbin systemctl /usr/bin/systemctl\n"
          "systemd=1\ndir /etc/haproxy\ndest_dir=1\n@@version\nHAProxy version 2.6.12-1\n")


def test_debian_site_layout_needs_the_conf_dir_loaded() -> None:
    with pytest.raises(BadInput) as err:
        resolve(SPEC, parse_facts(DEBIAN), Overrides())
    assert "/etc/default/haproxy" in err.value.hint and "-f /etc/haproxy/conf.d" in err.value.hint
    target = resolve(SPEC, parse_facts(DEBIAN.replace("dest_dir=1", "dest_dir=1\nsite_included=1")),
                     Overrides())
    assert target.dest == "/etc/haproxy/conf.d/sockwizard.cfg"
    assert target.validate_cmd == ("haproxy -c -q -f /etc/haproxy/haproxy.cfg "
                                   "-f /etc/haproxy/conf.d")
    assert target.reload_cmd == "systemctl reload haproxy"
    assert target.facts.version == "2.6.12"


def test_full_layout_replaces_haproxy_cfg_and_needs_no_conf_dir() -> None:
    target = resolve(replace(SPEC, layout=Layout.FULL), parse_facts(DEBIAN), Overrides())
    assert target.dest == "/etc/haproxy/haproxy.cfg"
    assert target.validate_cmd == "haproxy -c -q -f /etc/haproxy/haproxy.cfg"


def test_without_systemd_a_reload_command_is_required() -> None:
    facts = parse_facts(DEBIAN.replace("systemd=1\n", "site_included=1\n"))
    with pytest.raises(BadInput) as err:
        resolve(SPEC, facts, Overrides())
    assert "HAProxy" in err.value.title and "--reload-cmd" in err.value.hint
    ok = resolve(SPEC, facts, Overrides(reload_cmd="kill -USR2 $(cat /run/haproxy.pid)"))
    assert ok.reload_cmd.startswith("kill -USR2")


def test_other_frontends_on_the_port_are_reported_as_shadowing() -> None:
    spec = replace(SPEC, server_name=None)
    lines = "\n".join(detect_script(spec, "/etc/haproxy/conf.d/sockwizard.cfg").splitlines())
    assert "/etc/haproxy/haproxy.cfg" in lines and "default_site" in lines
    facts = parse_facts(DEBIAN.replace("dest_dir=1", "dest_dir=1\nsite_included=1\n"
                                       "default_site /etc/haproxy/haproxy.cfg"))
    target = resolve(spec, facts, Overrides())
    assert target.shadowing_sites == ("/etc/haproxy/haproxy.cfg",)


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_the_detect_script_reads_this_machines_stock_debian_files() -> None:
    """Debian's package: /etc/haproxy exists, /etc/default/haproxy loads no conf dir."""
    default = Path("/etc/default/haproxy").read_text()
    if "conf.d" in default:
        pytest.skip("this machine's /etc/default/haproxy already loads a conf dir")
    with pytest.raises(BadInput) as err:
        detect(LocalRemote(), SPEC, Overrides(reload_cmd="true"), sudo=False)  # no systemd here
    assert "does not load /etc/haproxy/conf.d/" in err.value.title
