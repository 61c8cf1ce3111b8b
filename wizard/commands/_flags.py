"""Flag definitions the subcommands share, and flags -> the typed options the core takes.

- ``add_command``: every subcommand's parser, with the exit-code table as its epilog.
- spec flags (``render``, ``deploy``, ``sandbox``): ``add_spec_options`` / ``spec_from_args``.
- SSH flags (``deploy``, ``rollback``, ``diagnose``): ``add_connect_options``,
  ``add_ssh_auth_options``, ``connect_from_args`` (passwords from stdin, never argv).
- probe flags (``probe``, ``diagnose``): ``add_probe_options`` / ``probe_options``.

Core modules are imported inside the functions that need them, so building the parser stays
cheap (the model is the one exception: it has no heavy imports).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from wizard.commands._print import exit_codes_epilog
from wizard.errors import BadInput, InvalidSpec
from wizard.model import PROXY_NAMES, DeploySpec, Problem, build_spec

if TYPE_CHECKING:
    from wizard.probe import ProbeOptions
    from wizard.remote.connect import ConnectOptions, Opening


def add_command(sub: Any, name: str, *, help: str, description: str,
                examples: str = "") -> argparse.ArgumentParser:
    """A subcommand's parser; its --help ends with ``examples`` and the exit-code table."""
    epilog = f"{examples.rstrip()}\n\n{exit_codes_epilog()}" if examples else exit_codes_epilog()
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=description, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser


# -- spec flags -------------------------------------------------------------------------------

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


PROXY_CHOICES = PROXY_NAMES.replace("|", " | ")  # --proxy's help


def add_spec_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to generate (flags override --spec)")
    g.add_argument("--spec", type=Path, metavar="FILE.toml", help="read the spec from a TOML file")
    g.add_argument("--proxy", metavar="KIND", help=PROXY_CHOICES)
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
SPEC_DESTS = _SPEC_DESTS  # the spec flags' dests (deploy --inventory merges them per host)


def spec_from_args(args: argparse.Namespace, *, require_proxy: bool = True) -> DeploySpec:
    """Merge --spec FILE with the flags; raise InvalidSpec naming the flags (or the file's keys)
    at fault."""
    from wizard.spec_file import load_raw

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
        raise InvalidSpec([Problem("--proxy", "which proxy? give --proxy "
                                              f"{PROXY_NAMES} "
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


# -- SSH flags --------------------------------------------------------------------------------


def add_connect_options(p: argparse.ArgumentParser, *, multiple: bool = True,
                        required: bool = True) -> Any:
    g = p.add_argument_group("where (SSH)")
    g.add_argument("--host", action="append" if multiple else "store", dest="hosts",
                   required=required, metavar="TARGET",
                   help="[USER@]HOST[:PORT] or an ~/.ssh/config alias; `local` = this machine"
                        + ("; repeat to deploy to several hosts at once" if multiple else ""))
    add_ssh_auth_options(g)
    return g


def add_ssh_auth_options(g: Any) -> None:
    """How to log in and whom to trust: shared by deploy, rollback and diagnose."""
    g.add_argument("--identity", "-i", type=Path, metavar="FILE", help="private key file")
    g.add_argument("--known-hosts", type=Path, metavar="FILE",
                   help="known_hosts to check the host key against (default ~/.ssh/known_hosts)")
    g.add_argument("--accept-host-key", metavar="SHA256:...",
                   help="trust this host key fingerprint (after checking it) and record it")
    g.add_argument("--password-stdin", action="store_true",
                   help="read the SSH password from the first line of stdin")
    g.add_argument("--sudo-password-stdin", action="store_true",
                   help="read the sudo password from stdin (the next line)")
    g.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for the SSH connection (default 10)")


def connect_from_args(args: argparse.Namespace, stdin: TextIO | None = None) -> ConnectOptions:
    """Connection flags -> ConnectOptions; passwords come from stdin, never from argv."""
    from wizard.remote.connect import ConnectOptions

    stream = stdin if stdin is not None else sys.stdin
    password = _read_secret(stream, "--password-stdin") if args.password_stdin else None
    sudo_password = (_read_secret(stream, "--sudo-password-stdin")
                     if args.sudo_password_stdin else None)
    if args.connect_timeout <= 0:
        raise BadInput("--connect-timeout must be positive.", "Give a number of seconds.")
    return ConnectOptions(
        known_hosts=args.known_hosts, accept_host_key=args.accept_host_key,
        identity=args.identity, password=password, sudo_password=sudo_password,
        connect_timeout=args.connect_timeout,
        passphrase_prompt=_passphrase_prompt if sys.stdin.isatty() else None)


def open_early(host: str, connect: ConnectOptions) -> Opening | None:
    """Start the connect to an SSH ``host`` now, before the command imports the deploy and
    renders: the key exchange's round trips leave the process idle for that work
    (``wizard.remote.Opening``). The command hands it to the deploy, or discards it."""
    from wizard.remote.connect import LOCAL, Opening

    return None if host == LOCAL else Opening(host, connect)


def _read_secret(stream: TextIO, flag: str) -> str:
    line = stream.readline()
    if not line:
        raise BadInput(f"{flag}: stdin is empty.",
                       "Pipe the password in, e.g. `printf '%s\\n' \"$PW\" | sockwizard ...`.")
    return line.rstrip("\r\n")


def _passphrase_prompt(prompt: str) -> str:
    return getpass.getpass(prompt)


# -- host-change flags ------------------------------------------------------------------------

# wizard.deploy.DEFAULT_BACKUP_DIR (a test pins that they agree): not imported, so that
# building the parser does not load the deploy package.
DEFAULT_BACKUP_DIR = "/var/backups/sockwizard"


def add_change_options(g: Any, *, validate: str,
                       reload: str = "reload/restart command, run with sudo",
                       backups: str = "backups, locks and journals on the host") -> None:
    """--validate-cmd, --reload-cmd and --backup-dir: how a command that changes a host checks,
    reloads and keeps its backups (deploy, diagnose --apply, rollback); each words the help."""
    g.add_argument("--validate-cmd", metavar="CMD", help=validate)
    g.add_argument("--reload-cmd", metavar="CMD", help=reload)
    add_backup_dir_option(g, backups)


def add_backup_dir_option(g: Any, what: str) -> None:
    g.add_argument("--backup-dir", metavar="DIR", default=None,
                   help=f"{what} (default {DEFAULT_BACKUP_DIR})")


def backup_dir(args: argparse.Namespace) -> str:
    """--backup-dir, or the default (the flag itself defaults to None: diagnose refuses it
    without --apply). BadInput for a path that cannot be one on the host."""
    value = str(args.backup_dir or DEFAULT_BACKUP_DIR)
    host_path("--backup-dir", value, "a directory such as /var/backups/sockwizard")
    return value


def host_path(flag: str, value: str | None, example: str) -> None:
    """BadInput, naming ``flag``, for a path on the host that is relative (it would land in
    whatever directory the remote command starts in, and a later rollback would not find
    it), empty, or holds a line break or NUL."""
    from wizard.remote import path_problem

    if value is not None and (why := path_problem(value)) is not None:
        raise BadInput(f"{flag}: {why} cannot be used on the host.",
                       f"Give an absolute path: {example}.")


# -- probe flags ------------------------------------------------------------------------------


def add_probe_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``probe`` and ``diagnose``."""
    p.add_argument("--path", default="/socket.io/", metavar="P",
                   help="the Socket.IO path (default /socket.io/)")
    p.add_argument("--header", action="append", default=[], metavar="K:V",
                   help="extra request header; repeatable")
    p.add_argument("--origin", metavar="O", help="send this Origin header")
    p.add_argument("--insecure", action="store_true", help="accept self-signed TLS certificates")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="seconds per stage (default 5)")
    p.add_argument("--hold", type=float, default=0.0, metavar="SECONDS",
                   help="keep an idle connection open this long and report if it drops")
    p.add_argument("--connect-to", metavar="ADDR",
                   help="connect to this address; the URL's host stays the Host header and "
                        "TLS name (like curl --connect-to): one host behind a load balancer, "
                        "or a name before its DNS")


def probe_options(args: argparse.Namespace, **extra: Any) -> ProbeOptions:
    from wizard.probe import ProbeOptions, parse_header

    connect_to = args.connect_to
    if connect_to is not None and not extra.get("emit"):
        # Our own Socket.IO CONNECT on the upgraded WebSocket honours the address;
        # python-socketio (needed for --emit) resolves the URL itself.
        extra.setdefault("raw_connect", True)
    return ProbeOptions(
        path=args.path, headers=tuple(parse_header(h) for h in args.header), origin=args.origin,
        insecure=args.insecure, timeout=args.timeout, hold=args.hold, connect_to=connect_to,
        **extra)
