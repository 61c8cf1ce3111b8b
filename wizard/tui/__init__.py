"""The Textual front end: ``sockwizard`` with no arguments opens it (``cli`` -> ``app.run_app``).

Only this package imports Textual (a test checks that the plain commands never load it). Every
step here calls the same core functions the CLI calls; the screens add layout, not logic.
"""
