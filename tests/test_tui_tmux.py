"""Start ``sockwizard`` in a real terminal (tmux) the way a person would, walk to the preview
with key presses, and read the generated config off the screen.

This is the one test that goes through a real terminal: the entry point (``python -m wizard``
with no arguments), Textual's terminal driver, key decoding and the rendering a user sees.
The tmux server runs on its own socket and is killed at the end, whatever happens.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wizard.model import DeploySpec
from wizard.render import render

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 120, 44
SCROLLBAR = "▁▂▃▄▅▆▇█▉▊▋▌▍▎▏▐▔▕"


class Tmux:
    """One tmux server on a private socket, one session running the wizard."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def cmd(self, *args: str) -> str:
        proc = subprocess.run(["tmux", "-f", "/dev/null", "-L", self.socket, *args],
                              capture_output=True,
                              text=True, timeout=20)
        if proc.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def screen(self) -> str:
        return self.cmd("capture-pane", "-p", "-t", "sw")

    def key(self, *keys: str) -> None:
        """One key per send-keys, like a person typing (a burst can arrive as one read)."""
        for key in keys:
            self.cmd("send-keys", "-t", "sw", key)
            time.sleep(0.05)

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        """Wait until ``text`` is on the screen, then pause like a person reading it (a new
        screen paints its title a moment before its widgets take the focus)."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                time.sleep(0.5)
                return self.screen()
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared on the screen; last screen:\n{screen}")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    assert shutil.which("tmux"), "tmux is needed (scripts/setup --test installs it)"
    session = Tmux(f"sockwizard-test-{os.getpid()}")
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    # COLUMNS/LINES from the calling environment would pin Textual to that size.
    command = f"cd {ROOT} && env -u COLUMNS -u LINES {exports} {sys.executable} -m wizard"
    # A detached session takes its size from default-size (80x24 unless told otherwise).
    session.cmd("start-server", ";", "set-option", "-g", "default-size",
                f"{WIDTH}x{HEIGHT}", ";", "new-session", "-d", "-s", "sw", "-x", str(WIDTH),
                "-y", str(HEIGHT), command)
    try:
        yield session
    finally:
        subprocess.run(["tmux", "-L", session.socket, "kill-server"], capture_output=True,
                       timeout=20)


def config_lines_on(screen: str) -> dict[int, str]:
    """The numbered config lines visible in the preview's code view: {line number: text}."""
    lines: dict[int, str] = {}
    for row in screen.splitlines():
        m = re.match(r"^.*?│ │\s*(\d+) (.*?)\s*│\s*\S?\s*$", row)
        if m:
            # The code view's scrollbar thumb (a block glyph) sits at the right edge.
            lines[int(m.group(1))] = m.group(2).rstrip().rstrip(SCROLLBAR).rstrip()
    return lines


def test_walk_to_the_preview_and_read_the_config(tmux: Tmux) -> None:
    tmux.wait_for("What would you like to do?")
    tmux.key("Enter")  # Deploy a new config
    tmux.wait_for("2. Proxy")
    tmux.key("Enter")  # nginx
    tmux.wait_for("3. Path & scope")
    tmux.key("C-n")
    tmux.wait_for("4. Backends & timeouts")
    tmux.key("C-n")
    screen = tmux.wait_for("5. Preview")
    screen = tmux.wait_for("proxy_pass")
    assert "It goes to /etc/nginx/conf.d/sockwizard.conf" in screen.replace("\n", " ").replace(
        "│", " ") or "/etc/nginx/conf.d/sockwizard.conf" in screen
    shown = config_lines_on(screen)
    expected = render(DeploySpec()).text.splitlines()
    assert len(shown) >= 15, screen
    for number, text in shown.items():
        want = expected[number - 1]
        # A line wider than the view is cut at its edge; what is shown must match.
        assert want.startswith(text) and (text == want or len(text) >= 60), (number, text, want)
    assert any("proxy_http_version 1.1;" in t for t in shown.values())
    assert any(t.startswith("map $http_upgrade $connection_upgrade {") for t in shown.values())
    tmux.key("C-q")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        alive = subprocess.run(["tmux", "-L", tmux.socket, "has-session", "-t", "sw"],
                               capture_output=True).returncode == 0
        if not alive:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("sockwizard did not exit on ctrl+q")


def test_a_choice_is_what_enter_picked_even_if_keys_follow_at_once(tmux: Tmux) -> None:
    """Enter on "Deploy a new config" and two Downs in one burst (a fast typist, a paste, a
    script). Textual hands the Downs to the menu before the screen has handled Enter's
    selection; the step must act on the option Enter picked, not on where the highlight has
    moved since (before the fix this opened "Load a saved spec")."""
    tmux.wait_for("What would you like to do?")
    tmux.cmd("send-keys", "-t", "sw", "Enter", "Down", "Down")
    screen = tmux.wait_for("2. Proxy")
    assert "Load a spec" not in screen
    tmux.cmd("send-keys", "-t", "sw", "Enter", "Down", "Down")  # nginx, then the same burst
    tmux.wait_for("3. Path & scope")
    tmux.key("C-n")
    tmux.wait_for("4. Backends & timeouts")
    tmux.key("C-n")
    screen = tmux.wait_for("5. Preview")
    assert "nginx: a file to include" in screen  # not "Node.js http-proxy", two rows down


def sandbox_processes(prefix_root: Path) -> list[str]:
    """Live processes of a sandbox under ``prefix_root``: the proxy's command line names its
    prefix, and every sandbox process (the demo backends too) runs in it."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if (str(prefix_root) in argv or cwd.startswith(str(prefix_root))) and state != "Z":
            found.append(f"{proc.name} {argv}")
    return found


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["kill-session", "SIGTERM"])
def test_closing_the_terminal_stops_the_sandbox(tmp_path: Path, how: str) -> None:
    """Issue #14 item 4: deploy into a sandbox in the real binary, then close the terminal
    (tmux kill-session: SIGHUP) or SIGTERM the wizard: its proxy, its demo backend and its temp
    dir must be gone, as after ctrl+q (before: re-parented to PID 1 and left running)."""
    assert shutil.which("tmux"), "tmux is needed (scripts/setup --test installs it)"
    temp = tmp_path / "tmp"
    temp.mkdir()
    session = Tmux(f"sockwizard-hup-{os.getpid()}")
    exports = f"TMPDIR={temp} XDG_STATE_HOME={tmp_path / 'state'} HOME={tmp_path}"
    command = f"cd {ROOT} && exec env -u COLUMNS -u LINES {exports} {sys.executable} -m wizard"
    session.cmd("start-server", ";", "set-option", "-g", "default-size", f"{WIDTH}x{HEIGHT}",
                ";", "new-session", "-d", "-s", "sw", "-x", str(WIDTH), "-y", str(HEIGHT),
                command)
    try:
        session.wait_for("What would you like to do?")
        session.key("Enter")
        session.wait_for("2. Proxy")
        session.key("Enter")  # nginx
        session.wait_for("3. Path & scope")
        session.key("C-n")
        session.wait_for("4. Backends & timeouts")
        session.key("C-n")
        session.wait_for("5. Preview")
        session.key("C-n")
        session.wait_for("6. Target")
        session.key("Down", "Down", "Enter")  # the sandbox
        session.key("C-n")
        session.wait_for("7. Deploy")
        session.key("d")
        session.wait_for("Deployed", timeout=60)
        boxes = list(temp.glob("sockwizard-sandbox-*"))
        assert len(boxes) == 1, boxes
        assert sandbox_processes(temp), "the sandbox's processes should be running"
        wizard_pid = int(session.cmd("display-message", "-p", "-t", "sw", "#{pane_pid}"))
        if how == "SIGTERM":
            os.kill(wizard_pid, 15)
        else:
            session.cmd("kill-session", "-t", "sw")  # the terminal closes: SIGHUP
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            left, alive = sandbox_processes(temp), Path(f"/proc/{wizard_pid}").exists()
            if not left and not alive and not any(temp.iterdir()):
                break
            time.sleep(0.2)
        assert not sandbox_processes(temp), sandbox_processes(temp)
        assert not any(temp.iterdir()), list(temp.iterdir())
    finally:
        subprocess.run(["tmux", "-L", session.socket, "kill-server"], capture_output=True,
                       timeout=20)
