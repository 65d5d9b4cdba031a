"""HF Mamba and Mamba-2 rows of the architecture table: the residual stream captured exactly as HF's
`output_hidden_states` (on CPU, through the slow path without CUDA kernels), and a clear error for
the components a recurrent block does not have."""

from __future__ import annotations

import pytest
import torch

from conceptlens.activations.capture import capture_activations
from conceptlens.errors import ConceptLensError
from conceptlens.hooks import Trace
from conceptlens.hooks.components import ARCHITECTURES

RECURRENT = ("mamba", "mamba2")


@pytest.mark.parametrize("arch", RECURRENT)
def test_layout_is_the_table_row(tiny_of, arch):
    model, layout = tiny_of(arch)
    assert layout.spec == ARCHITECTURES[arch] and layout.spec.blocks == "backbone.layers"
    assert (layout.n_layers, layout.n_heads, layout.d_model) == (3, 0, 32)
    assert layout.module_for("resid_post", 2) is model.backbone.layers[2]
    assert layout.final_norm is model.backbone.norm_f


@pytest.mark.parametrize("arch", RECURRENT)
@pytest.mark.parametrize("component", ["attn_out", "mlp_out", "head_out"])
def test_missing_components_are_named(tiny_of, make_prompts, arch, component):
    model, layout = tiny_of(arch)
    with pytest.raises(ConceptLensError, match=f"has no component '{component}'") as caught:
        layout.module_for(component, 0)
    assert "resid_post" in caught.value.fix
    with pytest.raises(ConceptLensError, match=f"has no component '{component}'"):
        capture_activations(model, layout, make_prompts(2), component=component)
    with pytest.raises(ConceptLensError, match=f"has no component '{component}'"):
        with Trace(layout, [f"blocks.1.{component}"]):
            pass


def _hf_hidden_states(model, ids: list[int]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [h[0, -1] for h in model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states]


@pytest.mark.parametrize("arch", RECURRENT)
def test_capture_equals_output_hidden_states(tiny_of, make_prompts, arch):
    """Our layers are 0 = embeddings, l = output of block l-1, n = after the final norm. Mamba-2's
    `hidden_states` follow the same convention; Mamba's start at block 0's output and keep the last
    block's output before the final norm, so there the indices shift by one (checked, not assumed)."""
    model, layout = tiny_of(arch)
    prompts = make_prompts(4, seed=3)
    layers, acts = capture_activations(model, layout, prompts, batch_size=1)
    assert layers == [0, 1, 2, 3] and acts.shape == (4, 4, 32)
    for i, ids in enumerate(prompts):
        hidden = _hf_hidden_states(model, ids)
        assert len(hidden) == 4
        if arch == "mamba2":
            expected = torch.stack(hidden)
        else:
            with torch.no_grad():
                embedding = model.backbone.embeddings(torch.tensor([ids]))[0, -1]
            expected = torch.stack([embedding, hidden[0], hidden[1], hidden[3]])
            with Trace(layout, ["blocks.2.resid_post"]) as trace, torch.no_grad():
                model(input_ids=torch.tensor([ids]))
            torch.testing.assert_close(trace.captured["blocks.2.resid_post"][0, -1], hidden[2], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(acts[:, i], expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(acts[1], acts[2])  # the layers really differ


@pytest.mark.parametrize("arch", RECURRENT)
def test_left_padded_batch_equals_one_prompt_at_a_time(tiny_of, make_prompts, arch):
    """Padding is masked before the convolution and the scan, so a left-padded batch changes nothing."""
    model, layout = tiny_of(arch)
    prompts = make_prompts(5, low=2, high=10, seed=4)
    assert len({len(p) for p in prompts}) > 2
    _, alone = capture_activations(model, layout, prompts, batch_size=1)
    _, batched = capture_activations(model, layout, prompts, batch_size=5)
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-5 * float(alone.abs().amax()))
