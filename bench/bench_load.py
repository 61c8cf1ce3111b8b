"""`sockwizard probe --clients N` against a plain Node socket.io-client opening the same N.

The path under load is real: a rig nginx (tests/rig.py) serving the config sockwizard renders
for it (`sockwizard render --proxy nginx`), with worker_connections well above 2 per client, in
front of the rig's Node socket.io 4.x server listening with a 4096 backlog (Node's default 511
overflows from ~1,000 simultaneous connects, TESTBED.md). For each N (100, 500, 1000) the two
clients run alternately, `--runs` times each:

* sockwizard: `python -m wizard probe URL --clients N --json` (a whole probe: the staged
  checks, then the N clients). Its JSON "clients" section gives connect p50/p95/p99, failures,
  the stage's CPU and the process's peak RSS.
* the anchor: `node bench/node_clients.js --clients=N` (socket.io-client 4.8, WebSocket
  transport, `forceNew`), printing the same fields.

Both processes are also measured from outside (wall time, CPU from wait4()), so the table
shows the stage (what the probe's numbers mean) and the whole command (what a user waits for).
Between runs the bench waits until the server has seen every client of the previous run
disconnect, so runs do not overlap.

Run: ``python3 bench/bench_load.py`` (about 2 minutes); ``--clients 100,500`` to pick sizes.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402 - the bench dir is not a package
    BENCH_DIR,
    REPO,
    BenchError,
    Sample,
    Series,
    base_parser,
    dump_json,
    fmt,
    interleave,
    machine_line,
    ratio,
    repo_env,
    run_measured,
    sockwizard_argv,
    table,
    use_repo,
)

use_repo()
from tests import rig  # noqa: E402

PROBE = "sockwizard probe --clients"
NODE = "node socket.io-client"


def rendered_site(port: int, backend: rig.NodeBackend) -> str:
    """The nginx site sockwizard renders for this backend (what a user would deploy)."""
    m = run_measured(sockwizard_argv("render", "--proxy", "nginx", "--listen",
                                     f"127.0.0.1:{port}", "--backend", backend.address),
                     env=repo_env(), cwd=REPO)
    return m.stdout


def probe_case(url: str, count: int, timeout: float) -> Callable[[], Sample]:
    argv = sockwizard_argv("probe", url, "--clients", str(count), "--timeout", str(timeout),
                           "--json")

    def run() -> Sample:
        # Exit 1 (a finding) is still a measurement; only the JSON matters.
        m = run_measured(argv, env=repo_env(), cwd=REPO, check=False, timeout=300)
        try:
            report = json.loads(m.stdout)
            clients = report["clients"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BenchError(f"probe printed no clients report ({exc}):\n{m.stdout[-1500:]}\n"
                             f"{m.stderr[-1500:]}") from None
        return _sample(clients, m.wall_s, m.cpu_s)

    return run


def node_case(url: str, count: int, timeout: float) -> Callable[[], Sample]:
    argv = ["node", str(BENCH_DIR / "node_clients.js"), f"--url={url}", f"--clients={count}",
            f"--timeout={int(timeout * 1000)}"]

    def run() -> Sample:
        m = run_measured(argv, env=rig.node_env(), cwd=REPO, timeout=300)
        try:
            clients = json.loads(m.stdout)
        except ValueError as exc:
            raise BenchError(f"node_clients.js printed no JSON ({exc}):\n{m.stdout[-800:]}\n"
                             f"{m.stderr[-1500:]}") from None
        return _sample(clients, m.wall_s, m.cpu_s)

    return run


def _sample(clients: dict[str, object], wall_s: float, cpu_s: float) -> Sample:
    def num(key: str) -> float:
        value = clients.get(key)
        return float(value) if isinstance(value, int | float) else float("nan")

    errors = clients.get("errors")
    if isinstance(errors, dict) and errors:
        print(f"    failures: {errors}", file=sys.stderr)
    return {
        "p50_ms": num("p50_ms"), "p95_ms": num("p95_ms"), "p99_ms": num("p99_ms"),
        "max_ms": num("max_ms"), "all_done_ms": num("all_done_s") * 1000,
        "connected": num("connected"), "failed": num("failed"),
        "stage_cpu_ms": num("cpu_s") * 1000, "rss_mb": num("max_rss_mb"),
        "wall_ms": wall_s * 1000, "process_cpu_ms": cpu_s * 1000,
    }


def quiet_between(backend: rig.NodeBackend) -> Callable[[Callable[[], Sample]],
                                                         Callable[[], Sample]]:
    """Wrap a case: before it runs, wait until every client the server saw has gone."""

    def wrap(case: Callable[[], Sample]) -> Callable[[], Sample]:
        def run() -> Sample:
            def settled() -> bool:
                return len(backend.events("CONNECT")) == len(backend.events("DISCONNECT"))

            rig.wait_for("the previous run's clients to disconnect", settled, timeout=30,
                         interval=0.05)
            return case()

        return run

    return wrap


METRICS = [("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"),
           ("all_done_ms", "all done ms"), ("failed", "failed"),
           ("stage_cpu_ms", "CPU ms (stage)"), ("process_cpu_ms", "CPU ms (process)"),
           ("rss_mb", "peak RSS MB"), ("wall_ms", "wall ms (process)")]


def load_table(results: dict[int, dict[str, Series]]) -> str:
    rows = []
    for count, series in results.items():
        ours, node = series[PROBE], series[NODE]
        for s in (ours, node):
            rows.append([str(count), s.name,
                         *(fmt(s.median(key), 0 if key == "failed" else 1)
                           for key, _ in METRICS)])
        rows.append([str(count), "ratio sockwizard / node",
                     *(ratio(ours.median(key), node.median(key)) if key != "failed" else ""
                       for key, _ in METRICS)])
    return table(["N", "client", *(label for _, label in METRICS)], rows)


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0], runs=5)
    p.add_argument("--clients", default="100,500,1000",
                   help="comma-separated client counts (default 100,500,1000)")
    p.add_argument("--timeout", type=float, default=20.0,
                   help="per-client connect timeout in seconds, both clients (default 20)")
    p.add_argument("--nginx-workers", type=int, default=1,
                   help="nginx worker_processes (default 1)")
    args = p.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    connections = max(8192, 4 * max(counts) + 64)

    backend = rig.NodeBackend(backlog=4096)
    port = rig.free_port()
    proxy = rig.ProxyInstance.from_site(
        "nginx", rendered_site(port, backend), port=port, worker_connections=connections,
        worker_processes=args.nginx_workers)
    try:
        proxy.start()
        rig.wait_handshake(proxy.url)
        print(f"### Many clients through nginx\n\n{machine_line()}\n")
        print(f"nginx 1 master + {args.nginx_workers} worker(s), worker_connections "
              f"{connections}; Node socket.io server, backlog 4096; medians of {args.runs} "
              f"interleaved runs per N (after {args.warmup} warm-up).\n")
        results: dict[int, dict[str, Series]] = {}
        wrap = quiet_between(backend)
        for count in counts:
            print(f"N = {count}:", file=sys.stderr)
            results[count] = interleave({
                PROBE: wrap(probe_case(proxy.url, count, args.timeout)),
                NODE: wrap(node_case(proxy.url, count, args.timeout)),
            }, args.runs, warmup=args.warmup)
            time.sleep(0.5)
        print(load_table(results) + "\n")
        dump_json(args.json, {"machine": machine_line(), "nginx_workers": args.nginx_workers,
                              "results": {str(k): v for k, v in results.items()}})
    finally:
        proxy.stop()
        backend.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
