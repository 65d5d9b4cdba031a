"""Fixtures of the reliability matrix (helpers live in `reliability_helpers`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the tests import `reliability_helpers` by name

from reliability_helpers import CliResult, save_tiny_llama

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # an unknown hub id must fail at once, not after ~45 s of retries


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    """Path of a tiny local model folder (random Llama + SmolLM2 tokenizer)."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-lm") / "model")


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `conceptlens ARGS` in this process through the real entry point; returns CliResult.

    Any exception other than SystemExit propagates (a traceback is a test failure by itself).
    """
    from conceptlens.cli.main import main

    monkeypatch.setenv("COLUMNS", "400")  # rich must not wrap the message we search

    def invoke(*args) -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["conceptlens", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return invoke
