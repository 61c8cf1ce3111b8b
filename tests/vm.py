"""The real Debian 12 VM of the `vm` test lane: boot it, reach it, and run sockwizard at it.

Used by the session fixture ``vm`` in tests/conftest.py and by the tests/test_vm_*.py files.
``boot()`` makes sure the cached image exists (scripts/vm-image builds it once per machine
with debootstrap), boots a fresh qcow2 overlay of it under TCG (this host's /dev/kvm is
kvm-pvm, which runs only PVM-built guest kernels: Debian's hangs before its first console line;
see shared/TESTBED.md) with user-mode networking ``restrict=on`` (the guest reaches
nothing) and its ports 22/80/443 forwarded to a loopback address of its own, and waits for its
sshd against a deadline. ``Vm`` then offers what a test needs and a new user would have:

* ``sockwizard(...)`` / ``deploy(kind, *flags)``: the real CLI in a subprocess, as the sudo
  user ``admin``, logging in with the image's key and checking the image's host key — no
  ``--dest/--validate-cmd/--reload-cmd``.
* ``sudo(cmd)``: the test's own look at the guest (an independent paramiko connection, host
  key verified, never sockwizard's remote code), ``is_active(unit)``, ``tree(*dirs)`` (every
  file's bytes, mode and every link's target, for byte-for-byte comparisons).
* ``use_proxy(kind)``: the proxy under test is the one enabled and running on :80 (all three
  want it; the image leaves all of them disabled), ``dead_backend()``, ``handshake()``.
* ``reboot()``: a real reboot of the guest (its reset a power cycle: a new qemu boots the
  same disk), waiting for sshd again; ``wait_active(unit)``: a unit waited for in the guest.

``SW_VM_TRACE=1`` makes every sockwizard run print each SSH command and SFTP request with its
wall time (tests/vm_cmdtrace.py): where a run's seconds go inside the guest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from tests import rig
from tests.vm_timing import Clock, process_cpu
from wizard.errors import ExitCode

ROOT = Path(__file__).resolve().parent.parent
VM_IMAGE_SCRIPT = ROOT / "scripts" / "vm-image"
USER = "admin"
SERVER_NAME = "app.example.test"  # the site's --server-name; probes send it as Host
NO_SERVER_NAME = "<no --server-name>"  # a pseudo-flag for Vm.deploy: leave --server-name out
BACKEND = "127.0.0.1:3000"  # the guest's Socket.IO unit (tests/vm_guest/)
BACKEND_UNIT = "sockwizard-backend"
PROXY_UNITS = {"nginx": "nginx", "apache": "apache2", "caddy": "caddy"}  # Debian's packages
UNITS = {**PROXY_UNITS, "node": "sockwizard-proxy"}  # what serves :80 after a deploy of kind
# Where each proxy keeps what sockwizard may touch on a stock Debian host.
CONFIG_DIRS = {"nginx": ("/etc/nginx",), "apache": ("/etc/apache2",), "caddy": ("/etc/caddy",),
               "node": ("/opt/sockwizard", "/etc/systemd/system")}
FORWARDED_PORTS = (22, 80, 443)
# Loopback addresses tried in turn: another session's VM may hold the first one.
ADDRESSES = tuple(f"127.0.0.{n}" for n in range(2, 12))
QEMU = "qemu-system-x86_64"
# mitigations=off: a throwaway test guest; retpolines and buffer clearing cost every syscall
# under TCG. show_status=auto: the console (a slow emulated UART) gets only failures and delays.
# The rest, measured (tests/vm_timing.py, 2 boots each): sshd 22 -> 17 s after qemu starts, and
# an idle guest burns 0.13 instead of 0.75 s of host CPU per 10 s: no audit records and no
# lockup watchdogs; the GPT generator (it probes the disk at every daemon-reload), the gettys
# and binfmt_misc are nothing a test uses.
KERNEL_ARGS = " ".join((
    "root=/dev/vda rw console=ttyS0 loglevel=3 mitigations=off systemd.show_status=auto",
    "audit=0 nowatchdog systemd.gpt_auto=0",
    *(f"systemd.mask={unit}" for unit in (
        "serial-getty@ttyS0.service", "getty@tty1.service", "systemd-binfmt.service",
        "proc-sys-fs-binfmt_misc.automount")),
))
BOOT_TIMEOUT = 240.0  # ~30-40 s to sshd under TCG when idle; the CI machine is shared
BUILD_TIMEOUT = 1200.0


class VmUnavailable(Exception):
    """qemu or debootstrap cannot run here at all (the lane is skipped with this reason)."""


def unavailable_reason() -> str | None:
    """Why the VM lane cannot run on this machine, or None. Missing tools mean scripts/setup
    --test was not run; anything else (a failed build or boot) is an error, not a skip."""
    if os.geteuid() != 0:
        return "needs root: builds the VM image with debootstrap"
    missing = [t for t in (QEMU, "qemu-img", "debootstrap", "mkfs.ext4") if not shutil.which(t)]
    if missing:
        return f"{', '.join(missing)} not installed (scripts/setup --test installs them)"
    return None


@dataclass
class Image:
    """The cached image directory scripts/vm-image prints."""

    dir: Path

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def host_key_line(self) -> str:
        return (self.dir / "known_hosts_key").read_text().strip()


def build_image() -> tuple[Image, float]:
    """The image (built now if this machine has none for this version of the script) and the
    seconds that took (0 when cached)."""
    started = time.monotonic()
    done = subprocess.run([str(VM_IMAGE_SCRIPT)], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT, cwd=ROOT)
    if done.returncode != 0:
        raise rig.RigError(f"scripts/vm-image failed ({done.returncode}):\n{done.stderr[-3000:]}")
    sys.stderr.write(done.stderr)
    return Image(Path(done.stdout.strip().splitlines()[-1])), time.monotonic() - started


def _ports_free(address: str) -> bool:
    for port in FORWARDED_PORTS:
        with socket.socket() as s:
            try:
                s.bind((address, port))
            except OSError:
                return False
    return True


BANNER_WAIT = 1.5  # s: a banner from a listening sshd comes in well under 1 s under TCG


def sshd_banner(address: str) -> bool:
    """True when sshd on `address`:22 sends its banner within BANNER_WAIT on a new
    connection (wait_ssh's cheap look before a login)."""
    try:
        with socket.create_connection((address, 22), timeout=BANNER_WAIT) as sock:
            sock.settimeout(BANNER_WAIT)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


@dataclass
class Seen:
    """Vm.dead_backend's looks: the tree (and unit state) before the block, and after it."""

    before: dict[str, str]
    active: str
    after: tuple[dict[str, str], str] = ({}, "")


@dataclass
class Vm:
    """One booted guest; see the module docstring."""

    image: Image
    address: str
    workdir: Path
    qemu: rig.Daemon
    timings: dict[str, float] = field(default_factory=dict)
    _client: paramiko.SSHClient | None = None
    clock: Clock = field(init=False)
    started_at: float = field(default_factory=time.monotonic)
    _reboot_cmd = "sudo systemctl reboot --force"

    def __post_init__(self) -> None:
        self.clock = Clock(self.qemu.pid)

    # -- reaching it -----------------------------------------------------------------------

    @property
    def target(self) -> str:
        return f"{USER}@{self.address}"

    @property
    def known_hosts(self) -> Path:
        return self.workdir / "known_hosts"

    @property
    def console(self) -> str:
        with contextlib.suppress(OSError):
            return (self.workdir / "console.log").read_text(errors="replace")[-4000:]
        return ""

    def _connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(self.address, 22, USER, key_filename=str(self.image.key), timeout=10,
                       banner_timeout=30, auth_timeout=30, look_for_keys=False,
                       allow_agent=False)
        return client

    def _ssh(self) -> paramiko.SSHClient:
        transport = self._client.get_transport() if self._client else None
        if self._client is None or transport is None or not transport.is_active():
            self._client = self._connect()
        return self._client

    def wait_ssh(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Until an SSH login with the image's key (and host key) works, or the deadline."""
        self.close_ssh()

        def login() -> bool:
            # A login tried before sshd listens costs 10-15 s: qemu's slirp accepts the TCP
            # connection at once and its SYN to the guest waits for a retransmit. So a fresh
            # short look for the banner first (measured: the first login of a boot hung 10 s,
            # the second 6.6 s; sshd up at ~14 s, found at ~14-16 s instead of 17.3).
            if not sshd_banner(self.address):
                return False
            self._client = self._connect()
            return True

        # While the guest boots, paramiko logs every refused banner as an error: not news.
        quiet = logging.getLogger("paramiko")
        level, quiet.level = quiet.level, logging.CRITICAL
        try:
            rig.wait_for(f"sshd of the VM on {self.address}:22", login, timeout=timeout,
                         interval=0.25, alive=lambda: None if self.qemu.running() else
                         f"qemu exited: {self.qemu.output()[-2000:]}\n{self.console}")
        finally:
            quiet.setLevel(level)

    def close_ssh(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def run(self, command: str, *, timeout: float = 120.0, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        """`command` through the guest's shell as admin; raise on failure when `check`."""
        with self.clock.measure("run", command):
            _, stdout, stderr = self._ssh().exec_command(command, timeout=timeout)
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            status = stdout.channel.recv_exit_status()
        done = subprocess.CompletedProcess(command, status, out, err)
        if check and done.returncode != 0:
            raise rig.RigError(f"VM: `{command}` exited {done.returncode}: {out}{err}")
        return done

    def sudo(self, command: str, *, timeout: float = 120.0, check: bool = True
             ) -> subprocess.CompletedProcess[str]:
        return self.run(f"sudo sh -c {shlex.quote(command)}", timeout=timeout, check=check)

    def wait_active(self, unit: str, *, timeout: float, first: str = "", then: str = ""
                    ) -> str:
        """As root, in one round trip: `first`, then until `unit` is active (polled in the
        guest every 0.5 s, at most `timeout` s: a poll from here costs a login's seconds under
        TCG), then `then`; raises on a unit not active in time. Returns `then`'s output."""
        q = shlex.quote(unit)
        done = self.sudo(
            (f"{first} || exit $?; " if first else "")
            + f"t=0; until systemctl is-active -q {q}; do [ $t -lt {int(timeout * 2)} ] || "
            f"{{ echo \"{unit} not active after {timeout:.0f} s: $(systemctl is-active {q})\"; "
            "exit 3; }; t=$((t + 1)); sleep 0.5; done"
            + (f"; {then}" if then else ""), timeout=timeout + 60, check=False)
        if done.returncode != 0:
            raise rig.RigError(f"VM: waiting for {unit}: exit {done.returncode}: "
                               f"{done.stdout}{done.stderr}")
        return done.stdout

    # -- the guest's state ----------------------------------------------------------------

    def is_active(self, unit: str) -> str:
        return self.run(f"systemctl is-active {shlex.quote(unit)}", check=False).stdout.strip()

    def tree(self, *dirs: str, first: str = "") -> dict[str, str]:
        """path -> "link TARGET" | "file MODE OWNER SHA256" | "dir MODE OWNER" for everything
        under `dirs` (absent dirs give nothing): equal trees mean byte-for-byte equal files.
        `first`: root's shell run before the listing, in the same round trip (must succeed)."""
        return self._tree(dirs, first=first)[0]

    def state(self, kind: str, *, first: str = "") -> tuple[dict[str, str], str]:
        """`kind`'s config tree (see tree) and its unit's `systemctl is-active`, in one round
        trip: the checks compare both after every deploy (each guest command costs ~0.7 s of
        TCG, sudo as much again)."""
        tree, active, _ = self._tree(CONFIG_DIRS[kind], UNITS[kind], first=first)
        return tree, active

    def look(self, kind: str, path: str) -> tuple[dict[str, str], str, str]:
        """state(kind) and the text of the file at `path`, in one round trip."""
        tree, active, text = self._tree(CONFIG_DIRS[kind], UNITS[kind], read=path)
        return tree, active, text

    def _tree(self, dirs: tuple[str, ...], unit: str | None = None, *, first: str = "",
              then: str = "", read: str = "") -> tuple[dict[str, str], str, str]:
        """The tree, the unit's state and the file `read`, as root in one round trip; `first`
        runs before (its failure raises), `then` after (the command's status is its)."""
        quoted = " ".join(shlex.quote(d) for d in dirs)
        active = f"systemctl is-active {shlex.quote(unit)}" if unit else "true"
        # The listing, a separator line, every file's sha256, the unit's state, the file.
        listing, _, rest = self.sudo(
            (f"{{ {first}\n}} || exit $?; " if first else "")
            + f"for d in {quoted}; do [ -e \"$d\" ] && find \"$d\" -printf '%y %m %u:%g %p\\t%l\\n'"
            f"; done; echo ==; find {quoted} -type f -exec sha256sum {{}} + 2>/dev/null"
            f"; echo ==; {active}; echo =="
            + (f"; cat -- {shlex.quote(read)}" if read else "")
            + f"; {then or 'true'}"
        ).stdout.partition("==\n")
        files, _, rest = rest.partition("==\n")
        state, _, text = rest.partition("==\n")
        digest = {line[66:]: line[:64] for line in files.splitlines() if len(line) > 66}
        out: dict[str, str] = {}
        for line in listing.splitlines():
            head, _, target = line.partition("\t")
            kind, mode, owner, path = head.split(" ", 3)
            out[path] = (f"link {target}" if kind == "l" else
                         f"file {mode} {owner} {digest.get(path, '?')}" if kind == "f" else
                         f"{kind} {mode} {owner}")
        return out, state.strip(), text

    @staticmethod
    def use_proxy_cmd(kind: str) -> str:
        """The shell of use_proxy, for a round trip that does more (tree(first=...))."""
        others = " ".join(u for k, u in UNITS.items() if k != kind)
        # The node unit exists only once a node deploy made it: stop what there is.
        command = f"systemctl stop {others} 2>/dev/null; "
        return command + (f"systemctl start {UNITS[kind]}" if kind in PROXY_UNITS else "true")

    def use_proxy(self, kind: str) -> None:
        """Make `kind`'s unit the one running on :80 (node: no other). Start/stop only:
        `systemctl enable` of these SysV-compatible units runs perl for ~12 s under TCG."""
        self.sudo(self.use_proxy_cmd(kind))

    def stop_proxies(self, *, then: str = "true") -> str:
        """Every proxy unit stopped (installed, but nothing serves :80). The node unit exists
        only once a node deploy made it (systemctl exits 5 for a unit it does not know).
        `then`: a look in the same round trip; returns its output."""
        return self.sudo("systemctl stop " + " ".join(PROXY_UNITS.values())
                         + f" && {{ systemctl stop {UNITS['node']} 2>/dev/null || true; }}"
                         + f" && {then}").stdout

    @contextlib.contextmanager
    def dead_backend(self, *dirs: str, unit: str | None = None, first: str = ""
                     ) -> Iterator[Seen]:
        """The Socket.IO unit stopped for the block (started again after it). The round trips
        that stop and start it also take the tree of `dirs` (and `unit`'s state): `.before`
        (after `first`, e.g. use_proxy_cmd), `.after` (set once the block is left)."""
        before, active, _ = self._tree(dirs, unit,
                                       first=(f"{first} && " if first else "")
                                       + f"systemctl stop {BACKEND_UNIT}")
        seen = Seen(before, active)
        try:
            yield seen
        finally:
            tree, active, _ = self._tree(dirs, unit, then=f"systemctl start {BACKEND_UNIT}")
            seen.after = (tree, active)

    def handshake(self, host: str = SERVER_NAME) -> tuple[int, str]:
        """The Engine.IO handshake from outside, through the forwarded port 80."""
        return rig.engineio_handshake(f"http://{self.address}:80", headers={"Host": host})

    def reboot(self, timeout: float = BOOT_TIMEOUT) -> float:
        """Reboot the guest for real, without the orderly stop of every unit; seconds until
        sshd is back. The guest's reset is a power cycle (qemu -no-reboot exits, and the same
        disk boots in a new qemu on the same address): the guest's warm reset under TCG took
        twice a cold boot (kernel 12.7 + userspace 14.9 s vs 4.4 + 8.9, systemd-analyze).
        A new boot shows as a new boot_id behind a working login."""
        with self.clock.measure("reboot", "the guest, until sshd is back"):
            return self._reboot(timeout)

    def _reboot(self, timeout: float) -> float:
        started = time.monotonic()
        boot_id = "cat /proc/sys/kernel/random/boot_id"
        old = self.run(boot_id).stdout.strip()
        with contextlib.suppress(paramiko.SSHException, OSError, EOFError):  # it may drop us
            # --force: no orderly stop of every unit (processes killed, filesystems unmounted
            # or read-only, then the reboot): what the lane checks, that enabled units come
            # back at boot, is the same; measured 32 instead of 43 s under TCG (load ~2).
            self.run(self._reboot_cmd, check=False, timeout=10)
        self.close_ssh()
        self._power_cycle(started + timeout)
        while True:
            self.wait_ssh(max(1.0, timeout - (time.monotonic() - started)))
            with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
                if self.run(boot_id, check=False).stdout.strip() not in ("", old):
                    return time.monotonic() - started
            self.close_ssh()
            if time.monotonic() - started > timeout:
                raise rig.RigError(f"the VM did not reboot within {timeout:.0f} s\n"
                                   f"{self.console}")
            time.sleep(1.0)  # still the old boot, shutting down

    def _power_cycle(self, deadline: float) -> None:
        """Once qemu exited at the guest's reset (-no-reboot), boot the same disk in a new
        qemu on the same address (its CPU counted on, its console beside the first one's)."""
        cpu = [self.clock.qemu_cpu()]

        def exited() -> bool:
            if self.qemu.running():
                cpu[0] = self.clock.qemu_cpu()  # read before it is reaped
                return False
            return True

        rig.wait_for("qemu to exit at the guest's reset", exited,
                     timeout=max(1.0, deadline - time.monotonic()), interval=0.2)
        self.qemu.stop()
        with contextlib.suppress(OSError):
            (self.workdir / "console.log").rename(self.workdir / "console-before-reboot.log")
        self.qemu = _start_qemu(self.image, self.address, self.workdir)
        self.clock.restarted(self.qemu.pid, cpu[0])
        time.sleep(0.5)  # a taken hostfwd port makes qemu exit at once
        if not self.qemu.running():
            raise rig.RigError(f"qemu could not start again on {self.address} after the "
                               f"guest's reboot: {self.qemu.output()[-2000:]}")

    # -- sockwizard, as a user would run it -------------------------------------------------

    def sockwizard(self, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        """`sockwizard ARGS --host admin@ADDR -i KEY --known-hosts FILE` in a subprocess with
        its own state directory (local backup notes stay with this VM)."""
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(self.workdir / "home"),
               "XDG_STATE_HOME": str(self.workdir / "state")}
        # SW_VM_TRACE=1: every SSH command and SFTP request of the run on stderr (a measuring
        # aid: tests/vm_cmdtrace.py runs the same CLI with the transport wrapped).
        entry = ([str(ROOT / "tests" / "vm_cmdtrace.py")] if os.environ.get("SW_VM_TRACE")
                 else ["-m", "wizard"])
        argv = [sys.executable, *entry, *args, "--host", self.target,
                "-i", str(self.image.key), "--known-hosts", str(self.known_hosts)]
        started = time.monotonic()
        with self.clock.measure("sockwizard", " ".join(args)):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  env=env, cwd=ROOT)
        sys.stderr.write(f"[vm] sockwizard {' '.join(args)}: exit {done.returncode} in "
                         f"{time.monotonic() - started:.1f} s\n{done.stderr}")
        return done

    def deploy(self, kind: str, *flags: str, timeout: float = 180.0
               ) -> subprocess.CompletedProcess[str]:
        """`sockwizard deploy --proxy KIND` of the guest's backend for SERVER_NAME, plus
        `flags` (e.g. --edit-main-config). With NO_SERVER_NAME among `flags`: no
        --server-name (the site answers every name; the distro's default site is in its way)."""
        name = () if NO_SERVER_NAME in flags else ("--server-name", SERVER_NAME)
        flags = tuple(f for f in flags if f != NO_SERVER_NAME)
        return self.sockwizard("deploy", "--proxy", kind, "--backend", BACKEND, *name, *flags,
                               timeout=timeout)

    def history(self) -> list[dict[str, Any]]:
        """`sockwizard history --json`: the host's records, oldest first."""
        done = self.sockwizard("history", "--json")
        assert done.returncode == ExitCode.OK, done.stderr
        entries: list[dict[str, Any]] = json.loads(done.stdout)["entries"]
        return entries

    # -- lifetime ---------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop qemu (the overlay is thrown away, so no clean poweroff is needed) and remove
        the run's directory. Nothing of the VM is left running."""
        self.close_ssh()
        # CPU: less load-dependent than wall time.
        self.clock.report_line(f"[vm] qemu used {self.clock.qemu_cpu():.1f} s of CPU in "
                               f"{time.monotonic() - self.started_at:.1f} s")
        self.qemu.stop(timeout=10.0)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _start_qemu(image: Image, address: str, workdir: Path) -> rig.Daemon:
    forwards = ",".join(f"hostfwd=tcp:{address}:{p}-:{p}" for p in FORWARDED_PORTS)
    # -nodefaults: no VGA, IDE CD-ROM or floppy for the guest kernel to probe under TCG.
    # -no-reboot: the guest's reboot ends qemu (Vm.reboot boots the disk in a new one).
    # cache=unsafe: the overlay is thrown away, so the guest's flushes need not reach the disk.
    argv = [QEMU, "-nodefaults", "-no-reboot", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "1024",
            "-display", "none", "-monitor", "none", "-serial", f"file:{workdir / 'console.log'}",
            "-kernel", str(image.dir / "vmlinuz"), "-initrd", str(image.dir / "initrd.img"),
            "-append", KERNEL_ARGS,
            "-drive", f"file={workdir / 'run.qcow2'},if=virtio,format=qcow2,cache=unsafe",
            "-netdev", f"user,id=n0,restrict=on,{forwards}",
            "-device", "virtio-net-pci,netdev=n0"]
    return rig.Daemon(f"qemu ({address})", argv, cwd=workdir)


def boot() -> Vm:
    """Build or reuse the image, boot a fresh overlay of it, wait for sshd; see the module
    docstring. Raises VmUnavailable (skip) or rig.RigError (a real failure)."""
    reason = unavailable_reason()
    if reason:
        raise VmUnavailable(reason)
    image, build_seconds = build_image()
    workdir = Path(tempfile.mkdtemp(prefix="sockwizard-vm-"))
    overlay = workdir / "run.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                    str(image.dir / "disk.raw"), str(overlay)], check=True, timeout=60)
    started = time.monotonic()
    qemu: rig.Daemon | None = None
    for address in ADDRESSES:
        if not _ports_free(address):
            continue
        qemu = _start_qemu(image, address, workdir)
        time.sleep(0.5)  # a taken hostfwd port makes qemu exit at once
        if qemu.running():
            break
        qemu.stop()
        qemu = None
    if qemu is None:
        shutil.rmtree(workdir, ignore_errors=True)
        raise rig.RigError(f"no loopback address among {ADDRESSES[0]}..{ADDRESSES[-1]} has "
                           f"ports {FORWARDED_PORTS} free for the VM")
    vm = Vm(image, address, workdir, qemu, started_at=qemu.started_at)
    vm.known_hosts.write_text(f"{address} {image.host_key_line}\n")
    try:
        # (sudo's syslog line costs ~0.2 s of TCG per sudo, measured; it stays: the guest is
        # a stock Debian, and sudo logging is part of what a deploy meets there.)
        vm.wait_ssh()
    except BaseException:
        vm.shutdown()
        raise
    vm.timings = {"build": build_seconds, "boot": time.monotonic() - started}
    vm.clock.report_line(f"[vm] image {image.dir.name}: build {build_seconds:.1f} s; boot to "
                         f"sshd {vm.timings['boot']:.1f} s (qemu CPU "
                         f"{process_cpu(qemu.pid):.1f} s) on {address}")
    return vm



# -- the checks every proxy's VM test makes (call them with the flags your feature adds) -------


def unlike(got: tuple[dict[str, str], str], want: tuple[dict[str, str], str]) -> str:
    """What differs between two (tree, unit state) looks: for an assertion's message."""
    paths = sorted(p for p in got[0].keys() | want[0].keys() if got[0].get(p) != want[0].get(p))
    return "; ".join([*(f"{p}: {want[0].get(p)} -> {got[0].get(p)}" for p in paths[:20]),
                      *([f"unit: {want[1]} -> {got[1]}"] if got[1] != want[1] else [])])


AS_DEPLOYED = "_tree"  # a first report's key: the config tree as that deploy left it


def deploy_report(vm: Vm, kind: str, *flags: str) -> dict[str, Any]:
    """`vm.deploy(kind, *flags, "--json")`: the one host's report, plus "stderr"."""
    done = vm.deploy(kind, *flags, "--json")
    try:
        report = json.loads(done.stdout)
    except ValueError:
        raise AssertionError(f"deploy printed no JSON (exit {done.returncode}):\n"
                             f"{done.stdout}{done.stderr}") from None
    assert report["exit_code"] == done.returncode
    host: dict[str, Any] = report["hosts"][0]
    host["stderr"] = done.stderr
    return host


def websocket_roundtrip(vm: Vm, host: str = SERVER_NAME) -> dict[str, Any]:
    """Socket.IO over a WebSocket from outside, naming `host`, by hand (websocket-client:
    python-socketio would send a second Host header): open, connect, "hello", then "echo" with
    an ack; returns the backend's answer (it carries "server": "vm-backend")."""
    import websocket  # only the tests that talk to the VM need it

    ws = websocket.create_connection(
        f"ws://{vm.address}:80/socket.io/?EIO=4&transport=websocket", host=host, timeout=10)

    def recv() -> str:
        return str(ws.recv())  # text frames only in this exchange

    try:
        assert recv().startswith('0{"sid"')  # Engine.IO open
        ws.send("40")  # Socket.IO connect to "/"
        # "40{sid}" and the "hello" the server emits from its connect handler, in either order.
        frames = sorted([recv(), recv()])
        assert frames[0].startswith("40{") and frames[1].startswith('42["hello"'), frames
        ws.send('421["echo",{"from":"outside"}]')
        while (frame := recv()).startswith("2"):  # an Engine.IO ping: answer, read on
            ws.send("3")
        assert frame.startswith("431"), frame
        answer = json.loads(frame[3:])[0]
    finally:
        ws.close()
    assert isinstance(answer, dict), answer
    return answer


def check_deploy_serves_and_is_idempotent(vm: Vm, kind: str, *flags: str,
                                          in_use: bool = False) -> dict[str, Any]:
    """Deploy `kind` (with `flags`) to the stock host: it is live, its unit active, Socket.IO
    works from outside over WebSocket; the same deploy again changes nothing. Returns the
    first report. `in_use`: the caller set the proxies up just now (use_proxy; or every one
    stopped, for the first deploy to start `kind`)."""
    if not in_use:
        vm.use_proxy(kind)
    first = deploy_report(vm, kind, *flags)
    assert (first["exit_code"], first["outcome"]) == (ExitCode.OK, "deployed"), first["stderr"]
    assert first["probe"]["transport"] == "websocket", first["probe"]
    # One round trip: the file, the unit, the tree the no-op must leave as it is (the probes
    # from outside in between change no file).
    before, active, text = vm.look(kind, first["dest"])
    assert first["config_id"] in text
    assert active == "active"
    status, body = vm.handshake()
    assert status == 200 and '"sid"' in body, (status, body)
    assert websocket_roundtrip(vm) == {"from": "outside", "server": "vm-backend"}

    second = deploy_report(vm, kind, *flags)
    assert (second["exit_code"], second["outcome"]) == (ExitCode.OK, "unchanged"), \
        second["stderr"]
    assert second["config_id"] == first["config_id"]
    after = vm.state(kind)
    assert after == (before, "active"), unlike(after, (before, "active"))
    first[AS_DEPLOYED] = before
    return first


def check_dead_backend_restores_everything(vm: Vm, kind: str, *flags: str) -> dict[str, Any]:
    """With the backend unit stopped, a deploy of a changed config fails its probe and is
    rolled back: every file under the proxy's config dirs is as before, byte for byte, and
    its unit is still active. Returns the report."""
    with vm.dead_backend(*CONFIG_DIRS[kind], unit=UNITS[kind],
                         first=vm.use_proxy_cmd(kind)) as seen:
        # 61 s: not the default, so the config differs from any earlier deploy's.
        report = deploy_report(vm, kind, "--read-timeout", "61", *flags)
        assert (report["exit_code"], report["outcome"], report["failed_step"]) == \
            (ExitCode.PROBE_ROLLED_BACK, "rolled back", "probe"), report["stderr"]
    # Taken as the backend is started again: the proxy's files and unit, not the backend's.
    assert seen.after == (seen.before, "active")
    return report


def check_history_and_rollback_to(vm: Vm, kind: str, first: dict[str, Any], *flags: str,
                                  read: str = "") -> str:
    """After `first` (a deploy in effect now): deploy a different config B on top, find
    `first`'s record in `sockwizard history --json` (failed/rolled-back runs marked as such),
    `rollback --to` it: every file is as `first` left it, byte for byte, served and active.
    Returns the text of the file at `read` as the rollback left it (read in the same round
    trip as the tree)."""
    # The tree check_deploy_serves_and_is_idempotent saw `first` leave (every check since
    # asserted it unchanged), or a look now.
    as_first = first.get(AS_DEPLOYED) or vm.tree(*CONFIG_DIRS[kind])
    second = deploy_report(vm, kind, "--read-timeout", "62", *flags)
    assert (second["exit_code"], second["outcome"]) == (ExitCode.OK, "deployed"), \
        second["stderr"]
    assert second["config_id"] != first["config_id"]
    entries = [e for e in vm.history() if e["dest"] == first["dest"]]
    deploys = [e for e in entries if e["kind"] == "deploy"]
    mine = [e for e in deploys if e["config_id"] == first["config_id"]
            and e["outcome"] == "deployed"]
    assert len(mine) == 1, entries
    top = deploys[-1]
    assert (top["config_id"], top["outcome"]) == (second["config_id"], "deployed"), entries
    assert any(e["outcome"] == "unchanged" for e in deploys), entries  # the no-op, on record
    assert any(e["outcome"] == "rolled back" for e in deploys), entries  # the dead backend
    done = vm.sockwizard("rollback", "--to", mine[0]["id"])
    assert done.returncode == ExitCode.OK, done.stderr
    tree, active, text = vm.look(kind, read) if read else (*vm.state(kind), "")
    assert (tree, active) == (as_first, "active"), unlike((tree, active), (as_first, "active"))
    status, body = vm.handshake()
    assert status == 200 and '"sid"' in body, (status, body)
    return text
