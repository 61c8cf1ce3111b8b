"""``python -m wizard.sandbox backend --port P [--path P]``: the demo backend the sandbox spawns.

Started by ``wizard.sandbox.run.start_sandbox`` in its own process (see ``backend``).
"""

import sys

from wizard.sandbox.backend import backend_main

if sys.argv[1:2] != ["backend"]:
    raise SystemExit("usage: python -m wizard.sandbox backend --port P [--path P]")
raise SystemExit(backend_main(sys.argv[2:]))
