"""``run_diagnosis``: the probe and the live config read side by side, then the rules.

The orchestration the CLI (``sockwizard diagnose``) and the TUI's Diagnose step call: it reads
the proxy's config over a :class:`~wizard.remote.Remote` (``wizard.diagnose.readers``) on a
worker thread while the probe runs (the two are independent), asks the proxy host whether the
backends accept connections when the probe saw a 502/504 or there are several, and hands both
to the pure rules (``wizard.diagnose.rules``). All threads, deadlines and remote calls of the
diagnosis are here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from wizard import findings as codes
from wizard.diagnose.facts import BackendCheck, RouteFacts, RouteQuery
from wizard.diagnose.fixtext import backend_address_problem
from wizard.diagnose.hostcheck import host_checks
from wizard.diagnose.readers import CONFIG_DEADLINE_S, ConfigReadError, read_route
from wizard.diagnose.rules import diagnose_with_notes
from wizard.diagnose.text import passed_checks
from wizard.errors import BadInput, RemoteCommandFailed, SockwizardError
from wizard.findings import Finding, merge, order
from wizard.model import PROXY_NAMES, ProxyKind

if TYPE_CHECKING:
    from wizard.probe import ProbeOptions, ProbeReport, Stage
    from wizard.remote import Remote


@dataclass(frozen=True)
class Diagnosis:
    """What ``sockwizard diagnose`` found; ``ok`` when no finding is an error."""

    url: str
    path: str
    findings: tuple[Finding, ...]
    probe: ProbeReport | None
    facts: RouteFacts | None
    checks: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "path": self.path,
            "ok": self.ok,
            "findings": [f.to_dict() for f in self.findings],
            "probe": self.probe.to_dict() if self.probe is not None else None,
            "config": self.facts.to_dict() if self.facts is not None else None,
            "checks": list(self.checks),
            "notes": list(self.notes),
            "timings": dict(self.timings),
        }


def run_diagnosis(
    url: str,
    probe_options: ProbeOptions,
    *,
    remote: Remote | None = None,
    proxy: ProxyKind | str | None = None,
    config_path: str | None = None,
    on_stage: Callable[[Stage], None] | None = None,
    config_deadline: float = CONFIG_DEADLINE_S,
) -> Diagnosis:
    """Probe ``url`` and, with ``remote`` and ``proxy``, read the live config at the same time.

    Raises ProbeFailed/BadInput for bad input and ConnectionFailed (and kin) when the host is
    lost; a config that cannot be read — refused, too large, a remote command that failed or
    timed out, or ``config_deadline`` seconds spent — becomes a ``config-unreadable`` finding
    instead, beside the probe's own findings.
    """
    from wizard.probe import Stage, run_probe
    from wizard.probe.wire import normalize_path, parse_url

    started = time.perf_counter()
    path = normalize_path(probe_options.path)
    target = parse_url(url, path)  # a bad URL fails here, before any traffic
    kind = _kind(proxy) if proxy is not None else None
    if remote is not None and kind is None:
        raise BadInput("--host needs --proxy to know which config to read.",
                       f"Add --proxy {PROXY_NAMES}.")
    if kind is not None and remote is None:
        raise BadInput("--proxy needs --host to read the proxy's config.",
                       "Add --host TARGET (or --host local on the proxy host itself).")
    query = RouteQuery(path, target.host, target.port, target.tls)
    facts: RouteFacts | None = None
    extra: list[Finding] = []
    timings: dict[str, float] = {}
    config_stage: Stage | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sockwizard-config") as pool:
        future = None
        if remote is not None and kind is not None:
            future = pool.submit(_timed, lambda: read_route(
                remote, kind, query, config_path, deadline_s=config_deadline))
        probe_started = time.perf_counter()
        probe = run_probe(url, probe_options, on_stage)
        timings["probe_ms"] = _ms(probe_started)
        if future is not None:
            try:
                facts, config_ms = future.result()
                timings["config_ms"] = config_ms
                config_stage = Stage("config", True, config_ms,
                                     f"{facts.source}: {facts.route_desc or 'no route'}"
                                     + (f" at {facts.route}" if facts.route else ""))
            except SockwizardError as exc:
                if not isinstance(exc, ConfigReadError):
                    raise  # lost connection, sudo refused...: the caller's exit code
                config_stage, finding = _unreadable(kind, exc.title, exc.detail, exc.hint,
                                                    _ms(probe_started))
                timings["config_ms"] = config_stage.ms
                extra.append(finding)
            except Exception as exc:  # a reader bug must not hide the probe's findings
                config_stage, finding = _unreadable(
                    kind, f"unexpected {type(exc).__name__}: {exc}", "", "Report this with "
                    "the config (or --json output); meanwhile the probe's findings stand.",
                    _ms(probe_started))
                timings["config_ms"] = config_stage.ms
                extra.append(finding)
    if config_stage is not None and on_stage is not None:
        on_stage(config_stage)
    # Ask the proxy host about the backends when the probe saw a 502/504, or when there are
    # several (one dead member hides behind the others until the next failover): one round
    # trip, ~15 ms over SSH.
    if facts is not None and remote is not None and facts.backends and (
            len(facts.backends) > 1
            or any(f.code == codes.BACKEND_UNREACHABLE for f in probe.findings)):
        with contextlib.suppress(RemoteCommandFailed):  # extra evidence only
            facts = replace(facts, backend_checks=tuple(check_backends(remote, facts.backends)))
    if facts is not None and remote is not None:  # issue 12: asked only when a symptom needs it
        with contextlib.suppress(RemoteCommandFailed):
            facts = replace(facts, host_checks=tuple(host_checks(remote, facts, probe)))
    found, notes = diagnose_with_notes(facts, probe, path)
    found = order(merge([*found, *extra]))
    timings["total_ms"] = _ms(started)
    return Diagnosis(url, path, tuple(found), probe, facts,
                     tuple(passed_checks(facts, probe, found)), tuple(notes), timings)


def _unreadable(kind: ProxyKind | None, title: str, detail: str, hint: str,
                ms: float) -> tuple[Stage, Finding]:
    from wizard.probe import Stage

    stage = Stage("config", False, ms, title)
    finding = Finding(codes.CONFIG_UNREADABLE, "warning",
                      f"The {kind} config could not be read: {title}",
                      detail.strip()[-500:] or title,
                      hint or "Give the main config file with --config.")
    return stage, finding


def _timed(fn: Callable[[], RouteFacts]) -> tuple[RouteFacts, float]:
    started = time.perf_counter()
    return fn(), _ms(started)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _kind(proxy: ProxyKind | str) -> ProxyKind:
    try:
        return ProxyKind(str(proxy).lower())
    except ValueError:
        raise BadInput(f"Unknown proxy kind {proxy!r}.",
                       "Use --proxy nginx, apache, caddy or node.") from None


MAX_BACKEND_CHECKS = 16
BACKEND_CHECK_TIMEOUT_S = 3.0


def check_backends(remote: Remote, backends: Sequence[str]) -> list[BackendCheck]:
    """Ask the proxy host whether each backend accepts a TCP connection.

    The addresses come from the proxy's config, so they are hostile input: each must pass the
    model's own host and port rules (what ``--backend`` accepts) or it is reported as not
    checked; the check itself is :meth:`Remote.tcp_check` (a direct-tcpip channel over SSH, a
    plain connect locally), never a shell. The checks run side by side (3 s each at most).
    """
    out: list[BackendCheck | None] = []
    todo: list[tuple[int, str, str, int]] = []
    for item in list(dict.fromkeys(backends))[:MAX_BACKEND_CHECKS]:
        host_port = backend_address_problem(item)
        if isinstance(host_port, str):
            shown = "".join(c if c.isprintable() else "?" for c in item[:80])
            out.append(BackendCheck(shown, False, f"not checked: {host_port}", checked=False))
            continue
        todo.append((len(out), item, *host_port))
        out.append(None)
    if todo:
        with ThreadPoolExecutor(max_workers=min(8, len(todo)),
                                thread_name_prefix="sockwizard-tcp") as pool:
            answers = pool.map(lambda t: remote.tcp_check(t[2], t[3], BACKEND_CHECK_TIMEOUT_S),
                               todo)
            for (index, item, _host, _port), answer in zip(todo, answers, strict=True):
                up = answer is True
                out[index] = BackendCheck(item, up, "accepts connections" if up
                                          else str(answer) or "refused or timed out")
    return [c for c in out if c is not None]
