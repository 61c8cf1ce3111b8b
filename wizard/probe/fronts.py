"""What is in front of the proxy, read from response headers, and what that tier is known to cut.

``wizard.probe.run`` hands every answer the probe got (the handshake, the upgrade) to
:func:`front_finding`; ``diagnose`` passes the finding through. The table :data:`TIERS` is the
only knowledge: which header names a tier, and the limits users meet behind it (vendor
documentation, as of 2025). Header values are the server's (hostile): each is matched by
pattern only, and quoted clipped to printable ASCII, never sent anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from wizard import findings as codes
from wizard.findings import Finding
from wizard.probe.wire import HttpResponse

MAX_QUOTE = 60  # characters of a header value quoted in the evidence
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True)
class Tier:
    """One kind of front tier: the headers that name it (name -> value pattern, ``""``: any
    value) and its limits that matter to Socket.IO."""

    name: str
    marks: tuple[tuple[str, str], ...]
    limits: str


TIERS: tuple[Tier, ...] = (
    Tier("Cloudflare", (("cf-ray", ""), ("server", r"^cloudflare\b")),
         "idle WebSockets and requests are cut after 100 s (Enterprise can raise it); only "
         "ports 80, 8080, 8880, 2052, 2082, 2086, 2095 (HTTP) and 443, 2053, 2083, 2087, "
         "2096, 8443 (HTTPS) are proxied; WebSockets can be switched off per zone "
         "(Network → WebSockets)"),
    Tier("AWS Application Load Balancer", (("server", r"^awselb/2"), ("set-cookie", r"^AWSALB"),
                                           ("x-amzn-trace-id", ""), ("x-amzn-requestid", "")),
         "idle timeout 60 s by default (attribute idle_timeout.timeout_seconds; keep it above "
         "pingInterval + pingTimeout); stickiness is the AWSALB cookie, which only clients "
         "that send cookies back keep (withCredentials for cross-origin browsers)"),
    Tier("AWS Classic Load Balancer", (("server", r"^awselb(/1|$)"), ("set-cookie", r"^AWSELB")),
         "HTTP/HTTPS listeners do not pass WebSockets (use TCP/SSL listeners, or an "
         "Application Load Balancer); idle timeout 60 s by default"),
    Tier("Google Cloud Load Balancer", (("via", r"\b1\.1 google\b"),),
         "the backend service timeout (30 s by default) is a lifetime cap on WebSockets: a "
         "connection is closed at that age however busy it is; raise it (gcloud compute "
         "backend-services update --timeout) or reconnect"),
    Tier("Azure Front Door / Application Gateway", (("x-azure-ref", ""), ("x-msedge-ref", "")),
         "WebSocket support and idle timeouts differ between Front Door tiers and Application "
         "Gateway: check that WebSockets are enabled on this route and that its idle timeout "
         "is above pingInterval + pingTimeout"),
)
# Any other proxy that says so (RFC 9110 Via): named, with no known limits.
_VIA = "via"


def detect(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(tier name, limits, the header that named it) for each tier the headers name."""
    pairs = [(k.lower(), v) for k, v in headers]
    found: list[tuple[str, str, str]] = []
    for tier in TIERS:
        for mark, pattern in tier.marks:
            hit = next((v for k, v in pairs if k == mark and
                        (not pattern or re.search(pattern, v[:200], re.IGNORECASE))), None)
            if hit is not None:
                found.append((tier.name, tier.limits, f"{mark}: {quote(hit)}"))
                break
    if not found:
        via = next((v for k, v in pairs if k == _VIA), None)
        if via is not None:
            found.append(("a proxy on the way (Via header)", "", f"via: {quote(via)}"))
    return found


def quote(value: str) -> str:
    """A server's header value made safe to print: printable ASCII, clipped."""
    clean = _UNPRINTABLE.sub("?", value[:MAX_QUOTE])
    return clean + ("…" if len(value) > MAX_QUOTE else "")


def front_finding(answers: Iterable[HttpResponse]) -> Finding | None:
    """One info finding naming every tier the answers' headers reveal, with its limits."""
    seen: dict[str, tuple[str, str]] = {}
    for response in answers:
        for name, limits, mark in detect(response.headers):
            seen.setdefault(name, (limits, mark))
    if not seen:
        return None
    names = ", ".join(seen)
    limits = " ".join(f"{name}: {lim}." for name, (lim, _) in seen.items() if lim)
    return Finding(
        codes.FRONT_TIER, "info", f"In front of the proxy: {names}",
        "response headers: " + "; ".join(mark for _, mark in seen.values()),
        (limits + " " if limits else "") + "Timeouts, ports and WebSocket support of this "
        "tier apply before the proxy's own: keep its idle timeout above pingInterval + "
        "pingTimeout and its WebSocket support switched on.")
