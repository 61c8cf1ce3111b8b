"""The read-timeout rule: the route's idle timeouts graded against the live ping settings.

Called by ``wizard.diagnose.rules.diagnose_with_notes`` among its own rules. The grade is
``wizard.heartbeat``'s (REFERENCE.md, measured): a route idle timeout at or below the live
pingInterval cuts every idle client (certain: error); one above pingInterval but not above
pingInterval + pingTimeout survives only while every ping is on time (at risk: warning); above
the sum is fine. The live handshake's values are used, never the defaults, because raised
ping settings are exactly what turns nginx's default 60 s into a drop. Config facts decide this
in milliseconds, without waiting for the drop; a ``--hold`` drop, when there is one, only adds
evidence. The fix's words come from the proxy's module (``fixes.timeout``). Pure.
"""

from __future__ import annotations

from dataclasses import replace

from wizard import findings as codes
from wizard.diagnose import fixtext
from wizard.diagnose.facts import TimeoutFact, Where
from wizard.diagnose.rules_context import RuleContext, grade_timeout, suggested_timeout
from wizard.diagnose.text import evidence as _evidence
from wizard.diagnose.text import probe_evidence as _probe_evidence
from wizard.diagnose.text import spot
from wizard.findings import Finding, Severity
from wizard.proxies.fixes import Fix, TimeoutFix, edits_of


def timeout_rule(ctx: RuleContext) -> list[Finding]:
    found = ctx.take(codes.READ_TIMEOUT_TOO_SHORT)
    facts = ctx.facts
    ping = ctx.ping
    graded: list[tuple[TimeoutFact, str]] = []
    if facts is not None and facts.proxied:
        seen: set[tuple[float | None, str]] = set()
        for fact in (facts.ws_idle_timeout, facts.poll_timeout):
            if fact is None or (fact.seconds, fact.directive) in seen:
                continue
            seen.add((fact.seconds, fact.directive))
            grade = grade_timeout(fact.seconds, ping)
            if grade is not None:
                graded.append((fact, grade))
    if not graded:
        return found
    # One finding: the worst timeout leads (title, fix); every timeout involved is evidence,
    # and a --hold drop (if any) adds to it.
    graded.sort(key=lambda x: (x[1] != "certain", x[0].seconds or 0))
    fact, grade = graded[0]
    finding = _timeout_finding(ctx, fact, grade)
    wheres: list[Where | str] = []
    for other, _ in graded:
        wheres.extend(other.where or [other.default_note])
        wheres.append(f"{other.directive} = {other.seconds:g} s ({other.applies_to})")
    evidence = _evidence(*wheres, ping.describe(), _probe_evidence(found))
    return [replace(finding, evidence=evidence)]


def _timeout_finding(ctx: RuleContext, fact: TimeoutFact, grade: str) -> Finding:
    facts = ctx.facts
    assert facts is not None and fact.seconds is not None
    ping = ctx.ping
    t = fact.seconds
    what = fact.applies_to
    polling_only = "long-polling" in what and "WebSocket" not in what
    if grade == "certain" and polling_only:
        title = (f"{ctx.name} aborts long-polling requests after {t:g} s, before the server "
                 f"answers them with its next ping ({ping.interval_s:g} s): clients on "
                 "long-polling fail and reconnect over and over — certain")
        severity: Severity = "error"
    elif grade == "certain":
        title = (f"{ctx.name} cuts idle {what} after {t:g} s, before the server's next ping "
                 f"({ping.interval_s:g} s): every idle client drops (\"transport close\") — "
                 "certain")
        severity = "error"
    else:
        title = (f"{ctx.name}'s idle timeout for {what} ({t:g} s) is not above pingInterval + "
                 f"pingTimeout ({ping.sum_s:g} s): idle clients drop whenever a ping runs late "
                 "(\"transport close\") — at risk")
        severity = "warning"
    evidence = _evidence(fact.where or fact.default_note, f"{fact.directive} = {t:g} s",
                         ping.describe())
    fix = _fix_timeout(ctx, fact)
    return Finding(codes.READ_TIMEOUT_TOO_SHORT, severity, title, evidence, fix, edits_of(fix))


def _fix_timeout(ctx: RuleContext, fact: TimeoutFact) -> str:
    s = suggested_timeout(ctx.ping)
    rule = (f"\n(the rule: timeout > pingInterval + pingTimeout = {ctx.ping.sum_s:g} s"
            + (f"; or lower the server's pingInterval well below {fact.seconds:g} s)"
               if (fact.seconds or 0) >= 20 else ")"))
    existing = tuple(x for x in map(spot, fact.where) if x is not None)
    lines = fixtext.timeout_lines(ctx.fix_spec(), bool(existing))
    fix = ctx.fixes.timeout(TimeoutFix(s, fact.directive, ctx.site(), existing, lines))
    return Fix(fix + rule, edits_of(fix))  # the rule is words only: the edits stay

