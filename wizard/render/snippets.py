"""The server and client ``path`` settings that must match the proxy's route.

Shown by ``render --snippets`` and by the TUI's path step and preview (through
``wizard.render``), so the three places that must agree on the path (proxy, server, client)
are visible together.
"""

from __future__ import annotations

from dataclasses import dataclass

from wizard.model import DEFAULT_PING_INTERVAL_MS, DEFAULT_PING_TIMEOUT_MS, DeploySpec


@dataclass(frozen=True)
class Snippet:
    title: str
    language: str  # javascript | python
    code: str


def path_snippets(spec: DeploySpec) -> list[Snippet]:
    """Server and client settings (JS and Python) for the spec's path and ping settings."""
    server_path = spec.effective_server_path
    client_path = spec.path
    custom_ping = (spec.ping_interval_ms, spec.ping_timeout_ms) != (
        DEFAULT_PING_INTERVAL_MS, DEFAULT_PING_TIMEOUT_MS)
    js_opts = [f'  path: "{server_path}",']
    py_server_args = 'async_mode="asgi"'
    if custom_ping:
        js_opts += [f"  pingInterval: {spec.ping_interval_ms},",
                    f"  pingTimeout: {spec.ping_timeout_ms},"]
        # python-socketio takes the ping settings in seconds, the Node server in milliseconds.
        py_server_args += (f", ping_interval={spec.ping_interval_ms / 1000:g}"
                           f", ping_timeout={spec.ping_timeout_ms / 1000:g}")
    return [
        Snippet("Server (Node.js, socket.io)", "javascript",
                'import { Server } from "socket.io";\n\nconst io = new Server({\n'
                + "\n".join(js_opts) + "\n});\n"),
        Snippet("Client (browser / Node.js, socket.io-client)", "javascript",
                'import { io } from "socket.io-client";\n\nconst socket = io({\n'
                f'  path: "{client_path}",\n}});\n'),
        Snippet("Server (Python, python-socketio)", "python",
                f"import socketio\n\nsio = socketio.AsyncServer({py_server_args})\n"
                f'app = socketio.ASGIApp(sio, socketio_path="{server_path.strip("/")}")\n'),
        Snippet("Client (Python, python-socketio)", "python",
                "import socketio\n\nsio = socketio.Client()\n"
                f'sio.connect("https://example.com", socketio_path="{client_path.strip("/")}")\n'),
    ]


def format_snippets(spec: DeploySpec) -> str:
    """Plain-text block of all snippets, each with a comment header."""
    parts = []
    for s in path_snippets(spec):
        mark = "//" if s.language == "javascript" else "#"
        parts.append(f"{mark} {s.title}\n{s.code}")
    return "\n".join(parts)
