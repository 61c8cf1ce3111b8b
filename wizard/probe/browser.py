"""The probe as a browser: a same-origin page's Origin, and Firefox's ``Connection`` header.

``wizard.probe.run`` calls :func:`browser_session` after its own (command-line style) stages
and :func:`origin_finding` / :func:`form_finding` on what came back. The probe's main stages
behave like curl: no ``Origin``, ``Connection: Upgrade``. Browsers differ in exactly the two
ways that break real deployments:

- every browser sends ``Origin`` on the WebSocket (and on cross-origin polling), and
  python-socketio/Flask-SocketIO refuse an Origin that does not match the Host and scheme
  *they* see (``400 "… is not an accepted origin"``): a proxy that drops the port from Host, a
  TLS proxy without ``X-Forwarded-Proto``, ``changeOrigin``, a chained proxy sending
  ``$scheme`` = http. The probe presents itself as a page of the URL's own origin.
- Firefox sends ``Connection: keep-alive, Upgrade``; an exact-match rule on ``Connection``
  (Apache ``RewriteCond %{HTTP:Connection} ^Upgrade$``) passes Chrome and curl only.

Each try is a fresh Engine.IO session (a session upgrades once). Pure classification below
the wire part; nothing from an answer is sent back except the checked sid and cookies.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from wizard import findings as codes
from wizard.findings import Finding
from wizard.probe.classify import is_origin_refusal
from wizard.probe.report import Stage
from wizard.probe.wire import (
    HttpResponse,
    Target,
    WireError,
    decode_payload,
    eio_query,
    http_request,
    is_unknown_session,
    open_socket,
    parse_open,
    remaining,
    ws_connect,
)

FIREFOX_CONNECTION = "keep-alive, Upgrade"


@dataclass(frozen=True)
class SessionTry:
    """One fresh session as a browser would open it: the handshake's answer, the upgrade's."""

    polling: HttpResponse | None
    opened: bool
    upgrade: HttpResponse | None = None
    upgraded: bool = False
    error: str | None = None

    def detail(self) -> str:
        if self.error is not None:
            return self.error
        if self.polling is not None and not self.opened:
            return f"handshake answered {self.polling.summary(80)}"
        if self.upgraded:
            return "handshake 200, upgrade 101, 2probe -> 3probe"
        if self.upgrade is not None:
            return f"handshake 200, upgrade answered {self.upgrade.summary(80)}"
        return "handshake 200"


def browser_session(target: Target, path: str, headers: Sequence[tuple[str, str]],
                    timeout: float, insecure: bool, *, upgrade: bool,
                    upgrade_extra: Sequence[tuple[str, str]] = ()) -> SessionTry:
    """Open a session with ``headers`` and, with ``upgrade``, upgrade it (``upgrade_extra``
    overrides the upgrade request's own headers, e.g. ``Connection``). Never raises on the
    wire: a failure is ``error``."""
    try:
        first = http_request(target, "GET", eio_query(path, 4, "polling"), headers, timeout,
                             insecure)
    except WireError as exc:
        return SessionTry(None, False, error=f"handshake: {exc.message}")
    packets = decode_payload(first.body, 4) if first.status == 200 else []
    opened = parse_open(packets[0], 4) if packets else None
    if opened is None or not upgrade:
        return SessionTry(first, opened is not None)
    session = (*first.with_cookies(headers), *upgrade_extra)
    deadline = time.monotonic() + timeout
    try:
        sock = open_socket(target, timeout, insecure)
    except WireError as exc:
        return SessionTry(first, True, error=f"upgrade: {exc.message}")
    try:
        response, ws = ws_connect(sock, target, eio_query(path, 4, "websocket", opened.sid),
                                  session, remaining(deadline))
        if ws is None:
            return SessionTry(first, True, response)
        ws.send_text("2probe", remaining(deadline))
        frame = ws.recv(remaining(deadline))
        if frame.text != "3probe":
            return SessionTry(first, True, response, error="101, then no 3probe")
        ws.send_text("5", remaining(deadline))
        ws.close()
        return SessionTry(first, True, response, upgraded=True)
    except WireError as exc:
        return SessionTry(first, True, error=f"upgrade: {exc.message}")
    finally:
        sock.close()


# --------------------------------------------------------------------------- what it means

ORIGIN_CAUSES = (
    "The server compares the page's Origin with the Host and scheme *it* receives. Usual "
    "causes: the proxy forwards Host without the port on a non-default port (nginx "
    "`proxy_set_header Host $host` → use `$http_host`), rewrites it (http-proxy "
    "`changeOrigin: true`), ends TLS without `X-Forwarded-Proto $scheme` (the server then "
    "expects http://), or a second proxy in the chain forwards its own `$scheme` (http). "
    "Forward the client's Host with its port and X-Forwarded-Proto/X-Forwarded-Host, or "
    "list the origin on the server (python-socketio `cors_allowed_origins`, Node "
    "`cors: {origin}`). If your page is served from another origin, probe with "
    "--origin <that origin> instead.")


def origin_finding(origin: str, tried: SessionTry) -> Finding | None:
    """A refusal of the URL's own origin, on the handshake or on the upgrade (a warning: the
    probe cannot know the page's origin; the config rules raise it when they find the cause)."""
    for step, answer in (("handshake", tried.polling), ("upgrade", tried.upgrade)):
        if answer is None or answer.status in (101, 200):
            continue
        if is_origin_refusal(answer, origin):
            return Finding(
                codes.BROWSER_ORIGIN_REJECTED, "warning",
                f"Browsers on a page at {origin} are refused (the {step} with that Origin "
                f"answered {answer.status}); clients without an Origin (curl, Node, Python) "
                "connect",
                f"origin: Origin: {origin} -> {step} answered {answer.summary(100)}",
                ORIGIN_CAUSES)
    return None


FORM_FIX = (
    "The proxy's upgrade rule matches the `Connection` header exactly. Browsers send it as a "
    "token list (Firefox: `keep-alive, Upgrade`): match the `Upgrade` header instead, or the "
    "token case-insensitively anywhere in `Connection` (Apache: `RewriteCond %{HTTP:Upgrade} "
    "websocket [NC]` and `RewriteCond %{HTTP:Connection} upgrade [NC]` without ^…$, or "
    "`ProxyPass … upgrade=websocket` on 2.4.47+; nginx: `map $http_upgrade`, never "
    "`$http_connection`).")


def form_finding(plain_ok: bool, firefox: SessionTry,
                 plain_unknown: bool = False) -> Finding | None:
    """Only one of the two ``Connection`` forms upgrades (pure). ``plain_unknown``: the plain
    upgrade was refused with "Session ID unknown"."""
    if not firefox.opened or plain_ok == firefox.upgraded:
        return None
    if plain_unknown or (firefox.upgrade is not None and is_unknown_session(firefox.upgrade)):
        # An upgrade reached another backend than its handshake: a stickiness fault (the
        # sessions and config rules say so), not the Connection header's form; whichever
        # form got through was lucky in the draw.
        return None
    if plain_ok:
        return Finding(
            codes.UPGRADE_HEADER_FORM, "error",
            "Firefox stays on long-polling: the upgrade with `Connection: keep-alive, Upgrade` "
            "is refused, the one with `Connection: Upgrade` (Chrome, curl) works",
            f"firefox: {firefox.detail()}", FORM_FIX)
    return Finding(
        codes.UPGRADE_HEADER_FORM, "warning",
        "Only Firefox's upgrade form (`Connection: keep-alive, Upgrade`) gets through; "
        "`Connection: Upgrade` (Chrome, curl) does not",
        f"firefox: {firefox.detail()}", FORM_FIX)


# --------------------------------------------------------------------------- the stages


def browser_stages(target: Target, path: str, headers: Sequence[tuple[str, str]],
                   timeout: float, insecure: bool, *, offers_websocket: bool,
                   plain_ok: bool, plain_unknown: bool = False
                   ) -> list[tuple[Stage, Finding | None, SessionTry]]:
    """The ``origin`` stage (unless the caller already sends an Origin) and, when the server
    offers the upgrade, the ``firefox`` stage: each a stage, maybe a finding, the raw try."""
    out: list[tuple[Stage, Finding | None, SessionTry]] = []
    if not any(k.lower() == "origin" for k, _ in headers):
        origin = target.base_url
        started = time.perf_counter()
        tried = browser_session(target, path, (("Origin", origin), *headers), timeout,
                                insecure, upgrade=offers_websocket and plain_ok)
        finding = origin_finding(origin, tried)
        out.append((_stage("origin", finding is None and tried.error is None, started,
                           f"as a page at {origin}: {tried.detail()}",
                           {"origin": origin, **_statuses(tried)}), finding, tried))
    if offers_websocket:
        started = time.perf_counter()
        tried = browser_session(target, path, headers, timeout, insecure, upgrade=True,
                                upgrade_extra=(("Connection", FIREFOX_CONNECTION),))
        finding = form_finding(plain_ok, tried, plain_unknown)
        out.append((_stage("firefox", tried.upgraded, started,
                           f"Connection: {FIREFOX_CONNECTION}: {tried.detail()}",
                           {"connection": FIREFOX_CONNECTION, **_statuses(tried)}),
                    finding, tried))
    return out


def _statuses(tried: SessionTry) -> dict[str, object]:
    return {"polling_status": tried.polling.status if tried.polling else None,
            "upgrade_status": tried.upgrade.status if tried.upgrade else None,
            "upgraded": tried.upgraded}


def _stage(name: str, ok: bool, started: float, detail: str, data: dict[str, object]) -> Stage:
    return Stage(name, ok, round((time.perf_counter() - started) * 1000, 1), detail, data)
