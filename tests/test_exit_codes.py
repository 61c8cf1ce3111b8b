"""The exit-code table is written once (``wizard.errors.ExitCode``, a docstring per member);
every ``--help`` and the README's "Exit codes" table are generated from it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from wizard.cli import COMMANDS, build_parser
from wizard.commands._print import exit_codes_epilog, exit_codes_markdown
from wizard.errors import ExitCode

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_code_has_a_meaning() -> None:
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 5, 6, 7, 130]
    for code in ExitCode:
        assert code.meaning and code.meaning != ExitCode.__doc__, code.name
        assert ExitCode(int(code)) is code  # the docstring does not change the value


def test_readme_table_is_the_generated_one() -> None:
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Exit codes\n\n(.*?)\n(?=## )", text, re.S | re.M)
    assert section, "README has no '## Exit codes' section"
    assert section.group(1) == exit_codes_markdown(), (
        "README's exit-code table differs from wizard.errors.ExitCode; paste this:\n"
        + exit_codes_markdown())


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_help_ends_with_the_table() -> None:
    parser = build_parser()
    subs = _subparsers(parser)
    assert list(subs) == list(COMMANDS)
    epilog = exit_codes_epilog()
    assert epilog in parser.format_help()
    for name, sub in subs.items():
        assert sub.format_help().rstrip().endswith(epilog), f"`sockwizard {name} --help`"
    for code in ExitCode:  # each code, with its meaning, is in the table
        assert f"  {int(code):<3}  {code.meaning[:40]}" in epilog
