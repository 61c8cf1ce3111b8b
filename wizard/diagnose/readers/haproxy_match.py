"""HAProxy's ACL conditions, evaluated for the two requests a Socket.IO client makes.

Called by ``wizard.diagnose.readers.haproxy`` to find the backend a request lands on: a
long-polling GET of the Socket.IO path and the WebSocket upgrade of the same path (the two
must reach the same backend, with the same stickiness, or the upgrade gets "Session ID
unknown"). Understands ``acl NAME criterion [-i] [-m method] values…`` (lines with one name
are ORed), anonymous ``{ … }`` ACLs, ``!``, ``||``/``or`` and the implicit AND, for the
criteria a Socket.IO route uses: ``path*``/``url*``, ``hdr*(upgrade|connection|host)``. Any
other criterion is *unknown* (None) and noted; the caller treats it as not matching. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from wizard.diagnose.readers.base import search
from wizard.diagnose.readers.haproxy_syntax import Section

MAX_ACL_VALUES = 1000


@dataclass(frozen=True)
class Request:
    path: str
    host: str
    websocket: bool

    def header(self, name: str) -> str | None:
        name = name.lower()
        if name == "host":
            return self.host
        if name == "upgrade":
            return "websocket" if self.websocket else None
        if name == "connection":
            return "Upgrade" if self.websocket else "keep-alive"
        return None


_FETCH = re.compile(r"^(?:req\.)?(path|url|hdr|req\.hdr)(?:_(beg|end|sub|dir|reg|len|cnt))?"
                    r"(?:\(([A-Za-z0-9_-]{1,64})(?:,[^)]*)?\))?$", re.I)


def _match_one(sample: str | None, method: str, value: str, nocase: bool) -> bool:
    if sample is None:
        return False
    if nocase:
        sample, value = sample.lower(), value.lower()
    if method == "beg":
        return sample.startswith(value)
    if method == "end":
        return sample.endswith(value)
    if method == "sub":
        return value in sample
    if method == "dir":
        return value.strip("/") in sample.strip("/").split("/")
    if method == "reg":
        return search(value, sample, nocase=nocase) is not None
    return sample == value


def criterion(words: Sequence[str], req: Request) -> bool | None:
    """One ACL body (``path_beg -i /a /b``) against ``req``; None when not understood."""
    if not words:
        return None
    m = _FETCH.match(words[0])
    if m is None:
        return None
    fetch, method, arg = m.group(1).lower(), (m.group(2) or "").lower(), m.group(3)
    if method in ("len", "cnt"):
        return None
    nocase = False
    values: list[str] = []
    rest = list(words[1:MAX_ACL_VALUES])
    while rest:
        w = rest.pop(0)
        if w == "-i":
            nocase = True
        elif w == "-m" and rest:
            method = rest.pop(0).lower()
        elif w == "-f":
            return None  # values from a file we did not read
        elif w == "--":
            values += rest
            break
        else:
            values.append(w)
    if fetch in ("path", "url"):
        sample: str | None = req.path
    elif fetch in ("hdr", "req.hdr") and arg is not None:
        sample = req.header(arg)
        if sample is None and arg.lower() not in ("upgrade", "connection", "host"):
            return None
        if arg.lower() == "host" and sample is not None:
            sample = sample.split(":")[0]
    else:
        return None
    if not values:  # `hdr(upgrade)` alone: the header is there
        return sample is not None
    return any(_match_one(sample, method or "str", v, nocase) for v in values)


class Acls:
    """The named ACLs of a frontend (and of its defaults section, which 2.6 does not share,
    so: the frontend's own), evaluated against one request."""

    def __init__(self, section: Section) -> None:
        self.named: dict[str, list[tuple[str, ...]]] = {}
        for line in section.all("acl"):
            if len(line.words) >= 3:
                self.named.setdefault(line.words[1], []).append(line.words[2:])
        self.unknown: set[str] = set()

    def _named(self, name: str, req: Request) -> bool | None:
        bodies = self.named.get(name)
        if bodies is None:
            # Predefined ACLs (HTTP, METH_GET, TRUE, FALSE...): the ones a route may use.
            return {"TRUE": True, "FALSE": False, "HTTP": True, "METH_GET": True}.get(name)
        results = [criterion(b, req) for b in bodies]
        if any(r is True for r in results):
            return True
        if any(r is None for r in results):
            self.unknown.add(name)
            return None
        return False

    def condition(self, words: Sequence[str], req: Request) -> bool | None:
        """``if``/``unless`` and what follows -> whether the rule applies (None: unknown)."""
        if not words:
            return True
        negate = words[0] == "unless"
        terms = list(words[1:]) if words[0] in ("if", "unless") else list(words)
        result = self._or(terms, req)
        if result is None:
            return None
        return not result if negate else result

    def _or(self, terms: list[str], req: Request) -> bool | None:
        groups: list[list[str]] = [[]]
        depth = 0
        for t in terms:
            depth += t.count("{") - t.count("}")
            if depth == 0 and t in ("||", "or"):
                groups.append([])
            else:
                groups[-1].append(t)
        results = [self._and(g, req) for g in groups]
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False

    def _and(self, terms: list[str], req: Request) -> bool | None:
        result: bool | None = True
        i = 0
        while i < len(terms):
            neg = False
            while i < len(terms) and terms[i] == "!":
                neg, i = not neg, i + 1
            if i >= len(terms):
                break
            t = terms[i]
            if t.startswith("!"):
                neg, t = not neg, t[1:]
            if t == "{":
                end = terms.index("}", i) if "}" in terms[i:] else len(terms)
                value = criterion(terms[i + 1:end], req)
                i = end + 1
            else:
                value = self._named(t, req)
                i += 1
            if value is None:
                result = None if result is not False else False
                continue
            if neg:
                value = not value
            if not value:
                return False
        return result
