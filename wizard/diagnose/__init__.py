"""``sockwizard diagnose``: why Socket.IO clients see "transport close" (and its cousins).

The last stage of the pipeline: the live probe's report (``wizard.probe``) and the proxy's live
config, read over a Remote, in; findings out. The CLI and the TUI call :func:`run_diagnosis` and
print :func:`format_diagnosis`.

* ``facts``   — what is known about the route (RouteFacts, TimeoutFact, Where, Ping, ...)
* ``readers`` — one live-config reader per proxy, registered by kind (``READERS``)
* ``rules``   — pure rules over (facts, probe report) -> findings (the context they share:
  ``rules_context``; by topic: ``rules_timeout``, ``rules_browser``, ``rules_causes``,
  ``rules_host``)
* ``fixtext`` — a fix's config lines, rendered from the proxy's template macros (checked values)
* ``text``    — evidence wording, what passed, the human report
* ``run``     — the orchestration: threads, remote reads, the backend check, deadlines
"""

from wizard.diagnose.facts import (
    BackendCheck,
    Blocker,
    Listen,
    Ping,
    RouteFacts,
    RouteQuery,
    TimeoutFact,
    Where,
    ping_of,
)
from wizard.diagnose.fixtext import backend_address_problem
from wizard.diagnose.readers import CONFIG_DEADLINE_S, READERS, ConfigReadError, read_route
from wizard.diagnose.rules import diagnose, diagnose_with_notes
from wizard.diagnose.rules_context import grade_timeout, suggested_timeout
from wizard.diagnose.run import (
    BACKEND_CHECK_TIMEOUT_S,
    MAX_BACKEND_CHECKS,
    Diagnosis,
    check_backends,
    run_diagnosis,
)
from wizard.diagnose.text import format_diagnosis, passed_checks
from wizard.findings import (
    CODE_ORDER,
    CONFIG_UNREADABLE,
    ERROR_HANDLER_MISSING,
    Finding,
    Severity,
    merge,
    order,
)

__all__ = [
    "BACKEND_CHECK_TIMEOUT_S",
    "CODE_ORDER",
    "CONFIG_DEADLINE_S",
    "CONFIG_UNREADABLE",
    "ERROR_HANDLER_MISSING",
    "MAX_BACKEND_CHECKS",
    "READERS",
    "BackendCheck",
    "Blocker",
    "ConfigReadError",
    "Diagnosis",
    "Finding",
    "Listen",
    "Ping",
    "RouteFacts",
    "RouteQuery",
    "Severity",
    "TimeoutFact",
    "Where",
    "backend_address_problem",
    "check_backends",
    "diagnose",
    "diagnose_with_notes",
    "format_diagnosis",
    "grade_timeout",
    "merge",
    "order",
    "passed_checks",
    "ping_of",
    "read_route",
    "run_diagnosis",
    "suggested_timeout",
]
