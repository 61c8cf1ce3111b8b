"""Many files to a host in one command: a tar stream on stdin, each file checked and renamed.

``wizard.deploy.steps.prepare`` writes a target's ``extra_files`` (the node proxy's vendored
http-proxy: ~20 files, and its systemd unit) with one script instead of one SFTP/sudo
exchange per file (several round trips each); ``wizard.deploy.plan`` lists the same script.

The guarantees are ``Remote.write_file_atomic``'s, per file: the bytes arrive in a private
staging directory (``mktemp -d``), must match their sha256, are copied to a temp file beside
the destination (same directory, so the rename is atomic), given the replaced file's mode and
owner (else 0644), and renamed over it; a symlink at the destination is followed. Archive
members are named by index, never by the path, so nothing in the stream chooses where it
lands; the paths come from the script. Any failure removes the staging dir and the temp file
and stops before the next file.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import shlex
import tarfile
from collections.abc import Sequence


def tar_stream(files: Sequence[tuple[str, bytes]]) -> bytes:
    """The files' bytes as an uncompressed tar, members ``f0``, ``f1``, … (reproducible)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i, (_, data) in enumerate(files):
            info = tarfile.TarInfo(f"f{i}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def write_script(files: Sequence[tuple[str, bytes]]) -> str:
    """Shell that reads ``tar_stream(files)`` on stdin and puts each file in place.

    Few programs per file (each costs ~50 ms on a slow host, e.g. a VM under TCG, and the node
    proxy brings ~20 files): one ``sha256sum -c`` checks every member (the per-file checks,
    which name the file, run only when it fails), the temp names are computed here or by
    parameter expansion, and ``dd conv=fsync`` copies and syncs in one program (``cp`` when
    the file system refuses the fsync, as the ``sync || :`` it replaces tolerated)."""
    digests = [hashlib.sha256(data).hexdigest() for _, data in files]
    lines = [
        "set -e",
        "umask 022",
        't=""',
        's=$(mktemp -d "${TMPDIR:-/tmp}/.sockwizard-files.XXXXXXXX")',
        "trap 'rm -rf -- \"$s\"; [ -z \"$t\" ] || rm -f -- \"$t\"' EXIT",
        'tar -x -f - -C "$s" --no-same-owner --no-same-permissions',
        "sha256sum -c --status --strict <<@@sw-sums || {",
        *(f"{digest}  $s/f{i}" for i, digest in enumerate(digests)),
        "@@sw-sums",
    ]
    for i, ((path, _), digest) in enumerate(zip(files, digests, strict=True)):
        lines.append(f'[ "$(sha256sum < "$s/f{i}" | cut -d" " -f1)" = {digest} ] || '
                     f"{{ echo {shlex.quote(f'{path}: the bytes did not arrive whole')} >&2; "
                     "exit 1; }")
    lines += ["exit 1", "}"]
    for i, (path, _) in enumerate(files):
        directory, name = posixpath.split(path)
        suffix = f".sockwizard-$$-{i}.tmp"
        lines += [
            f"p={shlex.quote(path)}",
            f"t={shlex.quote(posixpath.join(directory, '.' + name))}{suffix}",
            # readlink -f prints an absolute path: its directory is everything before the
            # last slash.
            'if [ -L "$p" ]; then p=$(readlink -f -- "$p"); '
            f't="${{p%/*}}/.${{p##*/}}{suffix}"; fi',
            f'dd if="$s/f{i}" of="$t" bs=1M conv=fsync status=none 2>/dev/null '
            f'|| cp -- "$s/f{i}" "$t"',
            'if [ -e "$p" ]; then chmod --reference="$p" -- "$t"; '
            'chown --reference="$p" -- "$t" 2>/dev/null || :; fi',
            'mv -f -- "$t" "$p"',
            't=""',
        ]
    return "\n".join(lines)
