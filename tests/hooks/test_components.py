"""The declarative layout table resolves every supported family, and the generic fallback finds blocks."""

from __future__ import annotations

import pytest
from torch import nn

from conceptlens.errors import ConceptLensError
from conceptlens.hooks import layout_for
from conceptlens.hooks.components import ARCHITECTURES, _generic_spec, get_module


def test_layout_of_each_tiny_architecture(tiny):
    model, layout = tiny
    assert (layout.n_layers, layout.n_heads, layout.d_model) == (3, 4, 32)
    assert layout.spec == ARCHITECTURES[model.config.model_type]
    assert len(layout.blocks) == 3
    for layer in range(3):
        for component in ("resid_pre", "resid_post", "attn_out", "mlp_out", "head_out"):
            assert isinstance(layout.module_for(component, layer), nn.Module)
    assert layout.module_for("resid_post", 1) is layout.blocks[1]
    head_proj = layout.module_for("head_out", 0)
    in_features = getattr(head_proj, "in_features", None) or head_proj.weight.shape[0]  # GPT-2 Conv1D is [in, out]
    assert in_features == 32


def test_generic_fallback_matches_the_table(tiny):
    model, layout = tiny
    assert _generic_spec(model, 3) == layout.spec or model.config.model_type == "gemma2"


def test_unknown_model_type_falls_back(tiny_llama):
    model, layout = tiny_llama
    original = model.config.model_type
    try:
        model.config.model_type = "brand_new_llama"
        fallback = layout_for(model)
    finally:
        model.config.model_type = original
    assert fallback.spec.blocks == "model.layers" and fallback.spec.head_proj == "self_attn.o_proj"
    assert fallback.spec.final_norm == "model.norm"


def test_unlocatable_blocks_raise():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(2, 2)])

    with pytest.raises(ConceptLensError, match="could not"):
        _generic_spec(Odd(), 3)
    with pytest.raises(ConceptLensError, match="could not"):
        _generic_spec(Odd(), 1)


def test_bad_component_and_layer(tiny_llama):
    _, layout = tiny_llama
    with pytest.raises(ConceptLensError, match="unknown component 'mlp'"):
        layout.module_for("mlp", 0)
    with pytest.raises(ConceptLensError, match="layer 3 does not exist"):
        layout.module_for("attn_out", 3)
    with pytest.raises(ConceptLensError, match="layer -1 does not exist"):
        layout.module_for("attn_out", -1)
    with pytest.raises(AttributeError):
        get_module(layout.model, "model.nothing")
