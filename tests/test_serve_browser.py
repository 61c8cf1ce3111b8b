"""``sockwizard serve`` end to end in headless Chromium (Debian's chromium + chromedriver,
Selenium): the page loads, the first step renders, key presses walk the wizard to a sandbox
deploy and its verdict; closing the tab stops that sandbox. Plus the bind rules (loopback by
default, anything else only with --public and a warning)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser import CHROMEDRIVER, CHROMIUM, ROOT, Browser, served, walk_to_sandbox_verdict
from wizard.commands.serve import check_bind
from wizard.errors import BadInput


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_the_wizard_in_chromium_reaches_a_sandbox_verdict(tmp_path: Path) -> None:
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), \
        "scripts/setup --test installs chromium and chromium-driver"
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = dict(os.environ, TMPDIR=str(temp), XDG_STATE_HOME=str(tmp_path / "state"),
               HOME=str(tmp_path))
    with served(env) as (url, _server):
        browser = Browser()
        sandboxes: list[int] = []
        try:
            browser.open(url)
            assert browser.driver.find_elements("css selector", ".textual-terminal")
            screen = walk_to_sandbox_verdict(browser, lambda: sandboxes.append(
                len(list(temp.glob("sockwizard-sandbox-*")))))
            assert sandboxes == [1]
            assert "8. Probe & verdict" in screen
        finally:
            browser.close()  # the tab goes: textual-serve tells its wizard to quit
        deadline = time.monotonic() + 15
        while any(temp.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(temp.iterdir()), "closing the tab must stop the wizard's sandbox"


def test_serve_binds_loopback_unless_told_otherwise() -> None:
    assert check_bind("127.0.0.1", 8000, public=False) is None
    assert check_bind("::1", 8000, public=False) is None
    with pytest.raises(BadInput) as err:
        check_bind("0.0.0.0", 8000, public=False)
    assert "--public" in err.value.hint
    warning = check_bind("0.0.0.0", 8000, public=True)
    assert warning is not None and "WARNING" in warning and "SSH keys" in warning
    with pytest.raises(BadInput):
        check_bind("127.0.0.1; rm -rf /", 8000, public=True)
    with pytest.raises(BadInput):
        check_bind("127.0.0.1", 70000, public=False)


def test_serve_cli_refuses_a_public_bind_without_the_flag() -> None:
    done = subprocess.run([sys.executable, "-m", "wizard", "serve", "--host", "0.0.0.0"],
                          capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert done.returncode != 0 and "not a loopback address" in done.stderr
