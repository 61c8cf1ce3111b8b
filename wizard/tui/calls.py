"""Core calls over a ``WizardState`` that more than one step makes, and the probe's URL parser.

The Preview step's diff and the Deploy step's dry run and deploy are the same transaction
(``wizard.deploy.apply``) over the state's connection: ``deploy_options`` and ``apply_on``
live here so neither screen imports the other. They block (paramiko, the proxy's checker):
screens run them with ``StepScreen.in_thread``.

``url_problem`` checks a URL with the probe's own parser, so the Diagnose step's words are the
ones ``sockwizard probe`` prints; this is the TUI's one import of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from wizard.deploy import DeployOptions, DeployResult, EventSink, apply
from wizard.errors import ProbeFailed
from wizard.model import DeploySpec
from wizard.probe.wire import normalize_path, parse_url
from wizard.tui.state import Connection, WizardState

T = TypeVar("T")


def deploy_options(state: WizardState, **kw: Any) -> DeployOptions:
    """The deploy flags the Target step's overrides stand for."""
    choice = state.target
    return DeployOptions(dest=choice.dest, validate_cmd=choice.validate_cmd,
                         reload_cmd=choice.reload_cmd, probe_url=choice.probe_url, **kw)


def apply_on(state: WizardState, options: DeployOptions,
             on_event: EventSink | None = None) -> DeployResult:
    """``wizard.deploy.apply`` over the state's connection (one thread at a time on it)."""
    conn = state.connection
    assert conn is not None, "the Target step always connects before a deploy or a dry run"
    kwargs: dict[str, Any] = {"probe_host": conn.host_name, "host": conn.remote.name}
    if on_event is not None:
        kwargs["on_event"] = on_event
    with conn.lock:
        return apply(conn.remote, state.spec, options, **kwargs)


def deploy_question(spec: DeploySpec, where: str, planned: DeployResult | None) -> str:
    """What the Deploy step asks before a deploy to a real host: which host, which file (the
    dry run's), what happens, and every warning the dry run raised."""
    dest = planned.dest if planned and planned.dest else "the file detected on the host"
    new_file = planned is not None and planned.new_file
    lines = [f"Write {dest} on {where}, validate it and reload {spec.proxy.value}?",
             "There is no file there yet: it is removed again if the validation, the reload "
             "or the probe fails." if new_file else
             "The current file is backed up first and put back if the validation, the reload "
             "or the probe fails."]
    lines += [f"! {w}" for w in (planned.warnings if planned else ())]
    return "\n\n".join(lines)


def locked(conn: Connection, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` holding the connection (one thread at a time on it)."""
    with conn.lock:
        return fn(*args, **kwargs)


def url_problem(url: str, path: str) -> str | None:
    """What the probe would refuse about this URL/path (None: fine)."""
    try:
        parse_url(url, normalize_path(path or "/socket.io/"))
    except ProbeFailed as exc:
        return exc.title
    return None
