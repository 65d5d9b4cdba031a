"""Which transformer blocks a layer-selective finetuning run may change, and how.

`parse_layer_range("first:10" | "last:10" | "5-12" | "7", n_layers)` gives block indices (0-based,
"a-b" inclusive). LoRA targets every linear map (attention and MLP) inside those blocks, named
explicitly from the canonical layout (`layout.spec.blocks` + block index), so one code path serves
every architecture; full finetuning unfreezes exactly those blocks' parameters and nothing else.
DECISION (the paper only says "first/last 10 layers"): a layer is a whole block, its norms
included in full finetuning; LoRA adapts the linear maps only (norms and embeddings stay frozen).
"""

from __future__ import annotations

import re

from torch import nn

from conceptlens.errors import ConceptLensError
from conceptlens.hooks.components import ModelLayout

_FIX = "write first:N, last:N, A-B (blocks A to B inclusive, 0-based) or a single block index."


def parse_layer_range(spec: str, n_layers: int) -> list[int]:
    """'first:10' -> [0..9]; 'last:10' -> [n-10..n-1]; '5-12' -> [5..12]; '7' -> [7]."""
    text = spec.strip().lower().replace(" ", "")
    match = re.fullmatch(r"(first|last):(\d+)", text)
    if match:
        count = int(match.group(2))
        if not 1 <= count <= n_layers:
            raise ConceptLensError(f"--layers {spec}: the model has {n_layers} blocks, so N must be 1..{n_layers}.",
                                   _FIX)
        return list(range(count)) if match.group(1) == "first" else list(range(n_layers - count, n_layers))
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", text)
    if not match:
        raise ConceptLensError(f"--layers '{spec}' is not a layer range.", _FIX)
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) is not None else start
    if start > end:
        raise ConceptLensError(f"--layers {spec}: the range runs backwards.", f"write {end}-{start}.")
    if end >= n_layers:
        raise ConceptLensError(f"--layers {spec}: block {end} does not exist (blocks are 0..{n_layers - 1}).", _FIX)
    return list(range(start, end + 1))


def block_prefixes(layout: ModelLayout, layers: list[int]) -> list[str]:
    """Module-name prefixes of the selected blocks, e.g. ['model.layers.0.', ...]."""
    return [f"{layout.spec.blocks}.{layer}." for layer in layers]


def _is_linear(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    from transformers.pytorch_utils import Conv1D  # GPT-2 stores its linear maps transposed

    return isinstance(module, Conv1D)


def lora_target_modules(model: nn.Module, layout: ModelLayout, layers: list[int]) -> list[str]:
    """Full names of every linear map inside the selected blocks (attention and MLP projections)."""
    prefixes = tuple(block_prefixes(layout, layers))
    names = [name for name, module in model.named_modules() if name.startswith(prefixes) and _is_linear(module)]
    if not names:
        raise ConceptLensError(f"blocks {layers} of {type(model).__name__} hold no linear layers to adapt.",
                               "use --method full, or check the model's layout.")
    return names


def freeze_except_blocks(model: nn.Module, layout: ModelLayout, layers: list[int]) -> list[str]:
    """Full finetuning: freeze every parameter outside the selected blocks; return the trainable names."""
    prefixes = tuple(block_prefixes(layout, layers))
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(prefixes))
        if param.requires_grad:
            trainable.append(name)
    return trainable


def changed_blocks(before: dict, after: dict, layout: ModelLayout, atol: float = 0.0) -> set[int]:
    """Block indices whose parameters differ between two state dicts (names as in the base model).

    Parameters outside every block (embeddings, final norm, head) count as block -1.
    """
    pattern = re.compile(re.escape(layout.spec.blocks) + r"\.(\d+)\.")
    changed = set()
    for name, tensor in before.items():
        other = after[name]
        if tensor.shape != other.shape or (tensor - other).abs().max().item() > atol:
            match = pattern.match(name)
            changed.add(int(match.group(1)) if match else -1)
    return changed
