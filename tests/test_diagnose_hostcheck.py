"""wizard/diagnose/hostcheck.py: the questions for the proxy host, over the in-memory Remote.

Fast branch tests beside the real ones (tests/test_diagnose_live_causes.py runs the process
check for real, locally and over the rig's sshd, against a Node cluster): which symptoms ask
which question, what reaches the shell (only an int port and fixed text), caps, hostile output,
and SELinux — which this Debian machine cannot show for real (no SELinux), so only here.
"""

from __future__ import annotations

import re

from tests.test_diagnose_rules import make_probe, pairs
from wizard.diagnose import RouteFacts, diagnose
from wizard.diagnose.hostcheck import describe_processes, host_checks
from wizard.model import ProxyKind
from wizard.probe import ProbeReport
from wizard.remote import CommandResult, InMemoryRemote, RunRequest

SS = 'LISTEN 0 511 127.0.0.1:3000 0.0.0.0:* users:(("node",pid=100,fd=22))\n'
PS = (" 100     1 node            node cluster.js\n"
      " 101   100 node            /usr/bin/node cluster.js\n"
      " 102   100 node            /usr/bin/node cluster.js\n")


def facts(backends: tuple[str, ...], proxy: ProxyKind = ProxyKind.NGINX) -> RouteFacts:
    return RouteFacts(proxy=proxy, source="test", proxied=True, backends=backends)


def sticky_probe() -> ProbeReport | None:
    return make_probe({"findings": [{"code": "no-sticky-sessions",
                                     "evidence": "sessions: 3 of 6 got Session ID unknown"}]})


def answer_ss(req: RunRequest) -> CommandResult:
    marker, end = re.findall(r"==sockwizard-[0-9a-f]+==", req.command)[:2]
    return CommandResult(req.command, 0, f"{SS}{marker}\n{PS}{end} 0", "", 0.01)


def test_a_healthy_probe_asks_the_host_nothing() -> None:
    remote = InMemoryRemote(name="fake")
    assert host_checks(remote, facts(("127.0.0.1:3000",)), make_probe({})) == []
    assert remote.calls == []


def test_session_id_unknown_with_one_backend_lists_the_processes() -> None:
    remote = InMemoryRemote(name="fake")
    remote.on(r"ss -ltnpH", answer_ss)
    f = facts(("127.0.0.1:3000",))
    checks = host_checks(remote, f, sticky_probe())
    assert [(c.kind, c.subject, c.problem) for c in checks] == [("processes", "node", True)]
    assert "2 process(es) serve it (pids 101, 102)" in checks[0].detail
    (command,) = remote.commands
    assert "'sport = :3000'" in command and "head -c" in command  # capped
    found = diagnose(RouteFacts(**{**f.__dict__, "host_checks": tuple(checks)}),
                     sticky_probe(), "/socket.io/")
    assert pairs(found) == [("several-processes-one-port", "error")]
    assert "@socket.io/sticky" in found[0].fix and "stickiness" not in found[0].fix


def test_a_hostile_backend_address_never_reaches_the_shell() -> None:
    remote = InMemoryRemote(name="fake")
    evil = ("127.0.0.1:3000;reboot", "$(id):3000")
    for backends in ((evil[0],), (evil[1],)):
        host_checks(remote, facts(backends), sticky_probe())
    assert remote.calls == []


def test_several_backends_are_a_proxy_question_not_a_process_one() -> None:
    remote = InMemoryRemote(name="fake")
    host_checks(remote, facts(("127.0.0.1:3000", "127.0.0.1:3001")), sticky_probe())
    assert remote.commands == []


def test_hostile_process_names_are_cleaned_and_cut() -> None:
    tree = " 100 1 node\x1b[31m " + "A" * 500 + "\x07\n 101 100 node x\n 102 100 node x\n"
    check = describe_processes(3000, SS, tree)
    assert check.problem is True
    assert "\x1b" not in check.detail and "\x07" not in check.detail
    assert len(check.detail) < 400


def test_gunicorn_workers_sharing_the_socket() -> None:
    ss = ('LISTEN 0 2048 127.0.0.1:8000 0.0.0.0:* users:(("gunicorn",pid=12,fd=5),'
          '("gunicorn",pid=11,fd=5),("gunicorn",pid=10,fd=5))\n')
    ps = " 10 1 gunicorn gunicorn -w 2 app:app\n 11 10 gunicorn g\n 12 10 gunicorn g\n"
    check = describe_processes(8000, ss, ps)
    assert (check.subject, check.problem) == ("gunicorn", True)
    one = describe_processes(8000, ss.replace('("gunicorn",pid=12,fd=5),', ""),
                             " 10 1 gunicorn gunicorn -w 1 app:app\n 11 10 gunicorn g\n")
    assert one.problem is False


def test_localhost_to_ipv6_first() -> None:
    remote = InMemoryRemote(name="fake", tcp={"127.0.0.1:3000": True})
    remote.on(r"getent ahosts localhost", stdout="::1 STREAM localhost\n::1 DGRAM\n"
                                                 "127.0.0.1 STREAM localhost\n")
    (check,) = host_checks(remote, facts(("localhost:3000",), ProxyKind.NODE), None)
    assert check.problem is True and "resolves to ::1, 127.0.0.1" in check.detail
    down = make_probe({"preset": "no-handshake", "findings": [
        {"code": "backend-unreachable", "evidence": "answered 502"}]})
    found = diagnose(RouteFacts(**{**facts(("localhost:3000",), ProxyKind.NODE).__dict__,
                                   "host_checks": (check,)}), down, "/socket.io/")
    assert pairs(found) == [("localhost-resolves-to-ipv6", "error")]
    # This machine's own /etc/hosts (localhost -> 127.0.0.1 only): no problem.
    remote.on(r"getent ahosts localhost", stdout="127.0.0.1 STREAM localhost\n")
    (check,) = host_checks(remote, facts(("localhost:3000",), ProxyKind.NODE), None)
    assert check.problem is False


def test_selinux_boolean_off_on_a_502() -> None:
    down = make_probe({"preset": "no-handshake", "findings": [
        {"code": "backend-unreachable", "evidence": "answered 502"}]})
    remote = InMemoryRemote(name="fake")
    remote.on(r"getsebool", stdout="httpd_can_network_connect --> off\n")
    checks = host_checks(remote, facts(("127.0.0.1:3000",)), down)
    assert [(c.kind, c.problem) for c in checks] == [("selinux", True)]
    found = diagnose(RouteFacts(**{**facts(("127.0.0.1:3000",)).__dict__,
                                   "host_checks": tuple(checks)}), down, "/socket.io/")
    assert pairs(found) == [("selinux-blocks-proxy", "error")]
    # No SELinux tools (Debian), or a proxy SELinux does not confine: nothing.
    remote = InMemoryRemote(name="fake")
    remote.on(r"getsebool", exit_status=3)
    assert host_checks(remote, facts(("127.0.0.1:3000",)), down) == []
    assert host_checks(remote, facts(("127.0.0.1:3000",), ProxyKind.CADDY), down) == []
