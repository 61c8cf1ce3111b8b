"""Issue #15: many files (the node proxy's vendored http-proxy) go to the host in ONE command.

``wizard.deploy.bundle`` run by a real /bin/sh through ``LocalRemote``, as a deploy runs it:
each file's bytes, an existing file's mode kept, a symlink followed; a stream that does not
check out writes nothing and leaves no temp file.
"""

from __future__ import annotations

import os
from pathlib import Path

from wizard.deploy import bundle
from wizard.remote import LocalRemote


def run(files: list[tuple[str, bytes]], stream: bytes) -> int:
    text = stream.decode("utf-8", "surrogateescape")
    return LocalRemote().run(bundle.write_script(files), input=text, timeout=30).exit_status


def test_every_file_lands_whole_in_one_command(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    kept = tmp_path / "kept.js"
    kept.write_bytes(b"old")
    kept.chmod(0o600)
    real = tmp_path / "real.json"
    real.write_bytes(b"{}")
    (tmp_path / "link.json").symlink_to(real)
    files = [(str(tmp_path / "lib" / "a.js"), b"module.exports = 1;\n"),
             (str(kept), b"new \xff bytes"),
             (str(tmp_path / "link.json"), b'{"name": "x"}'),
             (str(tmp_path / "empty"), b"")]
    assert run(files, bundle.tar_stream(files)) == 0
    for path, data in files:
        assert Path(path).read_bytes() == data
    assert kept.stat().st_mode & 0o777 == 0o600  # the replaced file's mode
    assert os.stat(tmp_path / "lib" / "a.js").st_mode & 0o777 == 0o644
    assert (tmp_path / "link.json").is_symlink() and real.read_bytes() == b'{"name": "x"}'
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_stream_that_does_not_check_out_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "a.js"
    target.write_bytes(b"old")
    files = [(str(target), b"new"), (str(tmp_path / "b.js"), b"other")]
    forged = bundle.tar_stream([(str(target), b"NEW"), (str(tmp_path / "b.js"), b"other")])
    assert run(files, forged) != 0
    assert target.read_bytes() == b"old" and not (tmp_path / "b.js").exists()
    assert run(files, bundle.tar_stream(files)[:700]) != 0  # cut short on the way
    assert target.read_bytes() == b"old" and not (tmp_path / "b.js").exists()
    assert not list(tmp_path.rglob("*.tmp"))
