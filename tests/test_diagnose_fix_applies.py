"""A finding's fix is meant to be pasted: applied literally, the proxy's checker accepts it and
the diagnosis comes back clean (nginx: a too-short timeout next to an existing send timeout)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests import rig
from wizard.diagnose import run_diagnosis
from wizard.model import Backend, DeploySpec, ProxyKind
from wizard.probe import ProbeOptions
from wizard.remote import LocalRemote
from wizard.render import render

pytestmark = pytest.mark.slow


def test_nginx_timeout_fix_applies_cleanly(node_backend: Callable[..., rig.NodeBackend],
                                           proxy_factory: rig.ProxyFactory) -> None:
    backend = node_backend(ping_interval=25000, ping_timeout=20000)
    port = rig.free_port()
    text = render(DeploySpec(backends=(Backend("127.0.0.1", backend.port),),
                             listen_address="127.0.0.1", listen_port=port)).text
    text = text.replace("proxy_read_timeout 60s;", "proxy_read_timeout 20s;")
    inst = proxy_factory.from_site(ProxyKind.NGINX, text, port=port).start()

    def diagnose() -> list[tuple[str, str]]:
        d = run_diagnosis(inst.url, ProbeOptions(), remote=LocalRemote(), proxy="nginx",
                          config_path=str(inst.config_path))
        return [(f.code, f.fix) for f in d.findings]

    findings = diagnose()
    assert [code for code, _ in findings] == ["read-timeout-too-short"]
    fix = findings[0][1]
    m = re.match(r"Replace `([^`]+)` \([^)]*\) with:\n((?:    .*\n?)+)", fix)
    assert m, fix
    fixed = inst.site_path.read_text().replace(m.group(1), m.group(2).strip())
    ok, output = inst.check(fixed)
    assert ok, output
    inst.reload(fixed)
    assert diagnose() == []
