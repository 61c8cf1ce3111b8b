"""The exported role renders byte for byte what sockwizard renders, for every config-file proxy.

``sockwizard export ansible`` copies the templates verbatim and rebuilds their context in a
filter plugin (``sockwizard_host_spec``: host overrides + the derived values the model
computes). This runs the exported playbook with ansible-core (local connection; the checker
and reload are ``true``, no probe) for hosts whose variables override the spec - several
backends (sticky), TLS, a listen address, timeouts, a server name - and compares each written
file with ``render`` + the config marker for the same spec. A mirror that drifts from
``wizard.model``/``wizard.render`` fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from wizard.deploy.marker import stamp
from wizard.export import export_ansible
from wizard.model import DeploySpec, Layout, ProxyKind, Scope, build_spec
from wizard.render import render

BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.skipif(not (BIN / "ansible-playbook").exists(),
                                 reason="ansible-core (test extra) is not installed"),
              pytest.mark.timeout(240)]

OVERRIDES: dict[str, dict[str, Any]] = {
    "plain": {},
    "sticky": {"server_name": "b.example.com", "listen_port": 8081, "read_timeout": 90,
               "backends": ["10.0.0.1:3000", "10.0.0.2:3001"]},
    "tls": {"tls_cert": "/etc/ssl/c.pem", "tls_key": "/etc/ssl/c.pem.key", "tls_port": 8443,
            "listen_address": "127.0.0.1", "send_timeout": 75},
}
CASES = [(ProxyKind.NGINX, Layout.SITE, Scope.ALL), (ProxyKind.NGINX, Layout.FULL, Scope.SOCKETIO),
         (ProxyKind.APACHE, Layout.SITE, Scope.ALL), (ProxyKind.APACHE, Layout.FULL, Scope.ALL),
         (ProxyKind.CADDY, Layout.SITE, Scope.SOCKETIO), (ProxyKind.HAPROXY, Layout.SITE, Scope.ALL)]


def _ini_value(value: Any) -> str:
    # INI values are literal_eval'd by Ansible (and by wizard.fleet): a list in quotes.
    return f'"{value!r}"' if isinstance(value, list) else str(value)


@pytest.mark.parametrize(("kind", "layout", "scope"), CASES,
                         ids=[f"{k.value}-{lay.value}-{s.value}" for k, lay, s in CASES])
def test_ansible_renders_what_sockwizard_renders(kind: ProxyKind, layout: Layout, scope: Scope,
                                                  tmp_path: Path) -> None:
    base = build_spec({"proxy": kind.value, "layout": layout.value, "scope": scope.value,
                       "path": "/rt-app/socket.io/", "server_name": "a.example.com"})
    export_ansible(base, tmp_path / "export")
    lines = ["[fleet]"]
    for name, over in OVERRIDES.items():
        vars_ = " ".join(f"{k}={_ini_value(v)}" for k, v in over.items())
        lines.append(f"{name} sockwizard_dest={tmp_path / name}.conf {vars_}")
    lines += ["[fleet:vars]", "ansible_connection=local", f"ansible_python_interpreter={sys.executable}",
              "sockwizard_validate_cmd=true", "sockwizard_reload_cmd=true", "sockwizard_probe=false",
              "ansible_become=false"]
    (tmp_path / "hosts.ini").write_text("\n".join(lines) + "\n")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(tmp_path / "hosts.ini"),
                           str(tmp_path / "export" / "site.yml")], capture_output=True, text=True,
                          timeout=200, env={**os.environ, "ANSIBLE_NOCOLOR": "1",
                                            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "t"),
                                            "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for name, over in OVERRIDES.items():
        spec = build_spec(over, base)
        want = stamp(kind, render(spec).text).text
        assert (tmp_path / f"{name}.conf").read_text() == want, name


def test_hostile_host_variable_fails_that_host_only(tmp_path: Path) -> None:
    export_ansible(DeploySpec(proxy=ProxyKind.NGINX), tmp_path / "export")
    (tmp_path / "hosts.ini").write_text(
        "[fleet]\n"
        f"good sockwizard_dest={tmp_path}/good.conf\n"
        f"evil sockwizard_dest={tmp_path}/evil.conf \"server_name=x; include /etc/passwd\"\n"
        "[fleet:vars]\nansible_connection=local\n"
        f"ansible_python_interpreter={sys.executable}\nsockwizard_validate_cmd=true\n"
        "sockwizard_reload_cmd=true\nsockwizard_probe=false\nansible_become=false\n")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(tmp_path / "hosts.ini"),
                           str(tmp_path / "export" / "site.yml")], capture_output=True, text=True,
                          timeout=200, env={**os.environ, "ANSIBLE_NOCOLOR": "1",
                                            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "t"),
                                            "PYTHONWARNINGS": "ignore"})
    assert proc.returncode != 0
    assert "host variable server_name: must be a host name" in proc.stdout
    assert (tmp_path / "good.conf").is_file() and not (tmp_path / "evil.conf").exists()


def test_a_probe_held_by_a_dripping_proxy_ends_and_restores(tmp_path: Path) -> None:
    """The probe task's own ``timeout``: a proxy that drips its handshake a byte every 0.5 s
    (tests/hostile_server.py) never trips the module's per-read timeout; the task is cut at
    settle + 4 x probe + 10 s, and the rescue puts the previous file back byte for byte."""
    from tests.hostile_server import running

    export_ansible(DeploySpec(proxy=ProxyKind.NGINX, path="/drip-handshake/"),
                   tmp_path / "export")
    dest = tmp_path / "site.conf"
    dest.write_bytes(b"# the previous config\n")
    with running() as hostile:
        (tmp_path / "hosts.ini").write_text(
            f"[fleet]\nh1 sockwizard_dest={dest} sockwizard_probe_url={hostile.url()}\n"
            "[fleet:vars]\nansible_connection=local\n"
            f"ansible_python_interpreter={sys.executable}\nsockwizard_validate_cmd=true\n"
            "sockwizard_reload_cmd=true\nansible_become=false\n"
            "sockwizard_probe_timeout=1\nsockwizard_settle_timeout=1\n")
        started = time.monotonic()
        proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(tmp_path / "hosts.ini"),
                               str(tmp_path / "export" / "site.yml")], capture_output=True,
                              text=True, timeout=200,
                              env={**os.environ, "ANSIBLE_NOCOLOR": "1",
                                   "ANSIBLE_LOCAL_TEMP": str(tmp_path / "t"),
                                   "PYTHONWARNINGS": "ignore"})
        took = time.monotonic() - started
    assert proc.returncode != 0, proc.stdout
    assert "timed out" in proc.stdout.lower() or "timeout" in proc.stdout.lower(), proc.stdout
    assert "the previous config was restored" in proc.stdout
    assert dest.read_bytes() == b"# the previous config\n"
    assert took < 60, took  # 1 + 4 + 10 s, plus Ansible's own start; the drip runs far longer
