"""spec -> config text, through the Jinja2 templates shipped in the package.

Called (through ``wizard.render``) by the CLI's ``render``, by the deploy (what to upload) and
by the TUI's preview.
Jinja2 runs with StrictUndefined and *without* autoescape: configs are not HTML, so instead
of escaping, the model refuses every value that could inject a directive before we get here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from wizard import __version__
from wizard.model import DeploySpec
from wizard.proxies import profile

if TYPE_CHECKING:
    import jinja2


@dataclass(frozen=True)
class Rendered:
    """A rendered config and where it goes by default."""

    spec: DeploySpec
    text: str
    dest: str  # default destination on the host for this proxy and layout
    filename: str  # what to call it locally (``-o`` default, TUI "save")
    syntax: str  # for highlighting: the profile's syntax (nginx, caddyfile, yaml, ...)


# wizard/render/engine.py -> wizard/
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def templates_dir() -> Path:
    """Installed wheels carry the templates inside the package (pyproject's force-include puts
    them at ``wizard/templates``); a checkout has them beside ``wizard/``."""
    inside = _PACKAGE_ROOT / "templates"
    return inside if inside.is_dir() else _PACKAGE_ROOT.parent / "templates"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The one Jinja2 environment (also :mod:`wizard.render.macros`'s)."""
    import jinja2  # imported here: `sockwizard --help` must not pay for it

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # configs, not HTML; inputs are validated instead
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    env.filters["regex_escape"] = _regex_escape
    env.filters["yaml_str"] = _yaml_str
    return env


def _regex_escape(path: str) -> str:
    """Escape a URL path for an Apache RewriteRule pattern (``^/socket\\.io/``)."""
    return re.sub(r"([.+*?()\[\]^$|])", r"\\\1", path)


def _yaml_str(value: object) -> str:
    """Any value as a YAML double-quoted scalar (a JSON string is one): whatever it holds,
    it stays one value in the file (Traefik's YAML)."""
    return json.dumps(str(value))


def render(spec: DeploySpec) -> Rendered:
    """Render the config for ``spec`` (which must be valid)."""
    spec = spec.validated()
    prof = profile(spec.proxy)
    template = environment().get_template(prof.templates[spec.layout])
    modules = prof.modules(spec)
    text = template.render(
        spec=spec,
        version=__version__,
        upstream=_upstream_name(spec),
        balancer="sockwizard",
        modules=modules,
        all_modules=["mpm_event", *modules],
        module_dir="modules",
        server_root="/usr/local/apache2",
        listen_host=_apache_listen_host(spec),
        listen_prefix=_listen_prefix(spec),
        dest=prof.default_dest[spec.layout],
    )
    text = _tidy(text)
    dest = prof.default_dest[spec.layout]
    return Rendered(spec=spec, text=text, dest=dest, filename=Path(dest).name,
                    syntax=prof.syntax)


def _upstream_name(spec: DeploySpec) -> str:
    return "socketio_nodes" if spec.sticky else str(spec.backends[0])


def _apache_listen_host(spec: DeploySpec) -> str:
    if spec.listen_address is None:
        return "*"
    return f"[{spec.listen_address}]" if ":" in spec.listen_address else spec.listen_address


def _listen_prefix(spec: DeploySpec) -> str:
    return "" if spec.listen_address is None else _apache_listen_host(spec) + ":"


def _tidy(text: str) -> str:
    """Collapse runs of blank lines the template logic leaves behind; end with one newline."""
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    text = re.sub(r"([{>])\n\n", r"\1\n", text)  # no blank line right after a block opens
    text = re.sub(r"\n\n([ \t]*\}\n)", r"\n\1", text)  # ...nor right before it closes
    return text.strip("\n") + "\n"

