"""One stock-layout deploy over real SSH, counted: run *inside* a Debian host's namespaces.

Used by ``tests/test_stock_round_trips.py`` (and by hand for issue #15's before/after
figures): ``nsenter -t PID -m -n -- python -m tests.stock_turns PROXY [FLAG...]``. It starts
the rig's sshd in those namespaces (so the commands it runs see the host's copy of
/etc/<proxy>, and the proxy's reload and the probe reach the namespace's own localhost), puts
``ssh_turns.TurnRelay`` in front of it, deploys with ``ssh_turns.count_channels`` and the SFTP
opens recorded, and prints one JSON object: the outcome, the exec commands, the SFTP opens
(path and mode), the channel kinds and the client's turns.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import paramiko

from tests import rig
from tests.ssh_turns import TurnRelay, count_channels
from wizard.deploy import DeployOptions, deploy_host
from wizard.deploy.options import ConnectOptions
from wizard.model import Backend, DeploySpec, ProxyKind


def measure(proxy: str, flags: list[str]) -> dict[str, Any]:
    sshd = rig.SshdInstance()
    relay = TurnRelay((sshd.host, sshd.port))
    opens: list[list[str]] = []
    sftp_open = paramiko.SFTPClient.open

    def counted(self: paramiko.SFTPClient, path: str, mode: str = "r", *a: Any, **kw: Any
                ) -> Any:
        opens.append([path, mode])
        return sftp_open(self, path, mode, *a, **kw)

    paramiko.SFTPClient.open = counted  # type: ignore[assignment, method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            known = relay.known_hosts(sshd.known_hosts, Path(tmp))
            spec = DeploySpec(proxy=ProxyKind(proxy), backends=(Backend("127.0.0.1", 3000),))
            options = DeployOptions(settle_timeout=4, state_dir=Path(tmp) / "state",
                                    edit_main_config="--edit-main-config" in flags,
                                    disable_default_site="--disable-default-site" in flags)
            connect = ConnectOptions(known_hosts=known, identity=sshd.client_key(rig.DEPLOY_USER),
                                     ssh_config=Path("/nonexistent/ssh_config"),
                                     connect_timeout=5)
            with count_channels() as counter:
                result = deploy_host(f"{rig.DEPLOY_USER}@127.0.0.1:{relay.port}", spec,
                                     options, connect)
            turns = relay.count() if relay.turns else 0
    finally:
        paramiko.SFTPClient.open = sftp_open  # type: ignore[method-assign]
        relay.close()
        sshd.stop()
    return {"outcome": result.outcome.value, "message": result.message(),
            "commands": counter.commands, "subsystems": counter.subsystems,
            "channels": counter.channels, "sftp_opens": opens, "turns": turns}


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], sys.argv[2:])))
