"""`Trace`: the residual stream adds up, heads recombine through the output projection, edits land
where they say, the pass stops early, and hooks never outlive the block."""

from __future__ import annotations

import pytest
import torch

from conceptlens.errors import ConceptLensError
from conceptlens.hooks import Trace
from conceptlens.hooks.nethook import parse_point


def run(model, layout, points, positions=None, **kwargs):
    ids = torch.tensor([[5, 9, 17, 3, 44, 2], [7, 7, 1, 90, 12, 60]])
    with Trace(layout, points, positions=positions, **kwargs) as trace, torch.no_grad():
        logits = model(input_ids=ids).logits
    return trace, logits


def all_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("positions", [None, torch.tensor([5, 2])])
def test_llama_residual_stream_adds_up(tiny_llama, positions):
    model, layout = tiny_llama
    points = [f"blocks.{i}.{c}" for i in range(3) for c in ("resid_pre", "attn_out", "mlp_out", "resid_post")]
    trace, _ = run(model, layout, points, positions)
    for i in range(3):
        got = {c: trace.captured[f"blocks.{i}.{c}"] for c in ("resid_pre", "attn_out", "mlp_out", "resid_post")}
        torch.testing.assert_close(got["resid_pre"] + got["attn_out"] + got["mlp_out"], got["resid_post"],
                                   rtol=1e-5, atol=1e-5)
        assert got["attn_out"].abs().amax() > 1e-2 and got["mlp_out"].abs().amax() > 1e-2
        if i:
            torch.testing.assert_close(trace.captured[f"blocks.{i}.resid_pre"],
                                       trace.captured[f"blocks.{i - 1}.resid_post"])


def test_gemma2_residual_stream_adds_up_after_post_norms(tiny_of):
    """Gemma-2 normalises each sublayer's output before adding it: attn_out/mlp_out are those outputs."""
    model, layout = tiny_of("gemma2")
    points = [f"blocks.{i}.{c}" for i in range(3) for c in ("resid_pre", "attn_out", "mlp_out", "resid_post")]
    trace, _ = run(model, layout, points, torch.tensor([5, 3]))
    for i in range(3):
        got = {c: trace.captured[f"blocks.{i}.{c}"] for c in ("resid_pre", "attn_out", "mlp_out", "resid_post")}
        torch.testing.assert_close(got["resid_pre"] + got["attn_out"] + got["mlp_out"], got["resid_post"],
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox", "qwen2"])
def test_heads_recombine_on_other_architectures(tiny_of, arch):
    """head_out is the input of the output projection: projecting it gives the attention output."""
    model, layout = tiny_of(arch)
    trace, _ = run(model, layout, ["blocks.1.head_out", "blocks.1.attn_out"], torch.tensor([2, 5]))
    heads = trace.captured["blocks.1.head_out"]
    assert heads.shape == (2, 4, 8)
    projection = layout.module_for("head_out", 1)
    torch.testing.assert_close(projection(heads.reshape(2, 32)), trace.captured["blocks.1.attn_out"],
                               rtol=1e-5, atol=1e-5)


def test_llama_heads_recombine_through_o_proj(tiny_llama):
    model, layout = tiny_llama
    assert model.model.layers[0].self_attn.o_proj.bias is None
    points = [f"blocks.{i}.{c}" for i in range(3) for c in ("head_out", "attn_out")]
    trace, _ = run(model, layout, points, positions=torch.tensor([4, 1]))
    for i in range(3):
        heads = trace.captured[f"blocks.{i}.head_out"]
        assert heads.shape == (2, 4, 8)
        recombined = layout.blocks[i].self_attn.o_proj(heads.reshape(2, 32))
        torch.testing.assert_close(recombined, trace.captured[f"blocks.{i}.attn_out"], rtol=1e-5, atol=1e-5)


def test_stop_skips_later_blocks_and_head(tiny_llama):
    model, layout = tiny_llama
    baseline = all_hooks(model)  # transformers keeps hooks of its own once output_hidden_states was used
    calls = []
    handles = [block.register_forward_hook(lambda *_, i=i: calls.append(i)) for i, block in enumerate(layout.blocks)]
    handles.append(model.lm_head.register_forward_hook(lambda *_: calls.append("lm_head")))
    try:
        with Trace(layout, ["blocks.1.mlp_out", "blocks.0.resid_post"], stop=True) as trace, torch.no_grad():
            model(input_ids=torch.tensor([[1, 2, 3]]))
        assert calls == [0] and set(trace.captured) == {"blocks.1.mlp_out", "blocks.0.resid_post"}
        calls.clear()
        with Trace(layout, ["blocks.0.resid_post"], stop=False), torch.no_grad():
            model(input_ids=torch.tensor([[1, 2, 3]]))
        assert calls == [0, 1, 2, "lm_head"]
    finally:
        for handle in handles:
            handle.remove()
    assert all_hooks(model) == baseline


def test_hooks_are_removed_even_after_an_error(tiny_llama):
    model, layout = tiny_llama
    baseline = all_hooks(model)
    with pytest.raises(ValueError, match="boom"):
        with Trace(layout, ["blocks.0.resid_pre", "blocks.1.head_out", "final_norm"], stop=True):
            assert all_hooks(model) == baseline + 3
            raise ValueError("boom")
    assert all_hooks(model) == baseline


def test_edit_lands_at_the_position_it_names(tiny_llama):
    model, layout = tiny_llama
    delta = torch.randn(32)
    positions = torch.tensor([3, 0])

    def add(hidden, pos):
        hidden = hidden.clone()
        hidden[torch.arange(hidden.shape[0]), pos] += delta
        return hidden

    clean, clean_logits = run(model, layout, ["blocks.2.resid_post", "final_norm"], positions=positions)
    edited, edited_logits = run(model, layout, ["blocks.2.resid_post", "final_norm"], positions=positions,
                                edits={"blocks.2.resid_post": add})
    after = clean.captured["blocks.2.resid_post"] + delta  # captured at the edited positions, after the edit
    torch.testing.assert_close(edited.captured["blocks.2.resid_post"], after)
    torch.testing.assert_close(edited.captured["final_norm"], model.model.norm(after), rtol=1e-5, atol=1e-5)
    changed = (edited_logits - clean_logits).abs().amax(-1) > 1e-4
    assert changed.tolist() == [[False, False, False, True, False, False], [True, False, False, False, False, False]]


def test_head_out_edit_zeroes_one_head(tiny_llama):
    model, layout = tiny_llama

    def zero_head(heads, pos):
        heads = heads.clone()
        heads[..., 1, :] = 0
        return heads

    trace, _ = run(model, layout, ["blocks.0.head_out", "blocks.0.attn_out"], edits={"blocks.0.head_out": zero_head})
    heads = trace.captured["blocks.0.head_out"]
    assert heads[..., 1, :].abs().max() == 0 and heads[..., 0, :].abs().max() > 0
    o_proj = layout.blocks[0].self_attn.o_proj
    torch.testing.assert_close(trace.captured["blocks.0.attn_out"], o_proj(heads.reshape(*heads.shape[:2], 32)),
                               rtol=1e-5, atol=1e-5)


def test_cached_decode_steps_are_not_captured(tiny_llama):
    model, layout = tiny_llama
    ids = torch.tensor([[5, 9, 17, 3]])
    with Trace(layout, ["blocks.1.resid_post"], positions=torch.tensor([3])) as prompt_only, torch.no_grad():
        model(input_ids=ids)
    with Trace(layout, ["blocks.1.resid_post"], positions=torch.tensor([3])) as generating, torch.no_grad():
        model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=0, attention_mask=torch.ones_like(ids))
    torch.testing.assert_close(generating.captured["blocks.1.resid_post"], prompt_only.captured["blocks.1.resid_post"])


def test_point_names():
    assert parse_point("blocks.12.attn_out") == ("attn_out", 12)
    assert parse_point("final_norm") == ("final_norm", -1)
    for bad in ("blocks.x.attn_out", "layers.1.attn_out", "blocks.1", "blocks.1.attn"):
        with pytest.raises(ConceptLensError):
            parse_point(bad)
