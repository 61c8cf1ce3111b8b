"""Round trips of one deploy: sockwizard, OpenSSH by hand and ansible-playbook behind a delay.

Issue #15, item 1. This kernel has no netem, so latency is made in user space: one relay
(tests/relay.py) in front of sshd and one in front of nginx, each delaying every chunk by D each
way, D = 0, 25 and 50 ms (RTT 0, 50, 100 ms on top of loopback). Every case deploys a real
change (a new `proxy_read_timeout` each run) of the same nginx config on the rig's loopback
"host" (bench_deploy.py's `LoopbackHost`: the rig's sshd, a rig nginx in front of the Node
socket.io server), validates, reloads and checks Socket.IO through nginx:

* **sockwizard**: `python -m wizard deploy --host swdeploy@127.0.0.1:RELAY --probe-url
  http://127.0.0.1:RELAY ...`: detect, diff, backup, upload, validate, reload, settle on the
  config marker and the live probe (handshake, upgrade, Socket.IO CONNECT).
* **OpenSSH by hand**: `scp` + `ssh 'mv && sudo nginx -t && sudo nginx -s reload'` + a Node
  socket.io-client connection until it is on WebSocket (bench/node_probe.js).
* **ansible-playbook** (bench_deploy.py's playbook, pipelining on; without and with fact
  gathering — the issue's anchor did not say it turned facts off — both with the interpreter
  given, and once more with facts and the interpreter discovered, as Ansible does unless told):
  `template` with `validate` + `backup`, the reload handler, a `uri` check of the handshake
  (run on the host, through the relay in front of nginx).

Every case (5 methods x 3 delays; the warm row apart, see below) is interleaved round by
round. The slope of the median wall time over the added RTT (least squares, seconds per
second) is the number of round trips the method waits for. The relays also count, per run, the
TCP connections and request/answer exchanges they carried (HTTP: the deploy's settle and
probe; SSH: every exchange of the protocol, key exchange included); those are exact, the slope
is measured.

Run as root (sshd, sudo users): ``python3 bench/bench_rtt.py`` (~3 minutes with the default
5 runs; ``--skip-ansible`` shortens it).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402 - the bench dir is not a package
    PYTHON,
    REPO,
    BenchError,
    Sample,
    Series,
    base_parser,
    dump_json,
    fmt,
    interleave,
    machine_line,
    run_measured,
    spread,
    table,
    use_repo,
)
from bench_deploy import (  # noqa: E402
    ANSIBLE_VENV,
    Counter,
    Keys,
    LoopbackHost,
    Target,
    ansible_case,
    ensure_ansible,
    sockwizard_case,
)

use_repo()
from tests import rig  # noqa: E402
from tests.relay import Relay  # noqa: E402
from wizard.model import DeploySpec  # noqa: E402
from wizard.render import render  # noqa: E402

DELAYS_MS = (0, 25, 50)  # one way; RTT is twice
SW = "sockwizard deploy"
SW_WARM = "sockwizard deploy, warm (over its own last deploy)"
HAND = "scp + ssh + Node socket.io-client"
ANSIBLE = "ansible-playbook (pipelining, no facts)"
# The anchor ("pipelining on") did not turn fact gathering off: both are measured,
# and once more as a user who turned only pipelining on has it (the interpreter discovered).
ANSIBLE_FACTS = "ansible-playbook (pipelining, facts gathered)"
ANSIBLE_ANCHOR = "ansible-playbook (pipelining only: facts, interpreter discovery)"


def hand_case(target: Target, keys: Keys, spec_for: Callable[[int], DeploySpec],
              counter: Counter, work: Path) -> Callable[[], Sample]:
    """scp the rendered file beside the target, one ssh for mv + nginx -t + reload, then the
    Node client until it is on WebSocket."""
    opts = shlex.join(keys.ssh_options())
    node_env = rig.node_env()

    def run() -> Sample:
        local = work / "hand-site.conf"
        local.write_text(render(spec_for(counter.next())).text)
        remote = f"{rig.DEPLOY_USER}@{target.ssh_host}"
        script = "\n".join([
            "set -eu",
            f"scp -q {opts} -P {target.ssh_port} {shlex.quote(str(local))} "
            f"{remote}:{shlex.quote(target.dest + '.tmp')}",
            f"ssh {opts} -p {target.ssh_port} {remote} "
            + shlex.quote(f"mv {target.dest}.tmp {target.dest} && sudo {target.validate_cmd} "
                          f"&& sudo {target.reload_cmd}") + " >/dev/null 2>&1",
            f"node {shlex.quote(str(REPO / 'bench' / 'node_probe.js'))} "
            f"{shlex.quote(target.probe_url)} 5000",
        ])
        m = run_measured(["bash", "-c", script], env=node_env, check=False, timeout=120)
        if m.returncode != 0:
            raise BenchError(f"the OpenSSH pipeline failed ({m.returncode}):\n{m.stderr[-2000:]}")
        return {"wall_ms": m.wall_s * 1000, "cpu_ms": m.cpu_s * 1000}

    return run


def counted(case: Callable[[], Sample], ssh: Relay, http: Relay) -> Callable[[], Sample]:
    """The case, with what its relays carried during the run added to its sample."""

    def run() -> Sample:
        ssh.reset()
        http.reset()
        sample = dict(case())
        s, h = ssh.counts, http.counts
        sample.update(ssh_conns=s.connections, ssh_exchanges=s.round_trips,
                      http_conns=h.connections, http_exchanges=h.round_trips)
        return sample

    return run


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x."""
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return None if den == 0 else sum((x - mx) * (y - my) for x, y in points) / den


def rtt_table(series: Mapping[str, Series], methods: Sequence[str]) -> str:
    rows = []
    for method in methods:
        cells, points = [], []
        for d in DELAYS_MS:
            s = series[f"{method} @ {2 * d} ms"]
            wall = s.median("wall_ms")
            cells.append(spread(s, "wall_ms", 0))
            if wall is not None:
                points.append((2 * d / 1000, wall / 1000))
        rt = slope(points)
        base = series[f"{method} @ 0 ms"]
        rows.append([method, *cells, fmt(rt, 1),
                     f"{fmt(base.median('ssh_conns'), 0)} / {fmt(base.median('ssh_exchanges'), 0)}",
                     f"{fmt(base.median('http_conns'), 0)} / "
                     f"{fmt(base.median('http_exchanges'), 0)}"])
    return table(["deploy one nginx config", *(f"RTT {2 * d} ms: wall ms (min–max)"
                                               for d in DELAYS_MS),
                  "round trips (slope)", "SSH conns / exchanges", "HTTP conns / exchanges"],
                 rows)


def speedups(series: Mapping[str, Series], methods: Sequence[str]) -> str:
    """How many times faster sockwizard (cold, warm) is than each other method, at each RTT
    (medians of this run; the issue's goals: 2x OpenSSH by hand, 6x Ansible)."""
    lines = []
    for ours in (SW, SW_WARM):
        for method in (m for m in methods if m not in (SW, SW_WARM)):
            cells = []
            for d in DELAYS_MS:
                mine = series[f"{ours} @ {2 * d} ms"].median("wall_ms")
                theirs = series[f"{method} @ {2 * d} ms"].median("wall_ms")
                ratio = theirs / mine if mine and theirs else None
                cells.append(f"{fmt(ratio, 1)}x at {2 * d} ms")
            lines.append(f"- {ours} vs {method}: " + ", ".join(cells))
    return "Speed-up (their median wall time / ours):\n" + "\n".join(lines)


def known_hosts_for(sshd: rig.SshdInstance, ports: Sequence[int], path: Path) -> Path:
    """The rig's host key under each relay's port (a known_hosts line names host:port)."""
    key = sshd.host_key_line.split(" ", 1)[1]
    path.write_text("".join(f"[127.0.0.1]:{p} {key}\n" for p in ports))
    return path


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0], runs=5)
    p.add_argument("--skip-ansible", action="store_true")
    # Interleaved, the other methods (and sockwizard through another relay: another host
    # as connected) rewrite the file between two runs, so every sockwizard run finds it
    p.add_argument("--ansible-venv", type=Path, default=ANSIBLE_VENV)
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_rtt.py needs root (sshd, sudo users)", file=sys.stderr)
        return 2
    exe: Path | None = None
    if not args.skip_ansible:
        beside = shutil.which("ansible-playbook", path=str(Path(PYTHON).parent))
        exe = Path(beside) if beside else ensure_ansible(args.ansible_venv)
    print(f"### Round trips of one deploy: sockwizard vs OpenSSH by hand vs Ansible\n\n"
          f"{machine_line()}\n")
    work = Path(tempfile.mkdtemp(prefix="sockwizard-bench-rtt-"))
    relays: list[Relay] = []
    with rig.SshdInstance() as sshd:
        backend = rig.NodeBackend()
        host = LoopbackHost(sshd, backend)
        try:
            pairs = {}
            for d in DELAYS_MS:
                ssh = Relay(("127.0.0.1", sshd.port), delay=d / 1000).start()
                http = Relay(("127.0.0.1", host.port), delay=d / 1000).start()
                relays += [ssh, http]
                pairs[d] = (ssh, http)
            keys = Keys(host.keys.identity, known_hosts_for(
                sshd, [s.port for s, _ in pairs.values()], work / "known_hosts"))
            counter = Counter()
            cases: dict[str, Callable[[], Sample]] = {}
            warm: dict[str, Callable[[], Sample]] = {}
            for d, (ssh, http) in pairs.items():
                url = f"http://127.0.0.1:{http.port}"
                target = replace(host.target, ssh_port=ssh.port, probe_url=url,
                                 probe_url_on_host=url)
                cases[f"{SW} @ {2 * d} ms"] = counted(sockwizard_case(
                    [target], keys, host.spec_flags, counter, work, probe_url=True), ssh, http)
                warm[f"{SW_WARM} @ {2 * d} ms"] = counted(sockwizard_case(
                    [target], keys, host.spec_flags, counter, work, probe_url=True), ssh, http)
                cases[f"{HAND} @ {2 * d} ms"] = counted(
                    hand_case(target, keys, host.spec, counter, work), ssh, http)
                if exe is not None:
                    cases[f"{ANSIBLE} @ {2 * d} ms"] = counted(ansible_case(
                        exe, [target], keys, host.spec, counter, work / f"ansible-{d}",
                        tuned=True), ssh, http)
                    cases[f"{ANSIBLE_FACTS} @ {2 * d} ms"] = counted(ansible_case(
                        exe, [target], keys, host.spec, counter, work / f"ansible-{d}",
                        tuned=True, facts=True), ssh, http)
                    cases[f"{ANSIBLE_ANCHOR} @ {2 * d} ms"] = counted(ansible_case(
                        exe, [target], keys, host.spec, counter, work / f"ansible-{d}",
                        tuned=True, facts=True, discover=True), ssh, http)
            # Interleaved, every sockwizard run is cold: the other cases rewrite the file in
            # between, so the warm guard finds it changed (wizard.deploy.warm). The warm row:
            # each delay's runs back to back, each over its own last deploy (the warm-up run,
            # discarded, is the cold one that leaves the entry).
            series = interleave(cases, args.runs, warmup=args.warmup)
            for name, case in warm.items():
                series.update(interleave({name: case}, args.runs, warmup=max(1, args.warmup)))
            ansible = [ANSIBLE, ANSIBLE_FACTS, ANSIBLE_ANCHOR] if exe is not None else []
            methods = [SW, SW_WARM, HAND, *ansible]
            print(f"#### Medians of {args.runs} interleaved runs; relays in front of sshd and "
                  "nginx add RTT/2 each way\n")
            print(rtt_table(series, methods) + "\n")
            print(speedups(series, methods) + "\n")
            print("Round trips: the slope of the median wall time over the added RTT. "
                  "Connections and exchanges: counted by the relays during the 0 ms runs "
                  "(median per run; an exchange is a request and its answer, the closing "
                  "ones included).\n")
            dump_json(args.json, {"machine": machine_line(), "series": series})
        finally:
            for relay in relays:
                relay.close()
            host.stop()
            backend.stop()
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
