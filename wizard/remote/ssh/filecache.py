"""Parse each SSH client file once per process: known_hosts, identity keys, ~/.ssh/config.

A fleet deploy connects to N hosts from N threads, and every connect used to re-read and
re-parse the same files: paramiko's ``HostKeys.load`` is itself quadratic in the file's lines
(it checks each new line against all before it), so the fleet paid O(hosts²) — ~105 ms of CPU
for 50 hosts (bench/RESULTS.md). :mod:`.hostkeys`, :mod:`.auth` and :mod:`.target` each keep
one :class:`FileCache` and ask it for the parsed object instead.

A hit is decided by the file's *bytes*, not its mtime: ext4 stamps files with the kernel tick
(~4 ms), so a same-size rewrite within a tick (``ssh-keygen -R`` then an add, a test, an editor)
would keep a stale parse — and a stale known_hosts is a security decision. Reading a small file
and comparing it costs microseconds; the parse is what costs. A file that changes while it is
parsed is returned as parsed but not cached. Errors are never cached.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_FILE_BYTES = 16 * 1024 * 1024  # larger than any real known_hosts, key or ssh config


class FileTooLarge(OSError):
    """The file is over :data:`MAX_FILE_BYTES`; callers report it like any unreadable file."""


def read_capped(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise FileTooLarge(f"{path} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    return data


class FileCache(Generic[T]):
    """``get(path)``: ``parse(path)``'s result, re-parsed only when the file's bytes change.

    Thread-safe and single-flight: fifty threads asking at once cause one parse, the rest wait
    for it (they all need it). Holds one entry per path (the latest content). ``companions``
    names other files ``parse`` also reads (a key's ``-cert.pub``): their bytes (or absence)
    are part of the content compared.
    """

    def __init__(self, parse: Callable[[Path], T],
                 companions: Callable[[Path], tuple[Path, ...]] = lambda _: ()) -> None:
        self._parse = parse
        self._companions = companions
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[tuple[bytes | None, ...], T]] = {}
        self.parses = 0  # how many times parse() ran: for tests and benchmarks

    def _content(self, path: Path) -> tuple[bytes | None, ...]:
        extra = tuple(read_capped(p) if p.exists() else None for p in self._companions(path))
        return (read_capped(path), *extra)

    def get(self, path: Path) -> T:
        """Raises OSError (incl. :class:`FileTooLarge`) or whatever ``parse`` raises."""
        key = os.path.abspath(path)
        with self._lock:
            content = self._content(path)
            hit = self._entries.get(key)
            if hit is not None and hit[0] == content:
                return hit[1]
            self._entries.pop(key, None)
            self.parses += 1
            value = self._parse(path)
            if self._content(path) == content:  # unchanged while parsing: safe to keep
                self._entries[key] = (content, value)
            return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
