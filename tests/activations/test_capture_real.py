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
