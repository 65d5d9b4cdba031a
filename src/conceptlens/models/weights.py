"""Safetensors only: a model folder's weights are checked before transformers opens any of them.

transformers falls back to `torch.load` (unpickling) for any shard that does not end in
`.safetensors`, even with `use_safetensors=True` and even when the shard is named by a
`model.safetensors.index.json`; so the folder is refused here unless the user typed the flag that
allows pickled weights. Every safetensors file is also checked whole (header length, JSON header,
data size), so a truncated file or a pickle renamed `.safetensors` is an error naming the file.
DECISION: a pickle-format file anywhere among the weights refuses the folder, even beside complete
safetensors weights, because which one transformers picks depends on its version.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from conceptlens.errors import ConceptLensError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
INDEX = "model.safetensors.index.json"
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


def _pickle_fix(folder: Path) -> str:
    return (f"convert the weights to safetensors (save_pretrained(..., safe_serialization=True)) or remove them from "
            f"{folder}; only if you trust the files, allow them with allow_pickle_weights=True.")


def check_safetensors_file(path: Path) -> None:
    """Refuse a file that is not a complete safetensors file: `[8-byte length][JSON header][data]`."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 2 <= length <= min(MAX_HEADER, size - 8):
            raise ConceptLensError(f"{path} is not a safetensors file (its first bytes give no valid header: "
                                   "truncated, or another format renamed so).",
                                   "re-save the weights with save_pretrained(..., safe_serialization=True).")
        try:
            header = json.loads(handle.read(length))
            ends = [int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise ConceptLensError(f"{path} has a damaged safetensors header ({type(exc).__name__}).",
                                   "re-save the weights with save_pretrained(..., safe_serialization=True).") from exc
    expected = 8 + length + max(ends, default=0)
    if size != expected:
        raise ConceptLensError(f"{path} holds {size} bytes but its header describes {expected}: the file is "
                               f"{'truncated' if size < expected else 'padded with unknown bytes'}.",
                               "copy or download the weights again, or re-save them with save_pretrained.")


def _index_shards(folder: Path) -> list[Path]:
    """The shards a `model.safetensors.index.json` names, each required to be a safetensors file inside `folder`."""
    index = folder / INDEX
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as exc:
        raise ConceptLensError(f"{index} is not a valid index (a JSON object with a 'weight_map').",
                               "re-save the model with save_pretrained, which writes the index.") from exc
    shards = []
    for name in names:
        shard = folder / str(name)
        if not str(name).endswith(".safetensors"):
            raise ConceptLensError(f"{index} names the shard '{name}', which is not safetensors: transformers would "
                                   "unpickle it.", _pickle_fix(folder))
        if shard.resolve().parent != folder.resolve() or not shard.is_file():
            raise ConceptLensError(f"{index} names the shard '{name}', which is not a file in {folder}.",
                                   "copy every shard into the model folder, or re-save the model with save_pretrained.")
        shards.append(shard)
    return shards


def check_weight_files(folder: str | Path, allow_pickle_weights: bool = False) -> None:
    """Refuse `folder` unless its weights are all complete safetensors files (see the module docstring)."""
    folder = Path(folder)
    pickle_names = PICKLE_SUFFIXES + tuple(f"{suffix}.index.json" for suffix in PICKLE_SUFFIXES)
    pickled = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name.endswith(pickle_names))
    if pickled and not allow_pickle_weights:
        raise ConceptLensError(f"{folder} holds weights that are not safetensors ({', '.join(pickled[:4])}): loading "
                               "them would unpickle them, which can run code.", _pickle_fix(folder))
    if (folder / INDEX).exists() and not allow_pickle_weights:
        shards = _index_shards(folder)
    else:
        shards = sorted(folder.glob("*.safetensors"))
    if not shards and not pickled:
        raise ConceptLensError(f"{folder} holds no safetensors weights (model.safetensors or an index of shards).",
                               "save the model with save_pretrained(..., safe_serialization=True) into that folder.")
    for shard in shards:
        check_safetensors_file(shard)
