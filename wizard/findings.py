"""What sockwizard found wrong, as data.

A ``Finding`` is the unit both halves of issue 4 speak: ``wizard.probe`` produces the findings a
live probe alone can prove (a 404, a 502, a dropped idle connection), and ``wizard.diagnose``
adds the ones that need the proxy's config. Codes are stable (the README's table and
``--json`` consumers depend on them); titles and fixes are plain words.

This module is the only place findings are merged (:func:`merge`: one per code) and ordered
(:func:`order`: severity, then :data:`CODE_ORDER`); the probe and the diagnosis both call it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

Severity = Literal["error", "warning", "info"]

# Stable codes. The first block is what the probe alone can produce; diagnose may add more.
PROXY_UNREACHABLE = "proxy-unreachable"
TLS_ERROR = "tls-error"
BACKEND_UNREACHABLE = "backend-unreachable"
PATH_MISMATCH = "path-mismatch"
WEBSOCKET_UPGRADE_BLOCKED = "websocket-upgrade-blocked"
NO_STICKY_SESSIONS = "no-sticky-sessions"
EIO_VERSION_MISMATCH = "eio-version-mismatch"
ORIGIN_REJECTED = "origin-rejected"
READ_TIMEOUT_TOO_SHORT = "read-timeout-too-short"
UNEXPECTED_RESPONSE = "unexpected-response"
ROUND_TRIP_FAILED = "round-trip-failed"
LOAD_FAILURES = "load-failures"
POLLING_DISABLED = "polling-disabled"
CONNECTION_DROPPED = "connection-dropped"
# Issue 12: what browsers, front tiers and real app servers meet (the probe sees these).
BROWSER_ORIGIN_REJECTED = "browser-origin-rejected"  # same-origin page refused (stage "origin")
UPGRADE_HEADER_FORM = "upgrade-header-form"  # one Connection form upgrades, the other not
BACKEND_WITHOUT_WEBSOCKET = "backend-without-websocket"  # the server offers upgrades []
LIFETIME_CAP = "connection-lifetime-cap"  # cut at a fixed age however busy
FRONT_TIER = "front-tier"  # a CDN / load balancer named by the response headers
CAPACITY_CEILING = "capacity-ceiling"  # --clients next to worker_connections/MaxRequestWorkers
# Only the diagnosis (it needs the proxy's config) produces these.
CONFIG_UNREADABLE = "config-unreadable"
ERROR_HANDLER_MISSING = "proxy-error-handler-missing"

# Equal severities are listed in this order: the first ones make the later ones moot.
CODE_ORDER: tuple[str, ...] = (
    PROXY_UNREACHABLE, TLS_ERROR, BACKEND_UNREACHABLE, PATH_MISMATCH, EIO_VERSION_MISMATCH,
    BACKEND_WITHOUT_WEBSOCKET, WEBSOCKET_UPGRADE_BLOCKED, UPGRADE_HEADER_FORM, ORIGIN_REJECTED,
    BROWSER_ORIGIN_REJECTED, NO_STICKY_SESSIONS, LIFETIME_CAP, READ_TIMEOUT_TOO_SHORT,
    UNEXPECTED_RESPONSE, ROUND_TRIP_FAILED, CONNECTION_DROPPED, POLLING_DISABLED,
    LOAD_FAILURES, CAPACITY_CEILING, FRONT_TIER, ERROR_HANDLER_MISSING, CONFIG_UNREADABLE,
)
# ---- issue 12, config side: causes the live config (or the proxy host) shows for what
# browsers, multi-process backends and front tiers meet. Appended in their own block.
ORIGIN_HEADERS_CHANGED = "origin-headers-changed"
SELINUX_BLOCKS_PROXY = "selinux-blocks-proxy"
LOCALHOST_IPV6 = "localhost-resolves-to-ipv6"
SEVERAL_PROCESSES = "several-processes-one-port"
AFFINITY_BY_ADDRESS = "affinity-by-address"
BODY_LIMIT_TOO_SMALL = "body-limit-below-max-payload"
COOKIE_AFFINITY = "cookie-affinity-needs-credentials"
CONFIG_CAUSE_CODES = (
    SELINUX_BLOCKS_PROXY, LOCALHOST_IPV6, SEVERAL_PROCESSES, ORIGIN_HEADERS_CHANGED,
    AFFINITY_BY_ADDRESS, BODY_LIMIT_TOO_SMALL, COOKIE_AFFINITY,
)
CODE_ORDER = (*CODE_ORDER, *CONFIG_CAUSE_CODES)
_CODE_RANK = {code: i for i, code in enumerate(CODE_ORDER)}
_SEVERITY_RANK: dict[str, int] = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Edit:
    """One machine-applicable change to a live config file, made from the same values as the
    fix's printed words (``wizard.proxies.fixes.Fix``); ``wizard.diagnose.patch`` applies it.

    On line ``line`` (1-based) of ``file``: replace the text ``old`` (it must be on that line)
    with ``new``; with ``insert``, keep the line (``old``: text it must hold) and add ``new``
    after it. ``new`` may span lines; they carry one indentation level (4 spaces) relative
    to the block they go in, the way fixes are printed.
    """

    file: str
    line: int
    old: str
    new: str
    insert: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "old": self.old, "new": self.new,
                "insert": self.insert}


@dataclass(frozen=True)
class Finding:
    """One problem (or note): stable ``code``, how bad, what, the proof, and what to change.
    ``edits``: the fix as config edits, when it is one (``diagnose --fix``/``--apply``);
    empty when the fix is client- or server-side, or only worded."""

    code: str
    severity: Severity
    title: str
    evidence: str
    fix: str
    edits: tuple[Edit, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "severity": self.severity,
            "title": self.title,
            "evidence": self.evidence,
            "fix": self.fix,
            "edits": [e.to_dict() for e in self.edits],
        }


def order(found: Iterable[Finding]) -> list[Finding]:
    """Most serious first; equal severities by :data:`CODE_ORDER` (codes not in it last, in the
    order they were found)."""
    return sorted(found, key=lambda f: (_rank(f), _CODE_RANK.get(f.code, len(_CODE_RANK))))


def merge(found: Sequence[Finding]) -> list[Finding]:
    """One finding per code: later stages (and the config rules) often re-prove what an
    earlier one found.

    The first keeps its title and fix (rules put their config-backed finding before the
    probe's; the earliest probe stage saw the rawest evidence); the evidence of the others is
    appended so nothing that was seen is lost, and the worst severity wins.
    """
    out: dict[str, Finding] = {}
    for f in found:
        first = out.get(f.code)
        if first is None:
            out[f.code] = f
            continue
        severity = first.severity if _rank(first) <= _rank(f) else f.severity
        evidence = first.evidence if f.evidence in first.evidence else \
            f"{first.evidence}; {f.evidence}"
        out[f.code] = replace(first, severity=severity, evidence=evidence)
    return list(out.values())


# Transitional names for wizard.probe (same functions; the probe moves to merge/order).
merge_findings = merge
sort_findings = order


def _rank(finding: Finding) -> int:
    return _SEVERITY_RANK.get(finding.severity, 3)
