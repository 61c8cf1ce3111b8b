"""A proxy that watches its config (Traefik's file provider) never sees a refused file.

``ProxyProfile.validate_before_rename``: the activation script runs the checker on the uploaded
temp file (outside every watched directory) before the rename, and a refused file never reaches
the destination. Fast and on this machine (``LocalRemote``, a real /bin/sh running the script):
the checker itself records what the destination held while it ran. The real Traefik watching
its directory during a refused deploy over SSH is in tests/test_deploy_ssh.py
(``test_traefik_never_watches_a_refused_file``). Also here: Traefik's ``site_include`` shell
condition, run for real against static configurations in tmp_path.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tests.test_deploy_unit import FakeChecks, Host, new_text
from wizard.deploy import Outcome, apply
from wizard.deploy.detect import Overrides, parse_facts, resolve
from wizard.errors import BadInput, ExitCode
from wizard.model import Backend, DeploySpec, ProxyKind
from wizard.proxies import profile
from wizard.remote import LocalRemote

pytestmark = pytest.mark.timeout(60)

OLD = b"# the dynamic file that was there before\nhttp: {}\n"
TRAEFIK = DeploySpec(proxy=ProxyKind.TRAEFIK, backends=(Backend("127.0.0.1", 3000),),
                     listen_address="127.0.0.1", listen_port=8080)


@pytest.fixture
def watched(tmp_path: Path) -> Host:
    dynamic = tmp_path / "etc" / "traefik" / "dynamic"
    dynamic.mkdir(parents=True)
    dest = dynamic / "sockwizard.yml"
    dest.write_bytes(OLD)
    return Host(tmp_path, dest, FakeChecks())


def spying_checker(host: Host, verdict: str) -> str:
    """A checker that saves what the destination holds while it runs and the path it was
    given, then answers ``verdict`` ("true"/"false")."""
    seen, arg = host.root / "seen-at-check", host.root / "checked-path"
    return (f"cp {host.dest} {seen}; printf '%s' {{config}} > {arg}; "
            f"{verdict} || {{ echo 'traefik: field not found, node: loadBalancr' >&2; exit 1; }}")


def test_a_refused_file_never_reaches_the_watched_directory(watched: Host) -> None:
    result = watched.deploy(TRAEFIK, validate_cmd=spying_checker(watched, "false"))
    assert (result.outcome, result.exit_code) == (Outcome.ROLLED_BACK,
                                                  ExitCode.VALIDATE_ROLLED_BACK), result.message()
    # While the checker ran, the watched file was still the old one; it was checked elsewhere.
    assert (watched.root / "seen-at-check").read_bytes() == OLD
    checked = Path((watched.root / "checked-path").read_text())
    assert checked.parent != watched.dest.parent and checked.name.endswith(".tmp")
    assert not checked.exists()  # the refused temp file is gone
    assert watched.dest.read_bytes() == OLD
    assert sorted(p.name for p in watched.dest.parent.iterdir()) == ["sockwizard.yml"]
    assert "loadBalancr" in result.detail and "never changed" in result.title
    steps = dict(watched.steps())
    assert steps["validate"] == "failed" and steps["rename"] == "skipped"
    assert "reload" not in steps and not watched.checks.probed
    assert not list((watched.root / "backups" / "pending").glob("*"))  # no journal left


def test_an_accepted_file_is_checked_once_before_the_rename(watched: Host) -> None:
    result = watched.deploy(TRAEFIK, validate_cmd=spying_checker(watched, "true"))
    assert result.outcome is Outcome.DEPLOYED, result.message()
    assert (watched.root / "seen-at-check").read_bytes() == OLD
    assert watched.dest.read_bytes() == new_text(TRAEFIK)
    assert dict(watched.steps())["validate"] == "ok"


def test_a_proxy_that_loads_on_reload_is_still_checked_in_place(watched: Host) -> None:
    """Control: nginx's checker reads the tree that includes the file, so it runs after the
    rename (the spy sees the new file there), and a refusal puts the old bytes back."""
    assert not profile(ProxyKind.NGINX).validate_before_rename
    spec = replace(TRAEFIK, proxy=ProxyKind.NGINX)
    result = watched.deploy(spec, validate_cmd=spying_checker(watched, "false"))
    assert result.outcome is Outcome.ROLLED_BACK
    assert (watched.root / "seen-at-check").read_bytes() == new_text(spec)
    assert watched.dest.read_bytes() == OLD


def test_a_checker_without_config_runs_after_the_rename(watched: Host) -> None:
    """A --validate-cmd that does not take {config} cannot check the temp file: the deploy
    falls back to checking in place (and still restores byte for byte)."""
    seen = watched.root / "seen-at-check"
    result = apply(LocalRemote(), TRAEFIK, watched.options(
        validate_cmd=f"cp {watched.dest} {seen}; exit 1"), checks=watched.checks.checks())
    assert result.outcome is Outcome.ROLLED_BACK
    assert seen.read_bytes() == new_text(TRAEFIK) and watched.dest.read_bytes() == OLD


# -- site_include: the static configuration must name the directory ----------------------------

FACTS = ("uid=0\nos=debian\nbin traefik /usr/local/bin/traefik\ndir /etc/traefik\n"
         "dir /etc/traefik/dynamic\ndest_dir=1\n")


def test_a_dynamic_dir_no_file_provider_reads_is_refused_before_any_change() -> None:
    with pytest.raises(BadInput) as err:
        resolve(TRAEFIK, parse_facts(FACTS), Overrides())
    assert "directory" in err.value.hint and "--layout full" in err.value.hint
    ok = resolve(TRAEFIK, parse_facts(FACTS + "site_included=1\n"), Overrides())
    assert ok.dest == "/etc/traefik/dynamic/sockwizard.yml"
    assert ok.precheck_cmd is not None and "{config}" in ok.precheck_cmd


@pytest.mark.parametrize(("static", "included"), [
    ('providers:\n  file:\n    directory: "/etc/traefik/dynamic/"\n    watch: true\n', True),
    ("providers:\n  file:\n    directory: /etc/traefik/dynamic\n", True),
    ('[providers.file]\n  directory = "/etc/traefik/dynamic"\n', True),
    ("providers:\n  file:\n    directory: '/etc/traefik/conf.d'\n", False),
    ("providers:\n  file:\n    filename: /etc/traefik/dynamic/sockwizard.yml\n", False),
    ("providers:\n  file:\n    directory: /etc/traefik/dynamic-old\n", False),
    ("", False),
], ids=["yaml-slash", "yaml", "toml", "other-dir", "one-file", "prefix-only", "none"])
def test_the_include_condition_reads_the_static_configuration(tmp_path: Path, static: str,
                                                              included: bool) -> None:
    """The profile's shell condition, run by /bin/sh against a traefik.yml in tmp_path."""
    include = profile(ProxyKind.TRAEFIK).site_include
    assert include is not None
    (tmp_path / "traefik.yml").write_text(static)
    cond = include.included.replace("/etc/traefik/traefik", str(tmp_path / "traefik"))
    cond = cond.replace("{directory}", "/etc/traefik/dynamic")
    ran = subprocess.run(["sh", "-c", cond], capture_output=True, timeout=10, check=False)
    assert (ran.returncode == 0) is included, ran
