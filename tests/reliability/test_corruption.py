"""Damaged files and full disks: a truncated or altered checkpoint/shard is named, never used;
a write that runs out of space leaves the previous result whole.

Corruption is made by hand (truncate to half, or flip one byte in the tensor data); full disks
by monkeypatching the write to put half its bytes down and raise `OSError(ENOSPC)`, and, when
this process may mount, by a real 64 KiB tmpfs.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from conceptlens.errors import ConceptLensError
from reliability_helpers import assert_clean_error, fault_inject, run_cli

SYN_OVERRIDES = ["train.steps=120", "model.n_layers=1", "model.d_model=16", "model.n_heads=2", "train.batch_size=8",
                 "train.warmup=5", "task.n_points=6", "schedule.eval_every=20", "schedule.dense_every=40",
                 "schedule.eval_per_concept=4", "train.threads=1"]


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_last_byte(path: Path) -> None:
    """Alter one byte of tensor data (the end of a safetensors file is data, never header)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {"truncated": truncate, "altered": flip_last_byte}


def _syn_config():
    from conceptlens.synthetic.config import load_config

    return load_config("quick", SYN_OVERRIDES)


@pytest.fixture(scope="module")
def synthetic_reference(tmp_path_factory) -> tuple[Path, dict]:
    from conceptlens.synthetic.train import train

    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("syn") / "reference"
    try:
        train(_syn_config(), out)
    finally:
        torch.set_num_threads(threads)
    return out, fault_inject.tree_digest(out)


# ---- synthetic checkpoints -----------------------------------------------------------------------------
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_checkpoint_is_named_and_never_loaded(damage: str, synthetic_reference, tmp_path: Path):
    from conceptlens.synthetic.train import checkpoint_path, load_checkpoint  # noqa: I001

    run = tmp_path / "run"
    shutil.copytree(synthetic_reference[0], run)
    target = checkpoint_path(run, 120)
    DAMAGE[damage](target)
    with pytest.raises(ConceptLensError) as info:
        load_checkpoint(run, 120)
    assert target.name in str(info.value), str(info.value)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_resume_skips_a_damaged_checkpoint_and_ends_identical(damage: str, synthetic_reference, tmp_path: Path):
    """Kill-free version of the fault test: damage the latest checkpoint, resume, compare bitwise."""
    from conceptlens.synthetic.train import checkpoint_path, train

    run = tmp_path / "run"
    shutil.copytree(synthetic_reference[0], run)
    for step in (120,):  # the last checkpoint (weights + optimizer); the run restarts from step 80
        DAMAGE[damage](checkpoint_path(run, step))
    (run / "checkpoints" / "step_0000120.optim.safetensors").unlink()  # as if killed while saving it
    threads = torch.get_num_threads()
    try:
        train(_syn_config(), run, resume=True)
    finally:
        torch.set_num_threads(threads)
    assert fault_inject.diff_digests(synthetic_reference[1], fault_inject.tree_digest(run)) == []
    assert fault_inject.corrupt_files(run) == []


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_analyze_names_a_damaged_checkpoint(damage: str, synthetic_reference, tmp_path: Path, cli):
    run = tmp_path / "run"
    shutil.copytree(synthetic_reference[0], run)
    DAMAGE[damage](run / "checkpoints" / "step_0000040.safetensors")
    result = cli("synthetic", "analyze", run, "--no-umap", "--max-checkpoints", "4", "--sequences-per-basis", "12",
                 "--baseline-sequences", "2")
    assert_clean_error(result, "step_0000040.safetensors")


def test_resume_right_after_the_first_checkpoint_ends_identical(synthetic_reference, tmp_path: Path):
    """Killed between the step-0 checkpoint and the next one: the rerun must not log step 0 twice.

    Found by the sweep fault test (a cell killed at step ~10): metrics.jsonl held two step-0 rows."""
    import importlib

    train_module = importlib.import_module("conceptlens.synthetic.train")

    class Killed(Exception):
        pass

    def kill_at_10(step, info):
        if step == 10:
            raise Killed

    run = tmp_path / "run"
    threads = torch.get_num_threads()
    try:
        with pytest.raises(Killed):
            train_module.train(_syn_config(), run, callback=kill_at_10)
        assert train_module.checkpoint_steps(run) == [0]
        train_module.train(_syn_config(), run, resume=True)
    finally:
        torch.set_num_threads(threads)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)), f"duplicated metrics rows: {steps}"
    assert fault_inject.diff_digests(synthetic_reference[1], fault_inject.tree_digest(run)) == []


# ---- capture shards and results -----------------------------------------------------------------------
def _capture(tiny_lm: Path, prompts: list[str], out: Path, **kwargs):
    from conceptlens.activations.capture import capture_activations, encode_prompts
    from conceptlens.models import load_model

    lm = load_model(str(tiny_lm))
    encoded = encode_prompts(lm.tokenizer, prompts)
    return capture_activations(lm.model, lm.layout, encoded, out=out, pad_id=lm.tokenizer.pad_token_id,
                               model_name=str(tiny_lm), **kwargs)


PROMPTS = [f"{i} plus {i % 7} ->" for i in range(40)]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_shard_is_recomputed_not_used(damage: str, tiny_lm: Path, tmp_path: Path, monkeypatch):
    """Shards of an interrupted capture: a damaged one fails its checksum and is computed again."""
    from conceptlens.activations import capture as capture_module
    from conceptlens.storage import verify_checksum

    reference = tmp_path / "reference.safetensors"
    _capture(tiny_lm, PROMPTS, reference, shard_size=16, batch_size=4)
    out = tmp_path / "acts.safetensors"
    calls = {"n": 0}
    real_assemble = capture_module._assemble

    def interrupted(*args, **kwargs):  # stop after every shard is written, before assembling
        calls["n"] += 1
        raise KeyboardInterrupt

    monkeypatch.setattr(capture_module, "_assemble", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _capture(tiny_lm, PROMPTS, out, shard_size=16, batch_size=4)
    shard = out.parent / "acts.safetensors.parts" / "shard_00001.safetensors"
    DAMAGE[damage](shard)
    with pytest.raises(ConceptLensError) as info:
        verify_checksum(shard)
    assert shard.name in str(info.value)
    monkeypatch.setattr(capture_module, "_assemble", real_assemble)
    recomputed = []
    real_forward = capture_module.forward_batch
    monkeypatch.setattr(capture_module, "forward_batch",
                        lambda *a, **k: recomputed.append(len(a[2])) or real_forward(*a, **k))
    _capture(tiny_lm, PROMPTS, out, shard_size=16, batch_size=4)
    assert sum(recomputed) == 16, "exactly the damaged shard (16 prompts) is recomputed"
    assert out.read_bytes() == reference.read_bytes()


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_capture_result_is_named_by_decodability(damage: str, tiny_lm: Path, tmp_path: Path, cli):
    out = tmp_path / "acts.safetensors"
    _capture(tiny_lm, PROMPTS, out)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(["even", "odd"] * 20) + "\n")
    DAMAGE[damage](out)
    result = cli("decodability", out, labels, "--k", "3", "--n-boot", "10", "--out", tmp_path / "td.json")
    assert_clean_error(result, "acts.safetensors")
    assert not (tmp_path / "td.json").exists()


# ---- finetuning checkpoint --------------------------------------------------------------------------
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_finetune_checkpoint_is_named(damage: str, tmp_path: Path):
    from conceptlens.llm.finetune.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = torch.nn.Linear(8, 8)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 8)).sum().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path, 3, model, optimizer)
    DAMAGE[damage](path)
    with pytest.raises(ConceptLensError) as info:
        load_checkpoint(tmp_path, model, torch.optim.AdamW(model.parameters()))
    assert path.name in str(info.value)


# ---- full disk (monkeypatched ENOSPC) ---------------------------------------------------------------
def _enospc_after_half(real_write):
    def write(self, data):
        real_write(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    return write


def test_full_disk_keeps_previous_json(tmp_path: Path, monkeypatch):
    from conceptlens.storage import write_json

    path = tmp_path / "result.json"
    write_json(path, {"td": 0.5})
    before = path.read_bytes()
    monkeypatch.setattr(Path, "write_bytes", _enospc_after_half(Path.write_bytes))
    with pytest.raises(OSError) as info:
        write_json(path, {"td": 0.9, "pad": "x" * 10000})
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert fault_inject.leftovers(tmp_path) == []


def test_full_disk_keeps_previous_table(tmp_path: Path, monkeypatch):
    import pandas as pd

    from conceptlens.storage import write_table

    write_table(tmp_path / "td.csv", pd.DataFrame({"layer": [0, 1], "td": [0.5, 0.6]}))
    before = fault_inject.tree_digest(tmp_path)
    real = pd.DataFrame.to_parquet

    def full(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PAR1 half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(OSError):
        write_table(tmp_path / "td.csv", pd.DataFrame({"layer": [0, 1], "td": [0.9, 0.9]}))
    monkeypatch.setattr(pd.DataFrame, "to_parquet", real)
    # neither file was replaced: the pair still agrees
    assert fault_inject.tree_digest(tmp_path) == before
    assert fault_inject.corrupt_files(tmp_path) == [] and fault_inject.leftovers(tmp_path) == []


def test_full_disk_during_training_keeps_checkpoints_and_resumes(synthetic_reference, tmp_path: Path, monkeypatch):
    """ENOSPC while saving the step-80 checkpoint: steps <= 40 stay whole; a rerun ends identical."""
    import importlib

    train_module = importlib.import_module("conceptlens.synthetic.train")
    checkpoints = importlib.import_module("conceptlens.synthetic.checkpoints")  # where checkpoints are saved
    real_save = checkpoints.save_tensors

    def save(path, tensors, metadata=None, checksum=False):
        if "step_0000080" in str(path):
            from safetensors.torch import save_file

            def half(tensors_, filename, metadata=None):
                Path(filename).write_bytes(b"\0" * 100)
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr("safetensors.torch.save_file", half)
            try:
                return real_save(path, tensors, metadata, checksum)
            finally:
                monkeypatch.setattr("safetensors.torch.save_file", save_file)
        return real_save(path, tensors, metadata, checksum)

    run = tmp_path / "run"
    threads = torch.get_num_threads()
    monkeypatch.setattr(checkpoints, "save_tensors", save)
    try:
        with pytest.raises(OSError):
            train_module.train(_syn_config(), run)
        assert not (run / "checkpoints" / "step_0000080.safetensors").exists()
        assert checkpoints.resume_point(run) == 40
        assert fault_inject.corrupt_files(run) == [] and fault_inject.leftovers(run) == []
        monkeypatch.setattr(checkpoints, "save_tensors", real_save)
        train_module.train(_syn_config(), run, resume=True)
    finally:
        torch.set_num_threads(threads)
    assert fault_inject.diff_digests(synthetic_reference[1], fault_inject.tree_digest(run)) == []


def test_full_disk_during_capture_keeps_previous_result(tiny_lm: Path, tmp_path: Path, monkeypatch):
    from conceptlens.safetensors_io import StreamingSafetensorsWriter

    out = tmp_path / "acts.safetensors"
    _capture(tiny_lm, PROMPTS[:10], out)
    before = fault_inject.tree_digest(tmp_path)
    real_write = StreamingSafetensorsWriter.write
    state = {"n": 0}

    def write(self, chunk):
        state["n"] += 1
        if state["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, chunk)

    monkeypatch.setattr(StreamingSafetensorsWriter, "write", write)
    with pytest.raises(OSError):
        _capture(tiny_lm, PROMPTS, out)
    assert out.read_bytes() == (tmp_path / "acts.safetensors").read_bytes()
    assert fault_inject.tree_digest(out) == {"acts.safetensors": before["acts.safetensors"]}
    assert fault_inject.corrupt_files(out) == [] and fault_inject.leftovers(tmp_path) == []


# ---- full disk for real: a 64 KiB tmpfs (root only) ---------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()[:80]}): the monkeypatched cases cover it")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_real_full_disk_keeps_previous_decodability_result(tiny_disk: Path, tmp_path: Path):
    """`decodability --out` onto a full tmpfs: exit non-zero, the old JSON byte-identical, no temp file."""
    import numpy as np

    rng = np.random.default_rng(0)
    acts = tmp_path / "acts.npy"
    np.save(acts, rng.standard_normal((2, 40, 8)).astype(np.float32))
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(["a", "b"] * 20) + "\n")
    out = tiny_disk / "td.json"
    first = run_cli("decodability", acts, labels, "--k", "3", "--n-boot", "10", "--out", out)
    assert first.code == 0, first.stderr[-2000:]
    before = out.read_bytes()
    filler = tiny_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last block
        while os.write(fd, b"\0" * 512):
            pass
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    second = run_cli("decodability", acts, labels, "--k", "3", "--n-boot", "10", "--seed", "1", "--out", out)
    assert_clean_error(second, "disk is full")
    assert out.read_bytes() == before
    assert fault_inject.leftovers(tiny_disk) == []
    json.loads(out.read_text())
