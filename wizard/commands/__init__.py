"""The non-interactive commands. Each module has ``register(subparsers)`` and a handler.

Modules here import only the standard library at import time: building the parser must stay
cheap, and the CLI never loads Textual. The work itself lives in the core modules.
"""
