"""The spec flags shared by ``render``, ``deploy`` and ``sandbox``, and flags -> DeploySpec."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from wizard.errors import InvalidSpec
from wizard.model import DeploySpec, Problem, build_spec

# Model field -> the flag a CLI user typed, so every message names what they can change.
FLAG_FOR_FIELD = {
    "proxy": "--proxy", "path": "--path", "server_path": "--server-path", "scope": "--scope",
    "backends": "--backend", "listen": "--listen", "listen_address": "--listen",
    "listen_port": "--listen", "server_name": "--server-name", "tls_cert": "--tls-cert",
    "tls_key": "--tls-key", "tls_port": "--tls-port", "read_timeout": "--read-timeout",
    "send_timeout": "--send-timeout", "ping_interval_ms": "--ping-interval",
    "ping_timeout_ms": "--ping-timeout", "proxy_buffering": "--proxy-buffering",
    "stream_close_delay": "--stream-close-delay", "apache_version": "--apache-version",
    "static_root": "--static-root", "layout": "--layout",
}


def add_spec_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to generate (flags override --spec)")
    g.add_argument("--spec", type=Path, metavar="FILE.toml", help="read the spec from a TOML file")
    g.add_argument("--proxy", metavar="KIND", help="nginx | apache | caddy | node")
    g.add_argument("--path", metavar="P", help="Socket.IO path clients use (default /socket.io/)")
    g.add_argument("--server-path", metavar="P",
                   help="path the Socket.IO server listens on, when the proxy rewrites")
    g.add_argument("--scope", metavar="all|socketio",
                   help="proxy the whole site (all, default) or only the Socket.IO path")
    g.add_argument("--backend", action="append", dest="backends", metavar="HOST:PORT",
                   help="a Socket.IO server; repeat for several (sticky sessions are added)")
    g.add_argument("--listen", metavar="[ADDR:]PORT", help="where the proxy listens (default 80)")
    g.add_argument("--server-name", metavar="N", help="the site's domain name")
    g.add_argument("--tls-cert", metavar="F", help="certificate path on the host (adds :443)")
    g.add_argument("--tls-key", metavar="F", help="private key path on the host")
    g.add_argument("--tls-port", metavar="PORT", help="HTTPS port (default 443)")
    g.add_argument("--read-timeout", metavar="S",
                   help="proxy read timeout in seconds (default 60); must exceed the ping sum")
    g.add_argument("--send-timeout", metavar="S", help="proxy send timeout in seconds (default 60)")
    g.add_argument("--ping-interval", dest="ping_interval_ms", metavar="MS",
                   help="the server's pingInterval in ms (default 25000)")
    g.add_argument("--ping-timeout", dest="ping_timeout_ms", metavar="MS",
                   help="the server's pingTimeout in ms (default 20000)")
    g.add_argument("--proxy-buffering", metavar="on|off", help="nginx proxy_buffering (default on)")
    g.add_argument("--stream-close-delay", metavar="S",
                   help="Caddy 2.7+: keep WebSockets open S seconds across reloads")
    g.add_argument("--apache-version", metavar="V",
                   help="target Apache version; < 2.4.47 uses the mod_proxy_wstunnel recipe")
    g.add_argument("--static-root", metavar="DIR", help="scope socketio: what the proxy serves")
    g.add_argument("--layout", metavar="site|full",
                   help="site: a file to include (default); full: a complete main config")


_SPEC_DESTS = ["proxy", "path", "server_path", "scope", "backends", "listen", "server_name",
               "tls_cert", "tls_key", "tls_port", "read_timeout", "send_timeout",
               "ping_interval_ms", "ping_timeout_ms", "proxy_buffering", "stream_close_delay",
               "apache_version", "static_root", "layout"]


def spec_from_args(args: argparse.Namespace, *, require_proxy: bool = True) -> DeploySpec:
    """Merge --spec FILE with the flags; raise InvalidSpec naming the flags (or the file's keys)
    at fault."""
    from wizard.spec_io import load_raw

    raw: dict[str, Any] = load_raw(args.spec) if args.spec else {}
    from_file = set(raw)
    for dest in _SPEC_DESTS:
        value = getattr(args, dest, None)
        if value is not None:
            raw[dest] = value
            from_file.discard(dest)
            if dest == "listen":  # --listen replaces both halves a file may set
                from_file -= {"listen_address", "listen_port"}
    if require_proxy and "proxy" not in raw:
        raise InvalidSpec([Problem("--proxy", "which proxy? give --proxy nginx|apache|caddy|node "
                                              "(or a --spec file that sets proxy)")])
    try:
        return build_spec(raw)
    except InvalidSpec as exc:
        raise InvalidSpec([_as_flag(p, from_file, args.spec) for p in exc.problems]) from None


def _as_flag(problem: object, from_file: set[str], spec_file: Path | None) -> object:
    """Name a problem as the user wrote it: the flag, or the key in the spec file."""
    if not isinstance(problem, Problem):
        return problem
    name, _, index = problem.field.partition("[")
    # The model reports a bad listen port/address as "listen", whichever key set it.
    in_file = name in from_file or (name == "listen" and bool(
        from_file & {"listen_address", "listen_port"}))
    if in_file or name not in FLAG_FOR_FIELD:
        where = f"{name}[{index}" if index else name
        return Problem(f"{where} (in {spec_file})" if spec_file else where, problem.message)
    flag = FLAG_FOR_FIELD[name]
    if index:
        flag += f" #{int(index.rstrip(']')) + 1}"
    return Problem(flag, problem.message)
