"""What every diagnosis rule reads: one run's inputs and the probe findings not yet consumed.

``wizard.diagnose.rules.diagnose_with_notes`` builds one :class:`RuleContext` a run and hands it
to each rule (``rules``, ``rules_timeout``, ``rules_browser``, ``rules_causes``, ``rules_host``):
a rule *takes* the probe findings it explains, and asks the context for the proxy's wording
(``name``), its fix writers (``fixes``) and the plain values they fill in (``site``). The
timeout advice every fix gives comes from ``wizard.heartbeat`` (``suggested_timeout``,
``grade_timeout``). Pure: no threads, no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wizard.diagnose import fixtext
from wizard.diagnose.facts import Ping, RouteFacts, ping_of
from wizard.diagnose.text import place as _place
from wizard.diagnose.text import spot
from wizard.findings import Finding
from wizard.heartbeat import Grade
from wizard.proxies import profile
from wizard.proxies.fixes import Fixes, FixSite

if TYPE_CHECKING:
    from wizard.model import DeploySpec
    from wizard.probe import ProbeReport


def suggested_timeout(ping: Ping) -> int:
    """The timeout every fix suggests (``wizard.heartbeat``: headroom over the sum, >= 60 s)."""
    return ping.heartbeat.suggest_s()


def grade_timeout(seconds: float | None, ping: Ping) -> str | None:
    """``certain`` (<= pingInterval), ``at-risk`` (<= the sum) or None (fine / no timeout)."""
    if seconds is None:
        return None
    grade = ping.heartbeat.grade(seconds)
    return None if grade is Grade.SAFE else grade.value


class RuleContext:
    """One run of the rules: the inputs and the probe findings not yet consumed."""

    def __init__(self, facts: RouteFacts | None, probe: ProbeReport | None, path: str) -> None:
        self.facts = facts
        self.probe = probe
        self.path = path
        self.ping = ping_of(probe)
        self.pending = list(probe.findings) if probe is not None else []
        self.notes: list[str] = []

    def take(self, code: str) -> list[Finding]:
        taken = [f for f in self.pending if f.code == code]
        self.pending = [f for f in self.pending if f.code != code]
        return taken

    def stage_ok(self, name: str) -> bool | None:
        if self.probe is None:
            return None
        stage = self.probe.stage(name)
        return None if stage is None else stage.ok

    @property
    def handshake_ok(self) -> bool:
        return self.probe is not None and self.probe.handshake is not None

    @property
    def websocket_works(self) -> bool:
        return self.probe is not None and bool(self.stage_ok("websocket")) and \
            self.probe.transport in ("websocket", None)

    @property
    def name(self) -> str:
        return profile(self.facts.proxy).display_name if self.facts else "the proxy"

    @property
    def fixes(self) -> Fixes:
        assert self.facts is not None
        return profile(self.facts.proxy).fixes

    def fix_spec(self) -> DeploySpec | None:
        """The spec a fix's config lines render from: the config's backends that pass the
        model's rules, the suggested timeout, the live ping (fixtext)."""
        assert self.facts is not None
        return fixtext.fix_spec(self.facts.proxy, self.path,
                                fixtext.checked_backends(self.facts.backends),
                                suggested_timeout(self.ping), self.ping.interval_ms,
                                self.ping.timeout_ms)

    def site(self) -> FixSite:
        """The plain values the proxy's fix writers need, the config lines already rendered."""
        facts = self.facts
        assert facts is not None
        spec = self.fix_spec()
        return FixSite(
            path=self.path, backends=tuple(str(b) for b in spec.backends) if spec else (),
            server=_place(facts.server),
            route=_place(facts.route), upstream=_place(facts.upstream),
            upstream_text=facts.upstream.text if facts.upstream is not None else None,
            upstream_path=facts.upstream_path or "/", backends_where=_place(facts.backends_where),
            affinity=facts.affinity, scope=facts.hints.get("scope", "the virtual host"),
            script=facts.files[0] if facts.files else "the proxy script",
            route_lines=fixtext.route_lines(spec),
            sticky_lines=fixtext.sticky_lines(spec, facts.hints.get("balancer")),
            server_at=spot(facts.server), route_at=spot(facts.route),
            upstream_at=spot(facts.upstream), backends_at=spot(facts.backends_where))
