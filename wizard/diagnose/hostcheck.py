"""Questions for the proxy host beyond its config: who listens on the backend port (and how
many processes serve it), where ``localhost`` really goes, whether SELinux lets the proxy
connect.

``wizard.diagnose.run`` calls :func:`host_checks` after the probe and the config read, only
when a symptom asks for it (so a healthy diagnosis costs no extra round trip); the pure rules
in ``wizard.diagnose.rules_host`` turn the answers (:class:`~wizard.diagnose.facts.HostCheck`)
into findings.

Everything that reaches the host's shell is ours: the port is an ``int`` that passed the
model's port rules (the address came from the config, so it is hostile), the commands are
fixed text; each command is capped (``head -c``) and has a timeout; what comes back (process
names and command lines) is cut and stripped of control characters before it is shown.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from wizard import findings as codes
from wizard.diagnose.facts import HostCheck, RouteFacts
from wizard.diagnose.fixtext import checked_backends
from wizard.diagnose.readers.base import capped, new_marker, sudo_run, uncap
from wizard.errors import RemoteCommandFailed
from wizard.model import ProxyKind

if TYPE_CHECKING:
    from wizard.probe import ProbeReport
    from wizard.remote import Remote

CHECK_TIMEOUT_S = 5.0
MAX_OUTPUT = 16 * 1024
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
_PATH = "PATH=$PATH:/usr/sbin:/sbin"
# The proxies confined by SELinux's httpd_t domain on RHEL-family hosts.
SELINUX_KINDS = (ProxyKind.NGINX, ProxyKind.APACHE)


def host_checks(remote: Remote, facts: RouteFacts, probe: ProbeReport | None) -> list[HostCheck]:
    """The checks the symptoms ask for (none when the probe saw nothing they explain)."""
    seen = {f.code for f in probe.findings} if probe is not None else set()
    backends = checked_backends(facts.backends)
    out: list[HostCheck] = []
    for b in backends:
        if b.host == "localhost":
            out.append(localhost_check(remote, b.port))
    if codes.NO_STICKY_SESSIONS in seen and len(facts.backends) == 1 and backends and \
            backends[0].host in LOCAL_NAMES:
        out.append(process_check(remote, backends[0].port))
    if codes.BACKEND_UNREACHABLE in seen and facts.proxy in SELINUX_KINDS:
        check = selinux_check(remote)
        if check is not None:
            out.append(check)
    return out


def localhost_check(remote: Remote, port: int) -> HostCheck:
    """``localhost`` -> ::1 first (stock Debian/RHEL /etc/hosts; Node >= 17 keeps that
    order): a server bound to 127.0.0.1 refuses the proxy there. Asks the host how it
    resolves the name (``getent ahosts``), then tries both addresses."""
    try:
        result = remote.run("getent ahosts localhost 2>/dev/null | head -c 2048", sudo=False,
                            timeout=CHECK_TIMEOUT_S)
        resolved = list(dict.fromkeys(re.findall(r"^(\S{1,64})\s", result.stdout, re.M)))
    except RemoteCommandFailed:
        resolved = []
    v6 = remote.tcp_check("::1", int(port), 3.0)
    v4 = remote.tcp_check("127.0.0.1", int(port), 3.0)
    word = {True: "accepts connections"}
    names = ", ".join(_clean(x) for x in resolved[:4]) or "?"
    detail = (f"from the proxy host: localhost resolves to {names}; [::1]:{port} "
              f"{word.get(v6 is True, str(v6))}, 127.0.0.1:{port} "
              f"{word.get(v4 is True, str(v4))}")
    problem = "::1" in resolved and v6 is not True and v4 is True
    return HostCheck("localhost", f"localhost:{port}", problem, detail)


def process_check(remote: Remote, port: int) -> HostCheck:
    """Who listens on ``port`` (``ss -ltnp``) and the process tree of the owner: several
    processes behind one address mean several Engine.IO session tables."""
    port = int(port)
    marker, end = new_marker(), new_marker()
    pids = (f"ss -ltnpH 'sport = :{port}' 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 "
            "| sort -u | head -8")
    script = (f"{_PATH}; ss -ltnpH 'sport = :{port}' 2>/dev/null | head -c 4096; echo {marker}; "
              f"for p in $({pids}); do ps -o pid=,ppid=,comm=,args= -p $p --ppid $p "
              "2>/dev/null | cut -c1-300; done")
    try:
        result = sudo_run(remote, capped(script, MAX_OUTPUT, end), timeout=CHECK_TIMEOUT_S)
    except RemoteCommandFailed as exc:
        return HostCheck("processes", f"port {port}", None, f"not checked: {exc.title}")
    body, _status = uncap(result.stdout, end)
    listing, _, tree = body.partition(marker + "\n")
    return describe_processes(port, listing, tree)


def describe_processes(port: int, listing: str, tree: str) -> HostCheck:
    """Parse ``ss -ltnpH`` and ``ps -o pid=,ppid=,comm=,args=`` output (pure; tested alone)."""
    listeners = sorted({int(p) for p in re.findall(r"pid=(\d{1,9})", listing)})
    procs: dict[int, tuple[int, str, str]] = {}
    for line in tree.splitlines():
        m = re.match(r"\s*(\d{1,9})\s+(\d{1,9})\s+(\S{1,64})\s*(.*)", line)
        if m:
            procs[int(m.group(1))] = (int(m.group(2)), _clean(m.group(3)), _clean(m.group(4)))
    if not listeners:
        return HostCheck("processes", f"port {port}", None,
                         f"nothing listening on port {port} could be seen (ss -ltnp needs "
                         "root to name other users' processes)")
    # Serving processes: those holding the socket (gunicorn, uWSGI workers show in ss) and
    # the children of a holder running the same program (Node cluster workers; PM2's God
    # daemon forks node), less any parent of another (a master only hands out connections).
    serving = set(listeners)
    for holder in listeners:
        comm = procs.get(holder, (0, "", ""))[1]
        serving |= {pid for pid, (ppid, c, _a) in procs.items()
                    if ppid == holder and (c == comm or c == "node" or comm.startswith("PM2"))}
    parents = {procs[p][0] for p in serving if p in procs}
    serving -= parents if len(serving - parents) > 0 else set()
    owner = listeners[0]
    comm, args = procs.get(owner, (0, "?", ""))[1:]
    runtime = _runtime(comm, args, [procs[p][1] for p in serving if p in procs])
    shown = ", ".join(map(str, sorted(serving)[:8])) + ("…" if len(serving) > 8 else "")
    detail = (f"from the proxy host: port {port} is held by {comm} (pid {owner}"
              + (f", `{args[:120]}`" if args else "") + f"); {len(serving)} process(es) "
              f"serve it (pids {shown})")
    return HostCheck("processes", runtime, len(serving) > 1, detail)


def _runtime(comm: str, args: str, worker_comms: Sequence[str]) -> str:
    text = f"{comm} {args} {' '.join(worker_comms)}".lower()
    for name in ("pm2", "gunicorn", "uwsgi", "node"):
        if name in text:
            return name
    return comm or "?"


def selinux_check(remote: Remote) -> HostCheck | None:
    """``getsebool httpd_can_network_connect`` where SELinux tools exist (None: they do not,
    or SELinux is disabled)."""
    script = (f"{_PATH}; command -v getsebool >/dev/null 2>&1 || exit 3; "
              "getsebool httpd_can_network_connect 2>&1 | head -c 512")
    try:
        result = remote.run(script, sudo=False, timeout=CHECK_TIMEOUT_S)
    except RemoteCommandFailed:
        return None
    text = _clean(result.stdout.strip())[:200]
    m = re.search(r"httpd_can_network_connect\s*-->\s*(on|off)", text)
    if result.exit_status == 3 or m is None:
        return None
    return HostCheck("selinux", "httpd_can_network_connect", m.group(1) == "off",
                     f"from the proxy host: `{text}`")


def _clean(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)
