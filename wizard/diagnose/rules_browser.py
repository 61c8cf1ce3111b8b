"""Diagnosis rules for what the probe sees as a browser, behind a front tier and under load.

``wizard.diagnose.rules.diagnose_with_notes`` runs :func:`browser_rules` with its context
(issue 12; rules.py holds the catalogue of issue 4). Pure: the probe's findings of these codes
are passed through, with the config facts attached where they name a cause:

- ``browser-origin-rejected``: the route's missing forwarded headers (the config side's own
  cause detection, e.g. ``Host $host`` on a non-default port, attaches to the same code);
- ``capacity-ceiling``: the config's ceiling (``RouteFacts.capacity``) printed next to a
  ``--clients`` result, a warning when the run reached it and clients failed.

``connection-lifetime-cap``, ``upgrade-header-form``, ``front-tier`` and
``backend-without-websocket`` need no config to be true; they pass through unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from wizard import findings as codes
from wizard.diagnose.text import evidence as _evidence
from wizard.findings import Finding

if TYPE_CHECKING:
    from wizard.diagnose.rules_context import RuleContext


def browser_rules(ctx: RuleContext) -> list[Finding]:
    return [*_browser_origin(ctx), *_capacity(ctx)]


def _browser_origin(ctx: RuleContext) -> list[Finding]:
    found = ctx.take(codes.BROWSER_ORIGIN_REJECTED)
    facts = ctx.facts
    if not found or facts is None or not facts.proxied:
        return found
    causes = []
    if facts.server_tls and facts.forwarded_proto is False:
        causes.append("TLS ends at the proxy but X-Forwarded-Proto is not forwarded")
    if facts.forwarded_host is False:
        causes.append("the client's Host is not forwarded")
    if not causes:
        return found
    first = found[0]
    fix = f"{facts.forward_fix}\n{first.fix}" if facts.forward_fix else first.fix
    return [replace(first, severity="error", fix=fix,
                    evidence=_evidence(first.evidence, facts.route and f"route: {facts.route}",
                                       *causes))]


def _capacity(ctx: RuleContext) -> list[Finding]:
    probe, facts = ctx.probe, ctx.facts
    if probe is None or probe.clients is None or facts is None or facts.capacity is None:
        return []
    cap, clients = facts.capacity, probe.clients
    scope = " per worker process" if cap.per_worker else ""
    where = f" ({cap.where})" if cap.where is not None else " (the default)"
    evidence = (f"clients: {clients.connected}/{clients.requested} connected; config ceiling "
                f"~{cap.clients} concurrent WebSocket clients{scope}: {cap.directive}{where}")
    at_ceiling = clients.failed > 0 and clients.requested >= cap.clients
    if at_ceiling:
        title = (f"{clients.failed} of {clients.requested} clients failed at the config's "
                 f"ceiling of ~{cap.clients} concurrent WebSocket clients")
    else:
        title = f"The config lets ~{cap.clients} concurrent WebSocket clients through{scope}"
    fix = (f"Raise `{cap.directive.split()[0]}` on {ctx.name} above the number of clients you "
           "expect (nginx: worker_connections counts the client and the upstream side, so 2 "
           "per WebSocket; also raise worker_rlimit_nofile. Apache: MaxRequestWorkers, with "
           "ServerLimit × ThreadsPerChild to match), and the open-file limit of the service.")
    return [Finding(codes.CAPACITY_CEILING, "warning" if at_ceiling else "info", title,
                    evidence, fix)]
