"""Defer ``invoke``: paramiko.config imports it when paramiko is imported, for one feature.

``invoke`` (a paramiko dependency) runs the commands of ``Match exec`` lines in ~/.ssh/config,
and nothing else here needs it; importing it costs ~45 ms per process (its vendored YAML,
``unittest.mock``), a tenth of a one-host deploy's own time. :func:`defer_invoke` puts a
stand-in module under the name: paramiko's ``import invoke`` binds it at once, and the first
attribute asked of it (``invoke.run``, for a ``Match exec``) imports the real package and
answers from it. (The standard library's ``LazyLoader`` does not help here: on Python 3.11 the
``import`` statement itself reads the lazy module's ``__spec__``, which loads it.)
Called by ``wizard.remote.ssh`` before any paramiko import.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

_LOCK = threading.Lock()


class _Deferred(types.ModuleType):
    """Stands for ``invoke`` until an attribute is asked of it."""

    def __getattr__(self, name: str) -> Any:  # only for names the stand-in lacks
        with _LOCK:
            if sys.modules.get("invoke") is self:
                del sys.modules["invoke"]
            real = importlib.import_module("invoke")
        return getattr(real, name)


def defer_invoke() -> None:
    if "invoke" in sys.modules or importlib.util.find_spec("invoke") is None:
        return  # already imported, or not installed (paramiko then reports it itself)
    sys.modules["invoke"] = _Deferred("invoke", "a stand-in until first use (lazy_invoke)")
