"""`sockwizard probe` as a script sees it: exit codes, --json shape, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests import rig
from wizard.cli import main

pytestmark = pytest.mark.slow


def test_probe_json_on_a_healthy_server(node_backend: Callable[..., rig.NodeBackend],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    backend = node_backend(ping_interval=3000, ping_timeout=2000)
    assert main(["probe", backend.url, "--json", "--emit", "echo", "--data", '{"x": 1}']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["transport"] == "websocket"
    assert report["handshake"]["pingInterval" if "pingInterval" in report["handshake"]
                               else "ping_interval_ms"] == 3000
    assert {s["name"] for s in report["stages"]} >= {"tcp", "polling", "websocket", "socketio"}
    assert report["findings"] == []


def test_probe_wrong_path_exits_1_with_a_finding(node_backend: Callable[..., rig.NodeBackend],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    backend = node_backend()
    assert main(["probe", backend.url, "--path", "/nope/", "--json"]) == 1
    codes = [f["code"] for f in json.loads(capsys.readouterr().out)["findings"]]
    assert "path-mismatch" in codes


@pytest.mark.parametrize("url", ["not a url", "ftp://x/", "http://", "http://h:99999/"])
def test_probe_bad_url_is_exit_2(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", url]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("sockwizard: ")


def test_probe_connect_to_sends_the_name_to_another_address(
        node_backend: Callable[..., rig.NodeBackend],
        capsys: pytest.CaptureFixture[str]) -> None:
    """--connect-to: the URL's name (which resolves nowhere: .invalid) is the Host header,
    the connection goes to the given address — the whole probe, WebSocket included."""
    backend = node_backend()
    url = f"http://chat.example.invalid:{backend.port}"
    assert main(["probe", url, "--connect-to", "127.0.0.1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["transport"] == "websocket"
    assert main(["probe", url, "--json"]) == 1  # the control: by name, nothing answers
    capsys.readouterr()
    assert main(["probe", url, "--connect-to", "127.0.0.1", "--emit", "echo"]) == 2
    assert "--connect-to cannot be combined with --emit" in capsys.readouterr().err


def test_a_stage_not_run_is_skip_in_every_table(node_backend: Callable[..., rig.NodeBackend],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # A wrong path: polling fails, so the sessions stage is not run. diagnose's table said
    # FAIL for it (probe's and the progress lines said skip): both read Stage.mark now.
    backend = node_backend()
    assert main(["diagnose", backend.url, "--path", "/nope/"]) == 1
    table = [line.split() for line in capsys.readouterr().out.splitlines()
             if line.startswith("  ") and len(line.split()) > 2]
    marks = {row[0]: row[1] for row in table}
    assert marks.get("polling") == "FAIL" and marks.get("sessions") == "skip", table
