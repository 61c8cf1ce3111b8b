"""The non-interactive commands: one module per subcommand (``wizard.cli.COMMANDS`` lists
them), each with ``register(subparsers)`` (its parser and ``handler``) and ``run(args) -> int``.

``_flags`` holds the flag groups several commands share and turns flags into the core's typed
options; ``_print`` holds what they print (progress on stderr, tables, the exit-code epilog).
Modules here import only the standard library and ``wizard.model``/``wizard.errors`` at import
time: building the parser must stay cheap, and the CLI never loads Textual. The work itself
lives in the core packages (render, deploy, probe, diagnose, sandbox), imported in ``run``.
"""
