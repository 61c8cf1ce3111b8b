"""The probe's stage 4, the Socket.IO connect: python-socketio in a bounded child, or a raw CONNECT.

``wizard.probe.run`` calls ``sio_probe_bounded`` for the ``socketio`` (+ ``emit``) stage, because
"does the client a user runs get WebSocket" is the question and only the real client answers
it; with ``raw_connect`` (the deploy's post-reload probe: the same proof without ~200 ms of
imports) it calls ``raw_connect`` on the WebSocket stage 3 opened instead. ``sio_probe`` is the
one boundary where python-socketio's exceptions (ConnectionError, TimeoutError, and whatever
requests/websocket-client raise underneath) become text in the report.

python-socketio (websocket-client, requests underneath) has neither a frame-size cap nor an
absolute deadline: a server announcing a 2^62-byte frame grew a probe to 23.7 GB, and a
handshake dripping a byte every 0.5 s never times out. Neither can be configured, so the
client runs in a child process (``sio_child``) with an address-space cap (RLIMIT_AS) and is
killed at a hard deadline (``sio_budget``); the parent never imports socketio at all.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wizard.probe.wire import (
    MAX_MESSAGE,
    OP_CLOSE,
    SID_RE,
    WebSocket,
    WireError,
    check_connect_data,
    connect_answer_sid,
    remaining,
)

SIO_CHILD_MEMORY = 1 << 30
SIO_CHILD_STARTUP_S = 1.5  # interpreter + socketio imports (~0.3 s here), with slack
MAX_REPLY_JSON = 64 * 1024  # an --emit reply larger than this is summarised, not carried


@dataclass(frozen=True)
class SioOutcome:
    """What python-socketio's own ``Client`` did: the transport it settled on, the round trip."""

    transport: str | None
    sid: str | None
    error: str | None
    connect_ms: float
    emit_reply: Any = None
    emit_error: str | None = None
    emit_ms: float = 0.0


@dataclass(frozen=True)
class SioRequest:
    """One python-socketio connect (+ emit): what ``sio_probe`` does, and what
    ``sio_probe_bounded`` sends its child as JSON."""

    base_url: str
    path: str
    headers: Sequence[tuple[str, str]]
    insecure: bool
    timeout: float
    transports: list[str] | None = None
    emit: str | None = None
    data: Any = None
    has_data: bool = False
    expect: str | None = None


def sio_probe(request: SioRequest) -> SioOutcome:
    """Connect like a user's python client would (polling first, then the upgrade).

    This is the one boundary where python-socketio's exceptions (ConnectionError, TimeoutError,
    and whatever requests/websocket-client raise underneath) become text in the report.
    """
    timeout, insecure, headers = request.timeout, request.insecure, request.headers
    emit, expect = request.emit, request.expect
    payload = request.data if request.has_data else None
    import engineio
    import socketio  # lazy: ~150 ms of imports that `sockwizard --help` must not pay

    class CheckedEngineIO(engineio.Client):  # type: ignore[misc]
        """websocket-client writes the server's sid into its request line unchecked."""

        def _connect_websocket(self, url: str, headers: Any, engineio_path: str) -> Any:
            sid = self.sid
            if sid is not None and not (isinstance(sid, str) and SID_RE.fullmatch(sid)):
                raise engineio.exceptions.ConnectionError(
                    f"refusing the server's sid {str(sid)[:40]!r}: not an Engine.IO session id")
            return super()._connect_websocket(url, headers, engineio_path)

    class CheckedClient(socketio.Client):  # type: ignore[misc]
        bad_connect: str | None = None

        def _engineio_client_class(self) -> type[Any]:
            return CheckedEngineIO

        def _handle_connect(self, namespace: str | None, data: Any) -> None:
            # python-socketio takes 40[] or 40null as connected (and 401 kills its reader
            # thread); the JavaScript client refuses all of them: so does the probe.
            try:
                check_connect_data(data)
            except WireError as exc:
                self.bad_connect = exc.message
                self._handle_error(namespace, exc.message)
                return
            super()._handle_connect(namespace, data)

    client = CheckedClient(
        reconnection=False, logger=False, engineio_logger=False, ssl_verify=not insecure,
        handle_sigint=False, request_timeout=timeout,
        http_session=_insecure_session() if insecure else None,
        websocket_extra_options=_websocket_options(headers),
    )
    got = threading.Event()
    replies: list[Any] = []
    if expect is not None:
        def on_expected(*args: Any) -> None:
            replies.append(_jsonable(args[0] if len(args) == 1 else list(args)))
            got.set()

        client.on(expect, on_expected)
    started = time.perf_counter()
    try:
        client.connect(request.base_url, headers=dict(headers), transports=request.transports,
                       socketio_path=request.path, wait_timeout=timeout)
    except Exception as exc:  # MemoryError included
        return SioOutcome(None, None, client.bad_connect or _child_error(exc), _ms(started))
    connect_ms = _ms(started)
    try:
        outcome = SioOutcome(client.transport(), client.get_sid(), None, connect_ms)
        if emit is None:
            return outcome
        started = time.perf_counter()
        try:
            if expect is not None:
                client.emit(emit, payload)
                if not got.wait(timeout):
                    raise TimeoutError(f"no {expect!r} event within {timeout:g} s")
                reply: Any = replies[0]
            else:
                reply = client.call(emit, payload, timeout=timeout)
        except Exception as exc:
            return dataclasses.replace(outcome, emit_error=_sio_error(exc), emit_ms=_ms(started))
        return dataclasses.replace(outcome, emit_reply=_jsonable(reply), emit_ms=_ms(started))
    finally:
        _disconnect(client, timeout)


def sio_budget(timeout: float, emit: bool) -> float:
    """The hard deadline of the python-socketio child: connect (+ emit) and its start-up."""
    return timeout * (2 if emit else 1) * 1.25 + SIO_CHILD_STARTUP_S


def sio_probe_bounded(request: SioRequest) -> SioOutcome:
    """``sio_probe`` in a child process: memory capped, killed at ``sio_budget``."""
    import os
    import subprocess
    import sys

    import wizard

    payload = json.dumps(dataclasses.asdict(request))
    root = os.path.dirname(os.path.dirname(os.path.abspath(wizard.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["MALLOC_ARENA_MAX"] = "2"  # glibc reserves 64 MB of address space per thread arena
    budget = sio_budget(request.timeout, request.emit is not None)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from wizard.probe.sio import sio_child; sio_child()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        start_new_session=True)  # our Ctrl-C is handled here: the finally kills it
    try:
        out, _ = proc.communicate(payload.encode(), timeout=budget)
    except subprocess.TimeoutExpired:
        return SioOutcome(None, None, f"python-socketio did not finish within {budget:g} s "
                          "(stopped: the server answers too slowly or never completes)",
                          _ms(started))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        result = json.loads(out.decode("utf-8"))
        return SioOutcome(**result) if isinstance(result, dict) else SioOutcome(**{})
    except (ValueError, TypeError):
        why = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"exit {proc.returncode}")
        return SioOutcome(None, None, f"the python-socketio client ended without a result "
                          f"({why}; memory cap {SIO_CHILD_MEMORY >> 20} MiB)", _ms(started))


_CHILD_PROBLEMS: list[str] = []  # caps the child's websocket-client hit, for the report


def _cap_websocket_client() -> None:
    """In the child only: give websocket-client the frame and message cap it lacks (reading
    a 2^62-byte frame, it appends 16 KiB reads until memory runs out; fragments it joins
    without limit). RLIMIT_AS stays the backstop for whatever else buffers."""
    from websocket import _abnf
    from websocket._exceptions import WebSocketProtocolException

    def refuse(what: str) -> None:
        _CHILD_PROBLEMS.append(f"the server sent {what} (cap {MAX_MESSAGE} bytes)")
        raise WebSocketProtocolException(_CHILD_PROBLEMS[-1])

    recv_length, add = _abnf.frame_buffer.recv_length, _abnf.continuous_frame.add

    def capped_length(self: Any) -> None:
        recv_length(self)
        if self.length > MAX_MESSAGE:
            refuse(f"a WebSocket frame announcing {self.length} bytes")

    def capped_add(self: Any, frame: Any) -> None:
        add(self, frame)
        if self.cont_data and len(self.cont_data[1]) > MAX_MESSAGE:
            refuse("a fragmented WebSocket message larger than the cap")

    _abnf.frame_buffer.recv_length = capped_length  # type: ignore[method-assign]
    _abnf.continuous_frame.add = capped_add  # type: ignore[method-assign]


def _child_error(exc: BaseException) -> str:
    if isinstance(exc, MemoryError) or "can't start new thread" in str(exc):
        return (f"the client ran out of its {SIO_CHILD_MEMORY >> 20} MiB memory cap "
                "(the server sent more than a Socket.IO client should buffer)")
    return _sio_error(exc)


def sio_child() -> None:
    """The child side of ``sio_probe_bounded``: the request as JSON on stdin, the
    ``SioOutcome`` as one JSON object on stdout, nothing else on it."""
    import os
    import resource
    import sys

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = SIO_CHILD_MEMORY if hard == resource.RLIM_INFINITY else min(SIO_CHILD_MEMORY, hard)
    if soft == resource.RLIM_INFINITY or soft > cap:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    out = os.fdopen(os.dup(1), "w")
    sys.stdout = sys.stderr  # a library's stray print must not corrupt the answer
    # The sync Client runs on requests + websocket-client; engineio imports aiohttp only for
    # its AsyncClient, under `except ImportError`. Marked absent (a None entry makes `import`
    # raise ImportError), it is not loaded: the child starts in ~0.21 s instead of ~0.33 s.
    sys.modules.setdefault("aiohttp", None)  # type: ignore[arg-type]
    try:
        request = json.loads(sys.stdin.read(1 << 20))
        request["headers"] = [(str(k), str(v)) for k, v in request["headers"]]
        _cap_websocket_client()
        outcome = sio_probe(SioRequest(**request))
        result = dataclasses.asdict(outcome)
        if len(json.dumps(result["emit_reply"])) > MAX_REPLY_JSON:
            result["emit_reply"] = f"<a reply of more than {MAX_REPLY_JSON} bytes of JSON>"
        if result["error"] is not None and _CHILD_PROBLEMS:
            result["error"] = f"{_CHILD_PROBLEMS[0]}; then: {result['error']}"
    except Exception as exc:  # MemoryError included
        result = {"transport": None, "sid": None, "connect_ms": 0.0,
                  "error": _child_error(exc)}
    out.write(json.dumps(result))
    out.flush()
    os._exit(0)  # the client's threads may be stuck on a socket: do not join them


def _jsonable(value: Any) -> Any:
    """A server's reply as JSON-safe data: binary attachments become a short description."""
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _websocket_options(headers: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Host and Origin for websocket-client as options, not headers.

    websocket-client always writes its own Host and Origin lines and then appends ours, so a
    --header Host:… or --origin would be sent twice (nginx answers a doubled Host with 400; Node
    joins two Origins into one that no CORS rule accepts) and the upgrade would fail for a
    reason of the probe's making. A ``None`` value drops the header-dict copy.
    """
    # Without --origin, send no Origin at all, like the raw stages (websocket-client would
    # invent "http://host:port", which a server with a CORS allow-list refuses).
    options: dict[str, Any] = {"suppress_origin": True}
    drop: dict[str, None] = {}
    for key, value in headers:
        if key.lower() in ("host", "origin"):
            options[key.lower()] = value
            drop[key] = None
            if key.lower() == "origin":
                options["suppress_origin"] = False
    if drop:
        options["header"] = drop
    return options


def _insecure_session() -> Any:
    """A requests session that really skips verification.

    python-engineio sets ``session.verify = False`` for ``ssl_verify=False``, but requests
    lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` from the environment override that (they are
    set on many machines, this one included), so --insecure would silently still verify.
    """
    import warnings

    import requests
    from urllib3.exceptions import InsecureRequestWarning

    warnings.filterwarnings("ignore", category=InsecureRequestWarning)  # the user asked

    class NoVerifySession(requests.Session):
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
            settings = super().merge_environment_settings(*args, **kwargs)
            settings["verify"] = False
            return settings

    return NoVerifySession()


def _disconnect(client: Any, timeout: float) -> None:
    """Disconnect without letting a stuck long-poll hold the probe (it joins its reader)."""
    worker = threading.Thread(target=client.disconnect, name="sockwizard-disconnect",
                              daemon=True)
    worker.start()
    worker.join(timeout)


def _sio_error(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc) or repr(exc)
    if name == "TimeoutError" and "socketio" in type(exc).__module__:
        return "no acknowledgement before the timeout"
    return text if name in ("ConnectionError", "TimeoutError") else f"{name}: {text}"


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)



def raw_connect(ws: WebSocket, timeout: float, *, sent: bool = False) -> tuple[float, str]:
    """Send a Socket.IO CONNECT (``40``) and wait for the namespace's answer, answering the
    server's pings meanwhile: (ms, sid). A refusal (``44``) or a bad answer raises
    ``WireError``. ``sent``: the caller already sent ``40`` (with the upgrade's ``5``)."""
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    if not sent:
        ws.send_text("40", timeout)
    while True:
        try:
            frame = ws.recv(remaining(deadline))
        except WireError as exc:
            if exc.kind == "timeout":
                raise WireError("timeout", "no answer to the Socket.IO CONNECT packet "
                                f"within {timeout:g} s") from None
            raise
        if frame.opcode == OP_CLOSE:
            raise WireError("closed", f"close frame {frame.close_code} instead of 40")
        text = frame.text
        if text == "2":
            ws.send_text("3", remaining(deadline))
        elif text.startswith("40"):
            sid = connect_answer_sid(text)
            return (time.perf_counter() - started) * 1000, sid
        elif text.startswith("44"):
            raise WireError("protocol", f"the namespace refused the connection: {text[:80]!r}")
