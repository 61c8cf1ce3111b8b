"""The flags several subcommands share (``wizard.commands._flags``) agree with the core they
feed: ``--backup-dir`` names and falls back to the deploy package's own default."""

from __future__ import annotations

import pytest

from wizard.cli import build_parser
from wizard.commands import _flags
from wizard.deploy import DEFAULT_BACKUP_DIR
from wizard.model import ProxyKind


def test_the_flags_default_backup_dir_is_the_deploys() -> None:
    assert _flags.DEFAULT_BACKUP_DIR == DEFAULT_BACKUP_DIR


@pytest.mark.parametrize("argv", [
    ["deploy", "--host", "h", "--proxy", "nginx"],
    ["diagnose", "http://127.0.0.1:1"],
    ["rollback", "--host", "h"],
    ["history", "--host", "h"],
])
def test_backup_dir_is_the_flag_or_the_default(argv: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert _flags.backup_dir(parser.parse_args(argv)) == DEFAULT_BACKUP_DIR
    given = parser.parse_args([*argv, "--backup-dir", "/srv/backups"])
    assert _flags.backup_dir(given) == "/srv/backups"
    with pytest.raises(SystemExit):
        parser.parse_args([argv[0], "--help"])
    assert f"(default {DEFAULT_BACKUP_DIR})" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command", ["render", "deploy", "sandbox", "diagnose", "export"])
def test_proxy_help_names_every_proxy(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The help once listed four of the six: it now comes from the enum every command accepts.
    argv = [command, "ansible"] if command == "export" else [command]
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    line = help_text[help_text.index("--proxy KIND", help_text.index("options")):][:120]
    for kind in ProxyKind:
        assert kind.value in line, (kind, line)
