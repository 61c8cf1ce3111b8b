"""`sockwizard render` as a script sees it: stdout is only the config, errors are exit 2 with
every problem named by its flag, nothing is written on bad input, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wizard.cli import main

HOSTILE: list[tuple[list[str], str]] = [
    (["--path", "/a;b/"], "--path"),
    (["--path", "/a{b}/"], "--path"),
    (["--path", "/a b/"], "--path"),
    (["--path", "/a\nb/"], "--path"),
    (["--path", '/a"b/'], "--path"),
    (["--path", "/a'b/"], "--path"),
    (["--path", "/a$b/"], "--path"),
    (["--path", "/a\\b/"], "--path"),
    (["--path", "socket.io"], "--path"),
    (["--path", "/socket.io"], "--path"),
    (["--path", ""], "--path"),
    (["--path", "/../etc/"], "--path"),
    (["--path", "/" + "a" * 300 + "/"], "--path"),
    (["--path", "/çhat/"], "--path"),
    (["--path", "/"], "--path"),
    (["--backend", "localhost:3000;"], "--backend #1"),
    (["--backend", "evil}host:3000"], "--backend #1"),
    (["--backend", "localhost:0"], "--backend #1"),
    (["--backend", "localhost:70000"], "--backend #1"),
    (["--backend=localhost:-1"], "--backend #1"),
    (["--backend", "http://localhost:3000"], "--backend #1"),
    (["--backend", "::1:3000"], "--backend #1"),
    (["--backend", "a:1", "--backend", "ho st:2"], "--backend #2"),
    (["--backend", "héllo:3000"], "--backend #1"),
    (["--server-name", "example.com; return 200"], "--server-name"),
    (["--server-name", "exa$mple.com"], "--server-name"),
    (["--server-name=-bad-.com"], "--server-name"),
    (["--listen", "99999"], "--listen"),
    (["--listen", "0"], "--listen"),
    (["--listen", "1.2.3.4;:80"], "--listen"),
    (["--read-timeout", "45"], "--read-timeout"),
    (["--read-timeout", "30"], "--read-timeout"),
    (["--read-timeout", "-5"], "--read-timeout"),
    (["--read-timeout", "sixty"], "--read-timeout"),
    (["--read-timeout", "60", "--ping-interval", "60000"], "--read-timeout"),
    (["--ping-interval", "0"], "--ping-interval"),
    (["--ping-timeout", "abc"], "--ping-timeout"),
    (["--tls-cert", "/etc/ssl/c.pem"], "--tls-key"),
    (["--tls-cert", "rel/c.pem", "--tls-key", "/k"], "--tls-cert"),
    (["--tls-cert", "/c.pem;", "--tls-key", "/k"], "--tls-cert"),
    (["--static-root", "/var/www html"], "--static-root"),
    (["--scope", "everything"], "--scope"),
    (["--layout", "huge"], "--layout"),
    (["--proxy-buffering", "maybe"], "--proxy-buffering"),
    (["--apache-version", "2.4;x"], "--apache-version"),
]


@pytest.mark.parametrize(("flags", "field"), HOSTILE, ids=[repr(f)[:50] for f, _ in HOSTILE])
def test_hostile_value_is_refused(flags: list[str], field: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.conf"
    code = main(["render", "--proxy", "nginx", *flags, "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    assert f"  - {field}:" in captured.err
    assert captured.out == ""
    assert not out.exists()


def test_every_problem_is_listed_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["render", "--proxy", "nginx", "--path", "/a;/", "--read-timeout", "10",
                 "--backend", "x:99999"])
    err = capsys.readouterr().err
    assert code == 2
    assert "3 problems" in err
    assert "Use at least 46 s" in err  # the smallest safe value is given


def test_unknown_proxy_and_missing_proxy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--proxy", "squid"]) == 2
    err = capsys.readouterr().err
    assert "--proxy: 'squid' is not one of: nginx, apache, caddy, node, haproxy" in err
    assert main(["render"]) == 2
    assert "which proxy?" in capsys.readouterr().err


def test_stdout_is_only_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--proxy", "caddy", "--path", "/chat/"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("# Socket.IO behind Caddy 2")
    assert "handle /chat/* {" in captured.out
    assert captured.err == ""


def test_snippets_for_a_custom_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--proxy", "nginx", "--path", "/chat/", "--snippets"]) == 0
    out = capsys.readouterr().out
    assert '#   path: "/chat/",' in out
    assert '# sio.connect("https://example.com", socketio_path="chat")' in out


def test_output_file_and_spec_file_with_flag_override(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text('proxy = "apache"\npath = "/rt/"\nbackends = ["10.0.0.5:4000"]\n')
    out = tmp_path / "site.conf"
    assert main(["render", "--spec", str(spec), "--path", "/live/", "-o", str(out)]) == 0
    text = out.read_text()
    assert 'ProxyPass "/live/" "http://10.0.0.5:4000/live/" upgrade=websocket' in text
    assert capsys.readouterr().out == ""


def test_bad_spec_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text('proxy = "nginx"\nread_timeout = [\n')
    assert main(["render", "--spec", str(spec)]) == 2
    assert "is not valid TOML" in capsys.readouterr().err
    assert main(["render", "--spec", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_real_process_exit_code_and_no_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "wizard", "render", "--proxy", "nginx",
                           "--path", "/x;y/"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "--path:" in proc.stderr
    assert proc.stdout == ""
