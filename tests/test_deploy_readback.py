"""The destination's bytes printed by the lock step (``wizard.deploy.readback``): every byte is
the host's, so anything that does not check out means "read it the ordinary way" (None)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

from wizard.deploy import readback


def frame(data: bytes, *, size: int | None = None, digest: str | None = None,
          text: str | None = None) -> str:
    return (f"@@sw locked\n@@sw file {len(data) if size is None else size} "
            f"{digest or hashlib.sha256(data).hexdigest()}\n"
            f"{base64.b64encode(data).decode() if text is None else text}\n@@sw end\n")


def test_the_script_prints_what_the_parser_takes(tmp_path: Path) -> None:
    path = tmp_path / "site.conf"
    path.write_bytes(b"server {}\n\xff\x00 not utf-8\n")
    out = subprocess.run(["sh", "-c", "\n".join(readback.lines(str(path)))],
                         capture_output=True, text=True, errors="replace", check=True).stdout
    assert readback.parse(out) == readback.Readback(path.read_bytes())
    gone = subprocess.run(["sh", "-c", "\n".join(readback.lines(str(tmp_path / "none")))],
                          capture_output=True, text=True, check=True).stdout
    assert readback.parse(gone) == readback.Readback(None)
    (tmp_path / "link").symlink_to(path)  # never read through a symlink
    linked = subprocess.run(["sh", "-c", "\n".join(readback.lines(str(tmp_path / "link")))],
                            capture_output=True, text=True, check=True).stdout
    assert readback.parse(linked) is None


def test_anything_that_does_not_check_out_is_none() -> None:
    data = b"listen 80;\n"
    assert readback.parse(frame(data)) == readback.Readback(data)
    assert readback.parse(frame(data, size=len(data) + 1)) is None
    assert readback.parse(frame(data, digest="0" * 64)) is None
    assert readback.parse(frame(data, text="bm90 YmFzZTY0")) is None  # not strict base64
    assert readback.parse(frame(data, size=readback.MAX_BYTES + 1)) is None
    assert readback.parse(frame(data).replace("@@sw end", "@@sw nope")) is None
    assert readback.parse("@@sw locked\n") is None
