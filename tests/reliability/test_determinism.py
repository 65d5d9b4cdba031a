"""Determinism on CPU: every command, run twice with the same seed, writes the same results.

Each command runs twice through the real CLI entry point on the tiny model. Tables (CSV) must
and safetensors must match byte for byte (`save_tensors` sorts the header's metadata, which
safetensors writes in hash-map order, and wall time is kept out of it); JSON must match once
wall-clock fields are dropped. GPU runs differ for the reasons RELIABILITY.md lists.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from reliability_helpers import fault_inject, registered, write_family


def log_result(command: str, **fields) -> None:
    import os

    path = os.environ.get("RELIABILITY_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps({"job": f"determinism:{command}", **fields}) + "\n")


def twice(cli, tmp_path: Path, make_args, name: str) -> tuple[Path, Path]:
    """Run `make_args(out)` into two fresh folders; both runs must succeed."""
    outs, seconds = [], []
    for i in (1, 2):
        out = tmp_path / f"{name}{i}"
        start = time.perf_counter()
        result = cli(*make_args(out))
        seconds.append(round(time.perf_counter() - start, 2))
        assert result.code == 0, result.stderr[-3000:]
        outs.append(out)
    log_result(name, seconds=seconds)
    return outs[0], outs[1]


def assert_same(a: Path, b: Path, name: str) -> None:
    semantic = fault_inject.diff_digests(fault_inject.tree_digest(a), fault_inject.tree_digest(b))
    tables = {p.relative_to(a) for p in (a.rglob("*.csv") if a.is_dir() else [])}
    tables |= {p.relative_to(a) for p in (a.rglob("*.safetensors") if a.is_dir() else [])}
    csv_bytes = [str(t) for t in sorted(tables) if (a / t).read_bytes() != (b / t).read_bytes()]
    raw = fault_inject.diff_digests(fault_inject.tree_digest(a, volatile_keys=()),
                                    fault_inject.tree_digest(b, volatile_keys=()))
    log_result(name, files=len(fault_inject.tree_digest(a)), tables=len(tables), semantic_differences=semantic,
               csv_differences=csv_bytes, raw_byte_differences=raw[:8])
    assert semantic == [], f"{name}: results differ between two runs with the same seed: {semantic}"
    assert csv_bytes == [], f"{name}: tables or tensors differ byte for byte: {csv_bytes}"




@pytest.fixture(scope="module")
def family(tmp_path_factory) -> Path:
    return write_family(tmp_path_factory.mktemp("family") / "words", words=20)


def test_capture_is_bitwise_deterministic(cli, tiny_lm: Path, tmp_path: Path):
    prompts = tmp_path / "prompts.txt"
    rng = random.Random(0)
    prompts.write_text("\n".join(" ".join(str(rng.randrange(50)) for _ in range(rng.randint(2, 12))) + " ->"
                                 for _ in range(80)) + "\n")
    a, b = twice(cli, tmp_path, lambda out: ["capture", "--model", tiny_lm, "--prompts", prompts, "--batch-size", "7",
                                             "--out", out / "acts.safetensors"], "capture")
    assert_same(a, b, "capture")
    assert (a / "acts.safetensors").read_bytes() == (b / "acts.safetensors").read_bytes()


def test_decodability_is_bitwise_deterministic(cli, tmp_path: Path):
    rng = np.random.default_rng(0)
    acts = tmp_path / "acts.npy"
    np.save(acts, (rng.standard_normal((3, 60, 16)) + np.repeat(np.eye(3, 16), 20, axis=0)[None]).astype(np.float32))
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(c for c in "abc" for _ in range(20)) + "\n")
    a, b = twice(cli, tmp_path, lambda out: ["decodability", acts, labels, "--k", "5", "--n-boot", "200", "--seed", "3",
                                             "--out", out / "td.json"], "decodability")
    assert (a / "td.json").read_bytes() == (b / "td.json").read_bytes()


SYNTHETIC = ["--set", "train.steps=120", "--set", "model.n_layers=2", "--set", "model.d_model=16", "--set",
             "model.n_heads=2", "--set", "train.batch_size=8", "--set", "task.n_points=6", "--set",
             "schedule.eval_every=40", "--set", "schedule.dense_every=40", "--set", "schedule.eval_per_concept=4",
             "--set", "train.threads=1"]


def test_synthetic_train_and_analyze_are_deterministic(cli, tmp_path: Path):
    threads = torch.get_num_threads()
    try:
        a, b = twice(cli, tmp_path, lambda out: ["synthetic", "train", "--out", out, *SYNTHETIC], "synthetic-train")
        assert_same(a, b, "synthetic-train")
        for run in (a, b):
            result = cli("synthetic", "analyze", run, "--no-umap", "--max-checkpoints", "4", "--sequences-per-basis",
                         "12", "--baseline-sequences", "2")
            assert result.code == 0, result.stderr[-3000:]
        assert_same(a, b, "synthetic-analyze")
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(not registered("llm", "run"), reason="`llm run` not there yet")
def test_llm_run_is_deterministic(cli, tiny_lm: Path, family: Path, tmp_path: Path):
    a, b = twice(cli, tmp_path, lambda out: ["llm", "run", "--model", tiny_lm, "--family", family, "--shots", "1,2",
                                             "--prompts-per-concept", "22", "--out", out], "llm-run")
    assert_same(a, b, "llm-run")


@pytest.mark.skipif(not registered("llm", "intervene"), reason="`llm intervene` not there yet")
def test_llm_intervene_is_deterministic(cli, tiny_lm: Path, family: Path, tmp_path: Path):
    a, b = twice(cli, tmp_path, lambda out: ["llm", "intervene", "--model", tiny_lm, "--family", family, "--layer", "1",
                                             "--shots", "2", "--prompts-per-concept", "6", "--replicates", "2",
                                             "--out", out], "llm-intervene")
    assert_same(a, b, "llm-intervene")


def test_finetune_training_is_bitwise_deterministic(tiny_lm: Path, family: Path, tmp_path: Path):
    """The training loop of `llm finetune` (LoRA, dropout on) twice in this process: same adapter bytes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("finetune_driver", Path(__file__).with_name("finetune_driver.py"))
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    threads = torch.get_num_threads()
    try:
        for i in (1, 2):
            driver.main(str(tiny_lm), str(family), str(tmp_path / f"ft{i}"), resume=False)
    finally:
        torch.set_num_threads(threads)
    assert_same(tmp_path / "ft1", tmp_path / "ft2", "finetune-loop")
    assert ((tmp_path / "ft1" / "adapter" / "adapter_model.safetensors").read_bytes()
            == (tmp_path / "ft2" / "adapter" / "adapter_model.safetensors").read_bytes())


@pytest.mark.slow
@pytest.mark.skipif(not registered("llm", "finetune"), reason="`llm finetune` not there yet")
def test_llm_finetune_cli_is_deterministic(cli, tiny_lm: Path, family: Path, tmp_path: Path):
    a, b = twice(cli, tmp_path, lambda out: ["llm", "finetune", "--model", tiny_lm, "--family", family, "--layers",
                                             "first:1", "--train-samples", "48", "--prompts-per-concept", "22",
                                             "--batch-size", "4", "--shots", "2", "--out", out], "llm-finetune")
    assert_same(a, b, "llm-finetune")


@pytest.mark.slow
@pytest.mark.skipif(not registered("sweep"), reason="`sweep` not there yet")
def test_sweep_is_deterministic(cli, tmp_path: Path):
    import yaml

    pytest.importorskip("ray")

    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump({"command": "python", "function": "conceptlens.sweep.toy.toy_decodability",
                                    "grid": {"seed": [0, 1], "separation": [0.5, 2.0]}}))
    a, b = twice(cli, tmp_path, lambda out: ["sweep", spec, "--out", out, "--num-cpus", "2"], "sweep")
    for run in (a, b):
        for name in ("attempts.jsonl", "sweep_status.json"):
            for path in run.rglob(name):
                path.unlink()
    assert_same(a, b, "sweep")


@pytest.mark.slow
def test_umap_leaves_torch_threads_alone():
    """numba's first parallel call resets OpenMP's thread count; the study must restore torch's, or a run's
    later numbers (and its weights fingerprint) depend on whether a UMAP ran before. Fresh process: ~20 s CPU."""
    import subprocess
    import sys

    code = ("import torch; torch.set_num_threads(1); import numpy as np\n"
            "from conceptlens.llm.encoding.study import umap_embedding\n"
            "umap_embedding(np.random.default_rng(0).standard_normal((40, 8)).astype('float32'), 0)\n"
            "print(torch.get_num_threads())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env=fault_inject.cli_env(threads=2))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "1"
