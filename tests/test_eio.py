"""Fast tests of wizard/probe/wire/'s pure parts: URL checks, HTTP heads, Engine.IO packets and
the WebSocket frame codec. The socket-facing parts are exercised against real servers in
tests/test_probe.py."""

from __future__ import annotations

import json

import pytest

from wizard.errors import ProbeFailed
from wizard.probe import wire as eio

# --------------------------------------------------------------------------- URL and path


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port"),
    [
        ("http://127.0.0.1:3000", "http", "127.0.0.1", 3000),
        ("https://example.com", "https", "example.com", 443),
        ("http://example.com/", "http", "example.com", 80),
        ("ws://h:81", "http", "h", 81),
        ("wss://h", "https", "h", 443),
        ("HTTP://H:8080", "http", "h", 8080),
        ("http://[::1]:3000", "http", "::1", 3000),
        ("https://h/socket.io/", "https", "h", 443),
    ],
)
def test_parse_url_accepts(url: str, scheme: str, host: str, port: int) -> None:
    target = eio.parse_url(url, "/socket.io/")
    assert (target.scheme, target.host, target.port) == (scheme, host, port)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("", "empty"),
        ("example.com", "no scheme"),
        ("ftp://example.com", "'ftp' is not supported"),
        ("http://", "no host"),
        ("http://h:99999", "out of range"),
        ("http://h:0", "port 0"),
        ("http://h:abc", "Malformed"),
        ("http://a b", "spaces"),
        ("http://h/?EIO=4", "query"),
        ("http://user:pw@h", "credentials"),
        ("http://h/chat", "--path"),
    ],
)
def test_parse_url_refuses_with_a_reason(url: str, words: str) -> None:
    with pytest.raises(ProbeFailed) as info:
        eio.parse_url(url, "/socket.io/")
    assert words in info.value.title + info.value.hint


def test_host_header_and_base_url_keep_non_default_ports() -> None:
    assert eio.Target("http", "h", 80).host_header == "h"
    assert eio.Target("https", "h", 8443).base_url == "https://h:8443"
    assert eio.Target("http", "::1", 3000).host_header == "[::1]:3000"


@pytest.mark.parametrize(
    ("given", "normal"),
    [("/socket.io/", "/socket.io/"), ("socket.io", "/socket.io/"), ("/a/b", "/a/b/"), ("/", "/")],
)
def test_normalize_path(given: str, normal: str) -> None:
    assert eio.normalize_path(given) == normal


@pytest.mark.parametrize("bad", ["", "/x?y=1", "/a b", "/x#f"])
def test_normalize_path_refuses(bad: str) -> None:
    with pytest.raises(ProbeFailed):
        eio.normalize_path(bad)


# --------------------------------------------------------------------------- HTTP


def test_build_request_lets_user_headers_override_defaults() -> None:
    target = eio.Target("http", "h", 8080)
    raw = eio.build_request("GET", target, "/socket.io/?EIO=4", [("Host", "example.com"),
                                                                 ("X-A", "1")]).decode()
    assert raw.startswith("GET /socket.io/?EIO=4 HTTP/1.1\r\n")
    assert "Host: example.com\r\n" in raw
    assert "Host: h:8080" not in raw
    assert raw.endswith("X-A: 1\r\n\r\n")


def test_build_request_post_has_length() -> None:
    raw = eio.build_request("POST", eio.Target("http", "h", 80), "/p", body=b"40")
    assert b"Content-Length: 2\r\n" in raw
    assert raw.endswith(b"\r\n\r\n40")


def test_parse_head() -> None:
    status, reason, headers = eio.parse_head(
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nX:  y ")
    assert (status, reason) == (400, "Bad Request")
    assert headers == (("Content-Type", "application/json"), ("X", "y"))
    with pytest.raises(eio.WireError) as info:
        eio.parse_head(b"SSH-2.0-OpenSSH_9.2")
    assert info.value.kind == "protocol"


def test_summary_quotes_the_body_and_clips_it() -> None:
    response = eio.HttpResponse(404, "Not Found", (("Content-Type", "text/html; x"),),
                                b"<h1>" + b"n" * 300 + b"</h1>")
    text = response.summary(20)
    assert text.startswith('404 Not Found (text/html) "<h1>')
    assert text.endswith('…"')


# --------------------------------------------------------------------------- Engine.IO

OPEN_V4 = ('0{"sid":"abc","upgrades":["websocket"],"pingInterval":3000,"pingTimeout":2000,'
           '"maxPayload":1000000}')


def test_parse_open_v4() -> None:
    hs = eio.parse_open(OPEN_V4, 4)
    assert hs == eio.Handshake("abc", ("websocket",), 3000, 2000, 1000000, 4)
    assert hs is not None and hs.ping_sum_s == 5.0
    assert json.loads(json.dumps(hs.to_dict()))["pingInterval"] == 3000


@pytest.mark.parametrize("bad", ["", "40", "0{", '0{"sid":"x"}', "0[]", 'x{"sid":1}'])
def test_parse_open_rejects(bad: str) -> None:
    assert eio.parse_open(bad, 4) is None


def test_decode_payload_v4_splits_on_record_separator() -> None:
    assert eio.decode_payload(b"2\x1e40{}\x1e6", 4) == ["2", "40{}", "6"]


def test_decode_payload_v3_text_and_binary() -> None:
    opened = b'0{"sid":"s","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000}'
    # the real 2.x answer: the open packet then "40", each length-prefixed
    packets = eio.decode_payload(b"%d:%s2:40" % (len(opened), opened), 3)
    assert packets[1] == "40"
    hs = eio.parse_open(packets[0], 3)
    assert hs is not None and hs.eio_version == 3 and hs.max_payload is None
    binary = b"\x00\x02\xff40" + b"\x00\x01\xff6"
    assert eio.decode_payload(binary, 3) == ["40", "6"]
    assert eio.looks_like_v3(b'96:0{"sid":1}2:40')
    assert eio.looks_like_v3(b'\x00\x09\x06\xff0{"sid":"x"}')
    assert not eio.looks_like_v3(OPEN_V4.encode())


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"code":1,"message":"Session ID unknown"}', (1, "Session ID unknown")),
        (b'"Invalid session abc"', (None, "Invalid session abc")),
        (b"<html>", (None, None)),
        (b"[1]", (None, None)),
        (b"\xff\xfe", (None, None)),
    ],
)
def test_error_message(body: bytes, expected: tuple[int | None, str | None]) -> None:
    assert eio.error_message(body) == expected


def test_eio_query() -> None:
    assert eio.eio_query("/s/", 4, "websocket", "x") == "/s/?EIO=4&transport=websocket&sid=x"


# --------------------------------------------------------------------------- WebSocket


def test_accept_key_matches_rfc6455_example() -> None:
    assert eio.accept_for("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
@pytest.mark.parametrize("mask", [True, False])
def test_frames_round_trip(size: int, mask: bool) -> None:
    payload = bytes(i % 251 for i in range(size))
    frames = eio.FrameDecoder().feed(eio.encode_frame(eio.OP_BINARY, payload, mask=mask))
    assert frames == [eio.Frame(eio.OP_BINARY, payload)]


def test_decoder_handles_byte_by_byte_feeding_and_several_frames() -> None:
    data = eio.encode_frame(eio.OP_TEXT, b"2") + eio.encode_frame(eio.OP_TEXT, b"3probe")
    decoder = eio.FrameDecoder()
    got: list[eio.Frame] = []
    for i in range(len(data)):
        got += decoder.feed(data[i : i + 1])
    assert [f.text for f in got] == ["2", "3probe"]


def test_decoder_reassembles_fragments_around_a_control_frame() -> None:
    first = bytes([0x01, 3]) + b"abc"  # text, not final
    ping = bytes([0x89, 0])  # control frames may arrive between fragments
    last = bytes([0x80, 2]) + b"de"  # continuation, final
    frames = eio.FrameDecoder().feed(first + ping + last)
    assert frames == [eio.Frame(eio.OP_PING, b""), eio.Frame(eio.OP_TEXT, b"abcde")]


def test_close_code() -> None:
    frame = eio.FrameDecoder().feed(eio.encode_frame(eio.OP_CLOSE, b"\x03\xe9bye"))[0]
    assert frame.close_code == 1001
    assert eio.Frame(eio.OP_TEXT, b"xx").close_code is None


def test_client_frames_are_masked() -> None:
    raw = eio.encode_frame(eio.OP_TEXT, b"hello")
    assert raw[1] & 0x80
    assert b"hello" not in raw
