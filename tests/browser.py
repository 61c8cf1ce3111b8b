"""Headless Chromium on ``sockwizard serve``: shared by tests/test_serve_browser.py and
scripts/screenshots.py (the browser shot in the README).

Debian's chromium and chromedriver (scripts/setup installs them) driven by Selenium. The page
is textual-serve's xterm.js terminal, which draws on a canvas: to read the screen, a script
that runs before the page's own (``HOOK``) keeps the terminal's owner object when it is built
(its constructor assigns ``fitAddon``), and ``screen()`` reads xterm's buffer line by line.
Keys go where a person's would: into xterm's focused textarea.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# This machine's network is closed: without the background-networking flags Chromium keeps
# trying Google's hosts (see the environment notes).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOOK = """Object.defineProperty(Object.prototype, 'fitAddon', {configurable: true,
  set(v) { window.__sw = this;
    Object.defineProperty(this, 'fitAddon', {value: v, writable: true, configurable: true,
                                            enumerable: true}); }});"""
SCREEN_JS = """const t = window.__sw && window.__sw.terminal; if (!t) return null;
const b = t.buffer.active, out = [];
for (let y = 0; y < t.rows; y++) { const l = b.getLine(y); out.push(l ? l.translateToString(true) : ''); }
return out.join('\\n');"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def served(env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m wizard serve`` on a free loopback port; stopped (its group) at the end."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "wizard", "serve", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read().decode() if proc.stdout else "exited")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/", proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Browser:
    """One headless Chromium on one page."""

    def __init__(self, width: int = 1280, height: int = 800) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [*FLAGS, f"--window-size={width},{height}"]:
            options.add_argument(flag)
        self.profile = tempfile.TemporaryDirectory(prefix="sockwizard-chromium-")
        options.add_argument(f"--user-data-dir={self.profile.name}")
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(20)
        self.driver.set_script_timeout(10)
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": HOOK})

    def open(self, url: str) -> None:
        self.driver.get(url)

    def screen(self) -> str:
        return str(self.driver.execute_script(SCREEN_JS) or "")

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                time.sleep(0.4)  # like a person reading it: the focus settles
                return self.screen()
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared in the browser; last screen:\n{screen}")

    def keys(self, *keys: Any) -> None:
        """Typed into xterm's textarea, one at a time (Keys.ENTER, Keys.CONTROL + "n"...)."""
        from selenium.webdriver.common.by import By

        area = self.driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
        for key in keys:
            area.send_keys(key)
            time.sleep(0.15)

    def screenshot(self, path: Path) -> None:
        self.driver.save_screenshot(str(path))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.driver.quit()
        self.profile.cleanup()


def walk_to_sandbox_verdict(page: Browser, on_deployed: Any = None) -> str:
    """From the first step to the verdict of a sandbox deploy (nginx, the defaults), by keys;
    ``on_deployed()`` runs once the deploy step says Deployed. The verdict screen's text."""
    from selenium.webdriver.common.keys import Keys

    page.wait_for("What would you like to do?")
    page.keys(Keys.ENTER)
    page.wait_for("2. Proxy")
    page.keys(Keys.ENTER)  # nginx
    for step in ("3. Path & scope", "4. Backends & timeouts", "5. Preview"):
        page.wait_for(step)
        page.keys(Keys.CONTROL + "n")
    page.wait_for("6. Target")
    page.keys(Keys.DOWN, Keys.DOWN, Keys.ENTER)  # "A sandbox here"
    page.keys(Keys.CONTROL + "n")
    page.wait_for("7. Deploy")
    page.keys("d")
    page.wait_for("Deployed", timeout=40)
    if on_deployed is not None:
        on_deployed()
    page.keys(Keys.CONTROL + "n")
    return page.wait_for("Socket.IO works end to end over WebSocket")
