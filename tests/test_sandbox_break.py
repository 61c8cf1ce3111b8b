"""``sockwizard sandbox --break KIND`` (wizard/sandbox/faults.py, breaks.py): each classic fault
deployed into a real proxy, its symptom seen by a real python-socketio client, ``diagnose``
naming it from the live config, and the fix deployed by the real transaction making the
symptom go away."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from wizard.errors import SockwizardError
from wizard.model import Backend, DeploySpec, ProxyKind
from wizard.proxies import profile
from wizard.render import render
from wizard.sandbox import Fault, start_sandbox
from wizard.sandbox.breaks import apply_fix, diagnose_box, show_symptom
from wizard.sandbox.faults import edited

REPO = Path(__file__).resolve().parent.parent
EXPECTED = {Fault.TIMEOUT: "read-timeout-too-short", Fault.NO_UPGRADE: "websocket-upgrade-blocked",
            Fault.NO_STICKY: "no-sticky-sessions", Fault.PATH: "path-mismatch"}
CASES = [(ProxyKind.NGINX, f) for f in Fault] + [
    (ProxyKind.APACHE, Fault.TIMEOUT), (ProxyKind.APACHE, Fault.NO_UPGRADE),
    (ProxyKind.APACHE, Fault.NO_STICKY), (ProxyKind.CADDY, Fault.NO_STICKY),
    (ProxyKind.CADDY, Fault.TIMEOUT)]


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize(("kind", "fault"), CASES, ids=[f"{k.value}-{f.value}" for k, f in CASES])
def test_fault_shows_is_diagnosed_and_fixed(kind: ProxyKind, fault: Fault) -> None:
    box = start_sandbox(kind, DeploySpec(), fault=fault)
    try:
        assert box.fault is not None and box.result is None  # no transaction: it would roll back
        symptom = show_symptom(box)
        assert symptom.seen, symptom.what
        diagnosis = diagnose_box(box)
        codes = [f.code for f in diagnosis.findings if f.severity == "error"]
        assert EXPECTED[fault] in codes, codes
        result = apply_fix(box)
        assert result.ok, result.message()
        after = show_symptom(box)
        assert not after.seen, after.what
    finally:
        box.stop()
    assert not box.prefix.exists()


def _children(pid: int) -> list[int]:
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(pid) and fields[0] != "Z":
            found.append(int(name))
    return found


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "(exited)"


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_the_fix_waits_out_a_starved_old_nginx_worker() -> None:
    """The flake of `--break no-sticky --fix` under load: nginx tells an old worker to quit
    through a channel it reads in the same event batch as a waiting connection, so a worker
    starved of CPU past the settle's quiet period still serves one connection with the broken
    config ("Session ID unknown" in the affinity check, or in the user's client). The worker
    is frozen here (SIGSTOP) across the fix's reload and thawed HOLD_S later: the sandbox must
    not hand its URL out while that worker can still accept."""
    hold_s = 3.0  # well past the whole fix (deploy, settle, affinity) without the wait
    box = start_sandbox(ProxyKind.NGINX, DeploySpec(), fault=Fault.NO_STICKY)
    master = next(p for p in box.procs if p.name == "nginx").popen.pid
    old = _children(master)
    assert old
    thawed = threading.Event()

    def thaw() -> None:
        time.sleep(hold_s)
        for pid in old:
            os.kill(pid, signal.SIGCONT)
        thawed.set()

    try:
        for pid in old:
            os.kill(pid, signal.SIGSTOP)
        threading.Thread(target=thaw, daemon=True).start()
        result = apply_fix(box)
        # When the sandbox is back, the old worker has read its quit: it has closed its
        # listening socket (its title says so) or is gone.
        assert thawed.is_set(), "the sandbox was handed out while the old worker could accept"
        titles = [_title(pid) for pid in old]
        assert all(t == "(exited)" or "shutting down" in t for t in titles), titles
        assert result.ok, result.message()
        assert box.ok, box.affinity_line()
        after = show_symptom(box)
        assert not after.seen, after.what
    finally:
        for pid in old:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        box.stop()


@pytest.mark.parametrize("kind", [ProxyKind.NGINX, ProxyKind.APACHE, ProxyKind.CADDY])
@pytest.mark.parametrize("backends", [1, 2])
def test_fault_edits_remove_exactly_that_job(kind: ProxyKind, backends: int) -> None:
    """The faults are the rendered config minus some lines (no hand-written configs): each edit
    still fits the templates, and leaves everything else as rendered."""
    spec = DeploySpec(proxy=kind, backends=tuple(Backend("127.0.0.1", 3000 + i)
                                                 for i in range(backends)))
    whole = render(spec).text
    for fault in (Fault.NO_UPGRADE, Fault.NO_STICKY):
        if fault.value not in profile(kind).fault_edits or (
                fault is Fault.NO_STICKY and backends == 1):
            continue
        text = edited(spec, fault)
        assert text != whole and len(text) < len(whole)
        kept = set(text.splitlines())
        assert kept <= set(whole.splitlines()) | {""} or kind is ProxyKind.APACHE
    if kind is ProxyKind.NGINX:
        assert "proxy_set_header Upgrade" not in edited(spec, Fault.NO_UPGRADE)
        if backends == 2:
            assert "hash $remote_addr" not in edited(spec, Fault.NO_STICKY)


def test_a_fault_the_proxy_cannot_have_says_why() -> None:
    with pytest.raises(SockwizardError) as err:
        edited(DeploySpec(proxy=ProxyKind.CADDY), Fault.NO_UPGRADE)
    assert "forwards WebSocket upgrades by itself" in err.value.hint


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_cli_break_then_fix() -> None:
    done = subprocess.run([sys.executable, "-m", "wizard", "sandbox", "--proxy", "nginx",
                           "--break", "no-sticky", "--fix", "--no-wait"],
                          capture_output=True, text=True, cwd=REPO, timeout=80)
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert "backend 2: (none) → 127.0.0.1:" in err  # the fault needs two: said so
    assert 'got 400 "Session ID unknown"' in err and "no-sticky-sessions" in err
    assert "hash $remote_addr consistent;" in err  # the diagnosis's fix
    assert '✓ after the fix: 0 of 12 polling sessions got 400 "Session ID unknown"' in err
    bad = subprocess.run([sys.executable, "-m", "wizard", "sandbox", "--proxy", "nginx", "--break", "nope"],
                         capture_output=True, text=True, cwd=REPO, timeout=30)
    assert bad.returncode != 0 and "Unknown fault 'nope'" in bad.stderr
