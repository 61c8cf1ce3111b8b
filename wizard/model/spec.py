"""The deploy spec: one frozen value that every front end builds and every later step reads.

Flags (cli.py), a TOML file (spec_io.py) and the TUI's form all produce raw values; ``build_spec``
turns them into a ``DeploySpec`` or raises ``InvalidSpec`` listing *every* problem at once, each
naming its field. Validation lives here only: the templates trust the spec (no escaping in
Jinja2), so anything that could inject a directive (``;``, braces, quotes, ``$``, backslashes,
whitespace, newlines) is refused before rendering. No I/O in this module.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any

from wizard.errors import InvalidSpec
from wizard.heartbeat import Grade, Heartbeat

DEFAULT_PATH = "/socket.io/"
DEFAULT_PING_INTERVAL_MS = 25_000
DEFAULT_PING_TIMEOUT_MS = 20_000
MAX_TEXT = 253  # longest DNS name; also a sane cap for paths and file names
MAX_BACKENDS = 64  # more is a typo or a hostile file, not a deployment
_INT_LIMIT = 10**12  # numbers beyond this are refused before any arithmetic or formatting


class ProxyKind(StrEnum):
    NGINX = "nginx"
    APACHE = "apache"
    CADDY = "caddy"
    NODE = "node"


class Scope(StrEnum):
    ALL = "all"  # the whole site goes to the backend (the docs' first nginx example)
    SOCKETIO = "socketio"  # only the Socket.IO path is proxied; the proxy serves a static root


class Layout(StrEnum):
    SITE = "site"  # what a real host includes: conf.d file, vhost, site block, proxy.js
    FULL = "full"  # a complete main config, like the docs' examples


@dataclass(frozen=True)
class Problem:
    """One invalid value: which field, and what is wrong with it (and what would be right)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class Backend:
    """One Socket.IO server the proxy forwards to."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self}"


@dataclass(frozen=True)
class DeploySpec:
    """Everything needed to render, deploy and probe one proxy config."""

    proxy: ProxyKind = ProxyKind.NGINX
    path: str = DEFAULT_PATH
    # The path the Socket.IO *server* listens on, when the proxy rewrites (e.g. Caddy's
    # handle_path recipe keeps the server on /socket.io/). None: same as ``path``.
    server_path: str | None = None
    scope: Scope = Scope.ALL
    backends: tuple[Backend, ...] = (Backend("localhost", 3000),)
    listen_address: str | None = None  # None: every address
    listen_port: int = 80
    server_name: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_port: int = 443
    read_timeout: int = 60  # seconds; must exceed pingInterval + pingTimeout
    send_timeout: int = 60
    ping_interval_ms: int = DEFAULT_PING_INTERVAL_MS
    ping_timeout_ms: int = DEFAULT_PING_TIMEOUT_MS
    proxy_buffering: bool = True  # nginx; "off" is common advice for long-polling
    stream_close_delay: int | None = None  # Caddy 2.7+: keep WebSockets open across reloads
    apache_version: str | None = None  # None: assume >= 2.4.47 (ProxyPass upgrade=websocket)
    static_root: str = "/var/www/html"  # scope "socketio": what the proxy serves itself
    layout: Layout = Layout.SITE

    # -- derived values the templates and the deploy read -------------------------------
    @property
    def effective_server_path(self) -> str:
        return self.server_path or self.path

    @property
    def path_is_custom(self) -> bool:
        return self.path != DEFAULT_PATH or self.effective_server_path != DEFAULT_PATH

    @property
    def rewrites_path(self) -> bool:
        return self.effective_server_path != self.path

    @property
    def sticky(self) -> bool:
        return len(self.backends) > 1

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def server_host(self) -> str:
        """``server_name`` as a URL/Host literal: an IPv6 address in brackets (``[::1]``)."""
        name = self.server_name or ""
        return f"[{name}]" if ":" in name else name

    @property
    def ping_sum_s(self) -> float:
        return (self.ping_interval_ms + self.ping_timeout_ms) / 1000

    @property
    def apache_has_upgrade_param(self) -> bool:
        """``ProxyPass … upgrade=websocket`` exists from Apache 2.4.47 on."""
        if self.apache_version is None:
            return True
        return _version_tuple(self.apache_version) >= (2, 4, 47)

    def problems(self) -> list[Problem]:
        """Every semantic problem of this spec (types are already right)."""
        out: list[Problem] = []
        out += _path_problems("path", self.path)
        if self.server_path is not None:
            out += _path_problems("server_path", self.server_path)
        if not self.backends:
            out.append(Problem("backends", "at least one backend (HOST:PORT) is needed"))
        for i, b in enumerate(self.backends):
            out += _host_problems(f"backends[{i}]", b.host)
            out += _port_problems(f"backends[{i}]", b.port)
        if len(set(self.backends)) != len(self.backends):
            out.append(Problem("backends", "the same backend is listed twice"))
        if self.listen_address is not None:
            out += _host_problems("listen", self.listen_address)
        out += _port_problems("listen", self.listen_port)
        if self.server_name is not None:
            out += _server_name_problems(self.server_name, self.proxy)
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            out.append(Problem(missing, "TLS needs both a certificate and a key file"))
        for name in ("tls_cert", "tls_key", "static_root"):
            value = getattr(self, name)
            if value is not None:
                out += _file_path_problems(name, value)
        if self.tls:
            out += _port_problems("tls_port", self.tls_port)
            if self.tls_port == self.listen_port:
                out.append(Problem("tls_port", "the TLS port must differ from the plain HTTP port"))
        for name in ("ping_interval_ms", "ping_timeout_ms"):
            value = getattr(self, name)
            if not 1 <= value <= 2**31 - 1:
                out.append(Problem(name, f"must be between 1 and {2**31 - 1} ms, got {value}"))
        for name in ("read_timeout", "send_timeout"):
            out += _timeout_problems(name, getattr(self, name), self)
        if self.stream_close_delay is not None and not 0 <= self.stream_close_delay <= 86_400:
            out.append(Problem("stream_close_delay", "must be 0..86400 seconds"))
        if self.apache_version is not None and not re.fullmatch(r"2\.[0-9]{1,4}(\.[0-9]{1,4})?",
                                                                 self.apache_version):
            out.append(Problem("apache_version", "expected a 2.x version such as 2.4.62"))
        return out

    def validated(self) -> DeploySpec:
        """Return self, or raise InvalidSpec with every problem."""
        problems = self.problems()
        if problems:
            raise InvalidSpec(list(problems))
        return self


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


_FIELD_NAMES = {f.name for f in fields(DeploySpec)}


def build_spec(raw: Mapping[str, Any], base: DeploySpec | None = None) -> DeploySpec:
    """Turn raw values (strings or already-typed) into a valid spec, or raise InvalidSpec.

    ``raw`` uses the spec's field names, plus ``backends`` as a list of ``HOST:PORT`` strings
    and ``listen`` as ``[ADDR:]PORT``. Keys that are absent keep ``base``'s value.
    """
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None and key not in _OPTIONAL_FIELDS:
            continue
        try:
            if key == "listen":
                addr, port = parse_listen(_listen_text(value))
                values["listen_address"], values["listen_port"] = addr, port
            elif key == "backends":
                parsed = []
                for i, item in enumerate(_backend_items(value)):
                    try:
                        parsed.append(_backend(item))
                    except ValueError as exc:
                        problems.append(Problem(f"backends[{i}]", str(exc)))
                values["backends"] = tuple(parsed)
            elif key in _CONVERTERS:
                values[key] = _CONVERTERS[key](value)
            else:
                problems.append(Problem(_show(str(key)), "unknown setting; the settings are: "
                                        + ", ".join(sorted(_KNOWN_KEYS))))
        except ValueError as exc:
            problems.append(Problem(key, str(exc)))
    spec = replace(base or DeploySpec(), **values)
    # Field problems from parsing first, then the semantic ones for fields that did parse.
    failed = {p.field.split("[")[0] for p in problems}
    problems += [p for p in spec.problems() if p.field.split("[")[0] not in failed]
    if problems:
        raise InvalidSpec(list(problems))
    return spec


def _backend_items(value: Any) -> list[Any]:
    """``backends`` as a list: one ``"HOST:PORT"`` string or an array of them (never a table)."""
    if isinstance(value, str | Backend):
        return [value]
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list of \"HOST:PORT\" strings, got {_describe(value)}; "
                         'write e.g. backends = ["127.0.0.1:3000"]')
    if len(value) > MAX_BACKENDS:
        raise ValueError(f"{len(value)} backends; at most {MAX_BACKENDS} are supported")
    return list(value)


def _backend(item: Any) -> Backend:
    if isinstance(item, Backend):  # the TUI and tests may hand over parsed values
        return item
    if not isinstance(item, str):
        raise ValueError(f'expected "HOST:PORT" text, got {_describe(item)}')
    return parse_backend(item)


def _listen_text(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(_to_int(value))
    if not isinstance(value, str):
        raise ValueError(f'expected "[ADDR:]PORT" text or a port number, got {_describe(value)}')
    return value


def parse_backend(text: str) -> Backend:
    """``host:port``, ``[v6]:port`` or ``host`` (port 3000) -> Backend; ValueError with a reason."""
    text = text.strip()
    if text.startswith(("http://", "https://", "ws://")):
        raise ValueError(f"{text!r}: give HOST:PORT, without a scheme")
    host, port = _split_host_port(text, default_port=3000)
    return Backend(host, port)


def parse_listen(text: str) -> tuple[str | None, int]:
    """``PORT`` or ``ADDR:PORT`` or ``[v6]:PORT``."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        return None, _parse_port(text)
    host, port = _split_host_port(text, default_port=None)
    return host, port


def _split_host_port(text: str, default_port: int | None) -> tuple[str, int]:
    if not text:
        raise ValueError("empty; expected HOST:PORT")
    m = re.fullmatch(r"\[([^\]]*)\](?::(.*))?", text)
    if m:
        host, port_text = m.group(1), m.group(2)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise ValueError(f"{text!r}: write IPv6 addresses in brackets, e.g. [::1]:3000")
    else:
        host, port_text = text, None
    if port_text is None:
        if default_port is None:
            raise ValueError(f"{text!r}: a port is needed, e.g. 127.0.0.1:8080")
        return host, default_port
    return host, _parse_port(port_text)


def _parse_port(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text.strip()):
        raise ValueError(f"port {text!r} is not a number between 1 and 65535")
    return int(text)


def _to_int(value: Any) -> int:
    # A TOML file can hold any type: only whole numbers (or their text) pass, and only small
    # ones, so no later message or sum ever formats a 4000-digit number.
    if isinstance(value, int) and not isinstance(value, bool):
        if not -_INT_LIMIT < value < _INT_LIMIT:
            raise ValueError(f"{_describe(value)} is far out of range; give a small whole number")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a whole number, got {_describe(value)}")
    text = value.strip().removesuffix("s").removesuffix("ms")
    if not re.fullmatch(r"-?[0-9]{1,12}", text):
        raise ValueError(f"expected a whole number, got {_describe(value)}")
    return int(text)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected on/off (or true/false), got {_describe(value)}")
    text = value.strip().lower()
    if text in {"on", "true", "yes", "1"}:
        return True
    if text in {"off", "false", "no", "0"}:
        return False
    raise ValueError(f"expected on/off, got {_describe(value)}")


def _optional_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return _str(value)


def _optional_int(value: Any) -> int | None:
    return None if value is None or value == "" else _to_int(value)


def _enum(kind: type[StrEnum]) -> Any:
    def convert(value: Any) -> StrEnum:
        choices = ", ".join(k.value for k in kind)
        if not isinstance(value, str):
            raise ValueError(f"expected one of {choices} as text, got {_describe(value)}")
        try:
            return kind(value.strip().lower())
        except ValueError:
            raise ValueError(f"{_show(value)} is not one of: {choices}") from None

    return convert


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text in quotes, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    """A short, safe description of any value a TOML file or form can hold (never huge)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # repr() of a 5000-digit int raises; a 300-digit one floods the terminal.
        return str(value) if -_INT_LIMIT < value < _INT_LIMIT else (
            f"a number of about {value.bit_length() * 3 // 10 + 1} digits")
    if isinstance(value, float):
        return f"the decimal number {value!r}"
    if isinstance(value, str):
        return _show(value)
    if isinstance(value, datetime.date | datetime.time):
        return "a date/time"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


_CONVERTERS: dict[str, Any] = {
    "proxy": _enum(ProxyKind),
    "scope": _enum(Scope),
    "layout": _enum(Layout),
    "path": _str,
    "server_path": _optional_str,
    "listen_address": _optional_str,
    "listen_port": _to_int,
    "server_name": _optional_str,
    "tls_cert": _optional_str,
    "tls_key": _optional_str,
    "tls_port": _to_int,
    "read_timeout": _to_int,
    "send_timeout": _to_int,
    "ping_interval_ms": _to_int,
    "ping_timeout_ms": _to_int,
    "proxy_buffering": _to_bool,
    "stream_close_delay": _optional_int,
    "apache_version": _optional_str,
    "static_root": _str,
}
_OPTIONAL_FIELDS = {"server_path", "server_name", "tls_cert", "tls_key", "stream_close_delay",
                    "apache_version", "listen_address"}
assert set(_CONVERTERS) <= _FIELD_NAMES
_KNOWN_KEYS = {*_CONVERTERS, "backends", "listen"}


# -- field checks -------------------------------------------------------------------------

# Characters that would end a directive, open a block, start a variable or a quoted string in
# nginx/Apache/Caddy/JS. Refused everywhere, with a message that names the character.
_HOSTILE = {";": "semicolon", "{": "brace", "}": "brace", '"': "quote", "'": "quote",
            "`": "backquote", "$": "dollar sign", "\\": "backslash", "#": "hash",
            "<": "angle bracket", ">": "angle bracket"}


def _hostile_problem(name: str, value: str) -> Problem | None:
    if not value:
        return Problem(name, "must not be empty")
    if len(value) > MAX_TEXT:
        return Problem(name, f"is {len(value)} characters long; at most {MAX_TEXT} allowed")
    for ch in value:
        if ch in _HOSTILE:
            return Problem(name, f"{_show(value)} contains a {_HOSTILE[ch]} ({ch!r}), which could "
                                 "inject a directive into the config; remove it")
        if ch.isspace() or not ch.isprintable():
            return Problem(name, f"{_show(value)} contains whitespace or a control character; "
                                 "remove it")
        if not ch.isascii():
            return Problem(name, f"{_show(value)} contains the non-ASCII character {ch!r}; "
                                 "use ASCII (punycode for domain names)")
    return None


def _show(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


# No '%': nginx, Apache and Caddy match the *decoded* request path (so '/a%41/' never
# matches), Node the raw one, and in an Apache RewriteRule target '%4' is a back-reference.
# No '*': a wildcard in Caddy's path matcher.
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._~!+,=:@-]+")


def _path_problems(name: str, path: str) -> list[Problem]:
    bad = _hostile_problem(name, path)
    if bad:
        return [bad]
    if not (path.startswith("/") and path.endswith("/")):
        return [Problem(name, f"{_show(path)} must start and end with '/', e.g. /socket.io/")]
    segments = path.strip("/").split("/") if path != "/" else []
    if path == "/":
        return [Problem(name, "'/' would send the whole site to Socket.IO; use a prefix such as "
                              "/socket.io/ (scope 'all' already proxies the rest)")]
    for seg in segments:
        if seg in {"", ".", ".."}:
            return [Problem(name, f"{_show(path)} has an empty, '.' or '..' segment")]
        if "%" in seg:
            return [Problem(name, f"{_show(path)} has a %-escape: the proxies match the decoded "
                                  "path, so it would never match; write the plain characters")]
        if not _PATH_SEGMENT.fullmatch(seg):
            return [Problem(name, f"{_show(path)}: only letters, digits and ._~!+,=:@- are "
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


def _host_problems(name: str, host: str) -> list[Problem]:
    bad = _hostile_problem(name, host)
    if bad:
        return [bad]
    if "%" in host:  # Python accepts fe80::1%eth0; nginx refuses it, others differ
        return [Problem(name, f"{_show(host)} has an IPv6 zone index (%...), which the proxies "
                              "do not accept; use a global address or a host name")]
    if _is_ip(host) or _is_hostname(host):
        return []
    return [Problem(name, f"{_show(host)} is not a host name or IP address")]


def _server_name_problems(name: str, proxy: ProxyKind) -> list[Problem]:
    bad = _hostile_problem("server_name", name)
    if bad:
        return [bad]
    if "%" in name:
        return [Problem("server_name", f"{_show(name)} has an IPv6 zone index (%...); a site "
                                       "name cannot have one")]
    if name.endswith("."):  # Caddy gets no certificate for it; Host headers rarely have it
        return [Problem("server_name", f"{_show(name)} ends with a dot; drop the trailing dot")]
    wildcard = name.startswith("*.")
    bare = name[2:] if wildcard else name
    if wildcard and proxy is ProxyKind.APACHE:
        return [Problem("server_name", f"{_show(name)}: Apache's ServerName cannot be a "
                                       "wildcard; give the plain domain (add a ServerAlias "
                                       "for the wildcard by hand)")]
    if ":" in name and proxy is ProxyKind.APACHE:
        return [Problem("server_name", f"{_show(name)}: Apache's ServerName cannot be an IPv6 "
                                       "address; give a domain name or leave it out")]
    if _is_hostname(bare) or (_is_ip(bare) and not wildcard):
        return []
    return [Problem("server_name", f"{_show(name)} is not a domain name (e.g. chat.example.com)")]


def _port_problems(name: str, port: int) -> list[Problem]:
    if 1 <= port <= 65535:
        return []
    return [Problem(name, f"port {port} is out of range 1..65535")]


def _file_path_problems(name: str, path: str) -> list[Problem]:
    bad = _hostile_problem(name, path)
    if bad:
        return [bad]
    if not path.startswith("/"):
        return [Problem(name, f"{_show(path)} must be an absolute path on the host")]
    if not re.fullmatch(r"[A-Za-z0-9._/+@~=,:-]+", path):
        return [Problem(name, f"{_show(path)} has characters not allowed in a config file path")]
    return []


def _timeout_problems(name: str, seconds: int, spec: DeploySpec) -> list[Problem]:
    if seconds <= 0 or seconds > 7 * 86_400:
        return [Problem(name, f"{seconds} s is out of range (1 s .. 7 days)")]
    why = timeout_problem(name, seconds, spec.ping_interval_ms, spec.ping_timeout_ms)
    return [Problem(name, why)] if why else []


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())
