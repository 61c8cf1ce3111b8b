"""Smoke tests of the shared rig (tests/rig.py): every daemon the other tests lean on really
starts, really speaks its protocol, really reloads, and really goes away again."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest
import websocket

from tests import rig

pytestmark = pytest.mark.slow

Backend = Callable[..., rig.NodeBackend]


def _open_packet(body: str) -> dict[str, object]:
    assert body.startswith("0{"), body
    data = json.loads(body[1:])
    assert isinstance(data, dict)
    return data


def _gone(pid: int) -> bool:
    fields = rig._proc_stat(pid)
    return fields is None or fields[0] == "Z"


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def test_free_port_is_bindable_and_not_repeated() -> None:
    ports = {rig.free_port() for _ in range(20)}
    assert len(ports) == 20
    for port in list(ports)[:3]:
        with socket.socket() as s:
            s.bind((rig.LOOPBACK, port))


def test_wait_for_stops_early_when_the_process_died() -> None:
    with pytest.raises(rig.RigError, match="it died"):
        rig.wait_for("never", lambda: None, timeout=30, alive=lambda: "it died")


def test_nginx_localize_moves_pid_and_temp_paths(tmp_path: Path) -> None:
    text = "pid /run/nginx.pid;\nevents {}\nhttp {\n    server { listen 1; }\n}\n"
    out = rig.nginx_localize(text, tmp_path)
    assert "/run/nginx.pid" not in out
    assert f"pid {tmp_path / 'nginx.pid'};" in out
    for name in rig.NGINX_TEMP_DIRS:
        assert f"{name}_temp_path {tmp_path / 'temp' / name};" in out


# ---------------------------------------------------------------------------------------------
# node backends and plain servers
# ---------------------------------------------------------------------------------------------


def test_node_backend_answers_engineio_v4_handshake(node_backend: Backend) -> None:
    backend = node_backend(path="/custom/", ping_interval=1500, ping_timeout=1200, server_id="x")
    status, body = rig.engineio_handshake(backend.url, "/custom/")
    assert status == 200
    packet = _open_packet(body)
    assert packet["pingInterval"] == 1500
    assert packet["pingTimeout"] == 1200
    assert packet["upgrades"] == ["websocket"]
    # The default path is not served when another one is configured.
    assert rig.engineio_handshake(backend.url, "/socket.io/")[0] == 404
    # An EIO=3 client is refused by a 4.x server unless allow_eio3.
    status, body = rig.engineio_handshake(backend.url, "/custom/", eio=3)
    assert (status, json.loads(body)["code"]) == (400, 5)


def test_node_backend_socketio_round_trip_over_websocket(node_backend: Backend) -> None:
    backend = node_backend(server_id="alpha")
    trip = rig.socketio_roundtrip(backend.url, transports=["websocket"], payload={"n": 7})
    assert trip.transport == "websocket"
    assert trip.hello == {"id": "alpha"}
    assert trip.ack == {"n": 7, "server": "alpha"}
    sid, reason = backend.wait_event("DISCONNECT")
    assert ("CONNECT", sid, "websocket") in backend.events("CONNECT")
    assert reason in ("client_namespace_disconnect", "transport_close")
    assert rig.http_get(backend.url, "/__id") == (200, "alpha")


def test_v2_backend_speaks_eio3(node_backend: Backend) -> None:
    backend = node_backend(version=2, server_id="old")
    status, body = rig.engineio_handshake(backend.url, eio=3)
    assert status == 200
    # EIO=3 polling framing: "<length>:<packet>", the open packet then the namespace connect.
    length, rest = body.split(":", 1)
    open_packet = rest[: int(length)]
    assert open_packet.startswith('0{"sid"'), body
    assert rest[int(length) :] == "2:40"


def test_plain_servers(plain_server: Callable[..., rig.PlainServer]) -> None:
    http = plain_server("http", status=503, body="nope")
    assert rig.http_get(http.url, "/socket.io/?EIO=4&transport=polling") == (503, "nope")

    ws_server = plain_server("ws")
    assert rig.http_get(ws_server.url)[0] == 426
    conn = websocket.create_connection(f"ws://127.0.0.1:{ws_server.port}/anything", timeout=5)
    try:
        conn.send("2probe")
        assert conn.recv() == "2probe"
    finally:
        conn.close()

    silent = plain_server("silent")
    with pytest.raises(TimeoutError):
        rig.http_get(silent.url, timeout=0.3)

    closing = plain_server("close")
    # http.client.RemoteDisconnected or a reset: both are ConnectionErrors.
    with pytest.raises(ConnectionError):
        rig.http_get(closing.url, timeout=2)


def test_backend_stop_leaves_no_process(node_backend: Backend) -> None:
    backend = node_backend()
    pid = backend.pid
    backend.stop()
    assert _gone(pid)
    assert not rig.port_open(backend.port)


# ---------------------------------------------------------------------------------------------
# proxies
# ---------------------------------------------------------------------------------------------


@pytest.fixture(params=rig.PROXY_KINDS)
def kind(request: pytest.FixtureRequest) -> rig.ProxyKind:
    return request.param  # type: ignore[no-any-return]


def _wait_backend(url: str, expected: str, timeout: float = 10.0) -> rig.RoundTrip:
    # After a reload an old worker may answer once more (TESTBED.md): poll for the new marker.
    def probe() -> rig.RoundTrip | None:
        trip = rig.socketio_roundtrip(url, transports=["websocket"], timeout=3)
        return trip if trip.ack.get("server") == expected else None

    return rig.wait_for(f"backend {expected!r} behind {url}", probe, timeout=timeout)


def test_proxy_proxies_websocket_and_reloads(
    kind: rig.ProxyKind, node_backend: Backend, proxy_factory: rig.ProxyFactory
) -> None:
    a = node_backend(server_id="a")
    b = node_backend(server_id="b")
    port = rig.free_port()
    inst = proxy_factory.from_site(kind, rig.minimal_site(kind, port, a.address), port=port)
    assert inst.site_path.is_file()
    assert inst.site_path.parent == inst.deploy_dir
    inst.start()
    assert inst.startup_seconds is not None

    status, body = rig.engineio_handshake(inst.url)
    assert status == 200, inst.log_text()
    assert _open_packet(body)["pingInterval"] == 25000
    trip = rig.socketio_roundtrip(inst.url, transports=["websocket"])
    assert (trip.transport, trip.ack["server"]) == ("websocket", "a"), inst.log_text()

    # The rig's own reload: new site text -> checked -> reloaded -> backend b answers.
    inst.reload(rig.minimal_site(kind, port, b.address))
    _wait_backend(inst.url, "b")

    # The shell commands a remote deploy runs: validate in place, then reload.
    inst.site_path.write_text(rig.minimal_site(kind, port, a.address))
    subprocess.run(["sh", "-c", inst.validate_cmd], check=True, capture_output=True, timeout=30)
    subprocess.run(["sh", "-c", inst.reload_cmd], check=True, capture_output=True, timeout=30)
    _wait_backend(inst.url, "a")

    pid = inst.pid
    workers = rig.children_of(pid)
    inst.stop()
    assert _gone(pid)
    assert all(_gone(w) for w in workers)
    assert not rig.port_open(port)


BROKEN_SITE = {
    "nginx": "server { listen 127.0.0.1:1; proxy_pass_nonsense on; }\n",
    "apache": "<VirtualHost *:1>\n    ProxyPassNonsense on\n</VirtualHost>\n",
    "caddy": "http://127.0.0.1:1 {\n\tno_such_directive\n}\n",
    "node": "const x = ;\n",
    "haproxy": "frontend f\n    bind 127.0.0.1:1\n    no_such_keyword on\n",
}


def test_proxy_check_uses_the_real_checker(
    kind: rig.ProxyKind, proxy_factory: rig.ProxyFactory
) -> None:
    port = rig.free_port()
    good = rig.minimal_site(kind, port, "127.0.0.1:9")
    inst = proxy_factory.from_site(kind, good, port=port)
    ok, out = inst.check()
    assert ok, out
    ok, out = inst.check(BROKEN_SITE[kind])
    assert not ok
    assert out  # the checker said why
    # A scratch check leaves the instance's own files alone.
    assert inst.site_path.read_text() == good
    # A bad config is refused by reload before the daemon sees it.
    inst.start()
    with pytest.raises(rig.RigError, match="does not validate"):
        inst.reload(BROKEN_SITE[kind])
    assert inst.running(), inst.log_text()


def test_create_from_full_config(node_backend: Backend, proxy_factory: rig.ProxyFactory) -> None:
    backend = node_backend(server_id="full")
    nginx_port, caddy_port = rig.free_port(), rig.free_port()
    nginx_conf = f"""pid /run/nginx.pid;
error_log @PREFIX@/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{nginx_port};
        location /socket.io/ {{
            proxy_pass http://{backend.address};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
        }}
    }}
}}
"""
    caddyfile = (
        f"http://127.0.0.1:{caddy_port} {{\n\tbind 127.0.0.1\n"
        f"\treverse_proxy {backend.address}\n}}\n"
    )
    for inst in (
        proxy_factory.create("nginx", nginx_conf),
        proxy_factory.create("caddy", caddyfile),
    ):
        assert inst.site_path == inst.config_path
        inst.start()
        trip = rig.socketio_roundtrip(inst.url, transports=["websocket"])
        assert trip.ack["server"] == "full", inst.log_text()
    assert (proxy_factory.instances[0].prefix / "error.log").is_file()


# ---------------------------------------------------------------------------------------------
# sshd
# ---------------------------------------------------------------------------------------------


def _ssh(sshd: rig.SshdInstance, user: str, known_hosts: Path | None = None) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.load_host_keys(str(known_hosts or sshd.known_hosts))
    sock = socket.create_connection((sshd.host, sshd.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.connect(
        sshd.host,
        port=sshd.port,
        username=user,
        key_filename=str(sshd.client_key(user)),
        sock=sock,
        look_for_keys=False,
        allow_agent=False,
        timeout=5,
    )
    return client


def _exec(client: paramiko.SSHClient, command: str, stdin: str = "") -> tuple[int, str, str]:
    chan_in, out, err = client.exec_command(command, timeout=20)
    if stdin:
        chan_in.write(stdin)
        chan_in.channel.shutdown_write()
    code = out.channel.recv_exit_status()
    return code, out.read().decode(), err.read().decode()


@pytest.fixture
def ssh_client(sshd: rig.SshdInstance) -> Iterator[Callable[..., paramiko.SSHClient]]:
    clients: list[paramiko.SSHClient] = []

    def make(user: str, known_hosts: Path | None = None) -> paramiko.SSHClient:
        client = _ssh(sshd, user, known_hosts)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.mark.needs_root
def test_sshd_key_auth_with_checked_host_key(
    sshd: rig.SshdInstance, ssh_client: Callable[..., paramiko.SSHClient]
) -> None:
    assert sshd.host_key_fingerprint.startswith("SHA256:")
    assert sshd.known_hosts.read_text().startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")
    for user in ("root", rig.DEPLOY_USER, rig.NOSUDO_USER):
        client = ssh_client(user)
        key = client.get_transport().get_remote_server_key()  # type: ignore[union-attr]
        assert key.fingerprint == sshd.host_key_fingerprint
        code, out, _ = _exec(client, "id -un")
        assert (code, out.strip()) == (0, user)


@pytest.mark.needs_root
def test_sshd_rejects_a_changed_host_key(sshd: rig.SshdInstance) -> None:
    with pytest.raises(paramiko.BadHostKeyException):
        _ssh(sshd, rig.DEPLOY_USER, sshd.other_known_hosts)
    empty = sshd.dir / "known_hosts.empty"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        _ssh(sshd, rig.DEPLOY_USER, empty)


@pytest.mark.needs_root
def test_sudo_rights_of_the_test_users(
    sshd: rig.SshdInstance, ssh_client: Callable[..., paramiko.SSHClient]
) -> None:
    code, _, _ = _exec(ssh_client(rig.DEPLOY_USER), "sudo -n true")
    assert code == 0
    nosudo = ssh_client(rig.NOSUDO_USER)
    code, _, err = _exec(nosudo, "sudo -n true")
    assert code != 0
    assert "password is required" in err
    code, out, _ = _exec(nosudo, "sudo -S -p '' id -u", stdin=sshd.password(rig.NOSUDO_USER) + "\n")
    assert (code, out.strip()) == (0, "0")


@pytest.mark.needs_root
def test_kill_session_children_cuts_a_live_session(
    sshd: rig.SshdInstance, ssh_client: Callable[..., paramiko.SSHClient]
) -> None:
    client = ssh_client(rig.DEPLOY_USER)
    assert _exec(client, "true")[0] == 0
    transport = client.get_transport()
    assert transport is not None
    killed = sshd.kill_session_children()
    assert killed
    rig.wait_for("the SSH transport to notice the cut", lambda: not transport.is_active(),
                  timeout=10)
    with pytest.raises((paramiko.SSHException, EOFError, OSError)):
        _exec(client, "true")
    # The listener itself survives: a new connection works.
    assert _exec(ssh_client(rig.DEPLOY_USER), "true")[0] == 0


@pytest.mark.needs_root
def test_deploy_through_sshd_into_a_proxy_instance(
    kind: rig.ProxyKind,
    sshd: rig.SshdInstance,
    ssh_client: Callable[..., paramiko.SSHClient],
    node_backend: Backend,
    proxy_factory: rig.ProxyFactory,
) -> None:
    """The chain the deploy tests use: SFTP into deploy_dir as swdeploy, rename over the site,
    `sudo validate_cmd`, `sudo reload_cmd`, and the proxy serves the new config."""
    a = node_backend(server_id="a")
    b = node_backend(server_id="b")
    port = rig.free_port()
    inst = proxy_factory.from_site(kind, rig.minimal_site(kind, port, a.address), port=port)
    inst.allow_user(rig.DEPLOY_USER)
    inst.start()
    client = ssh_client(rig.DEPLOY_USER)
    sftp = client.open_sftp()
    tmp = f"{inst.deploy_dir}/.{inst.site_name}.upload"
    with sftp.open(tmp, "w") as fh:
        fh.write(rig.minimal_site(kind, port, b.address))
    sftp.posix_rename(tmp, str(inst.site_path))
    sftp.close()
    code, out, err = _exec(client, f"sudo -n {inst.validate_cmd}")
    assert code == 0, out + err
    code, out, err = _exec(client, f"sudo -n {inst.reload_cmd}")
    assert code == 0, out + err
    _wait_backend(inst.url, "b")


def test_minimal_sites_are_distinct_per_kind() -> None:
    texts = {k: rig.minimal_site(k, 1234, "127.0.0.1:5678") for k in rig.PROXY_KINDS}
    assert len(set(texts.values())) == len(rig.PROXY_KINDS)
    for kind, text in texts.items():
        assert rig.detect_port(kind, text) == 1234


def test_startup_times_are_recorded(node_backend: Backend) -> None:
    t0 = time.monotonic()
    backend = node_backend()
    assert 0 < backend.startup_seconds <= time.monotonic() - t0
