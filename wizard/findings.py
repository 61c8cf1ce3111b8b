"""What sockwizard found wrong, as data.

A ``Finding`` is the unit both halves of issue 4 speak: ``wizard.probe`` produces the findings a
live probe alone can prove (a 404, a 502, a dropped idle connection), and ``wizard.diagnose``
adds the ones that need the proxy's config, then sorts and prints them all. Codes are stable
(the README's table and ``--json`` consumers depend on them); titles and fixes are plain words.
"""

from __future__ import annotations

from dataclasses import dataclass
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

_SEVERITY_RANK: dict[str, int] = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Finding:
    """One problem (or note): stable ``code``, how bad, what, the proof, and what to change."""

    code: str
    severity: Severity
    title: str
    evidence: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "severity": self.severity,
            "title": self.title,
            "evidence": self.evidence,
            "fix": self.fix,
        }


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Most serious first; equal severities keep their order (the order they were found)."""
    return sorted(findings, key=_rank)


def merge_findings(findings: list[Finding]) -> list[Finding]:
    """One finding per code: later stages often re-prove what an earlier one found.

    The first keeps its title and fix (the earliest stage saw the rawest evidence); the
    evidence of the others is appended so nothing that was seen is lost.
    """
    merged: dict[str, Finding] = {}
    for finding in findings:
        first = merged.get(finding.code)
        if first is None:
            merged[finding.code] = finding
        elif finding.evidence not in first.evidence:
            merged[finding.code] = Finding(
                first.code,
                first.severity if _rank(first) <= _rank(finding) else finding.severity,
                first.title,
                f"{first.evidence}; {finding.evidence}",
                first.fix,
            )
    return list(merged.values())


def _rank(finding: Finding) -> int:
    return _SEVERITY_RANK.get(finding.severity, 3)
