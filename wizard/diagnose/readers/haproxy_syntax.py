"""HAProxy's config text -> sections of (keyword words, file:line), and its small value syntax.

Called by ``wizard.diagnose.readers.haproxy`` only. HAProxy's format is line based: a section
starts with ``global``/``defaults``/``frontend``/``backend``/``listen`` (and a few others we
keep but never read) and runs until the next one; every other line is words separated by
blanks, ``#`` starts a comment, quotes and backslashes group words. Several ``-f`` files are
concatenated in order, so the section list spans files (a ``defaults`` in one file applies to
the proxies of the next). Pure; the text is hostile, so lines are cut at ``MAX_LINE`` and the
section and line counts are capped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from wizard.diagnose.facts import Where

SECTIONS = ("global", "defaults", "frontend", "backend", "listen", "resolvers", "peers",
            "userlist", "mailers", "program", "http-errors", "ring", "cache")
MAX_LINE = 4096
MAX_LINES = 100_000
MAX_SECTIONS = 5_000


@dataclass(frozen=True)
class Line:
    words: tuple[str, ...]
    where: Where


@dataclass
class Section:
    kind: str  # frontend | backend | listen | defaults | global | ...
    name: str
    where: Where
    lines: list[Line] = field(default_factory=list)
    from_defaults: str | None = None  # `frontend x from NAME` (2.5+: named defaults)
    defaults: Section | None = None  # the defaults section this proxy inherits from

    def all(self, *keyword: str) -> list[Line]:
        """The lines starting with these words, in order."""
        n = len(keyword)
        return [x for x in self.lines if tuple(w.lower() for w in x.words[:n]) == keyword]

    def last(self, *keyword: str) -> Line | None:
        found = self.all(*keyword)
        return found[-1] if found else None


_ESCAPED = " \t\\#'\""  # what a backslash escapes outside quotes; `\1` stays as it is


def split_words(line: str) -> list[str]:
    """One config line -> words (HAProxy's quoting: '…', "…", backslash; # comments)."""
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    in_word = False
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"' and i + 1 < len(line):
                i += 1
                cur.append(line[i])
            else:
                cur.append(c)
        elif c in "'\"":
            quote, in_word = c, True
        elif c == "\\" and i + 1 < len(line) and line[i + 1] in _ESCAPED:
            i += 1
            cur.append(line[i])
            in_word = True
        elif c == "#":
            break
        elif c in " \t":
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
        else:
            cur.append(c)
            in_word = True
        i += 1
    if in_word:
        words.append("".join(cur))
    return words


def parse(files: dict[str, str]) -> list[Section]:
    """Every section of the files, in load order, each proxy tied to its defaults."""
    sections: list[Section] = []
    current: Section | None = None
    last_defaults: Section | None = None
    named: dict[str, Section] = {}
    count = 0
    for file, text in files.items():
        for number, raw in enumerate(text.splitlines(), 1):
            count += 1
            if count > MAX_LINES or len(sections) > MAX_SECTIONS:
                return sections
            words = split_words(raw[:MAX_LINE])
            if not words:
                continue
            where = Where(file, number, raw.strip()[:200])
            key = words[0].lower()
            if key in SECTIONS:
                name = words[1] if len(words) > 1 and words[1].lower() != "from" else ""
                src = words[words.index("from") + 1] if "from" in words[1:-1] else None
                current = Section(key, name, where, from_defaults=src)
                if key == "defaults":
                    last_defaults = current
                    if name:
                        named[name] = current
                elif key in ("frontend", "backend", "listen"):
                    current.defaults = named.get(src, last_defaults) if src else last_defaults
                sections.append(current)
            elif current is not None:
                current.lines.append(Line(tuple(words), where))
    return sections


_TIME = re.compile(r"^(\d{1,12})(us|ms|s|m|h|d)?$")
_UNIT = {"us": 1e-6, "ms": 1e-3, None: 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text: str) -> float | None:
    """An HAProxy time ("50000" is milliseconds, "50s", "1m") in seconds; None if not one."""
    m = _TIME.fullmatch(text.strip())
    if m is None:
        return None
    return int(m.group(1)) * _UNIT[m.group(2)]
