"""The `cli` fixture of the command tests: the real entry point, in this process."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture
def cli(capsys, monkeypatch):
    """`cli(*args) -> (exit code, stdout + stderr)`, run in this process through `main()`."""
    from conceptlens.cli.main import main

    monkeypatch.setenv("COLUMNS", "300")  # no wrapping inside the messages we look for

    def invoke(*args) -> tuple[int, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["conceptlens", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return invoke
