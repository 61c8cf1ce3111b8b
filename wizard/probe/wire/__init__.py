"""Engine.IO (v3 and v4), HTTP/1.1 and WebSocket on the wire, with no client library.

``wizard.probe``'s stages call this (and, through ``parse_url``/``normalize_path``, the TUI and
``diagnose`` check a probe URL with it). The probe has to see what a Socket.IO client library
hides: the exact status line, headers and body of the polling handshake, whether the upgrade
answered ``101`` or a ``400 {"code":3}`` or a ``200`` polling payload, and every server ping
with its arrival time. A few hundred lines of raw socket code give full control and a hard
deadline on every read. One module per layer, each importing only those before it:

- ``net``: the URL, resolving, TCP, TLS, deadlines, ``WireError``;
- ``http``: requests, bounded responses, cookies;
- ``engineio``: open packets, payloads, error bodies, session ids (pure);
- ``websocket``: the upgrade and the frame codec.

The pure pieces (URL parsing, request building, head parsing, packet decoding, the frame codec)
are shared with the asyncio load mode (``wizard.probe.load``).
"""

from wizard.probe.wire.engineio import (
    MAX_PING_MS,
    SID_RE,
    Handshake,
    check_connect_data,
    connect_answer_sid,
    decode_payload,
    eio_query,
    error_message,
    is_unknown_session,
    load_json,
    looks_like_v3,
    parse_open,
    read_open,
)
from wizard.probe.wire.http import (
    MAX_BODY,
    MAX_COOKIES,
    MAX_HEAD,
    MAX_LINE,
    USER_AGENT,
    Headers,
    HttpResponse,
    Reader,
    build_request,
    get_kept,
    http_exchange,
    http_request,
    keeps_alive,
    parse_head,
    read_response,
)
from wizard.probe.wire.net import (
    Target,
    WireError,
    WireErrorKind,
    make_ssl_context,
    normalize_path,
    open_socket,
    parse_url,
    remaining,
    resolve,
    tcp_connect,
    tls_wrap,
)
from wizard.probe.wire.websocket import (
    MAX_FRAGMENTS,
    MAX_MESSAGE,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    WS_GUID,
    Frame,
    FrameDecoder,
    WebSocket,
    accept_for,
    encode_frame,
    new_key,
    upgrade_headers,
    ws_connect,
)

__all__ = [
    "MAX_BODY", "MAX_COOKIES", "MAX_FRAGMENTS", "MAX_HEAD", "MAX_LINE", "MAX_MESSAGE",
    "MAX_PING_MS", "OP_BINARY", "OP_CLOSE", "OP_CONT", "OP_PING", "OP_PONG", "OP_TEXT", "SID_RE",
    "USER_AGENT", "WS_GUID", "Frame", "FrameDecoder", "Handshake", "Headers", "HttpResponse",
    "Reader", "Target", "WebSocket", "WireError", "WireErrorKind", "accept_for", "build_request",
    "check_connect_data", "connect_answer_sid", "decode_payload", "eio_query", "encode_frame",
    "error_message", "get_kept", "http_exchange", "http_request", "is_unknown_session",
    "keeps_alive", "load_json", "looks_like_v3", "make_ssl_context", "new_key", "normalize_path",
    "open_socket", "parse_head", "parse_open", "parse_url", "read_open", "read_response",
    "remaining", "resolve", "tcp_connect", "tls_wrap", "upgrade_headers", "ws_connect",
]
