"""Capture hidden states of many prompts at one token each: fast, exact, flat in memory.

Layer convention for the residual stream is HF's `output_hidden_states`: layer 0 is the embedding
output, layer l the output of block l, and the last layer is taken *after* the final norm (as HF
does for Llama, GPT-2, NeoX, ...). Other components (`attn_out`, `mlp_out`, `head_out`,
`resid_pre`) are indexed by block. Prompts are sorted by length to cut padding, left-padded with
position ids from the attention mask, and the forward pass stops after the last layer needed.
With `out=...` results stream to safetensors shards and a killed capture resumes from its last shard
(the same job only: `<out>.parts/` is a run folder, locked while one process writes it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Sequence

import torch

from conceptlens.errors import ConceptLensError
from conceptlens.hooks import Trace
from conceptlens.hooks.components import ModelLayout, check_component
from conceptlens.models.loader import input_device
from conceptlens.runs import RunFolder
from conceptlens.safetensors_io import StreamingSafetensorsWriter, load_tensors, save_tensors
from conceptlens.storage import verify_checksum, write_checksum, write_json


def hidden_state_point(layer: int, n_layers: int) -> str:
    """HF hidden-state index (0..n_layers) -> canonical point name."""
    if not 0 <= layer <= n_layers:
        raise ConceptLensError(f"layer {layer} does not exist: hidden-state layers are 0..{n_layers}.",
                               f"choose layers between 0 and {n_layers}.")
    if layer == n_layers:
        return "final_norm"
    if layer == 0:
        return "blocks.0.resid_pre"
    return f"blocks.{layer - 1}.resid_post"


def component_points(layout: ModelLayout, component: str, layers: Sequence[int] | None) -> tuple[list[int], list[str]]:
    """Resolve requested layers of a component to (layer indices, canonical point names)."""
    if layers is not None and len(layers) == 0:
        raise ConceptLensError("no layer was chosen (an empty list of layers).", "choose layers, e.g. layers=[1, 4].")
    if component == "resid_post":
        layers = list(range(layout.n_layers + 1)) if layers is None else list(layers)
        return layers, [hidden_state_point(layer, layout.n_layers) for layer in layers]
    check_component(component)
    layers = list(range(layout.n_layers)) if layers is None else list(layers)
    for layer in layers:
        if not 0 <= layer < layout.n_layers:
            raise ConceptLensError(f"layer {layer} does not exist for component {component}: blocks are 0..{layout.n_layers - 1}.",
                                   f"choose layers between 0 and {layout.n_layers - 1}.")
    return layers, [f"blocks.{layer}.{component}" for layer in layers]


def encode_prompts(tokenizer, prompts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
    """Tokenize each prompt (with the tokenizer's special tokens) and check the context length."""
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    if max_length:
        too_long = [i for i, row in enumerate(ids) if len(row) > max_length]
        if too_long:
            raise ConceptLensError(f"prompt {too_long[0]} has {len(ids[too_long[0]])} tokens, beyond the model's "
                                   f"context of {max_length}.", "shorten the prompt or use fewer shots.")
    return ids


def left_pad(batch: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad token ids -> (input_ids, attention_mask, position_ids), each `[batch, max_len]`."""
    width = max(len(row) for row in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, row in enumerate(batch):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, position_ids


def padded_positions(lengths: Sequence[int], positions: Sequence[int], width: int) -> torch.Tensor:
    """Token positions given in unpadded coordinates (negative = from the end) -> left-padded indices."""
    out = []
    for length, pos in zip(lengths, positions):
        if not -length <= pos < length:
            raise ConceptLensError(f"token position {pos} is outside a prompt of {length} tokens.",
                                   "choose positions by role (e.g. 'last') so they fit every prompt.")
        out.append(width - length + (pos % length))
    return torch.tensor(out, dtype=torch.long)


def forward_batch(model, layout: ModelLayout, batch: Sequence[Sequence[int]], positions: Sequence[int],
                  points: list[str], pad_id: int) -> dict[str, torch.Tensor]:
    """One left-padded forward pass that stops after the last point; returns `{point: [batch, d]}`."""
    ids, mask, position_ids = left_pad(batch, pad_id)
    pos = padded_positions([len(r) for r in batch], positions, ids.shape[1])
    device = input_device(model)
    with Trace(layout, points, positions=pos, stop=True) as trace:
        model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=position_ids.to(device),
              use_cache=False)
    missing = [p for p in points if p not in trace.captured]
    if missing:
        raise RuntimeError(f"hooks did not fire for {missing}")
    return trace.captured


def _prompts_digest(encoded: Sequence[Sequence[int]], positions: Sequence[int]) -> str:
    """A short hash of the token ids and positions: the prompts a capture folder holds."""
    digest = hashlib.sha256(json.dumps(list(positions)).encode())
    for row in encoded:
        digest.update(json.dumps(list(row)).encode())
    return digest.hexdigest()[:16]


def _check_finite(acts: torch.Tensor, where: str) -> None:
    if not torch.isfinite(acts).all():
        raise ConceptLensError(f"the model produced NaN or Inf activations ({where}).",
                               "load the model in float32 (dtype=float32) or check its weights.")


@torch.no_grad()  # not inference_mode: its tensors refuse in-place updates and autograd afterwards
def capture_activations(model, layout: ModelLayout, encoded: Sequence[Sequence[int]], *,
                        positions: Sequence[int] | None = None, layers: Sequence[int] | None = None,
                        component: str = "resid_post", batch_size: int = 32, pad_id: int = 0,
                        out: str | Path | None = None, shard_size: int = 512, model_name: str = "",
                        progress=None) -> tuple[list[int], torch.Tensor | Path]:
    """Activations `[layers, prompts, d_model]` at one token per prompt (default: the last).

    Returns (layer indices, tensor) in memory, or (layer indices, path) when `out` is given: then
    shards go to `<out>.parts/` (each with a checksum) and a rerun resumes from the finished ones.
    """
    if not encoded:
        raise ConceptLensError("no prompts to capture.", "give at least one prompt.")
    positions = [-1] * len(encoded) if positions is None else [int(p) for p in positions]  # numpy/torch ints too
    if len(positions) != len(encoded):
        raise ConceptLensError("one token position is needed per prompt.", "pass as many positions as prompts.")
    padded_positions([len(row) for row in encoded], positions, 0)  # validate every position before writing
    layer_ids, points = component_points(layout, component, layers)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))  # longest first: peak memory early
    shards = [order[i:i + shard_size] for i in range(0, len(order), shard_size)]
    if not out:
        return _capture_shards(model, layout, encoded, positions, layer_ids, points, shards, batch_size, pad_id,
                               None, progress)
    parts = Path(str(out) + ".parts")
    manifest = {"model": model_name, "points": points, "n_prompts": len(encoded), "shard_size": shard_size,
                "prompts": _prompts_digest(encoded, positions)}
    with RunFolder(parts, "capture", manifest, legacy="manifest.json"):  # one writer; another job's shards: refused
        write_json(parts / "manifest.json", manifest)
        _capture_shards(model, layout, encoded, positions, layer_ids, points, shards, batch_size, pad_id, parts,
                        progress)
        Path(str(out) + ".sha256").unlink(missing_ok=True)  # a stale sidecar must never vouch for a new file
        _assemble(parts, len(shards), len(encoded), layer_ids, Path(out), points)
        write_checksum(out)  # readers verify it: an altered or truncated result is named, never used
        shutil.rmtree(parts)
    return layer_ids, Path(out)


def _capture_shards(model, layout: ModelLayout, encoded, positions, layer_ids, points, shards, batch_size, pad_id,
                    parts: Path | None, progress):
    """Run every shard; into `parts/` (skipping intact finished shards) or, without `parts`, into memory."""
    task = progress.add_task("capture", total=len(encoded), info="") if progress else None
    total: torch.Tensor | None = None  # in memory: filled batch by batch, never held twice
    for shard_id, shard in enumerate(shards):
        shard_path = parts / f"shard_{shard_id:05d}.safetensors" if parts else None
        if shard_path and shard_path.exists():
            try:
                verify_checksum(shard_path)
                if progress:
                    progress.advance(task, len(shard))
                continue
            except ConceptLensError:
                shard_path.unlink(missing_ok=True)  # torn or altered: recompute it
        chunks = []
        for start in range(0, len(shard), batch_size):
            rows = shard[start:start + batch_size]
            captured = forward_batch(model, layout, [encoded[i] for i in rows], [positions[i] for i in rows],
                                     points, pad_id)
            stacked = torch.stack([captured[p] for p in points])  # [layers, batch, d]
            if shard_path:
                chunks.append(stacked)
            else:
                if total is None:  # head_out: [layers, prompts, heads, d_head]
                    total = torch.empty(len(layer_ids), len(encoded), *stacked.shape[2:])
                total[:, rows] = stacked
            if progress:
                progress.advance(task, len(rows))
        if shard_path:
            acts = torch.cat(chunks, dim=1)
            _check_finite(acts, f"prompts of shard {shard_id}")
            save_tensors(shard_path, {"acts": acts, "index": torch.tensor(shard)}, checksum=True)
        else:
            _check_finite(total[:, shard], f"prompts of shard {shard_id}")
    return layer_ids, total


def _assemble(parts: Path, n_shards: int, n_prompts: int, layer_ids: list[int], out: Path, points: list[str]) -> None:
    """Stream the shards into one `[layers, prompts, d]` safetensors file, one layer at a time."""
    from safetensors import safe_open

    handles = []
    for shard_id in range(n_shards):
        path = parts / f"shard_{shard_id:05d}.safetensors"
        verify_checksum(path)
        handles.append(safe_open(str(path), framework="pt"))
    indices = [h.get_tensor("index") for h in handles]
    tail = tuple(handles[0].get_slice("acts").get_shape()[2:])  # (d_model,) or (heads, d_head)
    writer = StreamingSafetensorsWriter(out, "activations", (len(layer_ids), n_prompts, *tail), "float32",
                                        extra={"layers": torch.tensor(layer_ids, dtype=torch.int64)},
                                        metadata={"points": ",".join(points), "format": "conceptlens.activations.v1"})
    try:
        for li in range(len(layer_ids)):
            layer = torch.empty(n_prompts, *tail)
            for handle, index in zip(handles, indices):
                layer[index] = handle.get_slice("acts")[li]
            writer.write(layer)
        writer.close()
    except BaseException:
        writer.abort()
        raise


def load_activations(path: str | Path) -> tuple[torch.Tensor, list[int] | None]:
    """Read `[layers, N, d]` (or `[N, d]`) activations from .safetensors or .npy."""
    import numpy as np

    path = Path(path)
    if not path.exists():
        raise ConceptLensError(f"activations file {path} does not exist.", "check the path (capture writes it).")
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ConceptLensError(f"{path} is not a numeric .npy array ({exc}).",
                                   "save a plain float array with numpy.save.") from exc
        if array.dtype == object or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise ConceptLensError(f"{path} holds {array.dtype} data, not numbers (real numbers are needed).",
                                   "save a float array.")
        return torch.from_numpy(array if array.dtype in (np.float32, np.float64) else array.astype(np.float32)), None
    tensors = load_tensors(path, verify=Path(str(path) + ".sha256").exists())
    if "activations" not in tensors:
        raise ConceptLensError(f"{path} has no tensor named 'activations' (it has {sorted(tensors)}).",
                               "write it with `conceptlens capture`, or save your array under the key 'activations'.")
    return tensors["activations"], _layer_ids(path, tensors["activations"], tensors.get("layers"))


def _layer_ids(path: Path, acts: torch.Tensor, layers: torch.Tensor | None) -> list[int] | None:
    """The file's `layers` entry, checked: 1-D integers, one per layer of `activations`."""
    if layers is None:
        return None
    expected = acts.shape[0] if acts.dim() == 3 else 1
    if layers.dim() != 1 or layers.dtype.is_floating_point or layers.dtype.is_complex or len(layers) != expected:
        raise ConceptLensError(f"{path}: its 'layers' entry ({str(layers.dtype).replace('torch.', '')}, shape "
                               f"{list(layers.shape)}) must be {expected} integer(s), one per layer of 'activations' "
                               f"(shape {list(acts.shape)}).",
                               "save 'layers' as a 1-D integer tensor with one index per layer, or leave it out.")
    return layers.tolist()
