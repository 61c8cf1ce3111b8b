"""Where the hosts' CPU goes in a fleet deploy: per role, per host, beside the wall time.

bench_fleet.py measured ~165 ms of CPU per host on the hosts' side of a 50-host deploy (a
cpuacct cgroup around every sshd and nginx): on 2 shared cores that alone sets a ~4 s floor.
This script splits it. It runs `sockwizard deploy --inventory … --forks N` against
bench_deploy.py's namespaced `Fleet` (N hosts, default 5: the split per host does not need
fifty, and fifty on two cores measures the scheduler) under `perf record` of four scheduler
tracepoints on every CPU:

* ``sched_switch`` gives every slice of CPU each task ran, to the nanosecond, with the task's
  name at that moment (a process that forks, then execs, is billed to ``sshd`` before the exec
  and to ``bash`` after it);
* ``sched_process_fork`` / ``sched_process_exec`` give the process tree: a task belongs to a
  host when it descends from that host's sshd or nginx, however short-lived (most live < 1 ms:
  ``/proc`` polling and reaped children's times miss them, and sshd's session processes do not
  hand their children's times up).

Each slice goes to a role (``ROLES``): the sshd listener; per connection the monitor (the
re-exec'd sshd: config, host key, the privileged half of auth), its pre-auth child (key
exchange, the auth protocol) and its session process (channels, packet crypto); the
per-channel session fork (before the login shell's exec; internal-sftp runs here too); the
login shell (``bash -c``);
``sh -c`` (our scripts and their subshells); ``sudo``; ``timeout``; ``nginx`` run as a command
(``-v`` in detect, ``-t`` to validate, ``-s reload``: told apart by their order per host);
the nginx master (re-reads the config on the reload signal, forks workers); nginx workers (new
ones start, serve the settle and probe requests, old ones exit); every other program (coreutils
and friends), also listed per program with how many times it ran per host. The client's side
is the deploy process's own user + system time (wait4), per host.

The cgroup total (bench_fleet's ``HostCpu``) is printed beside the sum of the roles: the two
measure the same processes by different means.

Run as root: ``python3 bench/bench_hostcpu.py [--hosts 5] [--runs 3] [--perf-data DIR]``.
Needs ``perf`` (Debian: linux-perf) with tracepoints readable. Nothing is left behind (checked).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402 - the bench dir is not a package
    REPO,
    BenchError,
    base_parser,
    dump_json,
    fmt,
    machine_line,
    repo_env,
    run_measured,
    table,
)
from bench_deploy import Counter, Fleet  # noqa: E402
from bench_fleet import (  # noqa: E402
    HostCpu,
    leftovers,
    native_argv,
    running_fleet,
    write_inventory,
)

from tests import rig  # noqa: E402

EVENTS = ("sched:sched_switch", "sched:sched_process_fork", "sched:sched_process_exec")

LISTENER = "sshd listener (accept, fork)"
MONITOR = "sshd monitor (re-exec, config, host-key signature, key check)"
PREAUTH = "sshd pre-auth child (key exchange, auth protocol)"
SESSION = "sshd session process (channels, packet crypto)"
CHANNEL = "sshd per channel (session fork; internal-sftp)"
LOGIN = "login shell (bash -c)"
SH = "sh -c (our scripts, their subshells)"
SUDO = "sudo (sudoers, PAM, its fork)"
TIMEOUT = "timeout (GNU, its fork)"
NGINX_CMD = ("nginx -v (detect)", "nginx -t (validate)", "nginx -s reload (signal)")
NGINX_OTHER = "nginx as a command (other)"
MASTER = "nginx master (reload: re-read config, fork)"
WORKERS = "nginx workers (start, settle + probe, exit)"
OTHER = "other programs (coreutils etc.)"
ROLES = (LISTENER, MONITOR, PREAUTH, SESSION, CHANNEL, LOGIN, SH, SUDO, TIMEOUT, *NGINX_CMD,
         NGINX_OTHER, MASTER, WORKERS, OTHER)
SHELLS = {"sh", "dash"}

_SWITCH = re.compile(r"prev_comm=(.*?) prev_pid=(\d+) .*==> next_comm=")
_FORK = re.compile(r"comm=(.*?) pid=(\d+) child_comm=(.*?) child_pid=(\d+)")
_EXEC = re.compile(r"filename=(\S+) pid=(\d+)")
_LINE = re.compile(r"\[(\d+)\]\s+([\d.]+):\s+(sched:\S+):\s+(.*)$")


@dataclass
class Member:
    """A task of a host's tree: which host, from which daemon, how deep below it."""

    host: int
    daemon: str  # "sshd" or "nginx"
    depth: int
    root: bool
    channel: int = -1  # which session channel of the host's deploy (0: the first), if any
    nginx_nth: int = -1  # for an exec'd nginx command: its order among the host's
    nth_child: int = 0  # its place among its parent's children (sshd's privsep children)


@dataclass
class Split:
    """One run's attribution: ms per (host, role), ms and exec count per (host, program)."""

    role_ms: dict[tuple[int, str], float] = field(default_factory=lambda: defaultdict(float))
    prog_ms: dict[tuple[int, str], float] = field(default_factory=lambda: defaultdict(float))
    execs: Tally[tuple[int, str]] = field(default_factory=Tally)
    forks: Tally[int] = field(default_factory=Tally)
    channels: Tally[int] = field(default_factory=Tally)
    connections: Tally[int] = field(default_factory=Tally)
    nginx_cmds: Tally[int] = field(default_factory=Tally)
    execs_total: Tally[int] = field(default_factory=Tally)
    channel_ms: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    channel_execs: Tally[int] = field(default_factory=Tally)


def initial_members(fleet: Fleet) -> dict[int, Member]:
    members: dict[int, Member] = {}
    for i, daemon in enumerate(fleet.daemons):
        host, kind = i // 2, "sshd" if daemon.name.startswith("sshd") else "nginx"
        members[daemon.pid] = Member(host, kind, 0, True)
        for pid in rig.descendants_of(daemon.pid):  # nginx's workers; no session is open
            members[pid] = Member(host, kind, 1, False)
    return members


def role_of(m: Member, comm: str) -> str:
    if m.daemon == "nginx":
        return MASTER if m.root else WORKERS
    if comm == "sshd":
        if m.root:
            return LISTENER
        if m.depth == 1:
            return MONITOR
        # The monitor's first child speaks the protocol until auth; its second runs the session.
        return (PREAUTH if m.nth_child == 0 else SESSION) if m.depth == 2 else CHANNEL
    if comm == "bash":
        return LOGIN
    if comm in SHELLS:
        return SH
    if comm == "sudo":
        return SUDO
    if comm == "timeout":
        return TIMEOUT
    if comm == "nginx":
        return NGINX_CMD[m.nginx_nth] if 0 <= m.nginx_nth < 3 else NGINX_OTHER
    return OTHER


def attribute(lines: list[str], members: dict[int, Member]) -> Split:
    """Bill every CPU slice of a host's task to its role (see the module docstring)."""
    split = Split()
    last: dict[int, float] = {}  # cpu -> time of its previous switch
    nginx_seen: Tally[int] = Tally()
    children: Tally[int] = Tally()  # forks so far per parent pid
    for line in lines:
        hit = _LINE.search(line)
        if hit is None:
            continue
        cpu, t, event, trace = int(hit[1]), float(hit[2]), hit[3], hit[4]
        if event == "sched:sched_switch":
            sw = _SWITCH.search(trace)
            prev = last.get(cpu)
            last[cpu] = t
            if sw is None or prev is None:
                continue
            m = members.get(int(sw[2]))
            if m is not None:
                ms = (t - prev) * 1000
                role = role_of(m, sw[1])
                split.role_ms[m.host, role] += ms
                if role == OTHER:
                    split.prog_ms[m.host, sw[1]] += ms
                if m.channel >= 0:
                    split.channel_ms[m.channel] += ms
        elif event == "sched:sched_process_fork":
            fk = _FORK.search(trace)
            if fk is None or (parent := members.get(int(fk[2]))) is None:
                continue
            child = Member(parent.host, parent.daemon, parent.depth + 1, False, parent.channel,
                           nth_child=children[int(fk[2])])
            children[int(fk[2])] += 1
            members[int(fk[4])] = child
            split.forks[parent.host] += 1
            if parent.daemon == "sshd" and parent.root:
                split.connections[parent.host] += 1
            elif parent.daemon == "sshd" and parent.depth == 2:
                # A session channel's process: numbered in order per host (one connection).
                child.channel = split.channels[parent.host]
                split.channels[parent.host] += 1
        elif event == "sched:sched_process_exec":
            ex = _EXEC.search(trace)
            if ex is None or (m := members.get(int(ex[2]))) is None:
                continue
            prog = os.path.basename(ex[1])
            split.execs[m.host, prog] += 1
            split.execs_total[m.host] += 1
            if m.channel >= 0:
                split.channel_execs[m.channel] += 1
            if prog == "nginx" and m.daemon == "sshd":
                m.nginx_nth = nginx_seen[m.host]
                nginx_seen[m.host] += 1
                split.nginx_cmds[m.host] += 1
    return split


class PerfRecord:
    """`perf record` of the scheduler tracepoints on every CPU, for the length of a `with`."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PerfRecord:
        argv = ["perf", "record", "-a", "-q", "-o", str(self.out)]
        for event in EVENTS:
            argv += ["-e", event]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        # perf has started recording once its output has a header on disk.
        while not (self.out.exists() and self.out.stat().st_size > 0):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self._stop()
                raise BenchError(f"perf record did not start: {err.strip()}")
            time.sleep(0.05)
        time.sleep(0.3)
        return self

    def _stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def lines(self) -> list[str]:
        proc = subprocess.run(["perf", "script", "-i", str(self.out), "-F",
                               "cpu,time,event,trace"], capture_output=True, text=True,
                              timeout=300, errors="replace")
        if proc.returncode != 0:
            raise BenchError(f"perf script failed: {proc.stderr.strip()[-1000:]}")
        return proc.stdout.splitlines()


@dataclass
class Round:
    wall_ms: float
    client_ms: float
    cgroup_ms: float | None
    split: Split


def one_round(fleet: Fleet, cpu: HostCpu, counter: Counter, work: Path, forks: int,
              tree: Path, keep: Path | None, name: str) -> Round:
    """One deploy to every host with the sockwizard of checkout `tree`, under perf."""
    inv = write_inventory(work / "native.ini", fleet, counter.next())
    members = initial_members(fleet)
    data = (keep or work) / f"{name}.perf.data"
    env = repo_env({"XDG_STATE_HOME": str(work / "state")})
    env["PYTHONPATH"] = str(tree)
    before = cpu.ms()
    with PerfRecord(data) as perf:
        m = run_measured(native_argv(fleet, inv, forks), env=env, cwd=tree, check=False,
                         timeout=300)
        after = cpu.ms()  # waits for the sessions to end: their last slices are recorded
    if m.returncode != 0:
        raise BenchError(f"sockwizard deploy failed ({m.returncode}):\n{m.stderr[-3000:]}")
    split = attribute(perf.lines(), members)
    if keep is None:
        data.unlink(missing_ok=True)
    return Round(m.wall_s * 1000, m.cpu_s * 1000,
                 None if before is None or after is None else after - before, split)


Cases = dict[str, list[Round]]


def _mean(rounds: list[Round], hosts: int, value: Callable[[Round], float]) -> float:
    return sum(value(r) for r in rounds) / (hosts * len(rounds))


def _with_delta(cases: Cases, hosts: int, value: Callable[[Round], float],
                digits: int = 2) -> list[str]:
    """The per-host mean of each case, then (two cases) the second minus the first."""
    means = [_mean(rounds, hosts, value) for rounds in cases.values()]
    cells = [fmt(v, digits) for v in means]
    if len(means) == 2:
        cells.append(f"{means[1] - means[0]:+.{digits}f}")
    return cells


def _headers(first: str, cases: Cases) -> list[str]:
    return [first, *(f"{name}: CPU ms" for name in cases),
            *(["difference"] if len(cases) == 2 else [])]


def role_table(cases: Cases, hosts: int) -> str:
    def role_ms(role: str) -> Callable[[Round], float]:
        return lambda r: sum(v for (_, name), v in r.split.role_ms.items() if name == role)

    rows = [[role, *_with_delta(cases, hosts, role_ms(role))] for role in ROLES]
    rows.append(["**hosts, all roles**",
                 *_with_delta(cases, hosts, lambda r: sum(r.split.role_ms.values()), 1)])
    if all(r.cgroup_ms is not None for rounds in cases.values() for r in rounds):
        rows.append(["(the same by the cpuacct cgroup)",
                     *_with_delta(cases, hosts, lambda r: r.cgroup_ms or 0.0, 1)])
    rows.append(["client: the deploy process (wait4 user+sys)",
                 *_with_delta(cases, hosts, lambda r: r.client_ms, 1)])
    return table(_headers("per host, one deploy", cases), rows)


def channel_table(cases: Cases, hosts: int) -> str:
    """Per session channel (each SSH command of the deploy, in order): everything below the
    session fork (login shell, sudo, timeout, sh, the programs) and how many programs ran."""
    numbers = sorted({c for rounds in cases.values() for r in rounds
                      for c in r.split.channel_ms})
    rows = []
    for c in numbers:
        execs = [fmt(_mean(rounds, hosts, _key(c, "channel_execs")), 1)
                 for rounds in cases.values()]
        rows.append([f"SSH command {c + 1} (execs: {' / '.join(execs)})",
                     *_with_delta(cases, hosts, _key(c, "channel_ms"))])
    return table(_headers("per host, one deploy", cases), rows)


def _key(key: int, attr: str) -> Callable[[Round], float]:
    """A round's value of `key` in its Split's table `attr` (0 when absent)."""
    return lambda r: float(getattr(r.split, attr).get(key, 0))


def _program(prog: str, attr: str) -> Callable[[Round], float]:
    """A round's total of program `prog` over all hosts in its Split's table `attr`."""
    return lambda r: float(sum(v for (_, p), v in getattr(r.split, attr).items() if p == prog))


def program_table(cases: Cases, hosts: int) -> str:
    runs: Tally[str] = Tally()
    for rounds in cases.values():
        for r in rounds:
            for (_, prog), c in r.split.execs.items():
                runs[prog] += c
    rows = []
    for prog, _ in runs.most_common():
        execs = [fmt(_mean(rounds, hosts, _program(prog, "execs")), 1)
                 for rounds in cases.values()]
        ms = [fmt(_mean(rounds, hosts, _program(prog, "prog_ms")), 2)
              for rounds in cases.values()]
        rows.append([prog, " / ".join(execs), " / ".join(ms)])
    names = " / ".join(cases)
    return table([f"program exec'd on a host ({names})", "execs per host",
                  "CPU ms per host (\"other programs\" only)"], rows)


def counts_line(name: str, rounds: list[Round], hosts: int) -> str:
    def per(attr: str) -> str:
        return fmt(_mean(rounds, hosts, lambda r: sum(getattr(r.split, attr).values())), 1)

    walls = sorted(r.wall_ms for r in rounds)
    return (f"{name}: per host and deploy {per('connections')} SSH connection(s), "
            f"{per('channels')} session channel(s), {per('forks')} forks, {per('execs_total')} "
            f"execs, {per('nginx_cmds')} nginx commands; wall per run "
            f"{fmt(walls[len(walls) // 2], 0)} ms median ({fmt(walls[0], 0)}–{fmt(walls[-1], 0)})")


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0], runs=3)
    p.add_argument("--hosts", type=int, default=5, help="hosts (default 5, at most 240)")
    p.add_argument("--forks", type=int, default=None, help="default: --hosts")
    p.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                   help="another checkout of sockwizard (e.g. `git worktree add /tmp/base "
                        "main`): its deploys alternate with this tree's, and the tables show "
                        "both and the difference")
    p.add_argument("--perf-data", type=Path, metavar="DIR",
                   help="keep each round's perf.data in DIR (default: deleted)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_hostcpu.py needs root (sshd, namespaces, perf)", file=sys.stderr)
        return 2
    if args.perf_data:
        args.perf_data.mkdir(parents=True, exist_ok=True)
    forks = args.forks or args.hosts
    trees = {"this tree": REPO}
    if args.baseline:
        trees = {"baseline": args.baseline.resolve(), "this tree": REPO}
    tag = f"{os.getpid() % 100000}"
    cases: Cases = {name: [] for name in trees}
    with running_fleet(args.hosts) as (work, fleet, cpu):
        counter = Counter()
        for n in range(args.warmup + args.runs):
            order = list(trees.items())
            for name, tree in order[n % len(order):] + order[:n % len(order)]:
                r = one_round(fleet, cpu, counter, work, forks, tree, args.perf_data,
                              f"{name.replace(' ', '-')}-{n}")
                if n >= args.warmup:
                    cases[name].append(r)
                print(f"round {n} {name}: {r.wall_ms:.0f} ms wall", file=sys.stderr)
        fleet.check_isolated(counter.value)
    left = leftovers(tag)
    print(f"### Hosts' CPU per role: {args.hosts} hosts, --forks {forks}, {args.runs} runs "
          f"per case\n\n{machine_line()}\n")
    for name, rounds in cases.items():
        print(counts_line(name, rounds, args.hosts) + "\n")
    print(role_table(cases, args.hosts) + "\n")
    print(channel_table(cases, args.hosts) + "\n")
    print(program_table(cases, args.hosts) + "\n")
    print("teardown: " + ("nothing left behind" if not left else f"LEFT BEHIND: {left}"))
    dump_json(args.json, {
        "machine": machine_line(), "leftovers": left,
        "cases": {name: [{"wall_ms": r.wall_ms, "client_ms": r.client_ms,
                          "cgroup_ms": r.cgroup_ms,
                          "role_ms": {f"{h}:{k}": v for (h, k), v in r.split.role_ms.items()},
                          "execs": {f"{h}:{k}": v for (h, k), v in r.split.execs.items()}}
                         for r in rounds] for name, rounds in cases.items()}})
    return 1 if left else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
    raise SystemExit(130)
