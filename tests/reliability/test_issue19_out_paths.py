"""Issue 19, class 6 (and 3): a bad `--out` in every command is one clear error, before any work.

Each row runs the real CLI entry point (`conceptlens.cli.main.main`) with an `--out` that is an
existing file, a path under a file, empty, or in a folder that may not be written (simulated:
the tests run as root, which writes anywhere, so `os.access` is patched), or that is an input.
A row passes when the exit code is 2, there is one `error:` and one `fix:` line, no traceback, and
every file that existed before is byte-for-byte unchanged with nothing new beside it.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reliability_helpers import assert_clean_error, fault_inject, write_family

TINY_SYN = ["--set", "steps=3", "--set", "model.n_layers=1", "--set", "model.d_model=16", "--set", "model.n_heads=2"]


def fake_llm_run(folder: Path) -> Path:
    """The tables `llm compare` and `report` read, as an `llm run` writes them (two layers, k = 1)."""
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"family": "fam", "model": "m", "settings": {"k": 1}}))
    pd.DataFrame([dict(shots=1, layer=layer, concept=c, td=0.5 + 0.1 * layer)
                  for layer in (0, 1) for c in ("a", "b", "Null")]).to_csv(folder / "decodability.csv", index=False)
    pd.DataFrame([dict(shots=1, concept=c, accuracy=0.5) for c in ("a", "b", "Null")]).to_csv(
        folder / "accuracy.csv", index=False)
    return folder


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(0)
    np.save(d / "acts.npy", rng.standard_normal((2, 40, 8)).astype(np.float32))
    (d / "labels.txt").write_text("\n".join(["red", "blue"] * 20) + "\n")
    (d / "sweep.yaml").write_text("command: python\nfunction: conceptlens.sweep.toy.toy_decodability\n"
                                  "grid: {seed: [0]}\n")
    write_family(d / "fam")
    fake_llm_run(d / "run")
    return {p.name: p for p in d.iterdir()}


def commands(model: Path, files: dict[str, Path]) -> dict[str, list]:
    """Every command that writes under --out, with valid inputs; --out comes last."""
    return {
        "decodability": ["decodability", files["acts.npy"], files["labels.txt"], "--n-boot", "5", "--out"],
        "llm run": ["llm", "run", "--model", model, "--family", files["fam"], "--shots", "1",
                    "--prompts-per-concept", "22", "--out"],
        "llm finetune": ["llm", "finetune", "--model", model, "--family", files["fam"], "--layers", "first:1",
                         "--train-samples", "4", "--prompts-per-concept", "22", "--out"],
        "llm compare": ["llm", "compare", files["run"], "--shots", "1", "--out"],
        "report": ["report", files["run"], "--out"],
        "synthetic train": ["synthetic", "train", *TINY_SYN, "--out"],
        "sweep": ["sweep", files["sweep.yaml"], "--out"],
    }


def _not_writable(monkeypatch, folder: Path) -> None:
    real = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path) == folder and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


BAD_OUT = ["existing-file", "under-a-file", "empty", "not-writable"]
FILE_OUTPUTS = ("decodability", "report")


CASES = [pytest.param(command, bad)
         for command in ("decodability", "llm run", "llm finetune", "llm compare", "report", "synthetic train",
                         "sweep") for bad in BAD_OUT]


@pytest.mark.parametrize("command,bad", CASES)
def test_bad_out_is_one_clear_error(command: str, bad: str, tmp_path: Path, tiny_lm: Path, inputs, cli,
                                    monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "f").write_text("not a folder\n")
    monkeypatch.chdir(work)  # an empty --out must not become the current folder
    if bad == "existing-file":
        if command in FILE_OUTPUTS:  # a file result may replace a file; a folder is refused instead
            (work / "d").mkdir()
            out = work / "d"
        else:
            out = work / "f"
    elif bad == "under-a-file":
        out = work / "f" / "sub" / ("out.json" if command in FILE_OUTPUTS else "")
    elif bad == "empty":
        out = ""
    else:
        (work / "locked").mkdir()
        _not_writable(monkeypatch, work / "locked")
        out = work / "locked" / ("out.json" if command in FILE_OUTPUTS else "run")
    before = fault_inject.tree_digest(work, ignore=())
    inputs_before = fault_inject.tree_digest(tmp_path / "in", ignore=())
    result = cli(*commands(tiny_lm, inputs)[command], out)
    assert_clean_error(result)
    assert fault_inject.tree_digest(work, ignore=()) == before, "the failing command wrote or changed files"
    assert sorted(p.name for p in work.iterdir()) == sorted(["f"] + [n for n in ("d", "locked") if (work / n).exists()])
    assert fault_inject.tree_digest(tmp_path / "in", ignore=()) == inputs_before, "an input was changed"


@pytest.mark.parametrize("which", ["labels", "acts"])
def test_out_equal_to_an_input_is_refused(which: str, inputs, cli):
    """`decodability ACTS LABELS --out LABELS` replaced the labels with JSON (exit 0)."""
    target = inputs["labels.txt"] if which == "labels" else inputs["acts.npy"]
    before = target.read_bytes()
    result = cli("decodability", inputs["acts.npy"], inputs["labels.txt"], "--n-boot", "5", "--out", target)
    assert_clean_error(result, "is also an input")
    assert target.read_bytes() == before


def test_report_out_that_is_a_file_of_the_run_is_refused(inputs, cli):
    summary = inputs["run"] / "summary.json"
    before = summary.read_bytes()
    result = cli("report", inputs["run"], "--out", summary)
    assert_clean_error(result, "is also an input")
    assert summary.read_bytes() == before


def test_last_resort_maps_any_os_error(inputs, cli, monkeypatch, tmp_path: Path):
    """An OSError no check foresaw (here EIO while writing the result) is one error and one fix."""
    import conceptlens.storage

    def broken(path, obj):
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(conceptlens.storage, "write_json", broken)
    result = cli("decodability", inputs["acts.npy"], inputs["labels.txt"], "--n-boot", "5", "--out",
                 tmp_path / "out.json")
    assert_clean_error(result, "Input/output error")
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("bad", ["file", "read-only"])
def test_cache_that_cannot_be_written_fails_fast(bad: str, tmp_path: Path, inputs, cli, monkeypatch):
    """CONCEPTLENS_CACHE naming a file or a read-only folder failed only after the 35-53 s conversion."""
    cache = tmp_path / "cache"
    if bad == "file":
        cache.write_text("x")
    else:
        cache.mkdir()
        _not_writable(monkeypatch, cache)
    monkeypatch.setenv("CONCEPTLENS_CACHE", str(cache))
    result = cli("capture", "--model", "smollm2-135m", "--prompts", inputs["labels.txt"], "--out",
                 tmp_path / "a.safetensors")
    assert_clean_error(result, "CONCEPTLENS_CACHE")
    assert not (tmp_path / "a.safetensors").exists() and not (tmp_path / "a.safetensors.parts").exists()
    assert cache.is_file() or not any(cache.iterdir())
