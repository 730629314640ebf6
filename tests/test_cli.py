"""The CLI skeleton: help works, errors are one line."""

from __future__ import annotations

import subprocess
import sys

from egain.cli.main import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_module_entry_point_runs():
    res = subprocess.run(
        [sys.executable, "-m", "egain", "--version"], capture_output=True, text=True, check=True
    )
    assert res.stdout.startswith("egain ")
