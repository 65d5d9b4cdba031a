"""The FLOP count every benchmark divides by the machine's peak (`benchmarks/limits.py`): checked
against a hand count on a tiny config and against torch's own FLOP counter on a real forward pass."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from limits import DecoderShape, forward_flops, generation_flops, matmul_peak  # noqa: E402


def tiny_llama():
    import transformers as tf

    return tf.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                          num_key_value_heads=2, vocab_size=128, max_position_embeddings=64)


def test_forward_flops_equals_a_hand_count():
    # per block and token: q 32x32 + k 32x16 + v 32x16 + o 32x32 = 3,072; gated MLP 3 x 32 x 64 = 6,144
    # two prompts of 3 and 5 tokens: 8 tokens x 3 blocks x 2 x 9,216 = 442,368
    # causal attention: keys read 1+2+3 + 1+..+5 = 21; 2 x 2 x 32 x 21 x 3 blocks = 8,064
    # LM head at the last token of each: 2 x 2 x 32 x 128 = 16,384
    assert forward_flops(tiny_llama(), [3, 5], logits=1) == 442_368 + 8_064 + 16_384
    assert forward_flops(tiny_llama(), [3, 5]) == 442_368 + 8_064  # no LM head
    assert forward_flops(tiny_llama(), [3, 5], layers=1) == (442_368 + 8_064) // 3


def test_shape_reads_gpt2_and_counts_a_two_matrix_mlp():
    import transformers as tf

    shape = DecoderShape.from_hf(tf.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=128))
    assert (shape.n_layers, shape.d_model, shape.n_kv_heads, shape.head_dim, shape.d_ff) == (2, 32, 4, 8, 128)
    assert not shape.gated_mlp
    assert shape.weights_per_layer() == 4 * 32 * 32 + 2 * 32 * 128


def test_forward_flops_match_torch_flop_counter_on_a_real_forward():
    """torch counts every matmul of the model; eager attention computes the full (non-causal) square
    of scores, a `bmm` each for QK^T and AV (torch does not count the CPU's fused SDPA kernel)."""
    import transformers as tf
    from torch.utils.flop_counter import FlopCounterMode

    config = tiny_llama()
    config._attn_implementation = "eager"
    model = tf.LlamaForCausalLM(config).eval()
    n = 11
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=torch.randint(0, 128, (1, n)), use_cache=False)
    by_op = {str(op): flops for op, flops in counter.get_flop_counts()["Global"].items()}
    matmuls = by_op.pop("aten.mm") + by_op.pop("aten.addmm", 0)
    attention = by_op.pop("aten.bmm")
    assert not by_op  # nothing else that torch counts
    shape = DecoderShape.from_hf(config)
    ours_attention = forward_flops(config, [n]) - 2 * n * shape.weights_per_layer() * shape.n_layers
    assert matmuls == forward_flops(config, [n], logits=None) - ours_attention  # weights + LM head, exactly
    assert attention == ours_attention * 2 * n // (n + 1)  # full square vs the causal triangle we count


def test_generation_flops_equal_one_forward_over_prompt_and_answer():
    """Decoding k tokens with a KV cache does the work of one pass over prompt + k - 1 tokens,
    with logits only at the last prompt token and at each new token."""
    config = tiny_llama()
    prompt, new = 7, 4
    head = 2 * 32 * 128
    whole = forward_flops(config, [prompt + new - 1], logits=None)
    assert generation_flops(config, [prompt], [new]) == whole - head * (prompt - 1)
    assert generation_flops(config, [prompt], [new], prefill_logits=None) == whole


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("clock", ["cpu", "wall"])
def test_matmul_peak_is_a_rate_of_this_machine(dtype, clock):
    rate = matmul_peak(1, dtype, sizes=(256,), repeats=2, clock=clock)
    assert 1e8 < rate < 1e14  # FLOP/s: above 0.1 GFLOP/s, below 100 TFLOP/s on one thread
    with pytest.raises(ValueError, match="clock"):
        matmul_peak(1, dtype, clock="sundial")
