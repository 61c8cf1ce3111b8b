"""The probe against a hostile Engine.IO/Socket.IO server (issue #10, items 2, 3 and 10).

`sockwizard probe` and `sockwizard diagnose URL` (no --host) run as real child processes
against tests/hostile_server.py, one attack per Socket.IO path, each under an address-space
cap (RLIMIT_AS, set from outside before exec). For every attack: the process ends within its
deadline (1.5 x --timeout per stage it ran, plus interpreter start-up), prints no traceback,
exits 1 (the documented "check failed" code) and names the problem in its report. The runs
go four at a time in one module fixture, so the file costs about half a minute.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.hostile_server import HostileServer, running
from wizard.probe import ProbeOptions, run_probe

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 2.0
MEMORY_CAP = 1536 << 20  # bytes of address space for the CLI (its python-socketio child: less)
STARTUP_SLACK_S = 3.0  # interpreter start and imports, on two shared cores

# mode -> words (lower case) the report must contain: it names the problem
ATTACKS: dict[str, str] = {
    "huge-frame": "cap 2097152",
    "endless-fragments": "cap 2097152",
    "empty-fragments": "more than 4096 fragments",
    "drip-handshake": "no answer",
    "drip-headers": "no answer",
    "drip-late": "did not finish within",
    "giant-head": "head too large",
    "giant-chunked": "larger than 1 mib",
    "huge-chunk": "larger than 1 mib",
    "giant-length": "larger than 1 mib",
    "connect-array": "connect answer carried []",
    "connect-null": "connect answer carried null",
    "connect-number": "connect answer",
    "connect-string": "connect answer carried \\\"x\\\"",
    "ping-0": "pinginterval 0 is not between",
    "ping-negative": "pinginterval -1 is not between",
    "ping-infinity": "infinity is not json",
    "ping-1e400": "pinginterval inf is not between",
    "ping-nan": "nan is not json",
    "ping-huge": "pinginterval 864000000 is not between",
    "sid-latin": "not an engine.io session id",
    "sid-crlf": "not an engine.io session id",
    "sid-object": "not an engine.io session id",
    "open-array": "nested too deeply",
}
RAW_CONNECT = ("connect-array", "connect-null", "connect-number", "connect-string")


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    rc: int
    out: str
    err: str
    elapsed_s: float
    max_rss_mb: float

    @property
    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.out)
        return data

    @property
    def probe(self) -> dict[str, Any]:
        report = self.report
        probe: dict[str, Any] = report.get("probe", report)
        return probe

    def stages_run(self) -> int:
        return sum(1 for s in self.probe["stages"] if not s["data"].get("skipped"))


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run_cli(*args: str) -> Run:
    """One `python -m wizard ...` under the memory cap; its peak RSS (and its children's)
    from wait4, so the cap is checked from outside."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "wizard", *args], cwd=ROOT, env=env,
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                preexec_fn=_cap_memory)
        watchdog = threading.Timer(120, proc.kill)  # a hang fails the test, never the run
        watchdog.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        elapsed = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(tuple(args), proc.returncode, out.read().decode(errors="replace"),
                   err.read().decode(errors="replace"), elapsed, usage.ru_maxrss / 1024)


def _argv(command: str, server: HostileServer, mode: str, raw: bool) -> tuple[str, ...]:
    path = f"/{mode}+{command}{'-raw' if raw else ''}/"
    argv = (command, server.url(), "--path", path, "--timeout", str(TIMEOUT), "--json")
    return (*argv, "--connect-to", "127.0.0.1") if raw else argv


Key = tuple[str, str, bool]  # command, mode, raw CONNECT


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with running() as hostile:
        yield hostile


@pytest.fixture(scope="module")
def runs(server: HostileServer) -> dict[Key, Run]:
    keys: list[Key] = [(command, mode, False) for mode in [*ATTACKS, "healthy"]
                       for command in ("probe", "diagnose")]
    keys += [(command, mode, True) for mode in RAW_CONNECT for command in ("probe", "diagnose")]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(lambda key: run_cli(*_argv(key[0], server, key[1], key[2])), keys)
        return dict(zip(keys, results, strict=True))


def _assert_bounded_failure(run: Run, words: str) -> None:
    assert "Traceback" not in run.err, run.err
    assert run.rc == 1, (run.rc, run.err[-2000:], run.out[-2000:])
    budget = 1.5 * TIMEOUT * run.stages_run() + STARTUP_SLACK_S
    assert run.elapsed_s <= budget, (run.elapsed_s, budget, run.out[-3000:])
    assert run.max_rss_mb < MEMORY_CAP / (1 << 20)
    assert run.report["ok"] is False
    assert words in run.out.lower(), run.out[-3000:]


@pytest.mark.parametrize("command", ["probe", "diagnose"])
@pytest.mark.parametrize("mode", list(ATTACKS))
def test_hostile_server_gives_a_bounded_finding(runs: dict[Key, Run], command: str,
                                                mode: str) -> None:
    _assert_bounded_failure(runs[(command, mode, False)], ATTACKS[mode])


@pytest.mark.parametrize("command", ["probe", "diagnose"])
@pytest.mark.parametrize("mode", RAW_CONNECT)
def test_raw_connect_refuses_a_bad_connect_answer(runs: dict[Key, Run], command: str,
                                                  mode: str) -> None:
    """--connect-to uses the raw CONNECT the deploy uses: 40[] & co. were an AttributeError."""
    run = runs[(command, mode, True)]
    _assert_bounded_failure(run, ATTACKS[mode])
    socketio = next(s for s in run.probe["stages"] if s["name"] == "socketio")
    assert socketio["ok"] is False


@pytest.mark.parametrize("command", ["probe", "diagnose"])
def test_the_hostile_server_is_healthy_outside_its_attacks(runs: dict[Key, Run],
                                                           command: str) -> None:
    """The control: the same server on a plain path passes, so each failure is the attack's."""
    run = runs[(command, "healthy", False)]
    assert run.rc == 0, run.out[-3000:]
    assert run.probe["transport"] == "websocket"


def test_a_crlf_sid_never_reaches_a_request_line(runs: dict[Key, Run],
                                                 server: HostileServer) -> None:
    assert runs[("probe", "sid-crlf", False)].rc == 1
    assert b"X-Injected" not in server.requests()
    assert b"sid=" not in b"".join(line for line in server.requests().split(b"\r\n")
                                   if b"/sid-" in line)


def test_a_set_cookie_is_echoed_only_when_it_is_clean(server: HostileServer) -> None:
    """Cookies of the handshake ride along on the upgrade (sticky sessions), but a value with
    a bare LF would split our request: it is dropped, the clean one still goes."""
    report = run_probe(server.url(), ProbeOptions(path="/cookie-lf/", raw_connect=True,
                                                  timeout=TIMEOUT))
    assert report.ok
    upgrades = [head for head in server.requests().split(b"\r\n\r\n")
                if b"/cookie-lf/" in head and b"transport=websocket" in head]
    assert upgrades and all(b"Cookie: route=r1\r\n" in head + b"\r\n" for head in upgrades)
    assert b"X-Injected" not in server.requests()


def test_a_tls_handshake_dripped_a_byte_at_a_time_hits_the_deadline(
        server: HostileServer) -> None:
    """A socket timeout restarts on every byte; the TLS handshake has an absolute deadline."""
    run = run_cli("probe", f"https://127.0.0.1:{server.port}", "--path", "/tls-drip/",
                  "--insecure", "--timeout", str(TIMEOUT), "--json")
    _assert_bounded_failure(run, "timed out after 2 s")
    assert [s["name"] for s in run.probe["stages"]] == ["tcp", "tls"]


@pytest.mark.parametrize("header", ["X-Name: \u4e2d", "X-Name: a\x01b"])
def test_a_header_that_cannot_be_sent_is_bad_input(header: str) -> None:
    run = run_cli("probe", "http://127.0.0.1:9", "--header", header)
    assert run.rc == 2 and "Traceback" not in run.err
    assert "invalid header" in run.err


def test_an_exception_inside_a_stage_becomes_a_failed_stage(server: HostileServer) -> None:
    """Whatever a stage did not anticipate must fail the probe, not escape it: the deploy
    rolls back on a failed report, and an exception would skip that. ``run_probe`` runs every
    stage through ``Run.guarded``; the guard is driven here with a stage that raises."""
    from wizard.probe.run import Run
    from wizard.probe.wire import normalize_path, parse_url

    def broken() -> None:
        raise AttributeError("'list' object has no attribute 'get'")

    path = normalize_path("/healthy/")
    run = Run(server.url(), parse_url(server.url(), path), path,
              ProbeOptions(path="/healthy/", raw_connect=True, timeout=TIMEOUT), None)
    run.guarded("websocket", broken)
    report = run.report()
    websocket = report.stage("websocket")
    assert not report.ok and websocket is not None and not websocket.ok
    assert "AttributeError" in websocket.detail
    assert "unexpected-response" in [f.code for f in report.findings]
