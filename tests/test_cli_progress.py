"""``probe`` and ``diagnose`` show each stage once on a terminal (issue 14): the live progress
on stderr replaces itself on one line when stdout, where the table of every stage goes at the
end, is the same terminal; piped, it stays one line per stage. Times from a second on read in
seconds (a 50 s hold is ``50.0 s``, not ``50026.6 ms``)."""

from __future__ import annotations

import io

import pytest

from wizard.commands._print import StageProgress
from wizard.probe import ProbeReport, Stage, format_report


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


STAGES = (Stage("tcp", True, 0.4, "connected"), Stage("hold", True, 50026.6, "held"))


def test_on_a_terminal_the_progress_is_one_line_cleared_at_the_end(
        monkeypatch: pytest.MonkeyPatch) -> None:
    err = Tty()
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setattr("sys.stdout", Tty())
    progress = StageProgress()
    for stage in STAGES:
        progress(stage)
    progress.close()
    text = err.getvalue()
    assert "\n" not in text and text.endswith("\r\x1b[K")
    assert "50.0 s" in text


def test_piped_the_progress_is_a_line_per_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    err = Tty()
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setattr("sys.stdout", io.StringIO())  # stdout redirected: keep the lines
    progress = StageProgress()
    for stage in STAGES:
        progress(stage)
    progress.close()
    assert err.getvalue().count("\n") == 2 and "\r" not in err.getvalue()


def test_the_table_gives_a_hold_in_seconds() -> None:
    table = format_report(ProbeReport("http://x", "/socket.io/", True, "websocket", None,
                                      STAGES, ()))
    assert "50.0 s" in table and "50026.6" not in table and "0.4 ms" in table
