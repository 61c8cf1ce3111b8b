"""Stock hosts (issue #13, item 1), fast: the edits as pure functions, the decisions over the
in-memory remote (refused before any change without the flags; the dry run plans the
changes and names the flags), and the companions' host scripts run by a real /bin/sh on files
in tmp_path (applied with the site, put back byte for byte when the checker refuses, the
reload fails or the main config changed meanwhile; undone by rollback). The real Debian
layouts: tests/test_stock_hosts_real.py."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from wizard.deploy import (
    DeployOptions,
    DeployResult,
    Outcome,
    Preset,
    apply,
    host_history,
    rollback,
)
from wizard.deploy.companions import DISABLE_DEFAULT_SITE, EDIT_MAIN_CONFIG, Companion
from wizard.deploy.context import Context
from wizard.deploy.detect import HostTarget
from wizard.deploy.history import Record
from wizard.deploy.options import RollbackOptions
from wizard.deploy.stock import add_include, comment_out_block
from wizard.deploy.transaction import Transaction
from wizard.errors import ExitCode
from wizard.model import Backend, DeploySpec, ProxyKind
from wizard.proxies import profile
from wizard.remote import CommandResult, LocalRemote
from wizard.remote.memory import InMemoryRemote, RunRequest

pytestmark = pytest.mark.timeout(60)

# Debian 12's /etc/caddy/Caddyfile, as installed (comments shortened).
STOCK_CADDYFILE = """# The Caddyfile is an easy way to configure your Caddy web server.

:80 {
\t# Set this path to your site's directory.
\troot * /usr/share/caddy

\t# Enable the static file server.
\tfile_server
}

# Refer to the Caddy docs for more information:
# https://caddyserver.com/docs/caddyfile
"""
NGINX_CONF = "user www-data;\nevents {\n}\n\nhttp {\n\tsendfile on;\n}\n"
SPEC = DeploySpec(proxy=ProxyKind.CADDY, backends=(Backend("127.0.0.1", 3000),))


# -- the edits ---------------------------------------------------------------------------------


def test_the_include_line_goes_exactly_where_each_proxy_needs_it() -> None:
    nginx = profile(ProxyKind.NGINX).site_includes[0]
    assert add_include(NGINX_CONF, nginx) == (
        "user www-data;\nevents {\n}\n\nhttp {\n\tinclude /etc/nginx/conf.d/*.conf;\n"
        "\tsendfile on;\n}\n")
    assert add_include("events {\n}\n", nginx) is None  # no http block: nowhere to put it
    caddy = profile(ProxyKind.CADDY).site_includes[0]
    assert add_include("{\n\tadmin off\n}", caddy) == "{\n\tadmin off\n}\nimport sites/*.caddy\n"
    apache = profile(ProxyKind.APACHE).site_includes[0]
    assert add_include("ServerRoot /etc/apache2\n", apache).endswith(
        "\nIncludeOptional sites-enabled/*.conf\n")


def test_caddys_placeholder_block_is_commented_out_whole() -> None:
    opener = profile(ProxyKind.CADDY).default_sites[0].block
    assert opener is not None
    out = comment_out_block(STOCK_CADDYFILE, opener.format(port=80))
    assert out is not None
    assert "\n# :80 {\n" in out and "\n# \tfile_server\n# }\n" in out
    assert out.count("\n") == STOCK_CADDYFILE.count("\n") + 1  # the note, nothing else
    assert out.endswith("# Refer to the Caddy docs for more information:\n"
                        "# https://caddyserver.com/docs/caddyfile\n")
    assert comment_out_block(STOCK_CADDYFILE, opener.format(port=8080)) is None
    assert comment_out_block(":80 {\n\tfile_server\n", opener.format(port=80)) is None


# -- the decisions, over the in-memory remote -----------------------------------------------------


def caddy_host(caddyfile: str = STOCK_CADDYFILE) -> InMemoryRemote:
    remote = InMemoryRemote(name="stock", files={"/etc/caddy/Caddyfile": caddyfile.encode()})
    facts = ("uid=0\nos=debian\nbin caddy /usr/bin/caddy\ndir /etc/caddy\ndest_dir=1\n"
             "real=/etc/caddy/sites/sockwizard.caddy\n")
    shadow = "default_site /etc/caddy/Caddyfile\n" if ":80 {" in caddyfile else ""

    def detect(req: RunRequest) -> CommandResult:
        return CommandResult(req.command, 0, facts + shadow + "@@version\nv2.6.2\n", "", 0.0)

    remote.on(r"^PATH=", detect)
    remote.on(r"^if \[ -L", stdout="real=/etc/caddy/sites/sockwizard.caddy\ntype=absent\n")
    return remote


def run(remote: InMemoryRemote, spec: DeploySpec = SPEC, **kw: object):  # type: ignore[no-untyped-def]
    return apply(remote, spec, DeployOptions(probe=False, reload_cmd="true", **kw))  # type: ignore[arg-type]


def test_without_the_flags_nothing_is_touched_and_both_flags_are_named() -> None:
    remote = caddy_host()
    result = run(remote)
    assert result.outcome is Outcome.FAILED and result.exit_code is ExitCode.BAD_INPUT
    assert "--edit-main-config" in result.hint and "--disable-default-site" in result.hint
    assert "+import sites/*.caddy" in result.detail and "+# :80 {" in result.detail
    writes = [c for c in remote.calls if c.op not in ("run", "read_file", "exists", "stat")]
    assert writes == []
    # ONE command, read-only: the detect script with the peek riding on it (it looks at the
    # lock and the journal and takes nothing: no lock, no temp dir, no backup, no record).
    assert len(remote.commands) == 1, remote.commands
    assert "mkdir" not in remote.commands[0] and "index.jsonl" not in remote.commands[0]
    assert remote.files["/etc/caddy/Caddyfile"] == STOCK_CADDYFILE.encode()

    one = run(caddy_host(), edit_main_config=True)  # one flag is not both
    assert one.exit_code is ExitCode.BAD_INPUT
    assert "--disable-default-site" in one.hint and "--edit-main-config (" not in one.hint


def test_the_dry_run_plans_the_extra_changes_and_says_which_flags_a_real_run_needs() -> None:
    result = run(caddy_host(), dry_run=True)
    assert result.outcome is Outcome.PLANNED and result.ok
    assert result.needs == (EDIT_MAIN_CONFIG, DISABLE_DEFAULT_SITE)
    assert "+++ /etc/caddy/Caddyfile (sockwizard)" in result.diff
    plan = "\n".join(p.command for p in result.plan)
    assert "to /etc/caddy/.Caddyfile.sockwizard-XXXXXXXX.tmp" in plan  # the upload
    assert "cp -p -- /etc/caddy/Caddyfile /var/backups/sockwizard/" in plan  # the backup
    assert "mv -f -- /etc/caddy/.Caddyfile.sockwizard-XXXXXXXX.tmp /etc/caddy/Caddyfile" in plan
    assert any("A real deploy needs --edit-main-config" in w for w in result.warnings)

    flagged = run(caddy_host(), dry_run=True, edit_main_config=True, disable_default_site=True)
    assert flagged.needs == () and not flagged.warnings


def test_a_named_site_or_an_imported_directory_needs_nothing() -> None:
    named = run(caddy_host(), replace(SPEC, server_name="chat.example.test"), dry_run=True)
    assert named.needs == (EDIT_MAIN_CONFIG,)
    done = run(caddy_host("import sites/*.caddy\n"), dry_run=True)
    assert done.needs == () and "Caddyfile (sockwizard)" not in done.diff


def test_a_default_site_that_is_not_a_plain_link_is_left_to_the_user() -> None:
    remote = InMemoryRemote(name="stock", files={"/etc/nginx/nginx.conf": b"http {\n"
                                                 b"include /etc/nginx/conf.d/*.conf;\n}\n"})
    remote.on(r"^PATH=", stdout="uid=0\nos=debian\nbin nginx /usr/sbin/nginx\n"
              "dir /etc/nginx/conf.d\ndest_dir=1\ndefault_site /etc/nginx/sites-enabled/default"
              "\n@@version\nnginx/1.22.1\n")
    remote.on(r"^\[ -L .*readlink -- /etc/nginx/sites-enabled/default", stdout="$(reboot)\n")
    result = run(remote, replace(SPEC, proxy=ProxyKind.NGINX), disable_default_site=True)
    assert result.exit_code is ExitCode.BAD_INPUT
    assert "not a plain link" in result.hint and "rm /etc/nginx/sites-enabled/default" in result.hint


# -- the companions' scripts, run by /bin/sh on files in tmp_path --------------------------------


class Host:
    """A site file, a main config and a default-site link in tmp_path, and a deploy of them
    as a preset transaction (the scripts are the real ones; the paths are the test's)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        (tmp / "sites-available").mkdir()
        (tmp / "sites-enabled").mkdir()
        (tmp / "sites-available" / "default").write_text("server { listen 80; }\n")
        self.link = tmp / "sites-enabled" / "default"
        os.symlink("../sites-available/default", self.link)
        self.main = tmp / "main.conf"
        self.main.write_bytes(b"http {\n}\n")
        os.chmod(self.main, 0o640)
        self.site = tmp / "site.conf"
        self.log = tmp / "tool.log"

    def companions(self) -> tuple[Companion, ...]:
        return (Companion(str(self.main), b"http {\n}\n", b"http {\ninclude site.conf;\n}\n",
                          flag=EDIT_MAIN_CONFIG),
                Companion(str(self.link), b"../sites-available/default", None, link=True,
                          off_cmd=f"echo off >> {self.log}", on_cmd=f"echo on >> {self.log}",
                          flag=DISABLE_DEFAULT_SITE))

    def options(self) -> DeployOptions:
        return DeployOptions(probe=False, sudo=False, backup_dir=str(self.tmp / "backups"),
                             state_dir=self.tmp / "state")

    def deploy(self, *, validate: str = "true", reload: str = "true",  # type: ignore[no-untyped-def]
               content: bytes = b"site\n", companions: bool = True):
        target = HostTarget(dest=str(self.site), real_dest=str(self.site), validate_cmd=validate,
                            reload_cmd=reload,
                            companions=self.companions() if companions else ())
        ctx = Context(LocalRemote(), SPEC, self.options(), "local",
                      preset=Preset(target, content, None))
        return Transaction(ctx).execute()

    def rollback(self, **kw: Any) -> DeployResult:
        return rollback(LocalRemote(), "local", RollbackOptions(
            backup_dir=str(self.tmp / "backups"), state_dir=self.tmp / "state", probe=False,
            **kw))

    def history(self) -> list[Record]:
        return host_history(LocalRemote(), str(self.tmp / "backups"))

    def state(self) -> tuple[bytes, int, str | None, bool]:
        link = os.readlink(self.link) if self.link.is_symlink() else None
        return self.main.read_bytes(), self.main.stat().st_mode, link, self.site.exists()


def test_companions_go_live_with_the_site_and_are_recorded_for_rollback(tmp_path: Path) -> None:
    host = Host(tmp_path)
    result = host.deploy()
    assert result.outcome is Outcome.DEPLOYED, result.message()
    main, mode, link, site = host.state()
    assert main == b"http {\ninclude site.conf;\n}\n" and mode & 0o777 == 0o640
    assert link is None and site and host.log.read_text() == "off\n"
    entry = json.loads((tmp_path / "backups" / "index.jsonl").read_text().splitlines()[-1])
    kinds = {c["path"]: c for c in entry["companions"]}
    assert kinds[str(host.main)]["backup"] and kinds[str(host.link)]["old_target"] == \
        "../sites-available/default"

    back = rollback(LocalRemote(), "local", RollbackOptions(
        backup_dir=str(tmp_path / "backups"), state_dir=tmp_path / "state", probe=False))
    assert back.outcome is Outcome.DEPLOYED, back.message()
    assert host.state() == (b"http {\n}\n", mode, "../sites-available/default", False)
    assert host.log.read_text() == "off\non\n"  # the distro's tool ran both ways


def test_rollback_to_puts_back_the_main_config_of_every_deploy_it_undoes(tmp_path: Path) -> None:
    """The history and the companions compose: A (the site only), B (the site, the main
    config's include line and the default site disabled), C (the site only). ``rollback --to
    A`` undoes C and B: the dry run shows the main config and the link going back and changes
    nothing; the real run puts both back byte for byte, and the history records it."""
    host = Host(tmp_path)
    main, mode, link, _ = host.state()
    assert host.deploy(content=b"A\n", companions=False).ok
    assert host.deploy(content=b"B\n").ok
    assert host.deploy(content=b"C\n", companions=False).ok
    a, b, c = host.history()
    assert b.get("companions") and not a.get("companions") and not c.get("companions")
    changed = host.state()
    assert changed[0] != main and changed[2] is None

    dry = host.rollback(to=a.id, dry_run=True)
    assert dry.outcome is Outcome.PLANNED, dry.message()
    assert f"{host.main}, {host.link} would be put back" in dry.title
    assert "\n-include site.conf;\n" in dry.diff
    assert f"\n+{host.link} -> ../sites-available/default\n" in dry.diff
    assert host.state() == changed and len(host.history()) == 3

    back = host.rollback(to=a.id)
    assert back.outcome is Outcome.DEPLOYED, back.message()
    assert host.state() == (main, mode, link, True) and host.site.read_bytes() == b"A\n"
    assert host.log.read_text() == "off\non\n"
    undo = host.history()[-1]
    assert (undo.kind, undo.what, undo.undoes) == ("rollback", "rolled back", (c.id, b.id))
    # Then back before A: the main config stays as it was (A did not change it).
    assert host.rollback().ok and not host.site.exists()
    assert host.state() == (main, mode, link, False)
    assert [r.what for r in host.history()][-2:] == ["rolled back", "rolled back"]


@pytest.mark.parametrize("failure", ["validate", "reload"])
def test_a_failure_puts_the_main_config_and_the_default_site_back(
        tmp_path: Path, failure: str) -> None:
    host = Host(tmp_path)
    before = host.state()
    # The checker / reload fails only while the edited main config is in place.
    fails = f"! grep -q include {host.main}"
    result = host.deploy(**{failure: fails})
    assert result.outcome is Outcome.ROLLED_BACK, result.message()
    assert host.state() == before


def test_a_main_config_changed_meanwhile_stops_the_rename(tmp_path: Path) -> None:
    host = Host(tmp_path)
    host.main.write_bytes(b"http {\n# edited by someone else\n}\n")  # after it was read
    result = host.deploy()
    assert result.outcome is Outcome.FAILED, result.message()
    assert host.main.read_bytes() == b"http {\n# edited by someone else\n}\n"
    assert host.link.is_symlink() and not host.site.exists()
    assert not list(tmp_path.glob(".main.conf.sockwizard-*"))  # its temp file is gone


# -- a main config read only at start (HAProxy's /etc/default/haproxy): a restart --------------


def test_haproxys_edit_plans_a_restart_in_place_of_the_reload() -> None:
    remote = InMemoryRemote(name="stock", files={
        "/etc/default/haproxy": b'#EXTRAOPTS="-de -m 16"\n'})
    remote.on(r"^PATH=", stdout="uid=0\nos=debian\nbin haproxy /usr/sbin/haproxy\n"
              "bin systemctl /usr/bin/systemctl\nsystemd=1\ndest_dir=1\n@@version\n"
              "HAProxy version 2.6.12-1\n")
    remote.on(r"^if \[ -L", stdout="real=/etc/haproxy/conf.d/sockwizard.cfg\ntype=absent\n")
    spec = replace(SPEC, proxy=ProxyKind.HAPROXY)
    result = apply(remote, spec, DeployOptions(probe=False, dry_run=True, edit_main_config=True))
    assert result.outcome is Outcome.PLANNED, result.message()
    assert '+EXTRAOPTS="-S /run/haproxy-master.sock -f /etc/haproxy/conf.d"' in result.diff
    reloads = [p.command for p in result.plan if p.step.name in ("RELOAD", "RERELOAD")]
    assert reloads == ["systemctl restart haproxy"] * 2  # the deploy and its rollback
    assert any("only at start" in w for w in result.warnings)
    # Once the file loads the directory: a plain reload again.
    remote.files["/etc/default/haproxy"] = \
        b'EXTRAOPTS="-S /run/haproxy-master.sock -f /etc/haproxy/conf.d"\n'
    again = apply(remote, spec, DeployOptions(probe=False, dry_run=True))
    assert [p.command for p in again.plan if p.step.name == "RELOAD"] == \
        ["systemctl reload-or-restart haproxy"]


def test_rollback_of_an_edit_read_only_at_start_restarts(tmp_path: Path) -> None:
    """The restart is recorded with the companion: ``sockwizard rollback`` runs it even when
    the newest deploy it undoes only reloaded (a given --reload-cmd wins), and the rollback
    of a deploy that left the file alone reloads."""
    host = Host(tmp_path)
    reload, restart = f"echo reload >> {host.log}", f"echo restart >> {host.log}"
    assert host.deploy(content=b"Z\n", companions=False, reload=reload).ok
    main = Companion(str(host.main), b"http {\n}\n", b"http {\ninclude site.conf;\n}\n",
                     flag=EDIT_MAIN_CONFIG, restart_cmd=restart)
    target = HostTarget(dest=str(host.site), real_dest=str(host.site), validate_cmd="true",
                        reload_cmd=restart, companions=(main,))
    ctx = Context(LocalRemote(), SPEC, host.options(), "local",
                  preset=Preset(target, b"A\n", None))
    assert Transaction(ctx).execute().ok
    assert host.deploy(content=b"B\n", companions=False, reload=reload).ok
    z, a, _ = host.history()
    assert a.get("companions")[0]["restart_cmd"] == restart
    assert host.log.read_text() == "reload\nrestart\nreload\n"
    assert host.rollback(to=a.id).ok  # B: its file only
    assert host.log.read_text().splitlines()[-1] == "reload"
    assert host.deploy(content=b"C\n", companions=False, reload=reload).ok
    assert host.rollback(to=z.id).ok  # C and A: the main config back, read at start again
    assert host.log.read_text().splitlines()[-1] == "restart"
    assert host.main.read_bytes() == b"http {\n}\n" and host.site.read_bytes() == b"Z\n"
    assert host.deploy(content=b"D\n", reload=reload).ok  # the edit again
    assert host.rollback(reload_cmd=f"echo given >> {host.log}").ok
    assert host.log.read_text().splitlines()[-1] == "given"


def test_a_hostile_link_target_read_by_the_detect_script_is_refused_too() -> None:
    """The readlink rides on the detect script (wizard.deploy.stockread): what it printed is
    checked as a readlink command's answer is — a target sockwizard would not put back with
    `ln -s` is refused, and no readlink command runs after detect."""
    remote = InMemoryRemote(name="stock", files={"/etc/nginx/nginx.conf": b"http {\n"
                                                 b"include /etc/nginx/conf.d/*.conf;\n}\n"})
    remote.on(r"^PATH=", stdout="uid=0\nos=debian\nbin nginx /usr/sbin/nginx\n"
              "dir /etc/nginx/conf.d\ndest_dir=1\ndefault_site /etc/nginx/sites-enabled/default"
              "\n@@version\nnginx/1.22.1\n\n@@sw stock\n"
              "@@sw stock link /etc/nginx/sites-enabled/default $(reboot)\n")
    result = run(remote, replace(SPEC, proxy=ProxyKind.NGINX), disable_default_site=True)
    assert result.exit_code is ExitCode.BAD_INPUT
    assert "not a plain link" in result.hint
    assert len(remote.commands) == 1 and "readlink -- /etc" in remote.commands[0]
