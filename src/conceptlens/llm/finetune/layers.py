"""Which transformer blocks a layer-selective finetuning run may change, and how.

`parse_layer_range(spec, n_layers, peak)` gives block indices (0-based). Besides `first:N`, `last:N`,
`first:33%`, `last:33%`, `A-B` (inclusive) and one index, two groups sit relative to the pretrained
TD peak p (an HF hidden-state layer: layer l is the output of block l - 1, layer 0 the embeddings):
`before-peak`, the m blocks ending with block p - 1 (the one that writes layer p), and `after-peak`,
the m blocks from block p on (they read layer p and so cannot change TD there), where
m = floor(10/32 of the depth), the paper's share (10 of Llama-3.1-8B's 32), fewer where the model
has fewer blocks on that side. LoRA targets every linear map (attention and MLP) inside the blocks,
named from the canonical layout, so one code path serves every architecture; full finetuning
unfreezes exactly those blocks' parameters. DECISION (the paper only says "first/last 10 layers"):
a layer is a whole block; the peak groups sit right next to p (Llama-3.1-8B, p = 15: blocks 5-14
and 15-24, where the paper trained 0-9 and 22-31), so the pair contrasts "writes the encoding read
at p" with "only reads it", each with the paper's share of blocks.
"""

from __future__ import annotations

import re

from torch import nn

from conceptlens.errors import ConceptLensError, NotComputable
from conceptlens.hooks.components import ModelLayout

_FIX = ("write before-peak, after-peak, first:N, last:N, first:33%, last:33%, A-B (blocks A to B inclusive, "
        "0-based) or a single block index.")
PEAK_GROUPS = ("before-peak", "after-peak")
PAPER_SHARE = (10, 32)  # the paper finetuned 10 of Llama-3.1-8B's 32 blocks


def needs_peak(spec: str) -> bool:
    """True for `before-peak` / `after-peak`: the blocks depend on the pretrained TD peak."""
    return spec.strip().lower() in PEAK_GROUPS


def group_size(n_layers: int) -> int:
    """Blocks per peak group: the paper's 10/32 of the depth, rounded down, at least 1 (30 -> 9, 18 -> 5)."""
    return max(1, n_layers * PAPER_SHARE[0] // PAPER_SHARE[1])


def peak_blocks(group: str, peak: int, n_layers: int) -> list[int]:
    """The blocks of `before-peak` or `after-peak` for a TD peak at hidden-state layer `peak`.

    before-peak: blocks max(0, p - m) .. p - 1 (block p - 1 writes layer p); after-peak: blocks
    p .. min(n, p + m) - 1 (block p reads layer p). E.g. 32 blocks, p = 15: 5-14 and 15-24.
    """
    if group not in PEAK_GROUPS:
        raise ConceptLensError(f"unknown peak group '{group}'.", "use before-peak or after-peak.")
    if not 0 <= peak <= n_layers:
        raise ConceptLensError(f"TD peak layer {peak} is outside the hidden-state layers 0..{n_layers}.",
                               "pass the pretrained study's best layer.")
    size = group_size(n_layers)
    if group == "before-peak":
        if peak == 0:
            raise NotComputable("the pretrained TD peak is layer 0 (the embeddings): no block writes before it.",
                                   "use layers=first:N or an explicit range.")
        return list(range(max(0, peak - size), peak))
    if peak == n_layers:
        raise NotComputable(f"the pretrained TD peak is the last layer ({n_layers}): no block comes after it.",
                               "use layers=last:N or an explicit range.")
    return list(range(peak, min(n_layers, peak + size)))


def _count(spec: str, value: str, percent: bool, n_layers: int) -> int:
    count = int(value) if not percent else int(n_layers * int(value) / 100 + 0.5)
    if percent and not 0 < int(value) <= 100:
        raise ConceptLensError(f"layers={spec}: a share must be 1%..100%.", _FIX)
    if not 1 <= count <= n_layers:
        raise ConceptLensError(f"layers={spec}: the model has {n_layers} blocks, so N must be 1..{n_layers}"
                               + (" (the share rounds to none)." if percent else "."), _FIX)
    return count


def parse_layer_range(spec: str, n_layers: int, peak: int | None = None) -> list[int]:
    """'first:10' -> [0..9]; 'last:10' -> [n-10..n-1]; 'first:33%' -> the nearest whole share; '5-12' ->
    [5..12]; '7' -> [7]; 'before-peak' / 'after-peak' -> `peak_blocks` (needs `peak`)."""
    text = spec.strip().lower().replace(" ", "")
    if text in PEAK_GROUPS:
        if peak is None:
            raise ConceptLensError(f"layers={spec} needs the pretrained TD peak layer, which is not known yet.",
                                   "run the pretrained study first (the finetuning run does), or pass `before_run`.")
        return peak_blocks(text, peak, n_layers)
    match = re.fullmatch(r"(first|last):(\d+)(%?)", text)
    if match:
        count = _count(spec, match.group(2), bool(match.group(3)), n_layers)
        return list(range(count)) if match.group(1) == "first" else list(range(n_layers - count, n_layers))
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", text)
    if not match:
        raise ConceptLensError(f"layers='{spec}' is not a layer range.", _FIX)
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) is not None else start
    if start > end:
        raise ConceptLensError(f"layers={spec}: the range runs backwards.", f"write {end}-{start}.")
    if end >= n_layers:
        raise ConceptLensError(f"layers={spec}: block {end} does not exist (blocks are 0..{n_layers - 1}).", _FIX)
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
