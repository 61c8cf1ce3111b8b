#!/usr/bin/python3
# WANT_JSON
"""sockwizard_probe: an Ansible module (stdlib only) that proves Socket.IO works through the
proxy just reloaded, the way ``sockwizard deploy`` does after its reload.

Shipped by ``sockwizard export ansible`` in the role's ``library/`` and run by its tasks on
each host (WANT_JSON: Ansible passes the arguments as a JSON file, no ansible import). Steps:
read the config id (``X-Sockwizard-Config``) from the deployed file; poll an Engine.IO
polling handshake until the proxy answers with that id (old workers still serve the old
config for a moment after a reload); upgrade that session to a WebSocket (``2probe`` /
``3probe`` / ``5``); Socket.IO CONNECT (``40``). Every read has a deadline and a size cap.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
import sys
import time
import urllib.parse
from typing import Any

HEADER = "x-sockwizard-config"
MAX_RESPONSE = 1 << 16
_ID_RE = re.compile(r"X-Sockwizard-Config[\"']?[ ,:]*[\"']?([0-9a-f]{12})")


class ProbeError(Exception):
    pass


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def _read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ProbeError("the proxy closed the connection before the response headers")
        data += chunk
        if len(data) > MAX_RESPONSE:
            raise ProbeError("response headers larger than 64 KiB")
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ProbeError(f"not an HTTP response: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(parts[1]), headers, rest


def _request(host: str, port: int, target: str, hosthdr: str, timeout: float,
             extra: str = "") -> tuple[socket.socket, int, dict[str, str], bytes]:
    sock = _connect(host, port, timeout)
    sock.sendall((f"GET {target} HTTP/1.1\r\nHost: {hosthdr}\r\n{extra}"
                  "User-Agent: sockwizard-ansible-probe\r\n\r\n").encode())
    status, headers, rest = _read_head(sock)
    return sock, status, headers, rest


def _body(sock: socket.socket, headers: dict[str, str], rest: bytes) -> bytes:
    length = int(headers.get("content-length", "-1") or -1)
    data = rest
    while (length < 0 or len(data) < length) and len(data) <= MAX_RESPONSE:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data[:length] if length >= 0 else data


def handshake(host: str, port: int, path: str, hosthdr: str, want: str | None,
              timeout: float, settle: float) -> str:
    """The polling handshake, retried until the answer carries ``want``; returns the sid."""
    deadline = time.monotonic() + settle
    seen = None
    while True:
        try:
            sock, status, headers, rest = _request(
                host, port, f"{path}?EIO=4&transport=polling&t={time.time_ns()}", hosthdr,
                timeout, "Connection: close\r\n")
            with sock:
                body = _body(sock, headers, rest)
            seen = headers.get(HEADER)
            if status == 200 and (want is None or seen == want):
                text = body.decode("utf-8", "replace")
                if not text.startswith("0{"):
                    raise ProbeError(f"not an Engine.IO open packet: {text[:80]!r}")
                info = json.loads(text[1:])
                if "websocket" not in info.get("upgrades", []):
                    raise ProbeError("the server does not offer the WebSocket upgrade")
                return str(info["sid"])
            last = f"HTTP {status}, config id {seen or 'none'} (want {want})"
        except (OSError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise ProbeError(f"the new config never answered the handshake: {last}")
        time.sleep(0.1)


def _send(sock: socket.socket, text: str) -> None:
    payload = text.encode()
    mask = os.urandom(4)
    head = bytes([0x81])
    n = len(payload)
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
    sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def _recv(sock: socket.socket, buf: bytearray) -> str:
    def need(n: int) -> bytes:
        while len(buf) < n:
            chunk = sock.recv(4096)
            if not chunk:
                raise ProbeError("the WebSocket closed")
            buf.extend(chunk)
            if len(buf) > MAX_RESPONSE:
                raise ProbeError("WebSocket frame larger than 64 KiB")
        out = bytes(buf[:n])
        del buf[:n]
        return out

    first, second = need(2)
    n = second & 0x7F
    if n == 126:
        n = struct.unpack(">H", need(2))[0]
    elif n == 127:
        raise ProbeError("WebSocket frame too large")
    payload = need(n)
    if first & 0x0F == 8:
        raise ProbeError("the server closed the WebSocket")
    return payload.decode("utf-8", "replace")


def upgrade(host: str, port: int, path: str, hosthdr: str, sid: str, timeout: float) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    sock, status, _headers, rest = _request(
        host, port, f"{path}?EIO=4&transport=websocket&sid={urllib.parse.quote(sid)}",
        hosthdr, timeout, "Connection: Upgrade\r\nUpgrade: websocket\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    with sock:
        if status != 101:
            raise ProbeError(f"the WebSocket upgrade got HTTP {status}, not 101 (does the "
                             "proxy forward Upgrade/Connection?)")
        buf = bytearray(rest)
        _send(sock, "2probe")
        if _recv(sock, buf) != "3probe":
            raise ProbeError("no 3probe answer on the WebSocket")
        _send(sock, "5")
        _send(sock, "40")
        for _ in range(10):
            packet = _recv(sock, buf)
            if packet.startswith("40"):
                return
            if packet.startswith("44"):
                raise ProbeError(f"Socket.IO refused the connection: {packet[:120]}")
        raise ProbeError("no Socket.IO CONNECT answer")


def run(args: dict[str, Any]) -> dict[str, Any]:
    url = urllib.parse.urlsplit(str(args["url"]))
    if url.scheme != "http" or not url.hostname:
        raise ProbeError(f"url must be http://HOST[:PORT], not {args['url']!r}")
    port = url.port or 80
    path = str(args.get("path") or "/socket.io/")
    if not re.fullmatch(r"/[A-Za-z0-9._~/-]*", path):
        raise ProbeError(f"path {path!r} is not a plain URL path")
    timeout = float(args.get("timeout") or 5)
    want = None
    dest = args.get("dest")
    if dest:
        with open(str(dest), encoding="utf-8", errors="replace") as fh:
            m = _ID_RE.search(fh.read(1 << 20))
        want = m.group(1) if m else None
    hosthdr = url.netloc.rpartition("@")[2]
    sid = handshake(url.hostname, port, path, hosthdr, want, timeout,
                    float(args.get("settle_timeout") or 20))
    upgrade(url.hostname, port, path, hosthdr, sid, timeout)
    return {"changed": False, "config_id": want, "transport": "websocket",
            "msg": f"Socket.IO over WebSocket through {url.geturl()} (config {want})"}


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as fh:
        args = json.load(fh)
    try:
        result = run(args)
    except (ProbeError, OSError, ValueError, KeyError) as exc:
        result = {"failed": True, "changed": False, "msg": f"Socket.IO probe failed: {exc}"}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
