"""paramiko's ``invoke`` import is deferred to its one use, ``Match exec`` (wizard.remote.ssh.lazy_invoke).

Each check runs in a fresh interpreter: what a process imports is the point.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_connecting_code_does_not_import_invoke() -> None:
    out = _run("""
        import sys
        import wizard.remote.ssh, paramiko
        loaded = sorted(m for m in sys.modules if m.startswith("invoke."))
        print(loaded, "unittest.mock" in sys.modules)
        """)
    assert out == "[] False"


def test_match_exec_in_the_ssh_config_still_runs(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text('Match exec "test 1 = 1"\n  HostName matched.example\n  Port 2222\n'
                      'Match exec "test 1 = 2"\n  User never\n')
    out = _run(f"""
        from wizard.remote.ssh import parse_target
        t = parse_target("box", ssh_config=__import__("pathlib").Path({str(config)!r}),
                         default_user="me")
        print(t.host, t.port, t.user)
        """)
    assert out == "matched.example 2222 me"
