"""A config without server_name loses to a site that already catches every request on the port
(Debian's sites-enabled/default, 000-default.conf): detect finds such sites; the distro's own
default sites are the deploy's to disable (--disable-default-site, wizard.deploy.stock:
tests/test_deploy_stock.py), any other one is named in a warning before the probe that would
fail."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from wizard.deploy.detect import Overrides, _default_site_lines, parse_facts, resolve
from wizard.model import DeploySpec, ProxyKind

BINARIES = "bin nginx /usr/sbin/nginx\nbin apache2 /usr/sbin/apache2\nbin a2ensite /usr/sbin/a2ensite\n"


def facts_with(default_site: str) -> str:
    return f"uid=0\nos=debian \n{BINARIES}dest_dir=1\ndefault_site {default_site}\n@@version\n"


@pytest.mark.parametrize(("kind", "site", "fix"), [
    (ProxyKind.NGINX, "/etc/nginx/sites-enabled/default", "rm /etc/nginx/sites-enabled/default"),
    (ProxyKind.APACHE, "/etc/apache2/sites-enabled/000-default.conf", "a2dissite 000-default"),
])
def test_default_site_is_found_and_another_catch_all_gives_a_warning(
        kind: ProxyKind, site: str, fix: str) -> None:
    facts = parse_facts(facts_with(site))
    assert facts.default_sites == (site,)
    target = resolve(DeploySpec(proxy=kind), facts, Overrides())
    assert target.shadowing_sites == (site,)  # asked about by wizard.deploy.stock
    assert not any("--server-name" in note for note in target.notes)
    other = site.rsplit("/", 1)[0] + "/catch-all.conf"
    target = resolve(DeploySpec(proxy=kind), parse_facts(facts_with(other)), Overrides())
    assert any(other in note and "--server-name" in note and fix in note
               for note in target.notes)


def test_no_warning_for_another_config_tree() -> None:
    """--dest elsewhere (a container, a test rig): the host's /etc sites are not in play."""
    facts = parse_facts(facts_with("/etc/nginx/sites-enabled/default"))
    target = resolve(DeploySpec(), facts, Overrides(dest="/srv/rig/conf.d/sockwizard.conf"))
    assert not any("--server-name" in note for note in target.notes)


def test_a_server_name_needs_no_check() -> None:
    spec = DeploySpec(server_name="chat.example.com")
    assert _default_site_lines(spec) == []
    target = resolve(spec, parse_facts(facts_with("/etc/nginx/sites-enabled/default")), Overrides())
    assert not any("--server-name" in note for note in target.notes)


def test_the_nginx_check_finds_default_server_on_the_same_port_only(tmp_path: Path) -> None:
    """The real grep of the detect script, on a tree shaped like Debian's /etc/nginx."""
    enabled = tmp_path / "sites-enabled"
    enabled.mkdir()
    (enabled / "default").write_text("server {\n\tlisten 80 default_server;\n"
                                     "\tlisten [::]:80 default_server;\n}\n")
    (enabled / "other").write_text("server {\n\tlisten 8080;\n}\n")
    for port, expected in ((80, [f"default_site {enabled / 'default'}"]), (8080, [])):
        (line,) = _default_site_lines(replace(DeploySpec(), listen_port=port))
        line = line.replace("/etc/nginx/sites-enabled /etc/nginx/conf.d", str(enabled))
        out = subprocess.run(["sh", "-c", line], capture_output=True, text=True).stdout
        assert out.splitlines() == expected
