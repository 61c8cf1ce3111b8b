"""``wizard.eio`` moved to ``wizard.probe.wire``; this name stays only until the packages merge.

# transitional: removed at integration (``wizard.diagnose`` and ``wizard.deploy`` switch their
# imports to ``wizard.probe.wire`` in their own split).
"""

# transitional: removed at integration
from wizard.probe.wire import *  # noqa: F403
from wizard.probe.wire import __all__  # noqa: F401
