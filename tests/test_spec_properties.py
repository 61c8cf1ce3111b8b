"""Hostile spec inputs, by property and by example (issue #10, item 10).

* Flags built by hypothesis and TOML files of any type (dates, huge ints, floats, nested
  tables, non-UTF-8 bytes) through the real ``wizard.cli.main``: exit 0 with a config, or exit
  2 with a message; never a traceback.
* Accepted specs at the edges of what the model allows render, a small sample passes the real
  checkers (nginx -t, apache2 -t, caddy validate, node --check), and no accepted value changes
  the set of directives rendered (compared with a plain twin of the same shape).
* Each value the tool used to accept but a proxy refused (or misread) is refused or rendered
  right, proved against the real checker where one can tell.

The example counts are bounded for CI; ``bench/fuzz_specs.py N`` runs the long version.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.spec_strategies import (
    accepted_specs,
    check_outcome,
    directive_shape,
    plain_twin,
    render_argv,
    run_cli,
    toml_documents,
)
from tests.test_render_checkers import check
from wizard.model import Backend, DeploySpec, Layout, ProxyKind
from wizard.render import render

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
CHECKED = settings(max_examples=8, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                          HealthCheck.function_scoped_fixture])
PROXIES = list(ProxyKind)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=chat.example.com", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return str(cert), str(key)


# -- any input: exit 0 or 2, never a traceback -------------------------------------------------

@FAST
@given(render_argv())
def test_flags_of_any_value_exit_0_or_2(argv: list[str]) -> None:
    check_outcome(*run_cli(argv))


@FAST
@given(toml_documents(), st.booleans())
def test_toml_of_any_type_exits_0_or_2(data: bytes, with_proxy_flag: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        spec = Path(d) / "spec.toml"
        spec.write_bytes(data)
        argv = ["render", "--spec", str(spec)] + (["--proxy", "caddy"] if with_proxy_flag else [])
        check_outcome(*run_cli(argv))


# -- accepted specs: render, pass the real checker, keep the directive set -------------------

@pytest.mark.parametrize("proxy", PROXIES, ids=[p.value for p in PROXIES])
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_no_accepted_value_changes_the_directives(proxy: ProxyKind, tls_files: tuple[str, str],
                                                  data: st.DataObject) -> None:
    spec = data.draw(accepted_specs(proxy, tls_files))
    with tempfile.TemporaryDirectory() as d:
        hostile = directive_shape(proxy, render(spec).text, Path(d))
        plain = directive_shape(proxy, render(plain_twin(spec, tls_files)).text, Path(d))
    assert hostile == plain


@pytest.mark.slow
@pytest.mark.parametrize("proxy", PROXIES, ids=[p.value for p in PROXIES])
@CHECKED
@given(data=st.data())
def test_accepted_specs_pass_the_real_checker(proxy: ProxyKind, tls_files: tuple[str, str],
                                              data: st.DataObject) -> None:
    spec = data.draw(accepted_specs(proxy, tls_files))
    text = render(spec).text
    with tempfile.TemporaryDirectory() as d:
        ok, output = check(spec, text, Path(d))
    assert ok or environment_explains(output), f"refused:\n{output}\n--- config ---\n{text}"


def environment_explains(output: str) -> bool:
    """Refusals that are about this machine, not the config (none are expected: the sample
    uses literal addresses and no Caddy 2.7 directive)."""
    return any(s in output for s in ("host not found in upstream", "no such host",
                                     "Cannot assign requested address"))


# -- the TOML inputs that gave tracebacks or lied ------------------------------------------

TOML_CASES = [
    ("backends = 5", "backends (in", "expected a list"),
    ("backends = 1979-05-27", "backends (in", "date/time"),
    ("backends = 1979-05-27T07:32:00Z", "backends (in", "date/time"),
    ("backends = {a = 1}", "backends (in", "got a table"),
    ("backends = [[1]]", "backends[0] (in", "got an array"),
    ("backends = [3000]", "backends[0] (in", "expected \"HOST:PORT\" text"),
    ("read_timeout = " + "9" * 400, "read_timeout (in", "far out of range"),
    ("read_timeout = " + "1" * 5000, "is unreadable", "4300 digits"),
    ("read_timeout = 1e400", "read_timeout (in", "decimal number inf"),
    ("read_timeout = 60.0", "read_timeout (in", "decimal number"),
    ("listen = 1e400", "listen (in", "decimal number inf"),
    ("listen_port = nan", "listen_port (in", "decimal number nan"),
    ("proxy_buffering = 1", "proxy_buffering (in", "on/off"),
    ("scope = 1", "scope (in", "as text"),
    ("path = 12:00:00", "path (in", "date/time"),
    ("apache_version = \"2." + "9" * 5000 + "\"", "apache_version (in", "2.x version"),
    ("a = " + "[" * 5000 + "]" * 5000, "nested too deeply", "fix the file"),
    ("[nested]\nx = 1", "'nested' (in", "unknown setting"),
]


@pytest.mark.parametrize(("line", "where", "what"), TOML_CASES,
                         ids=[c[0][:30] for c in TOML_CASES])
def test_toml_value_of_the_wrong_type_is_exit_2_naming_the_key(
        line: str, where: str, what: str, tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text(f'proxy = "apache"\n{line}\n')
    code, out, err = run_cli(["render", "--spec", str(f)])
    assert (code, out) == (2, "")
    assert where in err and what in err, err
    assert len(err) < 2000, "a huge value must not be echoed back whole"


def test_non_utf8_spec_file_is_exit_2(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_bytes(b'proxy = "nginx"\npath = "/\xff/"\n')
    code, out, err = run_cli(["render", "--spec", str(f)])
    assert (code, out) == (2, "")
    assert "not UTF-8" in err and "0xff" in err


def test_a_flag_still_overrides_and_is_named_as_a_flag(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('proxy = "nginx"\nbackends = {a = 1}\nread_timeout = 5\n')
    code, _, err = run_cli(["render", "--spec", str(f), "--read-timeout", "4"])
    assert code == 2
    assert "backends (in" in err and "  - --read-timeout: 4 s" in err


# -- values the proxies refuse or misread ----------------------------------------------------

# (proxy, spec changes, flag named, message part, text substitution showing the real checker
# refuses what the tool would otherwise have rendered)
REFUSED = [
    ("apache", {"server_name": "*.example.com"}, "--server-name", "cannot be a wildcard",
     ("ServerName example.com", "ServerName *.example.com")),
    ("apache", {"server_name": "2001:db8::1"}, "--server-name", "cannot be an IPv6",
     ("ServerName example.com", "ServerName [2001:db8::1]")),
    ("caddy", {"server_name": "example.com.", "tls": True}, "--server-name", "trailing dot",
     ("https://example.com:", "https://example.com.:")),
    ("nginx", {"listen": "[fe80::1%eth0]:8080"}, "--listen", "zone index",
     ("listen 127.0.0.1:8080", "listen [fe80::1%eth0]:8080")),
    ("nginx", {"backend": "[fe80::1%eth0]:3000"}, "--backend #1", "zone index",
     ("127.0.0.1:3000", "[fe80::1%eth0]:3000")),
    ("apache", {"path": "/a%41/", "apache_version": "2.4.41"}, "--path", "%-escape", None),
    ("caddy", {"path": "/a*b/"}, "--path", "allowed in a path", None),
]


def _argv(proxy: str, changes: dict[str, object], tls_files: tuple[str, str]) -> list[str]:
    argv = ["render", "--proxy", proxy, "--listen", "8080"]
    for key, value in changes.items():
        if key == "tls":
            argv += ["--tls-cert", tls_files[0], "--tls-key", tls_files[1], "--tls-port", "8443"]
        else:
            argv.append(f"--{key.replace('_', '-')}={value}")
    return argv


@pytest.mark.parametrize(("proxy", "changes", "flag", "message", "_sub"), REFUSED,
                         ids=[f"{r[0]}-{next(iter(r[1].values()))}" for r in REFUSED])
def test_value_the_proxy_refuses_is_refused(proxy: str, changes: dict[str, object], flag: str,
                                            message: str, _sub: object,
                                            tls_files: tuple[str, str]) -> None:
    code, out, err = run_cli(_argv(proxy, changes, tls_files))
    assert (code, out) == (2, ""), err
    assert f"  - {flag}: " in err and message in err, err


@pytest.mark.slow
@pytest.mark.parametrize(("proxy", "changes", "flag", "message", "sub"),
                         [r for r in REFUSED if r[4]],
                         ids=[f"{r[0]}-{next(iter(r[1].values()))}" for r in REFUSED if r[4]])
def test_the_real_checker_refuses_those_values(proxy: str, changes: dict[str, object],
                                               flag: str, message: str,
                                               sub: tuple[str, str], tls_files: tuple[str, str],
                                               tmp_path: Path) -> None:
    """Why the refusals above are right: the same config with the raw value is refused by the
    proxy itself (while the plain one passes, so the harness is not just failing)."""
    spec = DeploySpec(proxy=ProxyKind(proxy), listen_port=8080, server_name="example.com",
                      listen_address="127.0.0.1" if "listen" in changes else None,
                      backends=(Backend("127.0.0.1", 3000),))
    if "tls" in changes:
        spec = replace(spec, tls_cert=tls_files[0], tls_key=tls_files[1], tls_port=8443)
    text = render(spec).text
    assert sub[0] in text
    ok, output = check(spec, text, tmp_path / "plain")
    assert ok, output
    ok, output = check(spec, text.replace(sub[0], sub[1]), tmp_path / "raw")
    assert not ok


def test_apache_rewrite_target_has_no_percent_back_reference() -> None:
    """With '%' refused in paths, no RewriteRule target can hold a %N back-reference."""
    spec = DeploySpec(proxy=ProxyKind.APACHE, apache_version="2.4.41", path="/a41/",
                      server_path="/b4/")
    rules = [ln for ln in render(spec).text.splitlines() if "RewriteRule" in ln]
    assert rules and not any("%" in ln.split('"')[1] for ln in rules if '"' in ln)


@pytest.mark.parametrize("proxy", ["nginx", "caddy"])
def test_ipv6_server_name_is_bracketed(proxy: str) -> None:
    code, out, err = run_cli(["render", "--proxy", proxy, "--listen", "8080",
                              "--server-name", "::1"])
    assert code == 0, err
    assert ("http://[::1]:8080 {" if proxy == "caddy" else "server_name [::1];") in out


@pytest.mark.slow
def test_caddy_ipv6_server_name_listens_on_the_given_port(tmp_path: Path) -> None:
    """`http://::1:8080` validated but Caddy listened on :80; `http://[::1]:8080` is :8080."""
    spec = DeploySpec(proxy=ProxyKind.CADDY, listen_port=8080, server_name="::1",
                      layout=Layout.FULL)
    f = tmp_path / "Caddyfile"
    f.write_text(render(spec).text)
    adapted = subprocess.run(["caddy", "adapt", "--adapter", "caddyfile", "--config", str(f)],
                             capture_output=True, text=True, check=True, timeout=60)
    servers = json.loads(adapted.stdout)["apps"]["http"]["servers"]
    assert [s["listen"] for s in servers.values()] == [[":8080"]]
    ok, output = check(spec, render(spec).text, tmp_path / "check")
    assert ok, output


@pytest.mark.slow
def test_nginx_accepts_a_bracketed_ipv6_server_name(tmp_path: Path) -> None:
    spec = DeploySpec(proxy=ProxyKind.NGINX, listen_port=8080, server_name="2001:db8::1")
    ok, output = check(spec, render(spec).text, tmp_path)
    assert ok, output

