"""sockwizard: get a Socket.IO server working behind a reverse proxy, and prove it works.

This module only carries the version: the CLI imports it on every start, so it stays free of
heavy imports (Textual, paramiko, socketio are loaded by the commands that need them).
"""

__version__ = "0.1.0"
