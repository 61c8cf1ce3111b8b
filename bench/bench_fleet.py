"""Fifty hosts: `sockwizard deploy --inventory … --forks 50` against the exported Ansible role
run with `ansible-playbook -f 50`, on the same fifty hosts, side by side.

The hosts are bench_deploy.py's `Fleet`: one network namespace + private mount namespace per
host (10.231.0.11 …), each with its own sshd on :2222 and nginx on :8080, on one bridge. One
Node socket.io backend on the bridge address (10.231.0.1) serves all fifty: the deploy under
test is the proxy config; fifty Node processes would add ~2.5 GB and fifty start-ups to the
set-up and nothing to what is measured (each probe still goes host's nginx -> backend).

Both engines read one inventory file (INI) written per round: per-host `ansible_host`,
`ansible_port`, `ansible_user`, the key, and the same `sockwizard_dest` /
`sockwizard_validate_cmd` / `sockwizard_reload_cmd`; `read_timeout` changes every round, so
every deploy really changes every file. Ansible runs the role from `sockwizard export ansible`
(template + validate + backup, handler reload, the stdlib Socket.IO probe on the host,
block/rescue) with pipelining and a fresh ControlPath directory per run.

Measured per run (`_common.run_measured`, wait4 on the engine's process): wall time, CPU
(user + sys of the process and all its waited-for children) and ru_maxrss (the largest single
process of the tree: sockwizard's own process; for Ansible its largest fork). ru_maxrss is a
floor of this script's own RSS at fork time (printed under the table). Medians over rounds.

Run as root: ``python3 bench/bench_fleet.py [--hosts 50] [--runs 3] [--skip-ansible]``.
Set-up and teardown are checked: no namespace, veth, bridge or daemon of this run is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
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
    ratio,
    repo_env,
    run_measured,
    sockwizard_argv,
    spread,
    table,
)
from bench_deploy import (  # noqa: E402
    ANSIBLE_VENV,
    USER,
    Counter,
    Fleet,
    _json_or_none,
    _stop_ssh_masters,
    ensure_ansible,
    workdir,
)

from tests import rig  # noqa: E402  (bench_deploy put the repo on sys.path)
from wizard.export import export_ansible  # noqa: E402
from wizard.model import DeploySpec, ProxyKind  # noqa: E402

NATIVE = "sockwizard deploy --inventory --forks N"
ANSIBLE = "ansible-playbook -f N (exported role, pipelining)"


def write_inventory(path: Path, fleet: Fleet, read_timeout: int) -> Path:
    """One INI inventory both engines read; `read_timeout` makes every round a change."""
    t0 = fleet.targets[0]
    lines = ["[fleet]"]
    for t in fleet.targets:
        lines.append(f"{t.name} ansible_host={t.ssh_host} ansible_port={t.ssh_port} "
                     f"ansible_user={USER}")
    common = {
        "ansible_ssh_private_key_file": str(fleet.keys.identity),
        "ansible_ssh_common_args": shlex.join(fleet.keys.ssh_options()[2:]),
        "ansible_python_interpreter": "/usr/bin/python3",
        "listen_port": str(fleet.spec(60).listen_port),
        "backends": fleet.spec_flags(60)[fleet.spec_flags(60).index("--backend") + 1],
        "read_timeout": str(read_timeout),
        "sockwizard_dest": t0.dest, "sockwizard_validate_cmd": t0.validate_cmd,
        "sockwizard_reload_cmd": t0.reload_cmd, "sockwizard_settle_timeout": "10",
    }
    lines.append("[fleet:vars]")
    lines += [f"{k}={json.dumps(v) if ' ' in v else v}" for k, v in common.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


CPUACCT = Path("/sys/fs/cgroup/cpuacct")


class HostCpu:
    """CPU of the hosts' side: the fleet's sshd and nginx processes are moved into a cpuacct
    cgroup of their own, so everything they fork (SSH sessions, shells, sudo, `nginx -t`, the
    Ansible modules' python3, new workers) is counted, however short-lived. (Reaped children's
    times in /proc/PID/stat miss most of it: sshd's session processes do not hand theirs up.)
    Unavailable (no cgroup v1 cpuacct) -> None."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.group: Path | None = CPUACCT / f"sockwizard-bench-fleet-{os.getpid()}"
        try:
            self.group.mkdir()
            for daemon in fleet.daemons:
                for pid in (daemon.pid, *rig.descendants_of(daemon.pid)):
                    (self.group / "cgroup.procs").write_text(f"{pid}\n")
        except OSError as exc:
            print(f"hosts' CPU not measured: {exc}", file=sys.stderr)
            self.close()

    def ms(self) -> float | None:
        """Total so far, once the SSH sessions of the last case have ended (up to 10 s): a
        session still closing would be billed to the next case."""
        if self.group is None:
            return None
        sshds = {d.pid for d in self.fleet.daemons if d.name.startswith("sshd")}
        deadline = time.monotonic() + 10
        while _sessions(sshds) and time.monotonic() < deadline:
            time.sleep(0.05)
        return int((self.group / "cpuacct.usage").read_text()) / 1e6

    def close(self) -> None:
        """Move what is left back to the root group and remove ours."""
        group, self.group = self.group, None
        if group is None or not group.exists():
            return
        with contextlib.suppress(OSError):
            for pid in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (CPUACCT / "cgroup.procs").write_text(f"{pid}\n")
        with contextlib.suppress(OSError):
            group.rmdir()


def _delta(before: float | None, after: float | None) -> dict[str, float]:
    return {} if before is None or after is None else {"host_cpu_ms": after - before}


def _sessions(parents: set[int]) -> bool:
    """Does any of `parents` have a child (zombies included: not yet reaped)?"""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) in parents:
                    return True
    return False


def native_argv(fleet: Fleet, inv: Path, forks: int) -> list[str]:
    return sockwizard_argv("deploy", "--proxy", "nginx", "--inventory", str(inv),
                           "--forks", str(forks), "--known-hosts", str(fleet.keys.known_hosts),
                           "--backup-dir", fleet.targets[0].backup_dir, "--json")


def native_case(fleet: Fleet, cpu: HostCpu, counter: Counter, work: Path, forks: int,
                step_ms: list[dict[str, float]]) -> Callable[[], Sample]:
    def run() -> Sample:
        inv = write_inventory(work / "native.ini", fleet, counter.next())
        before = cpu.ms()
        m = run_measured(native_argv(fleet, inv, forks),
                         env=repo_env({"XDG_STATE_HOME": str(work / "state")}),
                         cwd=REPO, check=False, timeout=300)
        on_hosts = _delta(before, cpu.ms())
        report = _json_or_none(m.stdout)
        if m.returncode != 0 or report is None:
            raise BenchError(f"sockwizard deploy failed ({m.returncode}):\n{m.stderr[-3000:]}")
        hosts = report.get("hosts")
        for host in hosts if isinstance(hosts, list) else []:
            step_ms.append({s["step"]: float(s["ms"]) for s in host["steps"]
                            if s.get("status") == "ok"})
        return {"wall_ms": m.wall_s * 1000, "cpu_ms": m.cpu_s * 1000, "rss_mb": m.max_rss_mb,
                **on_hosts}

    return run


def ansible_case(exe: Path, fleet: Fleet, cpu: HostCpu, counter: Counter, work: Path,
                 forks: int) -> Callable[[], Sample]:
    export = work / "export"
    export_ansible(DeploySpec(proxy=ProxyKind.NGINX), export)
    env = dict(os.environ)
    env.update({
        "ANSIBLE_HOME": str(work / "ansible-home"), "ANSIBLE_LOCAL_TEMP": str(work / "atmp"),
        "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_DEPRECATION_WARNINGS": "False", "PYTHONWARNINGS": "ignore",
    })

    def run() -> Sample:
        inv = write_inventory(work / "ansible.ini", fleet, counter.next())
        control = Path(tempfile.mkdtemp(prefix="cp-", dir=work))
        before = cpu.ms()
        try:
            m = run_measured([str(exe), "-f", str(forks), "-i", str(inv),
                              str(export / "site.yml")],
                             env=dict(env, ANSIBLE_SSH_CONTROL_PATH_DIR=str(control)),
                             cwd=work, check=False, timeout=600)
        finally:
            _stop_ssh_masters(control)
        on_hosts = _delta(before, cpu.ms())
        if m.returncode != 0:
            raise BenchError(f"ansible-playbook failed ({m.returncode}):\n"
                             f"{m.stdout[-3000:]}\n{m.stderr[-1500:]}")
        return {"wall_ms": m.wall_s * 1000, "cpu_ms": m.cpu_s * 1000, "rss_mb": m.max_rss_mb,
                **on_hosts}

    return run


def profile_native(fleet: Fleet, counter: Counter, work: Path, forks: int, out: Path,
                   py_spy: str | None) -> None:
    """One more native deploy under py-spy (on-CPU stacks of every thread, collapsed format:
    `out/native.pyspy.txt`) and one with `-X importtime` (`out/native.importtime.txt`)."""
    out.mkdir(parents=True, exist_ok=True)
    env = repo_env({"XDG_STATE_HOME": str(work / "state")})
    runs: list[tuple[str, list[str]]] = [("importtime", ["-X", "importtime"])]
    if py_spy:
        runs.append(("pyspy", []))
    for name, extra in runs:
        inv = write_inventory(work / "native.ini", fleet, counter.next())
        argv = native_argv(fleet, inv, forks)
        argv = [argv[0], *extra, *argv[1:]]
        if name == "pyspy":
            assert py_spy is not None
            argv = [py_spy, "record", "--rate", "250", "--format", "raw", "--threads",
                    "--subprocesses", "-o", str(out / "native.pyspy.txt"), "--", *argv]
        m = run_measured(argv, env=env, cwd=REPO, check=False, timeout=300)
        (out / f"native.{name}.stderr.txt").write_text(m.stderr)
        if name == "importtime":
            (out / "native.importtime.txt").write_text(m.stderr)
        print(f"profile ({name}): exit {m.returncode}, {m.wall_s * 1000:.0f} ms wall",
              file=sys.stderr)


def result_table(series: dict[str, Series], hosts: int) -> str:
    ours = series[NATIVE].median("wall_ms")
    rows = []
    for name, s in series.items():
        wall = s.median("wall_ms")
        rows.append([name.replace("N", str(hosts), 1) if name == NATIVE
                     else name.replace("-f N", f"-f {hosts}"),
                     spread(s, "wall_ms", 0), spread(s, "cpu_ms", 0),
                     fmt(s.median("rss_mb"), 1), fmt(s.median("host_cpu_ms"), 0),
                     ratio(wall, ours)])
    return table([f"{hosts} hosts", "wall ms median (min–max)", "CPU ms user+sys (min–max)",
                  "peak RSS MB", "hosts' CPU ms", "wall vs native"], rows)


def steps_table(steps: list[dict[str, float]]) -> str:
    """Per-host step durations (ms) across all hosts and rounds: median and max."""
    names: list[str] = []
    for s in steps:
        names += [n for n in s if n not in names and n != "done"]
    rows = []
    for n in names:
        vals = sorted(s[n] for s in steps if n in s)
        rows.append([n, fmt(vals[len(vals) // 2]), fmt(vals[int(len(vals) * 0.9)]),
                     fmt(vals[-1])])
    return table(["native step (per host)", "median ms", "p90", "max"], rows)


@contextlib.contextmanager
def running_fleet(hosts: int) -> Iterator[tuple[Path, Fleet, HostCpu]]:
    """A work dir, `hosts` namespaced hosts and their cgroup (also bench_hostcpu.py's); all
    stopped and removed on the way out, whatever happened."""
    with workdir() as work, rig.SshdInstance() as sshd:
        print(f"starting {hosts} hosts...", file=sys.stderr)
        fleet = Fleet(hosts, sshd)
        cpu = HostCpu(fleet)
        try:
            yield work, fleet, cpu
        finally:
            fleet.stop()
            cpu.close()


def leftovers(tag: str) -> list[str]:
    """Anything of this run still on the machine: namespaces, links, daemons. The kernel
    removes a veth's outer end shortly after its namespace: wait up to 3 s for that."""
    deadline = time.monotonic() + 3
    while (found := _leftovers(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def _leftovers(tag: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    procs = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    found = [line for line in out.splitlines() if f"swb{tag}-" in line]
    found += [line.split()[0] for line in links.splitlines()
              if line.startswith((f"swb{tag}", f"swbr{tag}"))]
    found += [line for line in procs.splitlines() if "sockwizard-bench-fleet-" in line]
    found += [str(p) for p in CPUACCT.glob(f"sockwizard-bench-fleet-{os.getpid()}")]
    return found


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0], runs=3)
    p.add_argument("--hosts", type=int, default=50, help="hosts (default 50, at most 240)")
    p.add_argument("--forks", type=int, default=None, help="default: --hosts")
    p.add_argument("--skip-ansible", action="store_true")
    p.add_argument("--ansible-venv", type=Path, default=ANSIBLE_VENV)
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="after the rounds, profile one native deploy into DIR (py-spy when "
                        "on PATH or --py-spy, and -X importtime)")
    p.add_argument("--py-spy", default=shutil.which("py-spy"), help="py-spy to profile with")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_fleet.py needs root (sshd, sudo users, namespaces)", file=sys.stderr)
        return 2
    forks = args.forks or args.hosts
    exe: Path | None = None
    if not args.skip_ansible:
        beside = Path(PYTHON).parent / "ansible-playbook"  # the test extra, when installed
        exe = beside if beside.exists() else ensure_ansible(args.ansible_venv)
    tag = f"{os.getpid() % 100000}"
    print(f"### {args.hosts} hosts: sockwizard vs the exported Ansible role\n\n"
          f"{machine_line()}\n")
    results: dict[str, object] = {"machine": machine_line()}
    steps: list[dict[str, float]] = []
    with running_fleet(args.hosts) as (work, fleet, cpu):
        counter = Counter()
        cases: dict[str, Callable[[], Sample]] = {
            NATIVE: native_case(fleet, cpu, counter, work, forks, steps)}
        if exe is not None:
            cases[ANSIBLE] = ansible_case(exe, fleet, cpu, counter, work, forks)
        series = interleave(cases, args.runs, warmup=args.warmup)
        fleet.check_isolated(counter.value)
        if args.profile:
            profile_native(fleet, counter, work, forks, args.profile, args.py_spy)
    left = leftovers(tag)
    steps = steps[-args.hosts * args.runs:]  # the measured rounds only
    print(f"#### {args.hosts} hosts, forks {forks}, medians of {args.runs} interleaved runs\n")
    print(result_table(series, args.hosts) + "\n")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(peak RSS is wait4's ru_maxrss: at least this script's own {own:.0f} MB at fork)\n")
    print(f"#### Where each host's time goes (native, {len(steps)} host deploys)\n")
    print(steps_table(steps) + "\n")
    print("teardown: " + ("nothing left behind" if not left else f"LEFT BEHIND: {left}"))
    results.update(series=series, steps=steps, leftovers=left)
    dump_json(args.json, results)
    return 1 if left else 0


if __name__ == "__main__":
    raise SystemExit(main())
