"""A throwaway proxy + Socket.IO server on loopback, so anyone can try the whole deploy flow.

Called by ``sockwizard sandbox --proxy KIND`` (``wizard.commands.sandbox``) and by the TUI
(``start_sandbox`` / ``Sandbox.stop`` from a worker thread). Everything lives in one temp prefix
and on free loopback ports, and nothing needs root:

1. a demo Socket.IO server: python-socketio on aiohttp, run as ``python -m wizard.sandbox
   backend`` (answers ``echo`` with an acknowledgement, like the test rig's Node server);
2. the chosen proxy, started from a main config written into the prefix whose site file is a
   placeholder answering 503;
3. the real transaction (``wizard.deploy.apply`` over ``LocalRemote``, ``sudo`` off) replaces
   that site file with the rendered config: backup, upload, rename, validate, reload, settle,
   probe — the same code path as a deploy over SSH;
4. ``Sandbox.stop()`` terminates every process it started (they are Popen children, waited
   for) and removes the prefix.

A missing proxy binary raises ``MissingTool`` with the install command before anything starts.
The modules::

    procs     find a binary, free ports, spawn / wait for / stop a process (Proc)
    setups    SETUPS[kind]: each proxy's main config in the prefix (ProxySetup)
    backend   the demo Socket.IO server (``__main__`` runs it)
    spec      sandbox_spec: the user's spec on the sandbox's ports, and every Substitution
    fault_kinds  the faults' names and titles (light: read by --help)
    faults    --break KIND: the classic faults as variations of the spec / rendered config
    run       start_sandbox, Sandbox, stop_all, wait_until_interrupted
    breaks    run_break: the fault's symptom with a real client, diagnose, the fix
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wizard.sandbox.backend import serve_backend
    from wizard.sandbox.fault_kinds import FAULT_TITLES, Fault, parse_fault
    from wizard.sandbox.faults import FaultPlan
    from wizard.sandbox.procs import LOOPBACK, SBIN, Proc, SandboxError, find_binary, free_port
    from wizard.sandbox.run import (
        Sandbox,
        check_affinity,
        required_binary,
        start_sandbox,
        stop_all,
        wait_until_interrupted,
    )
    from wizard.sandbox.setups import SETUPS, ProxySetup
    from wizard.sandbox.spec import Substitution, backend_ids, sandbox_spec

# Loaded from their modules on first access (PEP 562): ``sockwizard --help`` imports
# ``fault_kinds`` for its text, and that must not import the deploy through ``run``.
_EXPORTS = {
    "FAULT_TITLES": "fault_kinds",
    "Fault": "fault_kinds",
    "FaultPlan": "faults",
    "LOOPBACK": "procs",
    "Proc": "procs",
    "ProxySetup": "setups",
    "SBIN": "procs",
    "SETUPS": "setups",
    "Sandbox": "run",
    "SandboxError": "procs",
    "Substitution": "spec",
    "backend_ids": "spec",
    "check_affinity": "run",
    "find_binary": "procs",
    "free_port": "procs",
    "parse_fault": "fault_kinds",
    "required_binary": "run",
    "sandbox_spec": "spec",
    "serve_backend": "backend",
    "start_sandbox": "run",
    "stop_all": "run",
    "wait_until_interrupted": "run",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"wizard.sandbox.{module}"), name)


__all__ = [
    "FAULT_TITLES",
    "LOOPBACK",
    "SBIN",
    "SETUPS",
    "Fault",
    "FaultPlan",
    "Proc",
    "ProxySetup",
    "Sandbox",
    "SandboxError",
    "Substitution",
    "backend_ids",
    "check_affinity",
    "find_binary",
    "free_port",
    "parse_fault",
    "required_binary",
    "sandbox_spec",
    "serve_backend",
    "start_sandbox",
    "stop_all",
    "wait_until_interrupted",
]
