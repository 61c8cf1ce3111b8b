"""`python tests/vm_cmdtrace.py ARGS`: `python -m wizard ARGS` with every SSH command and SFTP
request the run makes written to stderr as it ends (seconds since start, its wall time, its
exit status, its head), to see where a sockwizard run's seconds go inside a slow guest.

Used by tests/vm.py's ``Vm.sockwizard`` when SW_VM_TRACE=1 is set (a measuring aid, off in
CI): it wraps the transport from outside, so the CLI under test is the one a user runs.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paramiko  # noqa: E402

from wizard.remote.ssh import remote  # noqa: E402

T0 = time.monotonic()


def _line(kind: str, started: float, what: str, status: object = "") -> None:
    now = time.monotonic()
    head = " ".join(what.split())
    sys.stderr.write(f"[trace] {started - T0:6.2f} {now - started:5.2f} s {kind} {status} "
                     f"{head[:160]}{'…' if len(head) > 160 else ''} ({len(what)} chars)\n")


def _wrap_exec(original: Any) -> Any:
    @functools.wraps(original)
    def exec_(self: Any, command: str, *, timeout: float, stdin: bytes | None) -> Any:
        started = time.monotonic()
        try:
            result = original(self, command, timeout=timeout, stdin=stdin)
        except BaseException as exc:
            _line("exec", started, command, type(exc).__name__)
            raise
        _line("exec", started, command, result.exit_status)
        return result
    return exec_


def _wrap_sftp(original: Any) -> Any:
    @functools.wraps(original)
    def request(self: Any, t: int, *args: Any) -> Any:
        started = time.monotonic()
        try:
            return original(self, t, *args)
        finally:
            name = paramiko.sftp.CMD_NAMES.get(t, str(t))
            _line("sftp", started, f"{name} {' '.join(str(a)[:60] for a in args[:1])}")
    return request


def main() -> int:
    remote.SshRemote._exec = _wrap_exec(remote.SshRemote._exec)  # type: ignore[method-assign]
    paramiko.SFTPClient._request = _wrap_sftp(  # type: ignore[method-assign]
        paramiko.SFTPClient._request)
    from wizard.cli import main as cli_main

    sys.argv[0] = "sockwizard"
    try:
        return int(cli_main() or 0)
    finally:
        sys.stderr.write(f"[trace] end at {time.monotonic() - T0:.2f} s\n")


if __name__ == "__main__":
    raise SystemExit(main())
