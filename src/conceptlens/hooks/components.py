"""Where each canonical component lives inside a model, declared as data, never as if/else.

Canonical names are per block: `blocks.{i}.resid_pre` (input to block i), `blocks.{i}.resid_post`
(its output), `blocks.{i}.attn_out` / `mlp_out` (what each sublayer adds to the residual stream,
after any post-sublayer norm, as in Gemma-2), `blocks.{i}.head_out` (per-head outputs before the
output projection, `[..., heads, d_head]`), plus `final_norm`. An architecture family is one row
of `ARCHITECTURES`; unknown families fall back to a search for the block list. Our own small GPT
(`conceptlens.synthetic.model`) declares the same fields, so every tool serves both.
DECISION: recurrent models (HF Mamba, Mamba-2) expose only the residual stream; their rows leave the
sublayer fields empty, and asking for `attn_out` / `mlp_out` / `head_out` there is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from conceptlens.errors import ConceptLensError

COMPONENTS = ("resid_pre", "resid_post", "attn_out", "mlp_out", "head_out")


@dataclass(frozen=True)
class ArchitectureSpec:
    """Dotted module paths: `blocks` from the model root; the rest relative to one block."""

    blocks: str
    final_norm: str
    attn_out: str | None = None  # module whose output is the attention contribution to the residual stream
    mlp_out: str | None = None  # module whose output is the MLP contribution to the residual stream
    head_proj: str | None = None  # output projection whose *input* is the concatenation of per-head outputs


_LLAMA = ArchitectureSpec("model.layers", "model.norm", "self_attn", "mlp", "self_attn.o_proj")
_MAMBA = ArchitectureSpec("backbone.layers", "backbone.norm_f")  # residual stream only: no attention, no MLP
_GEMMA2 = ArchitectureSpec("model.layers", "model.norm", "post_attention_layernorm",
                           "post_feedforward_layernorm", "self_attn.o_proj")

ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,
    "olmo": _LLAMA,
    "olmo2": _LLAMA,
    "gemma": _LLAMA,
    "gemma2": _GEMMA2,
    "gemma3": ArchitectureSpec("model.language_model.layers", "model.language_model.norm",
                               "post_attention_layernorm", "post_feedforward_layernorm", "self_attn.o_proj"),
    "gemma3_text": _GEMMA2,
    "gpt2": ArchitectureSpec("transformer.h", "transformer.ln_f", "attn", "mlp", "attn.c_proj"),
    "gpt_neox": ArchitectureSpec("gpt_neox.layers", "gpt_neox.final_layer_norm", "attention", "mlp",
                                 "attention.dense"),
    "conceptlens_gpt": ArchitectureSpec("blocks", "final_norm", "attn", "mlp", "attn.out_proj"),
    "mamba": _MAMBA,
    "mamba2": _MAMBA,
}
SUBLAYER_FIELDS = {"attn_out": "attn_out", "mlp_out": "mlp_out", "head_out": "head_proj"}


def get_module(root: nn.Module, dotted: str) -> nn.Module:
    module = root
    for part in dotted.split("."):
        if not hasattr(module, part):
            raise AttributeError(dotted)
        module = getattr(module, part)
    return module


def _has(root: nn.Module, dotted: str) -> bool:
    try:
        get_module(root, dotted)
        return True
    except AttributeError:
        return False


def _generic_spec(model: nn.Module, n_layers: int) -> ArchitectureSpec:
    """Fallback: the first ModuleList of `n_layers` blocks, and the usual sublayer names."""
    names = dict(model.named_modules())
    blocks = next((name for name, mod in names.items()
                   if isinstance(mod, nn.ModuleList) and len(mod) == n_layers), None)
    if blocks is None:
        raise ConceptLensError(f"could not find the {n_layers} transformer blocks of {type(model).__name__}.",
                               "add a row for this architecture to conceptlens.hooks.components.ARCHITECTURES.")
    block = names[blocks][0]
    sub = dict(block.named_modules())
    children = [n for n in sub if n and "." not in n and not any(w in n.lower() for w in ("norm", "drop"))]
    projections = ("o_proj", "out_proj", "dense", "c_proj")
    # the attention module is the child that owns an output projection (GPT-NeoX lists norms and
    # dropouts named post_attention_* / post_mlp_* before its `attention` and `mlp`)
    attn = next((n for n in children if ("attn" in n.lower() or "attention" in n.lower())
                 and any(f"{n}.{p}" in sub for p in projections)), None)
    mlp = next((n for n in children if "mlp" in n.lower() or "feed_forward" in n.lower()), None)
    proj = next((f"{attn}.{n}" for n in projections if attn and f"{attn}.{n}" in sub), None)
    parent = blocks.rsplit(".", 1)[0] if "." in blocks else ""
    norm = next((f"{parent}.{n}".lstrip(".") for n in ("norm", "final_layer_norm", "ln_f", "final_norm")
                 if _has(model, f"{parent}.{n}".lstrip("."))), None)
    if not (attn and mlp and proj and norm):
        raise ConceptLensError(f"could not locate attention/MLP/final norm in {type(model).__name__}.",
                               "add a row for this architecture to conceptlens.hooks.components.ARCHITECTURES.")
    return ArchitectureSpec(blocks, norm, attn, mlp, proj)


@dataclass
class ModelLayout:
    """A model's canonical hook points, resolved to modules once."""

    model: nn.Module = field(repr=False)
    spec: ArchitectureSpec
    n_layers: int
    n_heads: int
    d_model: int

    @property
    def blocks(self) -> nn.ModuleList:
        return get_module(self.model, self.spec.blocks)

    def module_for(self, component: str, layer: int) -> nn.Module:
        """The module whose forward output (or, for `resid_pre`/`head_out`, input) is the component."""
        check_component(component)
        if component != "final_norm" and not 0 <= layer < self.n_layers:
            raise ConceptLensError(f"layer {layer} does not exist: this model has blocks 0..{self.n_layers - 1}.",
                                   f"choose layers between 0 and {self.n_layers - 1}.")
        block = self.blocks[layer]
        if component in ("resid_pre", "resid_post"):
            return block
        path = getattr(self.spec, SUBLAYER_FIELDS[component])  # head_out: input of the output projection
        if path is None:
            raise ConceptLensError(f"{type(self.model).__name__} has no component '{component}': its blocks have no "
                                   "attention or MLP sublayer (a recurrent model).",
                                   "use resid_pre or resid_post (the residual stream) on this model.")
        return get_module(block, path)

    @property
    def final_norm(self) -> nn.Module:
        return get_module(self.model, self.spec.final_norm)


def check_component(component: str) -> None:
    if component not in COMPONENTS:
        raise ConceptLensError(f"unknown component '{component}'.", f"use one of: {', '.join(COMPONENTS)}.")


def _config_value(config, *names: str, default: int | None = None) -> int:
    for cfg in (config, getattr(config, "text_config", None)):
        if cfg is None:
            continue
        for name in names:
            value = getattr(cfg, name, None)
            if value is not None:
                return int(value)
    if default is not None:
        return default
    raise ConceptLensError(f"model config has none of {names}.", "pass a standard transformers config.")


def layout_for(model: nn.Module) -> ModelLayout:
    """Resolve the canonical layout of an HF causal LM or a conceptlens GPT."""
    config = model.config
    model_type = getattr(config, "model_type", "")
    n_layers = _config_value(config, "num_hidden_layers", "n_layer", "n_layers")
    # attention heads; 0 for a model without attention (Mamba's `num_heads` are SSM heads, not these)
    n_heads = _config_value(config, "num_attention_heads", "n_head", "n_heads", default=0)
    d_model = _config_value(config, "hidden_size", "n_embd", "d_model")
    spec = ARCHITECTURES.get(model_type)
    if spec is None or not _has(model, spec.blocks):
        spec = _generic_spec(model, n_layers)
    return ModelLayout(model, spec, n_layers, n_heads, d_model)


def first_tensor(output) -> torch.Tensor:
    """The hidden-state tensor of a module output (HF blocks may return tuples)."""
    return output[0] if isinstance(output, (tuple, list)) else output
