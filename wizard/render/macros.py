"""One macro of a proxy's ``templates/<kind>/_macros.j2``, rendered on its own.

The templates build a config from these macros; ``wizard.diagnose`` renders the same macros
for the lines a fix tells the user to paste, so the route block, the sticky-session policy and
the timeout directives have one source. Same Jinja2 environment as :func:`wizard.render.render`
(StrictUndefined, no autoescape): callers pass only values the model has validated.
"""

from __future__ import annotations

from typing import Any

from wizard.model import ProxyKind
from wizard.render.engine import environment

# The macros every proxy's _macros.j2 defines for diagnose's fixes: (spec), (spec, balancer),
# (spec, existing). A test checks each kind has them.
FIX_MACROS = ("fix_route", "fix_sticky", "fix_timeout")


def macros_template(kind: ProxyKind) -> str:
    return f"{kind.value}/_macros.j2"


def snippet(kind: ProxyKind, macro: str, **values: Any) -> str:
    """The text ``macro`` renders for ``kind`` with these (already validated) values."""
    module = environment().get_template(macros_template(kind)).module
    return str(getattr(module, macro)(**values))
