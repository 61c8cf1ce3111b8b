"""The value rules: what the templates may be handed, field by field, as ``Problem`` lists.

Called by ``DeploySpec.problems()`` (``wizard.model.spec``), and by ``wizard.diagnose`` to
judge a backend address found in a live config by the same host and port rules. The templates
trust the spec (no escaping in Jinja2), so anything that could inject a directive (``;``,
braces, quotes, ``$``, backslashes, whitespace, newlines) is refused here, with a message that
names the character. The timeout rule's figures come from ``wizard.heartbeat``, the one source
that diagnose, the probe and the TUI gauge also read. No I/O.
"""

from __future__ import annotations

import ipaddress
import re

from wizard.heartbeat import Grade, Heartbeat
from wizard.model.values import MAX_TEXT, Problem, ProxyKind, shown

MAX_TIMEOUT_S = 7 * 86_400

# Characters that would end a directive, open a block, start a variable or a quoted string in
# nginx/Apache/Caddy/JS. Refused everywhere, with a message that names the character.
_HOSTILE = {";": "semicolon", "{": "brace", "}": "brace", '"': "quote", "'": "quote",
            "`": "backquote", "$": "dollar sign", "\\": "backslash", "#": "hash",
            "<": "angle bracket", ">": "angle bracket"}


def hostile_problem(name: str, value: str) -> Problem | None:
    """Empty, too long, or a character that could inject config (the first such one)."""
    if not value:
        return Problem(name, "must not be empty")
    if len(value) > MAX_TEXT:
        return Problem(name, f"is {len(value)} characters long; at most {MAX_TEXT} allowed")
    for ch in value:
        if ch in _HOSTILE:
            return Problem(name, f"{shown(value)} contains a {_HOSTILE[ch]} ({ch!r}), which could "
                                 "inject a directive into the config; remove it")
        if ch.isspace() or not ch.isprintable():
            return Problem(name, f"{shown(value)} contains whitespace or a control character; "
                                 "remove it")
        if not ch.isascii():
            return Problem(name, f"{shown(value)} contains the non-ASCII character {ch!r}; "
                                 "use ASCII (punycode for domain names)")
    return None


# No '%': nginx, Apache and Caddy match the *decoded* request path (so '/a%41/' never
# matches), Node the raw one, and in an Apache RewriteRule target '%4' is a back-reference.
# No '*': a wildcard in Caddy's path matcher.
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._~!+,=:@-]+")


def path_problems(name: str, path: str) -> list[Problem]:
    """A URL path prefix such as ``/socket.io/``."""
    bad = hostile_problem(name, path)
    if bad:
        return [bad]
    if not (path.startswith("/") and path.endswith("/")):
        return [Problem(name, f"{shown(path)} must start and end with '/', e.g. /socket.io/")]
    segments = path.strip("/").split("/") if path != "/" else []
    if path == "/":
        return [Problem(name, "'/' would send the whole site to Socket.IO; use a prefix such as "
                              "/socket.io/ (scope 'all' already proxies the rest)")]
    for seg in segments:
        if seg in {"", ".", ".."}:
            return [Problem(name, f"{shown(path)} has an empty, '.' or '..' segment")]
        if "%" in seg:
            return [Problem(name, f"{shown(path)} has a %-escape: the proxies match the decoded "
                                  "path, so it would never match; write the plain characters")]
        if not _PATH_SEGMENT.fullmatch(seg):
            return [Problem(name, f"{shown(path)}: only letters, digits and ._~!+,=:@- are "
                                  "allowed in a path segment")]
    return []


_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _is_hostname(host: str) -> bool:
    return len(host) <= MAX_TEXT and all(_LABEL.fullmatch(p) for p in host.rstrip(".").split("."))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_problems(name: str, host: str) -> list[Problem]:
    """A host name or IP address to connect to or listen on (no zone index)."""
    bad = hostile_problem(name, host)
    if bad:
        return [bad]
    if "%" in host:  # Python accepts fe80::1%eth0; nginx refuses it, others differ
        return [Problem(name, f"{shown(host)} has an IPv6 zone index (%...), which the proxies "
                              "do not accept; use a global address or a host name")]
    if _is_ip(host) or _is_hostname(host):
        return []
    return [Problem(name, f"{shown(host)} is not a host name or IP address")]


def server_name_problems(name: str, proxy: ProxyKind) -> list[Problem]:
    """The site's name; Apache's ServerName takes neither a wildcard nor an IPv6 address."""
    bad = hostile_problem("server_name", name)
    if bad:
        return [bad]
    if "%" in name:
        return [Problem("server_name", f"{shown(name)} has an IPv6 zone index (%...); a site "
                                       "name cannot have one")]
    if name.endswith("."):  # Caddy gets no certificate for it; Host headers rarely have it
        return [Problem("server_name", f"{shown(name)} ends with a dot; drop the trailing dot")]
    wildcard = name.startswith("*.")
    bare = name[2:] if wildcard else name
    if wildcard and proxy is ProxyKind.APACHE:
        return [Problem("server_name", f"{shown(name)}: Apache's ServerName cannot be a "
                                       "wildcard; give the plain domain (add a ServerAlias "
                                       "for the wildcard by hand)")]
    if ":" in name and proxy is ProxyKind.APACHE:
        return [Problem("server_name", f"{shown(name)}: Apache's ServerName cannot be an IPv6 "
                                       "address; give a domain name or leave it out")]
    if _is_hostname(bare) or (_is_ip(bare) and not wildcard):
        return []
    return [Problem("server_name", f"{shown(name)} is not a domain name (e.g. chat.example.com)")]


def port_problems(name: str, port: int) -> list[Problem]:
    """A TCP port: 1..65535."""
    if 1 <= port <= 65535:
        return []
    return [Problem(name, f"port {port} is out of range 1..65535")]


def file_path_problems(name: str, path: str) -> list[Problem]:
    """An absolute file path on the host (certificates, the static root)."""
    bad = hostile_problem(name, path)
    if bad:
        return [bad]
    if not path.startswith("/"):
        return [Problem(name, f"{shown(path)} must be an absolute path on the host")]
    if not re.fullmatch(r"[A-Za-z0-9._/+@~=,:-]+", path):
        return [Problem(name, f"{shown(path)} has characters not allowed in a config file path")]
    return []


# -- timeouts: thin callers of wizard.heartbeat ---------------------------------------------

def smallest_safe_timeout(ping_interval_ms: int, ping_timeout_ms: int) -> int:
    """The smallest whole number of seconds strictly greater than pingInterval + pingTimeout."""
    return Heartbeat(ping_interval_ms, ping_timeout_ms).minimum_s()


def timeout_problem(name: str, seconds: int, ping_interval_ms: int,
                    ping_timeout_ms: int) -> str | None:
    """Why a proxy timeout would drop idle Socket.IO clients, or None when it is safe.

    Used by the model, the CLI and the TUI's live check next to the field; the figures are
    ``wizard.heartbeat``'s, the same that diagnose and the probe advise.
    """
    beat = Heartbeat(ping_interval_ms, ping_timeout_ms)
    if beat.grade(seconds) is Grade.SAFE:
        return None
    safe, suggest = beat.minimum_s(), beat.suggest_s()
    return (
        f"{seconds} s is not greater than pingInterval + pingTimeout "
        f"({ping_interval_ms} + {ping_timeout_ms} ms = {beat.sum_s:g} s): the proxy would cut "
        f'idle connections and clients would see "transport close". Use at least {safe} s'
        + (f" ({suggest} s leaves headroom)." if safe < suggest else ".")
    )

def timeout_problems(name: str, seconds: int, ping_interval_ms: int,
                     ping_timeout_ms: int) -> list[Problem]:
    """A proxy timeout in seconds: in range, and long enough for the heartbeat."""
    if seconds <= 0 or seconds > MAX_TIMEOUT_S:
        return [Problem(name, f"{seconds} s is out of range (1 s .. 7 days)")]
    why = timeout_problem(name, seconds, ping_interval_ms, ping_timeout_ms)
    return [Problem(name, why)] if why else []
