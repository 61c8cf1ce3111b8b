"""The words of issue 12's cause findings, per proxy: what to change in *this* proxy's config.

``wizard.diagnose.rules_causes`` finds the cause (the Host that loses the port, a body limit
below the server's maxPayload, address hashing behind a front tier) and asks the proxy's
:class:`CauseFixes` for the lines; each ``wizard.proxies.<kind>`` module fills one in. Pure
words: places come already worded ("`text` (file:line)"), no facts, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class CauseFixes:
    """One proxy's wording for the config-side causes."""

    # (the line that builds the Host now, worded) -> how to send the client's Host with port
    keep_host: Callable[[str], str]
    # (the line that sets X-Forwarded-Proto now, worded) -> how to send the page's scheme
    keep_proto: Callable[[str], str]
    # (bytes the route must accept, where the limit is now, worded) -> the directive to set;
    # None: this proxy has no body limit
    body_limit: Callable[[int, str], str] | None
    # lines that restore the client's address behind a front tier ("" : not applicable)
    real_ip: str


def mebibytes(size: int) -> int:
    """A size in whole MiB, rounded up (config sizes are written in MiB)."""
    return max(1, -(-size // (1024 * 1024)))
