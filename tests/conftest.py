"""Shared fixtures: tiny random-weight models of five architecture families, and the embedded model.

Unit tests use the tiny models (hidden 32, 3 layers, vocabulary 128: a forward pass takes
milliseconds); tests marked `real_model` share one session-scoped load of SmolLM2-135M.
"""

from __future__ import annotations

import random

import pytest
import torch

from tiny_tokenizer import byte_tokenizer  # tests/shared

# This machine is shared and small: extra intra-op threads spin against other processes and made the
# tiny-model tests ~100x slower here. One thread is also what makes timings comparable between runs.
torch.set_num_threads(1)

ARCHS = ("llama", "gpt2", "gpt_neox", "gemma2", "qwen2")
RECURRENT_ARCHS = ("mamba", "mamba2")  # residual stream only: not in ARCHS, whose tests touch attention
VOCAB = 128


def _config(arch: str):
    import transformers as tf

    common = dict(vocab_size=VOCAB, max_position_embeddings=128)
    if arch == "llama":
        return tf.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                              num_key_value_heads=2, **common)
    if arch == "gpt2":
        return tf.GPT2Config(vocab_size=VOCAB, n_positions=128, n_embd=32, n_layer=3, n_head=4, bos_token_id=1,
                             eos_token_id=1)
    if arch == "gpt_neox":
        return tf.GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                                **common)
    if arch == "gemma2":
        return tf.Gemma2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=8, sliding_window=8, **common)
    if arch == "qwen2":
        return tf.Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                              num_key_value_heads=2, **common)
    return _recurrent_config(arch)


def _recurrent_config(arch: str):
    """Tiny HF Mamba / Mamba-2 (hidden 32, 3 blocks); their slow path runs on CPU without CUDA kernels."""
    import transformers as tf

    if arch == "mamba":
        return tf.MambaConfig(vocab_size=VOCAB, hidden_size=32, state_size=8, num_hidden_layers=3, expand=2,
                              conv_kernel=4)
    if arch == "mamba2":
        return tf.Mamba2Config(vocab_size=VOCAB, hidden_size=32, state_size=8, num_hidden_layers=3, expand=2,
                               num_heads=8, head_dim=8, n_groups=1, conv_kernel=4, chunk_size=8)
    raise ValueError(arch)


def make_tiny_model(arch: str, seed: int = 0):
    """A random-weight causal LM (eval mode, float32, eager attention) with weights scaled up so that
    the layers differ visibly (HF's 0.02 init makes every hidden state nearly the embedding)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = _config(arch)
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0, 0.3)
            elif "bias" in name:
                param.normal_(0, 0.1)
    return model.eval()


@pytest.fixture(scope="session", params=ARCHS)
def tiny(request):
    """(model, layout) of each tiny architecture in turn."""
    return tiny_model(request.param)


_TINY: dict = {}


def tiny_model(arch: str):
    """(model, layout) of one tiny architecture, built once per session."""
    from conceptlens.hooks import layout_for

    if arch not in _TINY:
        model = make_tiny_model(arch)
        _TINY[arch] = (model, layout_for(model))
    return _TINY[arch]


@pytest.fixture(scope="session")
def tiny_of():
    """`tiny_of("gemma2")` -> (model, layout)."""
    return tiny_model


@pytest.fixture(scope="session")
def tiny_llama():
    return tiny_model("llama")


def random_prompts(n: int, low: int = 3, high: int = 12, seed: int = 0) -> list[list[int]]:
    """`n` token-id lists of random lengths (ids 1..VOCAB-1; 0 is kept for padding)."""
    rng = random.Random(seed)
    return [[rng.randrange(1, VOCAB) for _ in range(rng.randint(low, high))] for _ in range(n)]


@pytest.fixture(scope="session")
def make_prompts():
    """`make_prompts(n, low=3, high=12, seed=0)`: random token-id prompts for the tiny models."""
    return random_prompts


@pytest.fixture(scope="session")
def smollm2():
    """The embedded SmolLM2-135M (`LoadedModel`), loaded once per session."""
    from conceptlens.models import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def byte_tok():
    """A tokenizer with one token per byte (offsets map 1:1 to characters)."""
    return byte_tokenizer()


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """A local HF model folder (tiny random Llama + byte tokenizer), as `save_pretrained` writes it."""
    import transformers as tf

    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = tf.LlamaConfig(vocab_size=257, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                            pad_token_id=256, bos_token_id=256, eos_token_id=256)
    tf.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture
def cli(capsys, monkeypatch):
    """`cli(*args) -> (exit code, stdout + stderr)`, run in this process through the real entry point `main()`.

    (tests/reliability overrides it with one that returns stdout and stderr apart.)
    """
    import sys

    from conceptlens.cli.main import main

    monkeypatch.setenv("COLUMNS", "300")  # no wrapping inside the messages we look for

    def invoke(*args) -> tuple[int, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["conceptlens", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return invoke
