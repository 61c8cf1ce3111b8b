"""How fast ``sockwizard diagnose`` says "read-timeout-too-short" on a host reached over SSH,
against the naive way: keep an idle client connected and wait for the drop.

The fault is the realistic one from REFERENCE.md: nginx's default ``proxy_read_timeout`` (60 s,
nothing in the config) in front of a Socket.IO server whose pings were raised
(pingInterval 80 s, pingTimeout 20 s) — every idle client drops at 60 s with "transport close".
``--fast`` uses ``proxy_read_timeout 20s`` with the default pings instead (drop at 20 s).

Everything is real: the rig's sshd (user swdeploy, passwordless sudo), an nginx instance from
tests/rig.py, the Node socket.io 4.x server. Measured, interleaved round by round:

* ``sockwizard diagnose URL --host swdeploy@127.0.0.1:PORT --proxy nginx --config ...``, the
  whole process (interpreter start, imports, SSH connect, ``sudo nginx -T``, probe, rules);
* the anchor: OpenSSH by hand reading the same config (``ssh … sudo nginx -T``) — what a human
  does first, before reading and judging 100+ lines;
* in-process ``run_diagnosis`` over an already open SSH connection (the TUI's case).

Then once, side by side in threads: a python-socketio client that connects and waits for its
disconnect, and ``sockwizard probe --hold`` (which times the drop) — the naive verdicts.

Run as root: ``python3 bench/bench_verdict.py [--fast] [--runs 7]``. Nothing asserts a time.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402 - the bench dir is not a package
    REPO,
    base_parser,
    dump_json,
    interleave,
    machine_line,
    repo_env,
    run_measured,
    sockwizard_argv,
    spread,
    table,
    use_repo,
)

use_repo()

from tests import rig  # noqa: E402


def nginx_site(port: int, backend: str, read_timeout: str) -> str:
    timeout_line = f"        proxy_read_timeout {read_timeout};\n" if read_timeout else ""
    return (
        "map $http_upgrade $connection_upgrade {\n    default upgrade;\n    '' close;\n}\n"
        f"server {{\n    listen 127.0.0.1:{port};\n    location /socket.io/ {{\n"
        f"        proxy_pass http://{backend};\n        proxy_http_version 1.1;\n"
        "        proxy_set_header Upgrade $http_upgrade;\n"
        "        proxy_set_header Connection $connection_upgrade;\n"
        "        proxy_set_header Host $host;\n"
        "        proxy_set_header X-Forwarded-Proto $scheme;\n"
        f"{timeout_line}    }}\n}}\n")


def naive_client(url: str, limit: float, out: dict[str, object]) -> None:
    """What people do: connect, stay idle, wait for "disconnect"."""
    import socketio

    client = socketio.Client(reconnection=False)
    dropped = threading.Event()
    reason: list[str] = []

    @client.event
    def disconnect(why: str = "") -> None:
        reason.append(str(why))
        dropped.set()

    started = time.perf_counter()
    client.connect(url, wait_timeout=10)
    connected = time.perf_counter()
    dropped.wait(limit)
    out["client_s"] = time.perf_counter() - started
    out["client_idle_s"] = time.perf_counter() - connected
    out["client_reason"] = reason[0] if reason else "no drop"
    if not dropped.is_set():
        client.disconnect()


def probe_hold(url: str, limit: float, out: dict[str, object]) -> None:
    m = run_measured(sockwizard_argv("probe", url, "--hold", str(limit), "--json"),
                     env=repo_env(), cwd=REPO, check=False, timeout=limit + 60)
    import json

    data = json.loads(m.stdout) if m.stdout.strip().startswith("{") else {}
    hold = data.get("hold") or {}
    out["hold_s"] = m.wall_s
    out["hold_drop_s"] = hold.get("drop_after_s")
    out["hold_codes"] = [f["code"] for f in data.get("findings", [])]


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], runs=7)
    parser.add_argument("--fast", action="store_true",
                        help="proxy_read_timeout 20s with default pings (drop at 20 s)")
    args = parser.parse_args()
    if not rig.is_root():
        sys.exit("needs root: runs sshd with test users (see tests/rig.py)")
    if args.fast:
        ping, read_timeout, expect_drop = (25000, 20000), "20s", 20.0
        fault = "proxy_read_timeout 20s; pingInterval 25 s + pingTimeout 20 s"
    else:
        ping, read_timeout, expect_drop = (80000, 20000), "", 60.0
        fault = "nginx default proxy_read_timeout (60 s); pingInterval 80 s + pingTimeout 20 s"
    sshd = rig.SshdInstance()
    factory = rig.ProxyFactory(rig.make_world_dir("sockwizard-bench-verdict-"))
    backend = rig.NodeBackend(ping_interval=ping[0], ping_timeout=ping[1])
    try:
        port = rig.free_port()
        inst = factory.from_site("nginx", nginx_site(port, backend.address, read_timeout),
                                 port=port).start()
        user = rig.DEPLOY_USER
        key = sshd.client_key(user)
        diagnose = sockwizard_argv(
            "diagnose", inst.url, "--host", f"{user}@{sshd.host}:{sshd.port}", "--identity",
            str(key), "--known-hosts", str(sshd.known_hosts), "--proxy", "nginx", "--config",
            str(inst.config_path), "--json")
        by_hand = sshd.ssh_argv(user, "sudo", "-n", "nginx", "-T", "-c", str(inst.config_path))

        verdicts: list[str] = []

        def cli_case() -> dict[str, float]:
            m = run_measured(diagnose, env=repo_env(), cwd=REPO, check=False)
            if m.returncode != 1 or "read-timeout-too-short" not in m.stdout:
                raise SystemExit(f"unexpected diagnose result:\n{m.stdout}\n{m.stderr}")
            verdicts.append(m.stdout)
            return {"wall_ms": m.wall_s * 1000, "cpu_ms": m.cpu_s * 1000}

        def by_hand_case() -> dict[str, float]:
            m = run_measured(by_hand)
            return {"wall_ms": m.wall_s * 1000}

        from wizard.diagnose import run_diagnosis
        from wizard.probe import ProbeOptions
        from wizard.remote import SshRemote, SshTarget

        remote = SshRemote.connect(SshTarget(host=sshd.host, port=sshd.port, user=user),
                                   known_hosts=sshd.known_hosts, identity=key)

        def in_process_case() -> dict[str, float]:
            t0 = time.perf_counter()
            d = run_diagnosis(inst.url, ProbeOptions(sessions=6), remote=remote, proxy="nginx",
                              config_path=str(inst.config_path))
            wall = (time.perf_counter() - t0) * 1000
            assert d.findings and d.findings[0].code == "read-timeout-too-short"
            return {"wall_ms": wall, "config_ms": d.timings.get("config_ms", 0.0),
                    "probe_ms": d.timings.get("probe_ms", 0.0)}

        print(f"fault: {fault}", file=sys.stderr)
        series = interleave({"sockwizard diagnose over SSH (whole process)": cli_case,
                             "ssh + sudo nginx -T by hand (read only)": by_hand_case,
                             "run_diagnosis, SSH already open": in_process_case},
                            args.runs, warmup=args.warmup)
        remote.close()

        print(f"naive: waiting for the drop (up to {expect_drop + 30:g} s)...", file=sys.stderr)
        naive: dict[str, object] = {}
        limit = expect_drop + 30
        threads = [threading.Thread(target=naive_client, args=(inst.url, limit, naive)),
                   threading.Thread(target=probe_hold, args=(inst.url, limit, naive))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        backend.stop()
        factory.close()
        sshd.stop()

    print(f"\n{machine_line()}")
    print(f"fault: {fault}\n")
    rows = [[name, spread(s, "wall_ms", 0), "read-timeout-too-short (from the config)"
             if "sockwizard" in name or "run_diagnosis" in name else "config text only"]
            for name, s in series.items()]
    rows.append(["python-socketio client, idle until it drops",
                 f"{float(naive['client_s']) * 1000:,.0f}",  # type: ignore[arg-type]
                 f"disconnect: {naive['client_reason']}"])
    rows.append(["sockwizard probe --hold (times the drop)",
                 f"{float(naive['hold_s']) * 1000:,.0f}",  # type: ignore[arg-type]
                 f"drop after {naive.get('hold_drop_s')} s; findings {naive.get('hold_codes')}"])
    print(table(["time to a verdict", "wall ms, median (min–max)", "what it said"], rows))
    inproc = series["run_diagnosis, SSH already open"]
    print(f"\nin-process split (medians): config read over SSH "
          f"{inproc.median('config_ms'):.0f} ms, probe {inproc.median('probe_ms'):.0f} ms "
          "(run concurrently)")
    cli = series["sockwizard diagnose over SSH (whole process)"].median("wall_ms") or 0
    print(f"speed-up over waiting for the drop: {float(naive['client_s']) * 1000 / cli:.0f}x")
    dump_json(args.json, {"fault": fault, "series": series, "naive": naive,
                          "verdict": verdicts[-1] if verdicts else ""})


if __name__ == "__main__":
    main()
