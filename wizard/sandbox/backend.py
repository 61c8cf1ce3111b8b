"""The sandbox's demo Socket.IO server (python-socketio on aiohttp): "hello", then "echo" acked.

Each one answers with its own id (``--id backend-2``): in ``hello`` and in every ``echo``
acknowledgement, so a client (and a test) sees which backend the proxy sent it to.

Run by ``wizard.sandbox.run.start_sandbox`` as its own process, ``python -m wizard.sandbox
backend --port P --path /socket.io/`` (``wizard.sandbox.__main__``), like the test rig's Node
server. socketio and aiohttp are imported only when it serves, so importing the sandbox
(the CLI, the TUI) does not pay for them.
"""

from __future__ import annotations

import signal

from wizard.sandbox.procs import LOOPBACK


def serve_backend(port: int, path: str, ping_interval_ms: int, ping_timeout_ms: int,
                  ident: str = "sandbox") -> None:
    """A Socket.IO server on python-socketio + aiohttp: "hello" on connect, "echo" acked."""
    import asyncio

    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*",
                               ping_interval=ping_interval_ms / 1000,
                               ping_timeout=ping_timeout_ms / 1000)
    app = web.Application()
    sio.attach(app, socketio_path=path.strip("/"))

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, object]) -> None:
        await sio.emit("hello", {"id": ident}, to=sid)

    @sio.event  # type: ignore[untyped-decorator]
    async def echo(sid: str, data: object) -> object:
        if isinstance(data, dict):
            return {**data, "server": ident}
        return {"data": data, "server": ident}

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, LOOPBACK, port).start()
        print(f"READY {port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


def backend_main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m wizard.sandbox backend")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/socket.io/")
    p.add_argument("--ping-interval", type=int, default=25000)
    p.add_argument("--ping-timeout", type=int, default=20000)
    p.add_argument("--id", default="sandbox", help="the name it answers with")
    args = p.parse_args(argv)
    serve_backend(args.port, args.path, args.ping_interval, args.ping_timeout, args.id)
    return 0
