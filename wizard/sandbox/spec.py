"""The spec the sandbox deploys, and exactly what it had to change from the user's.

Called by ``wizard.sandbox.run.start_sandbox``; the CLI (``sockwizard sandbox``) and the TUI's
Deploy step print ``Substitution`` rows so a user knows which parts of the sandbox are their
config and which are the sandbox's own (issue #14: the sandbox tests the config that was
built). Everything that is kept is deployed as rendered: the path, the rewrite, the scope,
the timeouts, the ping settings and, with several backends, the balancing and its stickiness.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from wizard.model import Backend, DeploySpec, Layout, ProxyKind, Scope
from wizard.sandbox.procs import LOOPBACK


@dataclass(frozen=True)
class Substitution:
    """One value the sandbox runs with instead of the spec's, and why."""

    what: str
    spec: str
    sandbox: str
    why: str

    def __str__(self) -> str:
        return f"{self.what}: {self.spec} → {self.sandbox} ({self.why})"


def backend_ids(count: int) -> list[str]:
    """The id each demo backend answers with (``hello`` and ``echo``): backend-1, backend-2…"""
    return [f"backend-{i}" for i in range(1, count + 1)]


def sandbox_spec(kind: ProxyKind, base: DeploySpec | None, proxy_port: int,
                 backend_ports: Sequence[int]) -> tuple[DeploySpec, list[Substitution]]:
    """The user's spec pointed at the sandbox's own loopback ports — one demo backend per
    backend of the spec — and the list of every value that changed. TLS, a server name and a
    whole-config layout make no sense in a temp directory and are dropped (and listed)."""
    spec = base or DeploySpec()
    backends = tuple(Backend(LOOPBACK, port) for port in backend_ports)
    ids = backend_ids(len(backends))
    subs = []
    for i, new in enumerate(backends):
        old = str(spec.backends[i]) if i < len(spec.backends) else "(none)"
        why = f"a demo server answering as {ids[i]}"
        if i >= len(spec.backends):
            why += "; added: this needs several backends"
        subs.append(Substitution(f"backend {i + 1}", old, str(new), why))
    listen = f"{spec.listen_address or '*'}:{spec.listen_port}"
    subs.append(Substitution("listen", listen, f"{LOOPBACK}:{proxy_port}", "a free loopback port"))
    if spec.tls:
        subs.append(Substitution("TLS", f"{spec.tls_cert}", "plain HTTP",
                                 "no certificate for a loopback address"))
    if spec.server_name:
        subs.append(Substitution("server name", spec.server_name, "none",
                                 "the sandbox is reached by address"))
    if spec.layout is not Layout.SITE:
        subs.append(Substitution("layout", spec.layout.value, Layout.SITE.value,
                                 "the sandbox writes its own main config"))
    scope = spec.scope if spec.scope is Scope.ALL else Scope.SOCKETIO
    if scope is not spec.scope:
        subs.append(Substitution("scope", spec.scope.value, scope.value,
                                 "the sandbox has no static site"))
    built = dataclasses.replace(
        spec, proxy=kind, backends=backends, listen_address=LOOPBACK, listen_port=proxy_port,
        tls_cert=None, tls_key=None, layout=Layout.SITE, server_name=None, scope=scope,
    ).validated()
    return built, subs
