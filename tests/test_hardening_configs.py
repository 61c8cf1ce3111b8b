"""``diagnose`` against hostile config files (issue #10, items 1 and 4).

The live half puts hostile config trees on this machine and lets ``sockwizard diagnose`` read
them as the rig's real sshd user ``swdeploy`` (passwordless sudo) and with ``--host local``
(root): include loops, an include of /dev/zero, a 64 GB sparse file, a FIFO, a 50 MB script,
and shell syntax (``$(...)``, backquotes, ``;``) in every place a backend host can be written.
Each run is a child process under an address-space limit (RLIMIT_AS); it must end within the
config deadline plus slack, print findings (not a traceback), and no canary file may appear.

The fast half feeds the same hostility to the pure parts and to an in-memory remote.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import rig
from wizard.diagnose import ConfigReadError, RouteQuery, check_backends, read_route, run_diagnosis
from wizard.diagnose.readers import apache as apache_reader
from wizard.diagnose.readers import nginx as nginx_reader
from wizard.diagnose.readers import node
from wizard.errors import RemoteCommandFailed
from wizard.model import ProxyKind
from wizard.probe import ProbeOptions
from wizard.remote import CommandResult, InMemoryRemote, RunRequest

ROOT = Path(__file__).resolve().parent.parent
MEMORY_CAP = 1536 * 1024 * 1024  # RLIMIT_AS of the diagnose child
DEADLINE = 30.0  # wizard.diagnose.readers.CONFIG_DEADLINE_S
SLACK = 30.0  # probe, SSH connect, backend checks, interpreter start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bound(seconds: float, fn: object, *args: object) -> float:
    started = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    elapsed = time.perf_counter() - started
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    return elapsed


# --------------------------------------------------------------------------- fast: no shell


HOSTILE_HOSTS = ["$(touch /tmp/x):80", "`id`:80", "a;id:80", "a b:80", "[::1;id]:80",
                 "x\n:80", "127.0.0.1:99999", "unix:/run/x.sock", "a" * 400 + ":80"]


def test_check_backends_never_runs_a_command_and_refuses_hostile_addresses() -> None:
    remote = InMemoryRemote(name="mem", tcp={"127.0.0.1:3000": True, "[::1]:3001": "refused"})
    checks = check_backends(remote, [*HOSTILE_HOSTS, "127.0.0.1:3000", "[::1]:3001",
                                     "localhost:3002"])
    assert remote.commands == [], "no shell at all"
    tried = [c.target for c in remote.calls if c.op == "tcp_check"]
    assert tried == ["127.0.0.1:3000", "::1:3001", "localhost:3002"]
    by = {c.address: c for c in checks}
    assert by["127.0.0.1:3000"].reachable and by["127.0.0.1:3000"].checked
    assert not by["[::1]:3001"].reachable and by["[::1]:3001"].checked
    refused = [c for c in checks if not c.checked]
    assert len(refused) == len(HOSTILE_HOSTS)
    assert all(c.detail.startswith("not checked: ") and "\n" not in c.address for c in refused)


def test_a_remote_command_timeout_keeps_the_probe_findings() -> None:
    """Before: the timeout's RemoteCommandFailed aborted the whole diagnose."""
    remote = InMemoryRemote(name="mem")
    remote.fail("run", RemoteCommandFailed("Command timed out after 30 s on mem"), times=9)
    d = run_diagnosis(f"http://127.0.0.1:{_free_port()}", ProbeOptions(timeout=1),
                      remote=remote, proxy="nginx")
    assert [(f.code, f.severity) for f in d.findings] == [
        ("proxy-unreachable", "error"), ("config-unreadable", "warning")]
    assert "timed out" in d.findings[1].title


def test_the_config_read_has_a_total_deadline() -> None:
    """nginx -T fails, then the fallback's reads would go on: the deadline ends them."""
    def slow(req: RunRequest) -> CommandResult:
        time.sleep(0.4)
        return CommandResult(req.command, 1, "", "nginx: [emerg] boom\n", 0.4)

    remote = InMemoryRemote(name="mem")
    remote.on(r".", slow)
    with pytest.raises(ConfigReadError, match=r"longer than 0\.3 s"):
        read_route(remote, ProxyKind.NGINX, RouteQuery(), None, deadline_s=0.3)
    assert len(remote.commands) <= 2


def test_nginx_fallback_reads_each_included_file_once_with_caps() -> None:
    """An include loop read level by level: each path is asked for once, and the read
    command only reads regular files, through head -c."""
    main = "/etc/nginx/nginx.conf"
    files = {main: "include /etc/nginx/a.conf;\nhttp { server { listen 80; } }\n",
             "/etc/nginx/a.conf": "include /etc/nginx/a.conf;\ninclude /etc/nginx/nginx.conf;\n"}
    asked: list[str] = []

    def cat(req: RunRequest) -> CommandResult:
        import re
        marker = re.search(r"==sockwizard-[0-9a-f]+==", req.command)
        assert marker and "head -c" in req.command and '[ -f "$f" ]' in req.command
        out = ""
        for path, text in files.items():
            if f"p={path};" in req.command or f"p='{path}';" in req.command:
                asked.append(path)
                out += f"{marker.group(0)} {path}\n{text}\n"
        return CommandResult(req.command, 0, out, "", 0.0)

    remote = InMemoryRemote(name="mem")
    remote.on(r"nginx -T", exit_status=1, stderr="nginx: [emerg] loop\n")
    remote.on(r"for f in", cat)
    facts = read_route(remote, ProxyKind.NGINX, RouteQuery(port=80), None)
    assert sorted(asked) == sorted(files), asked
    assert facts.server is not None


def _chain(n: int, fanout: int) -> list[tuple[str, str]]:
    """f0 includes f1 `fanout` times, f1 includes f2 ... : fanout**n copies if expanded."""
    files = []
    for i in range(n):
        body = "".join(f"include /c/f{i + 1}.conf;\n" for _ in range(fanout))
        files.append((f"/c/f{i}.conf", f"{body}proxy_read_timeout {i}s;\n"))
    files.append((f"/c/f{n}.conf", "proxy_read_timeout 1s;\n"))
    return files


def test_nginx_stitch_is_bounded_for_loops_and_diamonds() -> None:
    loop = [("/c/main.conf", "include /c/main.conf;\ninclude /c/main.conf;\nworker_processes 1;\n")]
    tree = nginx_reader.stitch(nginx_reader.parse_files(loop), "/c/main.conf")
    assert [n.name for n in tree] == ["worker_processes"]
    parsed = nginx_reader.parse_files(_chain(16, 3))  # 3**16 = 43 million copies

    def run() -> None:
        with pytest.raises(ConfigReadError, match="more than 200000 directives"):
            nginx_reader.stitch(parsed, "/c/f0.conf")

    _bound(20, run)


def test_apache_expand_is_bounded_for_loops_and_diamonds() -> None:
    loop = [("/a/httpd.conf", "Include /a/httpd.conf\nInclude /a/httpd.conf\nTimeout 5\n")]
    facts = apache_reader.facts_from_files(loop, RouteQuery())
    assert facts.proxy is ProxyKind.APACHE
    chain = [(p, t.replace("include ", "Include ").replace(";", "")
              .replace("proxy_read_timeout", "Timeout").replace("s\n", "\n"))
             for p, t in _chain(16, 3)]

    def run() -> None:
        with pytest.raises(ConfigReadError, match="more than 200000 directives"):
            apache_reader.facts_from_files(chain, RouteQuery())

    _bound(20, run)


HALF_MB = 512 * 1024
ADVERSARIAL = {
    "word-before-listen": "require('http-proxy');\n" + "a" * HALF_MB + " x",
    "blank-run": "require('http-proxy');\n" + " " * HALF_MB + "x",
    "listens": "require('http-proxy');\n" + "a.listen(1);" * (HALF_MB // 12),
    "open-listens": "require('http-proxy');\n" + ".listen(" * (HALF_MB // 8),
    "starts-with": "require('http-proxy');\n" + ".startsWith(" * (HALF_MB // 12),
    "regex-test": "require('http-proxy');\n" + ".test(/^a" * (HALF_MB // 9),
    "backend-name": "require('http-proxy');\nconst " + "BACKEND" * (HALF_MB // 7) + " = 1;",
    "const-loop": "require('http-proxy');\nconst A = B;\nconst B = A;\n"
                  "createProxyServer({ proxyTimeout: A });\nserver.listen(A);\n",
    "blank-lines": "require('http-proxy');\n" + "\n" * HALF_MB,
    "continuations": "require('http-proxy');\n" + "\\\n" * (HALF_MB // 2),
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_readers_are_linear_on_half_a_megabyte(name: str) -> None:
    """0.5 MB took > 300 s in the node reader (`(\\w*)\\s*\\.listen\\(`); now well under a
    second. The bound is generous (slow CI), the old behaviour is far beyond it."""
    text = ADVERSARIAL[name]

    def every_reader() -> None:
        with contextlib.suppress(ConfigReadError):
            node.facts_from_script(text, RouteQuery(), file="/p.js")
        apache_reader.facts_from_files([("/a.conf", text)], RouteQuery())
        nginx_reader._INCLUDE.findall(text)
        apache_reader.parse_dump_includes(text)
        apache_reader.parse_modules(text)

    _bound(5, every_reader)


# --------------------------------------------------------------------------- live trees


SPARSE = 64 * 1024 ** 3


def _hosts(canary: Path) -> dict[str, str]:
    """Backend hosts that run a command if any shell ever sees them: no spaces (config syntax
    splits words there; $IFS is the shell's own space) and no slash (URL parsing ends the
    host there), so the canary is created in the shell's working directory."""
    name = canary.name
    return {"sub": f"$(touch$IFS{name}-sub)", "tick": f"`touch$IFS{name}-tick`",
            "semi": f"a;touch$IFS{name}-semi;"}


def _canaries(world: Path, name: str) -> list[Path]:
    """Where a command run by the SSH user, root or the child itself would have left one."""
    import pwd

    homes = {Path(pwd.getpwnam(u).pw_dir) for u in (rig.DEPLOY_USER, "root")}
    return [p for d in (world, ROOT, *homes) for p in d.glob(f"{name}*")]


def _devices(d: Path) -> None:
    os.symlink("/dev/zero", d / "zero.conf")
    with open(d / "sparse.conf", "wb") as handle:
        handle.truncate(SPARSE)
    os.mkfifo(d / "fifo.conf")


def _nginx_tree(d: Path, canary: Path, port: int) -> Path:
    h = _hosts(canary)
    _devices(d)
    (d / "loop.conf").write_text(f"include {d}/loop.conf;\ninclude {d}/loop.conf;\n")
    main = d / "nginx.conf"
    main.write_text(
        f"events {{}}\nhttp {{\n    include {d}/loop.conf;\n    include {d}/zero.conf;\n"
        f"    include {d}/sparse.conf;\n    include {d}/fifo.conf;\n"
        f"    upstream pool {{ server {h['sub']}:80; server {h['tick']}:80; "
        f"server 127.0.0.1:1; }}\n"
        f"    server {{\n        listen {port};\n"
        f"        location /socket.io/ {{ proxy_pass http://pool; }}\n"
        f"        location /x/ {{ proxy_pass http://{h['sub']}:3000; }}\n"
        f"        location /y/ {{ proxy_pass http://{h['tick']}:3000; }}\n    }}\n}}\n")
    return main


def _apache_tree(d: Path, canary: Path, port: int) -> Path:
    h = _hosts(canary)
    _devices(d)
    (d / "loop.conf").write_text(f"Include {d}/loop.conf\nInclude {d}/loop.conf\n")
    main = d / "httpd.conf"
    main.write_text(
        f"ServerRoot {d}\nListen {port}\nInclude {d}/loop.conf\nInclude {d}/zero.conf\n"
        f"Include {d}/sparse.conf\nInclude {d}/fifo.conf\n"
        f"<VirtualHost *:{port}>\n"
        f"    ProxyPass /socket.io/ balancer://pool/socket.io/\n"
        f"    ProxyPass /x/ http://{h['sub']}:3000/\n"
        f"    ProxyPass /y/ \"http://{h['semi']}:3000/\"\n"
        f"    <Proxy balancer://pool>\n"
        f"        BalancerMember http://{h['tick']}:3000\n"
        f"        BalancerMember \"http://{h['semi']}:3000\"\n"
        f"        BalancerMember http://{h['sub']}:3000\n"
        f"        BalancerMember http://127.0.0.1:1\n    </Proxy>\n</VirtualHost>\n")
    return main


def _caddy_tree(d: Path, canary: Path, port: int) -> Path:
    h = _hosts(canary)
    main = d / "Caddyfile"
    main.write_text(f":{port} {{\n    reverse_proxy /socket.io/* {h['sub']}:3000 "
                    f"{h['tick']}:3000 127.0.0.1:1\n}}\n")
    return main


def _caddy_devices(d: Path, canary: Path, port: int) -> Path:
    _devices(d)
    (d / "loop.caddy").write_text(f"import {d}/loop.caddy\n")
    main = d / "Caddyfile"
    main.write_text(f"import {d}/loop.caddy\nimport {d}/zero.conf\nimport {d}/sparse.conf\n"
                    f"import {d}/fifo.conf\n:{port} {{\n    reverse_proxy 127.0.0.1:1\n}}\n")
    return main


def _node_script(d: Path, canary: Path, port: int) -> Path:
    h = _hosts(canary)
    script = d / "proxy.js"
    script.write_text(
        "const httpProxy = require('http-proxy');\n"
        f"const BACKENDS = ['http://{h['sub']}:3000', 'http://{h['tick']}:3000',\n"
        f"                  \"http://{h['semi']}:3000\", 'http://127.0.0.1:1'];\n"
        f"const proxy = httpProxy.createProxyServer({{ target: 'http://{h['sub']}:3000', "
        "ws: true });\nproxy.on('error', () => {});\n"
        f"proxy.listen({port});\n")
    return script


def _node_big(d: Path, canary: Path, port: int) -> Path:
    script = d / "big.js"
    with open(script, "w") as handle:
        handle.write("require('http-proxy');\n")
        handle.write(("a" * 1023 + "\n") * (50 * 1024))  # 50 MB
    return script


def _node_fifo(d: Path, canary: Path, port: int) -> Path:
    os.mkfifo(d / "fifo.js")
    return d / "fifo.js"


TREES = {
    "nginx": (ProxyKind.NGINX, _nginx_tree),
    "apache": (ProxyKind.APACHE, _apache_tree),
    "caddy-hosts": (ProxyKind.CADDY, _caddy_tree),
    "caddy-devices": (ProxyKind.CADDY, _caddy_devices),
    "node-hosts": (ProxyKind.NODE, _node_script),
    "node-50mb": (ProxyKind.NODE, _node_big),
    "node-fifo": (ProxyKind.NODE, _node_fifo),
}


HOSTILE_BACKENDS = ("nginx", "apache", "caddy-hosts", "node-hosts")


@pytest.fixture
def world() -> Iterator[Path]:
    d = rig.make_world_dir("sockwizard-hostile-")
    d.chmod(0o777)  # the canary must be creatable by the SSH user, had anything run
    yield d
    subprocess.run(["rm", "-rf", "--", str(d)], check=False)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("via", ["ssh", "local"])
@pytest.mark.parametrize("tree", sorted(TREES))
def test_hostile_config_tree(tree: str, via: str, world: Path,
                             request: pytest.FixtureRequest) -> None:
    kind, build = TREES[tree]
    canary = world / f"sockwizard-canary-{os.urandom(4).hex()}"
    port = _free_port()
    config = build(world, canary, port)
    argv = [sys.executable, "-m", "wizard", "diagnose", f"http://127.0.0.1:{port}",
            "--proxy", kind.value, "--config", str(config), "--json", "--timeout", "2"]
    if via == "ssh":
        sshd: rig.SshdInstance = request.getfixturevalue("sshd")
        argv += ["--host", f"{rig.DEPLOY_USER}@{sshd.host}:{sshd.port}",
                 "--identity", str(sshd.client_key(rig.DEPLOY_USER)),
                 "--known-hosts", str(sshd.known_hosts)]
    else:
        if os.geteuid() != 0:
            pytest.skip("--host local is the root case of the issue")
        argv += ["--host", "local"]
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=DEADLINE + SLACK + 60,
                          cwd=world, preexec_fn=_limit_memory,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    elapsed = time.monotonic() - started
    assert not _canaries(world, canary.name), "a config value ran as a command"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode in (0, 1), proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    codes = [f["code"] for f in report["findings"]]
    assert "proxy-unreachable" in codes, codes  # the probe's findings are kept
    assert elapsed < DEADLINE + SLACK, f"{elapsed:.1f} s"
    if tree in ("caddy-devices", "node-50mb", "node-fifo"):
        assert "config-unreadable" in codes, codes
    if tree in HOSTILE_BACKENDS:  # the backend check ran, and refused the hostile hosts
        checks = report["config"]["backend_checks"]
        assert any(c["checked"] for c in checks), checks
        refused = [c for c in checks if "touch" in c["address"]]
        assert refused and not any(c["checked"] for c in refused), checks
        assert any("not checked" in note for note in report["notes"]), report["notes"]
