"""Detection of Debian's HAProxy layout (wizard.deploy.detect with the haproxy profile).

HAProxy 2.6 has no include: the site layout is /etc/haproxy/conf.d/sockwizard.cfg, loaded only
when /etc/default/haproxy passes a second `-f /etc/haproxy/conf.d` — the main config edit of
``--edit-main-config`` (wizard.deploy.stock), which restarts HAProxy once. The pure resolve()
and the edit are checked from hand-written input; the detect script and the stock step run on
this machine, whose haproxy package (scripts/setup installs it) ships the stock
/etc/default/haproxy without it.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from wizard.deploy.detect import Overrides, detect, detect_script, parse_facts, resolve
from wizard.deploy.stock import add_include, changes
from wizard.errors import BadInput
from wizard.model import Backend, DeploySpec, Layout, ProxyKind
from wizard.proxies import profile
from wizard.remote import LocalRemote
from wizard.remote.memory import InMemoryRemote

SPEC = DeploySpec(proxy=ProxyKind.HAPROXY, backends=(Backend("127.0.0.1", 3000),),
                  server_name="chat.example.com")
DEBIAN = ("uid=0\nos=debian\nbin haproxy /usr/sbin/haproxy\nbin systemctl /usr/bin/systemctl\n"
          "systemd=1\ndir /etc/haproxy\ndest_dir=1\n@@version\nHAProxy version 2.6.12-1\n")


def test_debian_site_layout_goes_to_the_conf_dir() -> None:
    target = resolve(SPEC, parse_facts(DEBIAN), Overrides())
    assert target.dest == "/etc/haproxy/conf.d/sockwizard.cfg"
    assert target.validate_cmd == ("haproxy -c -q -f /etc/haproxy/haproxy.cfg "
                                   "-f /etc/haproxy/conf.d")
    assert target.reload_cmd == "systemctl reload-or-restart haproxy"
    assert target.facts.version == "2.6.12"


STOCK_DEFAULT = ('# Defaults file for HAProxy\n#CONFIG="/etc/haproxy/haproxy.cfg"\n\n'
                 '# Add extra flags here, see haproxy(1) for a few options\n'
                 '#EXTRAOPTS="-de -m 16"\n')
LINE = 'EXTRAOPTS="-S /run/haproxy-master.sock -f /etc/haproxy/conf.d"'


def test_the_defaults_file_gets_a_second_f_added_or_extended_or_is_refused() -> None:
    inc = profile(ProxyKind.HAPROXY).site_includes[0]
    assert (inc.site_dir, inc.main_config) == ("/etc/haproxy/conf.d", "/etc/default/haproxy")
    assert inc.restart_cmd == "systemctl restart haproxy"  # a reload keeps the old argv
    assert not re.search(inc.present, STOCK_DEFAULT)
    added = add_include(STOCK_DEFAULT, inc)
    assert added == STOCK_DEFAULT + LINE + "\n"  # the commented-out line stays as it was
    assert re.search(inc.present, added)  # a second deploy needs no edit
    # An active EXTRAOPTS: a second one would replace it, so -f goes onto it.
    own = STOCK_DEFAULT + 'EXTRAOPTS="-de -m 16"\n'
    assert add_include(own, inc) == STOCK_DEFAULT + \
        'EXTRAOPTS="-de -m 16 -f /etc/haproxy/conf.d"\n'
    # Forms sockwizard does not edit: unquoted, a variable, two lines.
    for text in ("EXTRAOPTS=-de\n", 'EXTRAOPTS="$X -de"\n', 'EXTRAOPTS=""\nEXTRAOPTS="-de"\n'):
        assert add_include(text, inc) is None, text


def test_an_uneditable_defaults_file_is_refused_naming_the_edit_and_the_restart() -> None:
    target = resolve(SPEC, parse_facts(DEBIAN), Overrides())
    remote = InMemoryRemote(files={"/etc/default/haproxy": b"EXTRAOPTS=-de\n"})
    with pytest.raises(BadInput) as err:
        changes(remote, SPEC, target, lambda command: "")
    assert "does not load /etc/haproxy/conf.d/" in err.value.title
    assert "-f /etc/haproxy/conf.d" in err.value.hint
    assert "systemctl restart haproxy" in err.value.hint and "--layout full" in err.value.hint


def test_the_edit_makes_the_deploy_restart_unless_the_reload_is_given() -> None:
    target = resolve(SPEC, parse_facts(DEBIAN), Overrides())
    stock = InMemoryRemote(files={"/etc/default/haproxy": STOCK_DEFAULT.encode()})
    [edit] = changes(stock, SPEC, target, lambda command: "")
    assert edit.flag == "--edit-main-config" and edit.new == (STOCK_DEFAULT + LINE + "\n").encode()
    assert edit.restart_cmd == "systemctl restart haproxy"
    own = resolve(SPEC, parse_facts(DEBIAN), Overrides(reload_cmd="my-restart"))
    assert changes(stock, SPEC, own, lambda command: "")[0].restart_cmd == "my-restart"
    loaded = InMemoryRemote(files={"/etc/default/haproxy": (LINE + "\n").encode()})
    assert changes(loaded, SPEC, target, lambda command: "") == []
    # RHEL's unit passes conf.d itself and there is no /etc/default/haproxy: nothing to do.
    assert changes(InMemoryRemote(), SPEC, target, lambda command: "") == []


def test_full_layout_replaces_haproxy_cfg_and_needs_no_conf_dir() -> None:
    target = resolve(replace(SPEC, layout=Layout.FULL), parse_facts(DEBIAN), Overrides())
    assert target.dest == "/etc/haproxy/haproxy.cfg"
    assert target.validate_cmd == "haproxy -c -q -f /etc/haproxy/haproxy.cfg"


def test_without_systemd_a_reload_command_is_required() -> None:
    facts = parse_facts(DEBIAN.replace("systemd=1\n", ""))
    with pytest.raises(BadInput) as err:
        resolve(SPEC, facts, Overrides())
    assert "HAProxy" in err.value.title and "--reload-cmd" in err.value.hint
    ok = resolve(SPEC, facts, Overrides(reload_cmd="kill -USR2 $(cat /run/haproxy.pid)"))
    assert ok.reload_cmd.startswith("kill -USR2")


def test_other_frontends_on_the_port_are_reported_as_shadowing() -> None:
    spec = replace(SPEC, server_name=None)
    lines = "\n".join(detect_script(spec, "/etc/haproxy/conf.d/sockwizard.cfg").splitlines())
    assert "/etc/haproxy/haproxy.cfg" in lines and "default_site" in lines
    facts = parse_facts(DEBIAN.replace("dest_dir=1", "dest_dir=1\n"
                                       "default_site /etc/haproxy/haproxy.cfg"))
    target = resolve(spec, facts, Overrides())
    assert target.shadowing_sites == ("/etc/haproxy/haproxy.cfg",)


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_the_detect_script_reads_this_machines_stock_debian_files() -> None:
    """Debian's package: /etc/default/haproxy loads no conf dir, so the deploy needs the
    edit (refused without --edit-main-config), which adds the one EXTRAOPTS line."""
    default = Path("/etc/default/haproxy").read_text()
    if "conf.d" in default:
        pytest.skip("this machine's /etc/default/haproxy already loads a conf dir")
    remote = LocalRemote()
    target = detect(remote, SPEC, Overrides(reload_cmd="true"), sudo=False)  # no systemd here
    assert target.dest == "/etc/haproxy/conf.d/sockwizard.cfg"
    [edit] = changes(remote, SPEC, target, lambda command: "")
    assert edit.old == default.encode() and edit.new == (default + LINE + "\n").encode()
    assert "does not load /etc/haproxy/conf.d/" in edit.title
