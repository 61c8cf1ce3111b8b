"""`sockwizard deploy` against OpenSSH by hand and ansible-playbook, on one host and on ten.

Every case does the same job on a live nginx in front of the rig's Node socket.io server: put a
changed config (a new `proxy_read_timeout` each run, so nothing is ever a no-op) in place,
validate it with nginx's own checker, reload, and check Socket.IO answers through it.

* **sockwizard**: `python -m wizard deploy --host swdeploy@HOST:PORT ...` — connect, detect,
  diff, backup, upload, rename, validate, reload, settle on the config marker, live probe.
* **OpenSSH by hand** (the floor; TESTBED.md measured 0.49 s): `scp` the rendered file beside
  the target, `ssh 'mv tmp dest && sudo nginx -t && sudo nginx -s reload'`, then one `curl` of
  the Engine.IO handshake. No backup, no rollback, no check that the *new* config answers.
* **ansible-playbook** (ansible-core in its own venv under /tmp, not a project dependency):
  `template` with `backup: true` and `validate:`, a reload handler flushed at once, then `uri`
  on the handshake (with retries). `validate` checks a temp file, but an nginx site fragment
  is only valid inside the tree that includes it, so the validate command copies the candidate
  into a side tree (`validate.conf` including `candidate/*.conf`) and runs `nginx -t` on that.
  Two variants: Ansible's defaults (fact gathering, no pipelining) and tuned (no facts,
  pipelining, interpreter given). Each run starts with a fresh ControlPath directory, so no
  run reuses the previous run's SSH master (sockwizard's runs are cold too).

One host: the rig's sshd on 127.0.0.1 (`swdeploy`, passwordless sudo) and a rig nginx.

Ten hosts: ten network namespaces on a bridge (10.231.0.0/24; the Node backend listens on the
bridge address 10.231.0.1). Each namespace is one "host": its own sshd on :2222 and nginx on
:8080, started inside a private mount namespace where one common path (the same `--dest`, the
same validate and reload commands on every host, as on ten real machines) is bind-mounted from
that host's own directory. Why not ten sshds on loopback or one sshd and ten nginx: one
`sockwizard deploy` takes one `--dest`, one spec (so one listen port) and distinct `--host`
values — on one network stack and one filesystem, ten such deploys would write one file and
bind one port. Namespaces give ten hosts that differ only where real ones do.
Cases: one `sockwizard deploy` with ten `--host` (concurrent), ten `sockwizard deploy`
processes one after another, OpenSSH by hand to all ten in parallel (`&` + `wait`), and
ansible-playbook with `-f 10` (both variants).

Run as root (sshd, sudo, namespaces): ``python3 bench/bench_deploy.py`` (about 4 minutes;
the first run also creates the Ansible venv). ``--skip-ansible``, ``--skip-fleet`` shorten it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
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
    use_repo,
)

use_repo()
from tests import rig  # noqa: E402
from wizard.model import Backend, DeploySpec, ProxyKind  # noqa: E402
from wizard.render import render  # noqa: E402

ANSIBLE_VENV = Path("/tmp/sockwizard-bench-ansible")
USER = rig.DEPLOY_USER
FLEET_NET = "10.231.0"  # /24 on the bridge; .1 is this machine, .11-.20 the hosts
FLEET_SSH_PORT = 2222
FLEET_HTTP_PORT = 8080


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One host as every deploy method sees it (paths are as the host sees them)."""

    name: str
    ssh_host: str
    ssh_port: int
    dest: str
    prefix: str  # the nginx prefix on the host
    backup_dir: str
    probe_url: str  # from this machine
    probe_url_on_host: str  # from the host itself (Ansible's uri task runs there)

    @property
    def validate_cmd(self) -> str:
        return shlex.join(["nginx", "-p", f"{self.prefix}/", "-c", f"{self.prefix}/nginx.conf",
                           "-e", "stderr", "-t"])

    @property
    def reload_cmd(self) -> str:
        return shlex.join(["nginx", "-p", f"{self.prefix}/", "-c", f"{self.prefix}/nginx.conf",
                           "-e", "stderr", "-s", "reload"])

    @property
    def candidate_validate(self) -> str:
        """For Ansible's `validate` (a temp file in $0): the tree with the candidate in it."""
        check = shlex.join(["nginx", "-p", f"{self.prefix}/", "-c",
                            f"{self.prefix}/validate.conf", "-e", "stderr", "-t"])
        script = f'cp "$0" {self.prefix}/candidate/site.conf && {check}'
        return f"sh -c {shlex.quote(script)} %s"

    @property
    def ssh_target(self) -> str:
        return f"{USER}@{self.ssh_host}:{self.ssh_port}"


@dataclass(frozen=True)
class Keys:
    identity: Path
    known_hosts: Path

    def ssh_options(self) -> list[str]:
        return ["-i", str(self.identity), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10"]


def prepare_nginx_dir(prefix_on_disk: Path, prefix_on_host: str, site: str) -> None:
    """nginx.conf + conf.d/sockwizard.conf (writable by the deploy user) + the side tree that
    Ansible's validate uses; every path inside the files is as the host sees it."""
    for sub in ("logs", "conf.d", "candidate", "backups",
                *(f"temp/{t}" for t in rig.NGINX_TEMP_DIRS)):
        (prefix_on_disk / sub).mkdir(parents=True, exist_ok=True)
    (prefix_on_disk / "nginx.conf").write_text(
        rig.nginx_main_conf(prefix_on_host, "conf.d/*.conf", worker_connections=1024))
    (prefix_on_disk / "validate.conf").write_text(
        rig.nginx_main_conf(prefix_on_host, "candidate/*.conf", worker_connections=1024))
    site_file = prefix_on_disk / "conf.d" / "sockwizard.conf"
    site_file.write_text(site)
    for path in (prefix_on_disk / "conf.d", site_file):
        shutil.chown(path, USER, USER)


class LoopbackHost:
    """The one-host set-up: the rig's sshd on 127.0.0.1 and a rig-style nginx prefix."""

    def __init__(self, sshd: rig.SshdInstance, backend: rig.NodeBackend) -> None:
        self.port = rig.free_port()
        self.backend = backend
        self.dir = rig.make_world_dir("sockwizard-bench-host-", rig.RIG_SSH_ROOT)
        prepare_nginx_dir(self.dir, str(self.dir), render(self.spec(60)).text)
        self.nginx = rig.Daemon("bench nginx", ["nginx", "-p", f"{self.dir}/", "-c",
                                                f"{self.dir}/nginx.conf", "-e", "stderr",
                                                "-g", "daemon off;"])
        rig.wait_for("nginx", lambda: rig.port_open(self.port), alive=self.nginx.exit_reason)
        url = f"http://127.0.0.1:{self.port}"
        self.target = Target("loopback", "127.0.0.1", sshd.port,
                             f"{self.dir}/conf.d/sockwizard.conf", str(self.dir),
                             f"{self.dir}/backups", url, url)
        self.keys = Keys(sshd.client_key(USER), sshd.known_hosts)

    def spec(self, read_timeout: int) -> DeploySpec:
        return DeploySpec(proxy=ProxyKind.NGINX, listen_address="127.0.0.1",
                          listen_port=self.port,
                          backends=(Backend("127.0.0.1", self.backend.port),),
                          read_timeout=read_timeout)

    def spec_flags(self, read_timeout: int) -> list[str]:
        return ["--proxy", "nginx", "--listen", f"127.0.0.1:{self.port}",
                "--backend", self.backend.address, "--read-timeout", str(read_timeout)]

    def stop(self) -> None:
        self.nginx.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise BenchError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


class Fleet:
    """Ten "hosts": a network namespace + a private mount namespace each (see the module
    docstring). The backend listens on the bridge; sshd and nginx run inside each host."""

    def __init__(self, count: int, sshd: rig.SshdInstance) -> None:
        tag = f"{os.getpid() % 100000}"
        self.bridge = f"swbr{tag}"
        self.namespaces: list[str] = []
        self.daemons: list[rig.Daemon] = []
        self.targets: list[Target] = []
        self.backend: rig.NodeBackend | None = None
        self.root = rig.make_world_dir("sockwizard-bench-fleet-", rig.RIG_SSH_ROOT)
        self.common = self.root / "host"  # the same path on every host
        self.common.mkdir(mode=0o755)
        try:
            self._network(count, tag)
            self.backend = rig.NodeBackend(host=f"{FLEET_NET}.1")
            key = sshd.host_key_line.split(" ", 1)[1]
            self.keys = Keys(sshd.client_key(USER), self.root / "known_hosts")
            self.keys.known_hosts.write_text("".join(
                f"[{FLEET_NET}.{11 + i}]:{FLEET_SSH_PORT} {key}\n" for i in range(count)))
            base_config = sshd.config_path.read_text()
            for i in range(count):
                self._host(i, base_config)
        except BaseException:
            self.stop()
            raise

    def _network(self, count: int, tag: str) -> None:
        if f" {FLEET_NET}." in subprocess.run(["ip", "-br", "addr"], capture_output=True,
                                              text=True).stdout:
            raise BenchError(f"{FLEET_NET}.0/24 is already in use on this machine")
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{FLEET_NET}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i in range(count):
            ns = f"swb{tag}-{i}"
            _ip("netns", "add", ns)
            self.namespaces.append(ns)
            outside, inside = f"swb{tag}h{i}", f"swb{tag}n{i}"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", outside, "master", self.bridge)
            _ip("link", "set", outside, "up")
            _ip("link", "set", inside, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{FLEET_NET}.{11 + i}/24", "dev", inside)
            _ip("-n", ns, "link", "set", inside, "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def _host(self, i: int, base_config: str) -> None:
        assert self.backend is not None
        address = f"{FLEET_NET}.{11 + i}"
        own = self.root / f"h{i}"
        own.mkdir(mode=0o755)
        common = str(self.common)
        prepare_nginx_dir(own, common, render(self.spec(60)).text)
        config = re.sub(r"^Port \d+$", f"Port {FLEET_SSH_PORT}", base_config, flags=re.M)
        config = re.sub(r"^ListenAddress .*$", f"ListenAddress {address}", config, flags=re.M)
        config = re.sub(r"^PidFile .*$", f"PidFile {own}/sshd.pid", config, flags=re.M)
        (own / "sshd_config").write_text(config)
        # ip netns exec, unshare and sh each exec the next: the Daemon's pid is sshd's.
        sshd = rig.Daemon(f"sshd of host {i}", [
            "ip", "netns", "exec", self.namespaces[i], "unshare", "--mount",
            "--propagation", "private", "--", "sh", "-c",
            f"mount --bind {shlex.quote(str(own))} {shlex.quote(common)} && "
            f"exec /usr/sbin/sshd -D -e -f {shlex.quote(str(own / 'sshd_config'))}"])
        self.daemons.append(sshd)

        def banner() -> bool:
            with socket.create_connection((address, FLEET_SSH_PORT), timeout=1.0) as s:
                return bool(s.recv(64).startswith(b"SSH-2.0-"))

        rig.wait_for(f"sshd on {address}", banner, alive=sshd.exit_reason)
        # nginx joins sshd's network and mount namespaces (nsenter execs: same pid).
        nginx = rig.Daemon(f"nginx of host {i}", [
            "nsenter", "-t", str(sshd.pid), "-m", "-n", "nginx", "-p", f"{common}/", "-c",
            f"{common}/nginx.conf", "-e", "stderr", "-g", "daemon off;"])
        self.daemons.append(nginx)
        rig.wait_for(f"nginx on {address}", lambda: rig.port_open(FLEET_HTTP_PORT, address),
                     alive=nginx.exit_reason)
        self.targets.append(Target(
            f"h{i}", address, FLEET_SSH_PORT, f"{common}/conf.d/sockwizard.conf", common,
            f"{common}/backups", f"http://{address}:{FLEET_HTTP_PORT}",
            f"http://127.0.0.1:{FLEET_HTTP_PORT}"))

    def check_isolated(self, read_timeout: int) -> None:
        """Every host's own file got the last deploy, and nothing reached the common path as
        this machine sees it: the hosts really were separate."""
        leaked = list(self.common.iterdir())
        if leaked:
            raise BenchError(f"the hosts' common path leaked onto this machine: {leaked}")
        for i in range(len(self.targets)):
            text = (self.root / f"h{i}" / "conf.d" / "sockwizard.conf").read_text()
            if f"proxy_read_timeout {read_timeout}s;" not in text:
                raise BenchError(f"host {i} does not have the last deploy's config")

    def spec(self, read_timeout: int) -> DeploySpec:
        assert self.backend is not None
        return DeploySpec(proxy=ProxyKind.NGINX, listen_port=FLEET_HTTP_PORT,
                          backends=(Backend(f"{FLEET_NET}.1", self.backend.port),),
                          read_timeout=read_timeout)

    def spec_flags(self, read_timeout: int) -> list[str]:
        assert self.backend is not None
        return ["--proxy", "nginx", "--listen", str(FLEET_HTTP_PORT),
                "--backend", self.backend.address, "--read-timeout", str(read_timeout)]

    def stop(self) -> None:
        for daemon in reversed(self.daemons):
            for pid in rig.descendants_of(daemon.pid):  # SSH sessions, nginx workers
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            daemon.stop()
        self.daemons.clear()
        if self.backend is not None:
            self.backend.stop()
        for ns in self.namespaces:
            with contextlib.suppress(BenchError):
                _ip("netns", "del", ns)
        self.namespaces.clear()
        with contextlib.suppress(BenchError):
            _ip("link", "del", self.bridge)
        shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The deploy methods
# --------------------------------------------------------------------------------------------


class Counter:
    """A new proxy_read_timeout for every run of every case: each deploy changes the file."""

    def __init__(self) -> None:
        self.value = 60

    def next(self) -> int:
        self.value = 61 + (self.value - 60) % 500
        return self.value


StepTimes = dict[str, float]


def sockwizard_deploy(targets: Sequence[Target], keys: Keys, flags: list[str], work: Path, *,
                      probe_url: bool, steps_out: list[StepTimes] | None = None) -> Sample:
    """One `sockwizard deploy` process for all `targets` (several --host = concurrent)."""
    t0 = targets[0]
    argv = sockwizard_argv("deploy", *flags)
    for t in targets:
        argv += ["--host", t.ssh_target]
    argv += ["--identity", str(keys.identity), "--known-hosts", str(keys.known_hosts),
             "--dest", t0.dest, "--validate-cmd", t0.validate_cmd,
             "--reload-cmd", t0.reload_cmd, "--backup-dir", t0.backup_dir, "--json"]
    if probe_url:
        argv += ["--probe-url", t0.probe_url]
    env = repo_env({"XDG_STATE_HOME": str(work / "state")})
    m = run_measured(argv, env=env, cwd=REPO, check=False, timeout=300)
    report = _json_or_none(m.stdout)
    if m.returncode != 0 or report is None:
        raise BenchError(f"sockwizard deploy failed ({m.returncode}):\n{m.stderr[-3000:]}")
    if steps_out is not None:
        hosts = report.get("hosts")
        for host in hosts if isinstance(hosts, list) else []:
            steps_out.append({s["step"]: float(s["ms"]) for s in host["steps"]
                              if s.get("status") == "ok"})
    return {"wall_ms": m.wall_s * 1000, "cpu_ms": m.cpu_s * 1000}


def sockwizard_case(targets: Sequence[Target], keys: Keys,
                    spec_flags: Callable[[int], list[str]], counter: Counter, work: Path, *,
                    probe_url: bool, steps_out: list[StepTimes] | None = None,
                    one_by_one: bool = False) -> Callable[[], Sample]:
    """All `targets` in one process (concurrent), or one process per host one after another
    (`one_by_one`, what a shell loop does)."""

    def run() -> Sample:
        flags = spec_flags(counter.next())
        if not one_by_one:
            return sockwizard_deploy(targets, keys, flags, work, probe_url=probe_url,
                                     steps_out=steps_out)
        samples = [sockwizard_deploy([t], keys, flags, work, probe_url=probe_url)
                   for t in targets]
        return {"wall_ms": sum(s["wall_ms"] for s in samples),
                "cpu_ms": sum(s["cpu_ms"] for s in samples)}

    return run


def _json_or_none(text: str) -> dict[str, object] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def openssh_case(targets: Sequence[Target], keys: Keys, spec_for: Callable[[int], DeploySpec],
                 counter: Counter, work: Path) -> Callable[[], Sample]:
    """scp + ssh 'mv && sudo nginx -t && sudo nginx -s reload' + curl, per host; several
    hosts in parallel (`&` + `wait`) from one bash script."""
    ssh_opts = shlex.join(keys.ssh_options())

    def run() -> Sample:
        local = work / "openssh-site.conf"
        local.write_text(render(spec_for(counter.next())).text)
        lines = ["set -u", "deploy() {"]
        lines.append('  scp -q $OPTS -P "$2" ' + shlex.quote(str(local))
                     + ' "swdeploy@$1:$3.tmp" &&')
        lines.append('  ssh $OPTS -p "$2" "swdeploy@$1" "mv $3.tmp $3 && sudo $4 && sudo $5" '
                     '>/dev/null &&')
        lines.append('  curl -fsS --max-time 5 "$6/socket.io/?EIO=4&transport=polling" '
                     "| grep -q '\"sid\"'")
        lines.append("}")
        lines.append(f"OPTS={shlex.quote(ssh_opts)}")
        for t in targets:
            lines.append("deploy " + shlex.join([t.ssh_host, str(t.ssh_port), t.dest,
                                                 t.validate_cmd, t.reload_cmd, t.probe_url])
                         + (" &" if len(targets) > 1 else ""))
        if len(targets) > 1:
            lines.append("fail=0; for job in $(jobs -p); do wait $job || fail=1; done; "
                         "exit $fail")
        m = run_measured(["bash", "-c", "\n".join(lines)], timeout=120)
        return {"wall_ms": m.wall_s * 1000, "cpu_ms": m.cpu_s * 1000}

    return run


def ensure_ansible(venv: Path) -> Path:
    """ansible-playbook from its own venv under /tmp (created on first use)."""
    exe = venv / "bin" / "ansible-playbook"
    if exe.exists():
        return exe
    print(f"creating {venv} with ansible-core (not a sockwizard dependency)...",
          file=sys.stderr)
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "ansible-core"], check=True)
    return exe


PLAYBOOK = """\
- hosts: proxies
  gather_facts: {gather}
  become: true
  tasks:
    - name: nginx site config
      ansible.builtin.template:
        src: "{{{{ src }}}}"
        dest: "{{{{ dest }}}}"
        backup: true
        validate: "{{{{ validate }}}}"
      notify: reload nginx
    - name: reload now
      ansible.builtin.meta: flush_handlers
    - name: Socket.IO handshake
      ansible.builtin.uri:
        url: "{{{{ probe_url }}}}/socket.io/?EIO=4&transport=polling"
        return_content: true
      register: handshake
      until: handshake.status == 200 and '"sid"' in handshake.content
      retries: 10
      delay: 1
  handlers:
    - name: reload nginx
      ansible.builtin.command: "{{{{ reload }}}}"
"""


def ansible_case(exe: Path, targets: Sequence[Target], keys: Keys,
                 spec_for: Callable[[int], DeploySpec], counter: Counter, work: Path, *,
                 tuned: bool, facts: bool | None = None,
                 discover: bool = False) -> Callable[[], Sample]:
    """``tuned``: pipelining and the interpreter given; ``facts``: gather facts (default: only
    when not tuned); ``discover``: pipelining but the interpreter found by Ansible's default
    discovery, as a user who only turned pipelining on has it."""
    gather = (not tuned) if facts is None else facts
    # Short: the ControlPath under it must fit a Unix socket's 108 bytes.
    name = ("anchor" if discover else
            ("tuned" if tuned else "defaults") + ("-facts" if gather and tuned else ""))
    base = work / f"ansible-{name}"
    base.mkdir(parents=True, exist_ok=True)
    playbook = base / "deploy.yml"
    playbook.write_text(PLAYBOOK.format(gather="true" if gather else "false"))
    inventory = base / "inventory.json"
    hosts = {}
    for t in targets:
        hosts[t.name] = {
            "ansible_host": t.ssh_host, "ansible_port": t.ssh_port, "ansible_user": USER,
            "ansible_ssh_private_key_file": str(keys.identity),
            "ansible_ssh_common_args": shlex.join(keys.ssh_options()[2:]),
            "dest": t.dest, "validate": t.candidate_validate, "reload": t.reload_cmd,
            "probe_url": t.probe_url_on_host,
        }
    inventory.write_text(json.dumps({"proxies": {"hosts": hosts}}, indent=2))
    home = base / "home"
    env = dict(os.environ)
    env.update({
        "ANSIBLE_HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_FORKS": str(max(5, len(targets))), "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    })
    if tuned:
        env.update({"ANSIBLE_PIPELINING": "True"})
        if not discover:
            env["ANSIBLE_PYTHON_INTERPRETER"] = "/usr/bin/python3"

    def run() -> Sample:
        src = base / "site.conf.j2"
        src.write_text(render(spec_for(counter.next())).text)
        control = Path(tempfile.mkdtemp(prefix="cp-", dir=base))
        run_env = dict(env, ANSIBLE_SSH_CONTROL_PATH_DIR=str(control))
        try:
            m = run_measured([str(exe), "-i", str(inventory), str(playbook), "-e",
                              f"src={src}"], env=run_env, cwd=base, check=False, timeout=300)
        finally:
            _stop_ssh_masters(control)
        if m.returncode != 0:
            raise BenchError(f"ansible-playbook ({name}) failed ({m.returncode}):\n"
                             f"{m.stdout[-3000:]}\n{m.stderr[-1500:]}")
        return {"wall_ms": m.wall_s * 1000, "cpu_ms": m.cpu_s * 1000}

    return run


def _stop_ssh_masters(control: Path) -> None:
    """Ansible leaves its ControlPersist masters running for 60 s: ask each to exit."""
    for sock in control.iterdir() if control.is_dir() else []:
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "unused"],
                       capture_output=True, timeout=10)
    shutil.rmtree(control, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------

SW = "sockwizard deploy"
HAND = "OpenSSH by hand (scp + ssh + curl)"
ANS_TUNED = "ansible-playbook, tuned (no facts, pipelining)"
ANS_DEFAULT = "ansible-playbook, defaults (facts)"


def single_table(series: dict[str, Series]) -> str:
    ours = series[SW].median("wall_ms")
    rows = []
    for name, s in series.items():
        wall = s.median("wall_ms")
        if name == SW:
            note = ""
        elif name == HAND:
            note = f"sockwizard / this = {ratio(ours, wall)} (goal <= 1.50x)"
        else:
            note = f"this / sockwizard = {ratio(wall, ours)} (goal >= 5x)"
        rows.append([name, spread(s, "wall_ms", 0), fmt(s.median("cpu_ms"), 0), note])
    return table(["one host", "wall ms median (min–max)", "local CPU ms", "ratio"], rows)


def steps_table(steps: list[StepTimes], wall: list[float]) -> str:
    """Median per step; the last row is what no step accounts for (interpreter start,
    imports, argument parsing, exit): median of wall time minus the sum of the steps."""
    names: list[str] = []
    for s in steps:
        names += [n for n in s if n not in names and n != "done"]
    rows = []
    for n in names:
        vals = [s[n] for s in steps if n in s]
        rows.append([n, fmt(statistics.median(vals)), fmt(min(vals)), fmt(max(vals))])
    rest = [w - sum(s.values()) for w, s in zip(wall, steps, strict=False)]
    if rest:
        rows.append(["(start-up, imports, exit)", fmt(statistics.median(rest)), fmt(min(rest)),
                     fmt(max(rest))])
    return table(["sockwizard step", "median ms", "min", "max"], rows)


def fleet_table(series: dict[str, Series], hosts: int) -> str:
    ours = series[f"{SW}, {hosts} --host at once"].median("wall_ms")
    rows = []
    for name, s in series.items():
        wall = s.median("wall_ms")
        rows.append([name, spread(s, "wall_ms", 0), fmt(None if wall is None else wall / hosts, 0),
                     fmt(s.median("cpu_ms"), 0), ratio(wall, ours)])
    return table([f"{hosts} hosts", "wall ms median (min–max)", "per host ms", "local CPU ms",
                  "vs sockwizard at once"], rows)


# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sockwizard-bench-deploy-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0], runs=7)
    p.add_argument("--fleet-runs", type=int, default=3, help="rounds of the 10-host cases")
    p.add_argument("--hosts", type=int, default=10, help="hosts in the fleet (default 10)")
    p.add_argument("--skip-ansible", action="store_true")
    p.add_argument("--skip-fleet", action="store_true")
    p.add_argument("--ansible-venv", type=Path, default=ANSIBLE_VENV)
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_deploy.py needs root (sshd, sudo users, namespaces)", file=sys.stderr)
        return 2
    exe = None if args.skip_ansible else ensure_ansible(args.ansible_venv)

    print(f"### Deploy: sockwizard vs OpenSSH by hand vs Ansible\n\n{machine_line()}\n")
    results: dict[str, object] = {"machine": machine_line()}
    with workdir() as work, rig.SshdInstance() as sshd:
        backend = rig.NodeBackend()
        host = LoopbackHost(sshd, backend)
        try:
            counter = Counter()
            steps: list[StepTimes] = []
            t = [host.target]
            cases: dict[str, Callable[[], Sample]] = {
                SW: sockwizard_case(t, host.keys, host.spec_flags, counter, work,
                                    probe_url=True, steps_out=steps),
                HAND: openssh_case(t, host.keys, host.spec, counter, work),
            }
            if exe is not None:
                cases[ANS_TUNED] = ansible_case(exe, t, host.keys, host.spec, counter, work,
                                                tuned=True)
                cases[ANS_DEFAULT] = ansible_case(exe, t, host.keys, host.spec, counter, work,
                                                  tuned=False)
            print("one host:", file=sys.stderr)
            single = interleave(cases, args.runs, warmup=args.warmup)
            steps = steps[-args.runs:]  # the measured rounds only
            print(f"#### One host (loopback sshd + nginx + Node socket.io), medians of "
                  f"{args.runs} interleaved runs\n")
            print(single_table(single) + "\n")
            print(f"#### Where sockwizard's time goes (one host, {len(steps)} runs)\n")
            print(steps_table(steps, single[SW].values("wall_ms")) + "\n")
            results.update(single=single, steps=steps)
        finally:
            host.stop()
            backend.stop()

        if not args.skip_fleet:
            fleet = Fleet(args.hosts, sshd)
            try:
                fcounter = Counter()
                ts = fleet.targets
                n = len(ts)
                fcases: dict[str, Callable[[], Sample]] = {
                    f"{SW}, {n} --host at once": sockwizard_case(
                        ts, fleet.keys, fleet.spec_flags, fcounter, work, probe_url=False),
                    f"{SW}, {n} processes one after another": sockwizard_case(
                        ts, fleet.keys, fleet.spec_flags, fcounter, work, probe_url=False,
                        one_by_one=True),
                    f"{HAND}, {n} in parallel": openssh_case(ts, fleet.keys, fleet.spec,
                                                             fcounter, work),
                }
                if exe is not None:
                    fcases[f"{ANS_TUNED}, -f {n}"] = ansible_case(
                        exe, ts, fleet.keys, fleet.spec, fcounter, work / "fleet", tuned=True)
                    fcases[f"{ANS_DEFAULT}, -f {n}"] = ansible_case(
                        exe, ts, fleet.keys, fleet.spec, fcounter, work / "fleet", tuned=False)
                print(f"{n} hosts:", file=sys.stderr)
                fl = interleave(fcases, args.fleet_runs, warmup=1)
                fleet.check_isolated(fcounter.value)
                print(f"#### {n} hosts (network + mount namespaces, one sshd and one nginx "
                      f"each), medians of {args.fleet_runs} interleaved runs\n")
                print(fleet_table(fl, n) + "\n")
                results["fleet"] = fl
            finally:
                fleet.stop()
    dump_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
