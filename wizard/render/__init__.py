"""Stage 3 of the pipeline: a valid ``DeploySpec`` -> config text, plus the path snippets.

``engine`` renders the Jinja2 templates (StrictUndefined, no autoescape: the model refuses
unsafe values instead); ``macros`` renders one macro of a proxy's ``_macros.j2`` (the config
pieces diagnose's fixes share with the templates); ``snippets`` gives the server/client
``path`` settings that must match the rendered route. Callers (commands, deploy, TUI, tests,
diagnose) import from here only.
"""

from __future__ import annotations

from wizard.model import Layout
from wizard.render.engine import Rendered, render, templates_dir
from wizard.render.macros import FIX_MACROS, snippet
from wizard.render.snippets import Snippet, format_snippets, path_snippets

__all__ = ["FIX_MACROS", "Layout", "Rendered", "Snippet", "format_snippets", "path_snippets",
           "render", "snippet", "templates_dir"]
