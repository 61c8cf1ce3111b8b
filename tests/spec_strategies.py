"""Hypothesis strategies and helpers for hostile spec inputs (flags and TOML of any type).

Shared by tests/test_spec_properties.py (a bounded CI run) and bench/fuzz_specs.py (the long
run). Everything here calls the real entry point, ``wizard.cli.main``, in-process.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from wizard.cli import main
from wizard.commands._flags import FLAG_FOR_FIELD
from wizard.model import Backend, DeploySpec, ProxyKind

KNOWN_KEYS = ["proxy", "path", "server_path", "scope", "backends", "listen", "listen_address",
              "listen_port", "server_name", "tls_cert", "tls_key", "tls_port", "read_timeout",
              "send_timeout", "ping_interval_ms", "ping_timeout_ms", "proxy_buffering",
              "stream_close_delay", "apache_version", "static_root", "layout"]
FLAGS = ["--proxy", "--path", "--server-path", "--scope", "--backend", "--listen",
         "--server-name", "--tls-cert", "--tls-key", "--tls-port", "--read-timeout",
         "--send-timeout", "--ping-interval", "--ping-timeout", "--proxy-buffering",
         "--stream-close-delay", "--apache-version", "--static-root", "--layout"]

# -- values that are plausible, hostile, or both ----------------------------------------------

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
hostnames = st.lists(_label, min_size=1, max_size=4).map(".".join)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
hosts = st.one_of(hostnames, ipv4, ipv6, st.sampled_from(["localhost", "::1", "127.0.0.1"]))
_segment = st.from_regex(r"[A-Za-z0-9._~!+,=:@-]{1,12}", fullmatch=True).filter(
    lambda s: s not in {".", ".."})
paths = st.lists(_segment, min_size=1, max_size=3).map(lambda segs: "/" + "/".join(segs) + "/")
ports = st.integers(1, 65535)
# Text a user or a file could hand over: metacharacters of every proxy, whitespace, control
# characters, non-ASCII, lone surrogates (argv bytes that are not UTF-8 arrive as these).
_nasty_chars = st.sampled_from(list(";{}\"'`$\\#<>%*\n\r\t\x00 \u00e9\u2028\udcff[]:/.@~!+=,"))
nasty_text = st.one_of(
    st.text(max_size=30),
    st.lists(st.one_of(_nasty_chars, st.characters(codec="ascii")), max_size=30).map("".join),
    st.builds(lambda a, b, c: a + b + c, paths, _nasty_chars.map(str), paths),
    st.builds(lambda h, c, p: f"{h}{c}:{p}", hosts, _nasty_chars, ports),
)
numbers_text = st.one_of(st.integers(-10**6, 10**7).map(str),
                         st.integers().map(str), st.sampled_from(["60s", "25000ms", "1e400",
                                                                  "inf", "nan", "0x10", "٣"]))


def value_text_for(flag: str) -> st.SearchStrategy[str]:
    """Plausible-or-hostile text for one flag."""
    plausible: dict[str, st.SearchStrategy[str]] = {
        "--proxy": st.sampled_from(["nginx", "apache", "caddy", "node", "NGINX", "iis"]),
        "--path": paths, "--server-path": paths,
        "--scope": st.sampled_from(["all", "socketio", "x"]),
        "--backend": st.one_of(st.builds(lambda h, p: str(Backend(h, p)), hosts, ports), hosts),
        "--listen": st.one_of(ports.map(str), st.builds(lambda h, p: str(Backend(h, p)), hosts,
                                                        ports)),
        "--server-name": st.one_of(hostnames, hostnames.map(lambda h: "*." + h), ipv4, ipv6),
        "--tls-cert": st.just("/etc/ssl/c.pem"), "--tls-key": st.just("/etc/ssl/k.pem"),
        "--tls-port": ports.map(str),
        "--read-timeout": st.integers(40, 100).map(str),
        "--send-timeout": st.integers(1, 100).map(str),
        "--ping-interval": st.integers(1, 40_000).map(str),
        "--ping-timeout": st.integers(1, 40_000).map(str),
        "--proxy-buffering": st.sampled_from(["on", "off", "yes", "maybe"]),
        "--stream-close-delay": st.integers(-1, 90_000).map(str),
        "--apache-version": st.sampled_from(["2.4.41", "2.4.62", "2.4", "3.0", "2." + "9" * 50]),
        "--static-root": st.sampled_from(["/var/www/html", "/srv/a+b", "rel/dir"]),
        "--layout": st.sampled_from(["site", "full", "huge"]),
    }
    return st.one_of(plausible[flag], plausible[flag], nasty_text, numbers_text)


@st.composite
def render_argv(draw: st.DrawFn) -> list[str]:
    """``render`` argv with any subset of the spec flags, as ``--flag=value``.

    ``--flag=value`` keeps a value that starts with '-' a value (argparse would otherwise take
    it for an option and exit 2 on its own, which would hide what the model does with it).
    """
    argv = ["render", f"--proxy={draw(st.sampled_from(['nginx', 'apache', 'caddy', 'node']))}"]
    for flag in draw(st.lists(st.sampled_from(FLAGS), max_size=8)):
        argv.append(f"{flag}={draw(value_text_for(flag))}")
    return argv


# -- TOML of any type ----------------------------------------------------------------------

toml_scalars = st.one_of(
    st.text(max_size=20), nasty_text, st.booleans(),
    st.integers(), st.integers(min_value=10**300, max_value=10**320),
    st.floats(allow_nan=True, allow_infinity=True),
    st.dates(), st.datetimes(), st.times(),
    st.datetimes(timezones=st.just(datetime.UTC)),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=8),
                                            inner, max_size=4)),
    max_leaves=12)


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _str(k)


def _str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ch == "\x7f" or 0xD800 <= ord(ch) <= 0xDFFF:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else ch)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(v: Any) -> str:
    """A TOML literal for ``v`` (lone surrogates come out as \\uD8xx escapes: invalid TOML,
    which is a case worth sending too)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v) if ("." in repr(v) or "e" in repr(v)) else repr(v) + ".0"
    if isinstance(v, str):
        return _str(v)
    if isinstance(v, datetime.datetime | datetime.date | datetime.time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


@st.composite
def toml_documents(draw: st.DrawFn) -> bytes:
    """A spec file: known and unknown keys with values of every TOML type, sometimes under
    [spec], sometimes with raw bytes (non-UTF-8, NUL, truncation) spliced in."""
    table: dict[str, Any] = {}
    if draw(st.booleans()):
        table["proxy"] = draw(st.sampled_from(["nginx", "apache", "caddy", "node"]))
    for key in draw(st.lists(st.sampled_from(KNOWN_KEYS) | st.text(max_size=6), max_size=6)):
        flag = FLAG_FOR_FIELD.get(key)
        table[key] = draw(toml_values | value_text_for(flag) if flag else toml_values)
    body = "\n".join(f"{_key(k)} = {toml_value(v)}" for k, v in table.items()) + "\n"
    if draw(st.booleans()):
        body = "[spec]\n" + body
    data = body.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    return data


# -- running the real CLI --------------------------------------------------------------------

def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``wizard.cli.main(argv)`` in-process: (exit code, stdout, stderr). Only SystemExit (the
    way argparse refuses flags) is caught; any other exception is a traceback and propagates."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def check_outcome(code: int, out: str, err: str) -> None:
    """Exit 0 with a config on stdout, or exit 2 with a message on stderr and nothing on stdout."""
    assert code in (0, 2), f"exit {code}\n{err}"
    if code == 0:
        assert out.strip(), "exit 0 but no config on stdout"
    else:
        assert out == "", f"stdout on a refusal:\n{out}"
        assert err.startswith(("sockwizard: ", "usage: ")), err
        assert "Traceback" not in err


# -- accepted-but-hostile specs, and the plain twin they must render like ---------------------

@st.composite
def accepted_specs(draw: st.DrawFn, proxy: ProxyKind, tls_files: tuple[str, str]) -> DeploySpec:
    """A spec the model accepts, with values drawn from the edges of what it allows."""
    from wizard.errors import InvalidSpec
    from wizard.model import build_spec

    raw: dict[str, Any] = {"proxy": proxy.value, "path": draw(paths),
                           "layout": draw(st.sampled_from(["site", "full"])),
                           "scope": draw(st.sampled_from(["all", "socketio"])),
                           "static_root": draw(st.sampled_from(
                               ["/var/www/html", "/srv/a+b@c=d,e:f~g", "/x/y.z-w_v"]))}
    n = draw(st.integers(1, 3))
    # Literal addresses and localhost: nginx resolves upstream names at `nginx -t`.
    backend_hosts = st.one_of(ipv4, ipv6, st.just("localhost"))
    raw["backends"] = [str(Backend(draw(backend_hosts), draw(ports))) for _ in range(n)]
    if draw(st.booleans()):
        raw["server_path"] = draw(paths)
    if draw(st.booleans()):
        raw["listen"] = str(Backend(draw(st.sampled_from(["127.0.0.1", "::1"])),
                                    draw(st.integers(1024, 65535))))
    else:
        raw["listen"] = str(draw(st.integers(1024, 65535)))
    if draw(st.booleans()):
        raw["server_name"] = draw(st.one_of(hostnames, hostnames.map(lambda h: "*." + h), ipv4,
                                            ipv6))
    if draw(st.booleans()):
        raw["tls_cert"], raw["tls_key"] = tls_files
        raw["tls_port"] = draw(st.integers(1024, 65535))
    raw["ping_interval_ms"] = draw(st.integers(1, 60_000))
    raw["ping_timeout_ms"] = draw(st.integers(1, 60_000))
    low = (raw["ping_interval_ms"] + raw["ping_timeout_ms"]) // 1000 + 1
    raw["read_timeout"] = draw(st.integers(low, low + 1000))
    raw["send_timeout"] = draw(st.integers(1, 7 * 86_400))
    raw["proxy_buffering"] = draw(st.booleans())
    if proxy is ProxyKind.APACHE:
        raw["apache_version"] = draw(st.sampled_from([None, "2.4.41", "2.4.62"]))
    try:
        spec = build_spec(raw)
    except InvalidSpec:
        from hypothesis import assume
        assume(False)
        raise
    return spec


def plain_twin(spec: DeploySpec, tls_files: tuple[str, str]) -> DeploySpec:
    """The same shape of spec (sticky, TLS, rewrite, listen address, name) with plain values."""
    return replace(
        spec,
        path="/plain/",
        server_path=None if spec.server_path is None or not spec.rewrites_path else "/srv/",
        backends=tuple(Backend(f"127.0.0.{i + 1}", 3000) for i in range(len(spec.backends))),
        listen_address=None if spec.listen_address is None else "127.0.0.1",
        server_name=None if spec.server_name is None else "example.com",
        tls_cert=None if spec.tls_cert is None else tls_files[0],
        tls_key=None if spec.tls_key is None else tls_files[1],
        static_root="/var/www/html",
    )


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')


def directive_shape(proxy: ProxyKind, text: str, workdir: Path) -> list[Any]:
    """What directives a config has, without their argument values: nginx through crossplane
    (name, argument count, children); Apache and Caddy by the leading keyword and token count
    of each line; JavaScript with every string and number literal blanked."""
    if proxy is ProxyKind.NGINX:
        import crossplane

        f = workdir / "shape.conf"
        f.write_text(text)
        parsed = crossplane.parse(str(f), single=True, check_ctx=False, check_args=False,
                                  catch_errors=False)
        assert parsed["status"] == "ok", parsed["errors"]

        def shape(block: list[dict[str, Any]]) -> list[Any]:
            return [(d["directive"], len(d["args"]), shape(d.get("block", [])))
                    for d in block if d["directive"] != "#"]

        return shape(parsed["config"][0]["parsed"])
    if proxy is ProxyKind.TRAEFIK:
        import yaml

        # YAML: the tree of keys with every scalar reduced to its type (a value that broke out
        # of its quotes would add a key, an item or change a type).
        def tree(node: Any) -> Any:
            if isinstance(node, dict):
                return {k: tree(v) for k, v in node.items()}
            if isinstance(node, list):
                return [tree(v) for v in node]
            return type(node).__name__

        return [tree(yaml.safe_load(text))]
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("#", "//"))]
    if proxy is ProxyKind.NODE:
        return [_blank_js_literals(ln) for ln in lines]
    # A Caddy site block opens with its address ("http://HOST:PORT {"): a value, not a keyword.
    return [(re.sub(r"^https?://.*", "ADDRESS", tokens[0]), len(tokens))
            for tokens in (_TOKEN.findall(ln) for ln in lines)]


def _blank_js_literals(line: str) -> str:
    """A JS line with string and number literals blanked; a template literal keeps only its
    ``${...}`` expressions (the code in it)."""
    line = re.sub(r'"(?:[^"\\]|\\.)*"', '""', line)
    line = re.sub(r"`[^`]*`", lambda m: "`" + "".join(re.findall(r"\$\{[^}]*\}", m.group()))
                  + "`", line)
    return re.sub(r"\b\d+\b", "0", line)
