"""`python -m wizard` runs the same entry point as the `sockwizard` script."""

from wizard.cli import entry

entry()
