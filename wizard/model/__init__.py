"""The deploy spec: one frozen value that every front end builds and every later step reads.

Flags (``wizard.commands``), a TOML file (``wizard.spec_file``) and the TUI's form all produce
raw values; ``build_spec`` turns them into a ``DeploySpec`` or raises ``InvalidSpec`` listing
*every* problem at once, each naming its field. Validation lives here only: the templates
trust the spec. No I/O in this package. Its modules, bottom up::

    values  the vocabulary: ProxyKind, Scope, Layout, Backend, Problem, the defaults
    checks  the value rules: hostile characters, hosts, server names, ports, paths, timeouts
    spec    DeploySpec, its derived values, problems() and validated()
    build   build_spec and the typed converters from TOML/flags/form; parse_backend/_listen
"""

from wizard.model.build import build_spec, parse_backend, parse_listen
from wizard.model.checks import (
    file_path_problems,
    host_problems,
    hostile_problem,
    path_problems,
    port_problems,
    server_name_problems,
    smallest_safe_timeout,
    timeout_problem,
    timeout_problems,
)
from wizard.model.spec import DeploySpec
from wizard.model.values import (
    DEFAULT_PATH,
    DEFAULT_PING_INTERVAL_MS,
    DEFAULT_PING_TIMEOUT_MS,
    MAX_BACKENDS,
    MAX_TEXT,
    PROXY_NAMES,
    Backend,
    Layout,
    Problem,
    ProxyKind,
    Scope,
)

__all__ = [
    "DEFAULT_PATH",
    "DEFAULT_PING_INTERVAL_MS",
    "DEFAULT_PING_TIMEOUT_MS",
    "MAX_BACKENDS",
    "MAX_TEXT",
    "PROXY_NAMES",
    "Backend",
    "DeploySpec",
    "Layout",
    "Problem",
    "ProxyKind",
    "Scope",
    "build_spec",
    "file_path_problems",
    "host_problems",
    "hostile_problem",
    "parse_backend",
    "parse_listen",
    "path_problems",
    "port_problems",
    "server_name_problems",
    "smallest_safe_timeout",
    "timeout_problem",
    "timeout_problems",
]
