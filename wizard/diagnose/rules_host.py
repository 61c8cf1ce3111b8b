"""Issue 12's host-side rules: what the proxy host answered (``RouteFacts.host_checks``, from
``wizard.diagnose.hostcheck``) held against the probe's symptoms. Pure.

Called by ``wizard.diagnose.rules.diagnose_with_notes`` after its own rules, with the findings
so far:

* ``Session ID unknown`` with *one* upstream: several processes behind one address (Node
  ``cluster``, PM2 ``-i N``, gunicorn ``-w N``, uWSGI processes) — proxy stickiness cannot
  help, so the probe's "turn on sticky sessions" is replaced by the server-side fix;
* ``localhost`` going to ::1 while the server binds 127.0.0.1;
* SELinux ``httpd_can_network_connect`` off (502, ``(13: Permission denied)`` in the log).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wizard import findings as codes
from wizard.diagnose.facts import HostCheck
from wizard.diagnose.text import evidence, place, probe_evidence
from wizard.findings import Finding, Severity

if TYPE_CHECKING:
    from wizard.diagnose.rules_context import RuleContext

_NODE_FIX = (
    "Keep each client on one process, in the server itself:\n"
    "    // npm install @socket.io/sticky @socket.io/cluster-adapter\n"
    "    // primary:  setupMaster(httpServer, { loadBalancingMethod: 'least-connection' });\n"
    "    //           setupPrimary();   (from @socket.io/cluster-adapter)\n"
    "    // worker:   io.adapter(createAdapter()); setupWorker(io);\n"
    "or run one process per port (PORT=3001, 3002, …) and list them in an upstream that "
    "hashes on the client (sticky sessions at the proxy). PM2: `pm2 start app.js -i 1`, or "
    "the same @socket.io/sticky setup.")
_PY_FIX = ("Run one worker: `gunicorn -w 1 -k eventlet app:app` (uWSGI: `processes = 1`); to "
           "use more cores, run several single-worker servers on their own ports and put them "
           "in an upstream that hashes on the client (sticky sessions at the proxy).")


def _checks(ctx: RuleContext, kind: str) -> list[HostCheck]:
    facts = ctx.facts
    return [c for c in facts.host_checks if c.kind == kind] if facts is not None else []


def several_processes(ctx: RuleContext, found: list[Finding]) -> list[Finding]:
    """``Session ID unknown`` although the proxy has one upstream."""
    facts = ctx.facts
    sticky = [f for f in found if f.code == codes.NO_STICKY_SESSIONS]
    if facts is None or not sticky or len(facts.backends) != 1:
        return found
    checks = _checks(ctx, "processes")
    check = checks[0] if checks else None
    if check is not None and check.problem is False:
        return found  # one process: something else mixes the sessions (a tier in front?)
    backend = facts.backends[0]
    port = backend.rsplit(":", 1)[-1]
    how = check.detail if check is not None else (
        f"confirm on the backend host: `ss -ltnp 'sport = :{port}'` (who holds the port), then "
        "`ps -o pid,ppid,args --ppid <that pid>` (its worker processes)")
    runtime = check.subject if check is not None else ""
    fix = _PY_FIX if runtime in ("gunicorn", "uwsgi") else _NODE_FIX
    if not runtime or runtime not in ("gunicorn", "uwsgi", "node", "pm2"):
        fix = f"Node (cluster, PM2 -i N): {_NODE_FIX}\nPython (gunicorn -w N, uWSGI): {_PY_FIX}"
    severity: Severity = "error"
    title = (f"One backend address ({backend}), several server processes: each keeps its own "
             "sessions, so requests of one session that reach another process get \"Session ID "
             "unknown\" — sticky sessions at the proxy cannot help (it sees one address)")
    finding = Finding(codes.SEVERAL_PROCESSES, severity, title,
                      evidence(probe_evidence(sticky), facts.backends_where, how), fix)
    return [f for f in found if f.code != codes.NO_STICKY_SESSIONS] + [finding]


def localhost_ipv6(ctx: RuleContext, found: list[Finding]) -> list[Finding]:
    """``localhost`` -> ::1 first, the server only on 127.0.0.1."""
    checks = [c for c in _checks(ctx, "localhost") if c.problem]
    facts = ctx.facts
    if not checks or facts is None:
        return found
    down = [f for f in found if f.code == codes.BACKEND_UNREACHABLE]
    names = ", ".join(c.subject for c in checks)
    fixed = ", ".join(c.subject.replace("localhost", "127.0.0.1") for c in checks)
    severity: Severity = "error" if down else "warning"
    title = (f"The proxy's backend {names} resolves to ::1 first, where the server does not "
             "listen (it binds 127.0.0.1): "
             + ("502 `connect ECONNREFUSED ::1`" if down else "every new connection tries ::1 "
                "first and is refused (errors in the proxy log; a proxy that does not fall "
                "back answers 502)"))
    return [f for f in found if f.code != codes.BACKEND_UNREACHABLE] + [Finding(
        codes.LOCALHOST_IPV6, severity, title,
        evidence(facts.backends_where or facts.upstream, *(c.detail for c in checks),
                 probe_evidence(down)),
        f"Point the proxy at {fixed} instead of {names} ({place(facts.backends_where)}), or "
        "make the server listen on ::1 too (Node: `server.listen(port)` without a host, or "
        "`'::'`).")]


def selinux(ctx: RuleContext, found: list[Finding]) -> list[Finding]:
    """SELinux keeps the proxy (httpd_t) from connecting to the backend."""
    checks = [c for c in _checks(ctx, "selinux") if c.problem]
    down = [f for f in found if f.code == codes.BACKEND_UNREACHABLE]
    if not checks or not down:
        return found
    return [f for f in found if f.code != codes.BACKEND_UNREACHABLE] + [Finding(
        codes.SELINUX_BLOCKS_PROXY, "error",
        f"SELinux does not let {ctx.name} connect to the backend (httpd_can_network_connect "
        "is off): 502, with `(13: Permission denied)` in the error log",
        evidence(checks[0].detail, probe_evidence(down)),
        "On the proxy host:\n    setsebool -P httpd_can_network_connect 1\n"
        "(or label the backend port: `semanage port -a -t http_port_t -p tcp PORT`)")]


RULES = (several_processes, localhost_ipv6, selinux)
