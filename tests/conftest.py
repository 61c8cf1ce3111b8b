"""Shared pytest fixtures for sockwizard's tests, built on tests/rig.py.

Fixtures: `npm_ready` (session), `node_backend` (factory), `plain_server` (factory),
`proxy_factory` (ProxyFactory), `sshd` (session SshdInstance, root only), `vm` (session: the
booted Debian 12 VM of tests/vm.py). Markers registered here: `needs_root` (skipped with a
reason when not root), `slow` (starts real daemons; runs by default) and `vm` (the real-VM
lane; runs by default, skipped only when qemu/debootstrap cannot run here).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# `from tests import rig` needs the repository root on sys.path; `python3 -m pytest` puts the
# current directory there, plain `pytest` from another directory does not.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests import rig  # noqa: E402

if TYPE_CHECKING:
    from tests.vm import Vm


def _sigterm_to_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs_root: needs root (sshd, useradd, sudo); skipped otherwise"
    )
    config.addinivalue_line(
        "markers", "slow: starts real daemons (proxies, sshd); still part of the default run"
    )
    config.addinivalue_line(
        "markers", "vm: boots the Debian 12 VM (tests/vm.py); still part of the default run"
    )
    # A run stopped with SIGTERM (a CI time limit, `timeout`) would otherwise die without
    # teardown or atexit, leaving proxies and sshd behind; as an interrupt, both still run.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The VM lane's timings (tests/vm_timing.py), when it ran: CI's log shows where its
    minutes went even when every test passed."""
    timing = sys.modules.get("tests.vm_timing")
    if timing is not None and timing.REPORT:
        terminalreporter.write_sep("-", "VM lane timings")
        for text in timing.REPORT:
            terminalreporter.write_line(text)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: runs sshd, creates users and sudoers entries")
    for item in items:
        if "needs_root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def npm_ready() -> None:
    """tests/node/node_modules installed (runs `npm ci` once if it is missing)."""
    rig.ensure_node_modules()


@pytest.fixture
def node_backend(npm_ready: None) -> Iterator[Callable[..., rig.NodeBackend]]:
    """Factory: `node_backend(path=..., ping_interval=..., server_id=..., version=4|2)` returns
    a started rig.NodeBackend; all of them are stopped at teardown."""
    started: list[rig.NodeBackend] = []

    def make(*args: Any, **kwargs: Any) -> rig.NodeBackend:
        backend = rig.NodeBackend(*args, **kwargs)
        started.append(backend)
        return backend

    yield make
    for backend in reversed(started):
        backend.stop()


@pytest.fixture
def plain_server(npm_ready: None) -> Iterator[Callable[..., rig.PlainServer]]:
    """Factory: `plain_server(mode="http"|"ws"|"silent"|"close", status=..., body=...)`."""
    started: list[rig.PlainServer] = []

    def make(*args: Any, **kwargs: Any) -> rig.PlainServer:
        server = rig.PlainServer(*args, **kwargs)
        started.append(server)
        return server

    yield make
    for server in reversed(started):
        server.stop()


@pytest.fixture
def proxy_factory() -> Iterator[rig.ProxyFactory]:
    """A rig.ProxyFactory whose instances (and their directories) are removed at teardown."""
    factory = rig.ProxyFactory(rig.make_world_dir("sockwizard-rig-"))
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def sshd() -> Iterator[rig.SshdInstance]:
    """A real sshd on 127.0.0.1 for the whole session (root only; skipped otherwise).

    Users: root, swdeploy (NOPASSWD sudo), swnosudo (sudo wants rig.NOSUDO_PASSWORD). The users
    and /etc/sudoers.d/sockwizard-rig are left in place at teardown, on purpose: other pytest
    sessions on this machine may be using them at the same time.
    """
    if not rig.is_root():
        pytest.skip("needs root: runs sshd, creates users and sudoers entries")
    if not Path("/usr/sbin/sshd").exists():
        pytest.skip("openssh-server is not installed (/usr/sbin/sshd missing)")
    instance = rig.SshdInstance()
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def vm() -> Iterator[Vm]:
    """The Debian 12 VM (tests/vm.Vm), booted once for the session from the cached image and
    stopped at teardown; skipped with the reason only when qemu/debootstrap cannot run here."""
    from tests import vm as vm_lane  # here: paramiko and the lane only when a test asks

    try:
        instance = vm_lane.boot()
    except vm_lane.VmUnavailable as exc:
        pytest.skip(f"VM lane: {exc}")
    yield instance
    instance.shutdown()
