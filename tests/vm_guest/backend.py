"""The Socket.IO backend inside the test VM (Debian's python3-socketio + python3-aiohttp).

Run by sockwizard-backend.service on 127.0.0.1:3000, as the suite's Node server does on the
host: on connect it emits "hello" {id}; "echo" with an ack answers the data plus {server: id}.
Baked into the image by scripts/vm-image; tests/vm.py stops/starts the unit to kill it.
"""

import socketio
from aiohttp import web

SERVER_ID = "vm-backend"

sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")
app = web.Application()
sio.attach(app)


@sio.event
async def connect(sid, environ, auth=None):
    await sio.emit("hello", {"id": SERVER_ID}, to=sid)


@sio.event
async def echo(sid, data):
    reply = dict(data) if isinstance(data, dict) else {"data": data}
    reply["server"] = SERVER_ID
    return reply


async def index(request):
    return web.Response(text=f"backend {SERVER_ID}\n")


app.router.add_get("/", index)

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=3000, print=None)
