"""A file's bytes carried in a script's output: framed, length-prefixed, checked.

``wizard.deploy.hoststate.peek_script`` prints the destination this way (riding on the detect
command), so the diff needs no SFTP session (a channel and ~5 round trips). The frame is
``@@sw file SIZE SHA256`` + one base64 line + ``@@sw end`` (``@@sw file absent`` when there
is no file). Every byte of it comes from the host and is hostile: the size is capped, the
base64 strictly validated, the decoded bytes must have the announced size and sha256 — or
:func:`parse` says ``None`` and the caller reads the file the ordinary way
(``Remote.read_file``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shlex
from dataclasses import dataclass

MAX_BYTES = 4 * 1024 * 1024  # a config file; anything larger is read the ordinary way
_FRAME = re.compile(r"^@@sw file (?:absent|(\d{1,9}) ([0-9a-f]{64})\n([A-Za-z0-9+/=]*)\n@@sw end)$",
                    re.M)


@dataclass(frozen=True)
class Readback:
    data: bytes | None  # None: there is no file


def lines(path: str) -> list[str]:
    """Shell that prints ``path`` framed (only a regular file, never through a symlink)."""
    q = shlex.quote(path)
    return [
        f"if [ -f {q} ] && [ ! -L {q} ]; then sz=$(wc -c < {q}) && "
        f'[ "$sz" -le {MAX_BYTES} ] && command -v base64 >/dev/null 2>&1 && {{ '
        f"printf '@@sw file %s %s\\n' \"$sz\" \"$(sha256sum < {q} | cut -d' ' -f1)\"; "
        f"base64 -w0 < {q}; printf '\\n@@sw end\\n'; }}; "
        f"elif [ ! -e {q} ] && [ ! -L {q} ]; then echo '@@sw file absent'; fi",
    ]


def parse(stdout: str) -> Readback | None:
    """The framed file in ``stdout``; None when there is none or it does not check out."""
    found = _FRAME.search(stdout)
    if found is None:
        return None
    size, digest, text = found.groups()
    if size is None:
        return Readback(None)
    if int(size) > MAX_BYTES or len(text) > (MAX_BYTES * 4) // 3 + 4:
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(data) != int(size) or hashlib.sha256(data).hexdigest() != digest:
        return None
    return Readback(data)
