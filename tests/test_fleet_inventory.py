"""``deploy --inventory``'s reader and ``--limit``, proven against Ansible's own.

Each inventory under tests/inventories/ is read by ``wizard.fleet`` and by ansible-core's
``ansible-inventory --list`` (pinned in the test extra): the same hosts, the same groups (with
their direct hosts and children) and the same merged variables per host. ``--limit`` patterns
are checked against ``ansible --list-hosts --limit``. Hostile files fail with exit 2 and a
message naming the file. ansible-core is a test tool only: sockwizard never imports it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wizard.cli import main
from wizard.errors import BadInput
from wizard.fleet import load_inventory, parse_inventory, select

HERE = Path(__file__).resolve().parent
FILES = sorted((HERE / "inventories").iterdir())
BIN = Path(sys.executable).parent
ANSIBLE_ENV = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0",
               "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0", "PYTHONWARNINGS": "ignore"}

needs_ansible = pytest.mark.skipif(not (BIN / "ansible-inventory").exists(),
                                   reason="ansible-core (test extra) is not installed")


def ansible_list(path: Path) -> dict[str, object]:
    out = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(path), "--list"],
                         capture_output=True, text=True, timeout=120, env=ANSIBLE_ENV,
                         check=True).stdout
    return json.loads(out)  # type: ignore[no-any-return]


@needs_ansible
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_same_hosts_groups_and_vars_as_ansible_inventory(path: Path) -> None:
    theirs = ansible_list(path)
    ours = load_inventory(path)
    hostvars = theirs.pop("_meta")["hostvars"]  # type: ignore[index]
    # Groups: the same direct hosts and children (Ansible omits groups that have neither).
    for name, body in theirs.items():
        group = ours.groups[name]
        assert set(body.get("hosts", [])) == set(group.hosts), name  # type: ignore[union-attr]
        assert set(body.get("children", [])) == set(group.children), name  # type: ignore[union-attr]
    for name, group in ours.groups.items():
        if group.hosts or group.children:
            assert name in theirs, name
    # Hosts and their merged variables (Ansible lists only hosts that have some).
    every = {h for body in theirs.values() for h in body.get("hosts", [])}  # type: ignore[union-attr]
    assert set(ours.hosts) == every | set(hostvars)
    for host in ours.hosts:
        assert ours.variables(host) == hostvars.get(host, {}), host


PATTERNS = [("groups.ini", "web"), ("groups.ini", "prod:!db1"), ("groups.ini", "web*,lb?"),
            ("groups.ini", "prod:&lb"), ("groups.ini", "!web"), ("groups.ini", "~^lb[ab]$"),
            ("fleet.yml", "web:&canary"), ("fleet.yml", "all:!web"), ("fleet.yml", "db*:solo")]


@needs_ansible
@pytest.mark.parametrize(("name", "pattern"), PATTERNS)
def test_limit_selects_what_ansible_selects(name: str, pattern: str) -> None:
    path = HERE / "inventories" / name
    out = subprocess.run([str(BIN / "ansible"), "all", "-i", str(path), "--list-hosts",
                          "--limit", pattern], capture_output=True, text=True, timeout=120,
                         env=ANSIBLE_ENV, check=True).stdout
    theirs = {line.strip() for line in out.splitlines()[1:] if line.strip()}
    assert set(select(load_inventory(path), pattern)) == theirs


@pytest.mark.parametrize(("text", "words"), [
    ("[web\nh1\n", "section header"),
    ("[web]\nh1 novalue\n", "key=value"),
    ("[web]\nh$1\n", "not a host name"),
    ("[web]\nh[1:99999]\n", "too wide"),
    ("[web]\nh1 'unclosed\n", "unclosed quote"),
    ("[web]\nh1:99999\n", "out of range"),
    ("[a:children]\na\n", "its own child"),
    ("[a:children]\nb\n[b:children]\na\n", "cycle"),
    ("[web]\nh1 " + "x" * 9000 + "=1\n", "longer than"),
    ("all:\n  hosts: [a, b]\n", "mapping of names"),
    ("all:\n  hots: {}\n", "unknown key 'hots'"),
    ("all: [\n", "not valid YAML"),
    ("a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
     "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
     "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n", "nodes"),
])
def test_hostile_inventories_are_clear_errors(text: str, words: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_inventory(text, "inv.x", yaml_first=text.startswith(("all", "a:")))
    assert words in caught.value.message() and "inv.x" in caught.value.message()


def test_cli_bad_inventory_and_bad_host_vars_exit_2(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "hosts.ini"
    inv.write_text("[web]\nweb1 ansible_host=127.0.0.1 listen_port=99999\n")
    argv = ["deploy", "--proxy", "nginx", "--inventory", str(inv)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "listen" in err and "host web1" in err
    inv.write_text("[web]\nweb2 ansible_host='x;rm -rf /'\n")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "web2" in err and "ansible_host" in err
    assert main([*argv, "--limit", "nothere"]) == 2
    assert "selects no host" in capsys.readouterr().err
    assert main(["deploy", "--proxy", "nginx"]) == 2
    assert "--inventory" in capsys.readouterr().err


def test_host_vars_make_each_hosts_spec_and_target() -> None:
    from wizard.deploy import ConnectOptions, DeployOptions
    from wizard.fleet import jobs_for

    inv = load_inventory(HERE / "inventories" / "fleet.yml")
    jobs = {j.name: j for j in jobs_for(inv, select(inv, "web:db"), {"proxy": "nginx"}, {},
                                        DeployOptions(), ConnectOptions())}
    assert jobs["web1"].target == "deploy@web1:2201"
    assert jobs["db2"].target == "deploy@db2.internal"
    assert jobs["db2"].spec.proxy_buffering is False
    assert jobs["web3"].spec.server_name == "canary.example.com"
    assert jobs["web3"].spec.listen_port == 8443 and len(jobs["web3"].spec.backends) == 2
    assert jobs["db1"].spec.server_name == "all.example.com"
    # A command-line flag wins over every host's variable (like Ansible's extra vars).
    flagged = jobs_for(inv, ["web3"], {"proxy": "nginx"}, {"server_name": "x.example.com"},
                       DeployOptions(), ConnectOptions())
    assert flagged[0].spec.server_name == "x.example.com"


def test_sockwizard_never_imports_ansible() -> None:
    code = ("import sys; sys.modules['ansible'] = None\n"
            "from wizard.cli import main\n"
            "raise SystemExit(main(['export', 'ansible', '--proxy', 'nginx', '-o', sys.argv[1]]))")
    out = Path(shutil.os.environ.get("TMPDIR", "/tmp")) / f"sw-export-{os.getpid()}"
    shutil.rmtree(out, ignore_errors=True)
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True,
                              text=True, timeout=60, cwd=HERE.parent)
        assert proc.returncode == 0, proc.stderr
        assert (out / "roles" / "sockwizard" / "library" / "sockwizard_probe.py").is_file()
    finally:
        shutil.rmtree(out, ignore_errors=True)
