"""Safetensors only: pickled weights (directly or through an index) are refused unless allowed, and a
truncated or disguised `model.safetensors` is an error naming the file, never a SafetensorError."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from conceptlens.errors import ConceptLensError
from conceptlens.models import load_model
from conceptlens.models.weights import check_safetensors_file, check_weight_files


class _Trap:
    """Unpickling this creates `marker`: proof that a pickle was executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def folder(tiny_folder, tmp_path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(tiny_folder, copy)
    return copy


def _shard_with_index(folder: Path, second_shard: str) -> None:
    """Split the weights: the embedding in `second_shard`, the rest in a safetensors shard, and an index."""
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    embedding = "model.embed_tokens.weight"
    save_file({k: v for k, v in state.items() if k != embedding}, folder / "model-00001-of-00002.safetensors")
    weight_map = {k: "model-00001-of-00002.safetensors" for k in state if k != embedding}
    weight_map[embedding] = second_shard
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def test_a_safetensors_folder_passes(folder):
    check_weight_files(folder)
    _shard_with_index(folder, "model-00002-of-00002.safetensors")
    from safetensors.torch import save_file

    save_file({"model.embed_tokens.weight": torch.zeros(257, 32)}, folder / "model-00002-of-00002.safetensors")
    check_weight_files(folder)


@pytest.mark.parametrize("shard", ["pytorch_model-00002-of-00002.bin", "weights.data"])
def test_an_index_naming_a_pickled_shard_is_refused(folder, tmp_path, shard):
    marker = tmp_path / "PWNED"
    _shard_with_index(folder, shard)
    torch.save({"model.embed_tokens.weight": _Trap(marker)}, folder / shard)
    with pytest.raises(ConceptLensError, match="not safetensors") as caught:
        load_model(str(folder))
    assert shard in str(caught.value) and "allow_pickle_weights" in caught.value.fix
    assert not marker.exists(), "a pickled shard was unpickled"


def test_pickled_weights_load_only_when_allowed(folder):
    from safetensors.torch import load_file

    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ConceptLensError, match=r"not safetensors \(pytorch_model.bin\)"):
        load_model(str(folder))
    loaded = load_model(str(folder), allow_pickle_weights=True)  # torch.load(weights_only=True) inside transformers
    assert loaded.n_layers == 3


def test_index_shards_must_be_files_inside_the_folder(folder, tmp_path):
    from safetensors.torch import save_file

    save_file({"model.embed_tokens.weight": torch.zeros(257, 32)}, tmp_path / "outside.safetensors")
    for shard in ("../outside.safetensors", "missing.safetensors"):
        _shard_with_index(folder, shard)
        with pytest.raises(ConceptLensError, match=f"names the shard '{shard}', which is not a file"):
            check_weight_files(folder)
        (folder / "model-00001-of-00002.safetensors").rename(folder / "model.safetensors")  # undo for the next shard
        (folder / "model.safetensors.index.json").unlink()
    (folder / "model.safetensors.index.json").write_text("[1, 2]")
    with pytest.raises(ConceptLensError, match="is not a valid index"):
        check_weight_files(folder)


def test_truncated_or_disguised_safetensors_name_the_file(folder, tmp_path):
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConceptLensError, match="truncated") as caught:
        load_model(str(folder))
    assert str(weights) in str(caught.value)
    marker = tmp_path / "PWNED"
    torch.save({"w": _Trap(marker)}, weights)  # a pickle (zip) renamed model.safetensors
    with pytest.raises(ConceptLensError, match="is not a safetensors file") as caught:
        load_model(str(folder))
    assert str(weights) in str(caught.value) and not marker.exists()
    for damaged in (b"", b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}", data[:8] + b"x" * (len(data) - 8)):
        weights.write_bytes(damaged)
        with pytest.raises(ConceptLensError, match="model.safetensors"):
            check_safetensors_file(weights)
    weights.write_bytes(data + b"\x00")
    with pytest.raises(ConceptLensError, match="padded"):
        check_safetensors_file(weights)


def test_a_folder_without_weights_says_so(folder):
    (folder / "model.safetensors").unlink()
    with pytest.raises(ConceptLensError, match="holds no safetensors weights"):
        load_model(str(folder))
