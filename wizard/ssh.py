"""Transitional alias: SSH moved to ``wizard.remote.ssh``; import it through ``wizard.remote``.

Only ``wizard/deploy.py`` (being split in parallel, issue #11) still imports from here; delete
this file once it imports ``wizard.remote`` instead.
"""

from __future__ import annotations

from wizard.remote.ssh import parse_target

__all__ = ["parse_target"]
