"""Every rendered config, in both layouts, is accepted by the proxy's own checker.

nginx -t, apache2 -t (with exactly the modules the config says it needs), caddy validate and
node --check run for real, through the rig's wrappers (a site fragment is checked included
from a main config, as on a real host).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tests import rig
from tests.scenarios import cases
from wizard.model import DeploySpec, Layout, ProxyKind
from wizard.proxies import profile
from wizard.render import render

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """A certificate, its key, and both in one PEM (HAProxy's `crt`)."""
    d = tmp_path_factory.mktemp("tls")
    cert, key, both = d / "cert.pem", d / "key.pem", d / "site.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=chat.example.com", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    both.write_text(cert.read_text() + key.read_text())
    return str(cert), str(key), str(both)


def _checked_text(spec: DeploySpec, tls_files: tuple[str, str, str]) -> tuple[DeploySpec, str]:
    if spec.tls:  # the golden files name fixed paths; the checkers need files that exist
        cert, key = tls_files[:2] if spec.tls_key != spec.tls_cert else tls_files[2:] * 2
        spec = replace(spec, tls_cert=cert, tls_key=key)
    return spec, render(spec).text


def check(spec: DeploySpec, text: str, workdir: Path) -> tuple[bool, str]:
    port = rig.free_port()
    if spec.layout is Layout.SITE:
        options: dict[str, object] = {}
        if spec.proxy is ProxyKind.APACHE:
            options["modules"] = ["mpm_event", "authz_core", *profile(spec.proxy).modules(spec)]
        inst = rig.ProxyInstance.from_site(spec.proxy, text, port=port, workdir=workdir,
                                           **options)
        return inst.check()
    if spec.proxy is ProxyKind.APACHE:
        # The full httpd.conf targets the stock layout (/usr/local/apache2, modules/); point it
        # at this machine's module directory and a scratch ServerRoot.
        text = text.replace('ServerRoot "/usr/local/apache2"', 'ServerRoot "@PREFIX@"')
        text = text.replace(" modules/mod_", f" {rig.APACHE_MODULE_DIR}/mod_")
    inst = rig.ProxyInstance.create(spec.proxy, text, port=port, workdir=workdir)
    if spec.proxy is ProxyKind.NGINX:
        shutil.copy("/etc/nginx/mime.types", inst.prefix / "mime.types")
    if spec.proxy is ProxyKind.APACHE:
        (inst.prefix / "logs").mkdir(exist_ok=True)
    return inst.check()


@pytest.mark.parametrize(("case_id", "spec"), cases(), ids=[c[0] for c in cases()])
def test_real_checker_accepts(case_id: str, spec: DeploySpec, tls_files: tuple[str, str, str],
                              tmp_path: Path) -> None:
    if spec.stream_close_delay is not None and _caddy_minor() < 7:
        pytest.skip("stream_close_delay needs Caddy >= 2.7; this machine has an older Caddy")
    spec, text = _checked_text(spec, tls_files)
    ok, output = check(spec, text, tmp_path)
    assert ok, f"{case_id} rejected by the real checker:\n{output}\n--- config ---\n{text}"
    if spec.proxy is ProxyKind.HAPROXY:  # haproxy -c passes configs it warns about
        assert "[WARNING]" not in output, f"{case_id}:\n{output}\n--- config ---\n{text}"


def test_checker_rejects_a_broken_config(tmp_path: Path) -> None:
    """The harness itself can fail: a config with a bad directive is refused."""
    text = render(DeploySpec()).text.replace("proxy_http_version 1.1;", "proxy_http_version;")
    ok, output = check(DeploySpec(), text, tmp_path)
    assert not ok and "proxy_http_version" in output


def _caddy_minor() -> int:
    out = subprocess.run(["caddy", "version"], capture_output=True, text=True).stdout
    parts = out.lstrip("v").split(".")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def test_haproxy_checker_rejects_a_broken_config(tmp_path: Path) -> None:
    """The HAProxy harness can fail too: a misspelt timeout is refused."""
    spec = DeploySpec(proxy=ProxyKind.HAPROXY)
    text = render(spec).text.replace("timeout tunnel", "timeout tunel")
    ok, output = check(spec, text, tmp_path)
    assert not ok and "tunel" in output


@pytest.mark.parametrize(("layout", "old", "new", "said"), [
    (Layout.SITE, "servers:", "servers: [", "did not find expected node content"),
    (Layout.SITE, "loadBalancer:", "loadBalancr:", "field not found"),
    (Layout.SITE, "PathPrefix(", "PathPrefx(", "unsupported function"),
    (Layout.SITE, 'service: "socketio"', 'service: "nope"', "does not exist"),
    (Layout.FULL, "readTimeout:", "readTimout:", "field not found"),
    (Layout.FULL, 'serversTransport: "socketio"', 'serversTransport: "gone"', "gone"),
], ids=["yaml", "dynamic-field", "rule", "service", "static-field", "transport"])
def test_traefik_checker_rejects(layout: Layout, old: str, new: str, said: str,
                                 tmp_path: Path) -> None:
    """Traefik has no -t: the throwaway-instance check must still refuse each kind of error
    (YAML, unknown field in the dynamic and static parts, bad rule, dangling reference)."""
    spec = DeploySpec(proxy=ProxyKind.TRAEFIK, layout=layout)
    text = render(spec).text
    assert old in text
    ok, output = check(spec, text.replace(old, new, 1), tmp_path)
    assert not ok and said in output, output
