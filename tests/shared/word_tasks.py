"""Helpers shared by the LLM test modules: a small word-task family and a tiny Llama with scaled weights.

Importable from any test module (`from word_tasks import word_family`): `tests/shared` is on
pytest's `pythonpath`, because test modules cannot import each other under --import-mode=importlib.
"""

from __future__ import annotations

import random

import torch

from conceptlens.models.loader import LoadedModel, load_model
from conceptlens.tasks.family import NULL, Example, TaskFamily

WORDS = ("cat", "river", "on", "elephant", "blue", "sky", "mountain", "to", "quietly", "garden", "lamp", "go",
         "window", "apple", "sun", "butterfly", "red", "it", "table", "orange", "moon", "ink", "pencil", "fox")


def word_family(words=WORDS, null: bool = True) -> TaskFamily:
    """Three concepts over words of varied lengths (so left padding is exercised) plus Null."""
    concepts = {"upper": [Example(w, w.upper()) for w in words],
                "reverse": [Example(w, w[::-1]) for w in words],
                "first": [Example(w, w[0]) for w in words]}
    if null:
        rng = random.Random(0)
        concepts[NULL] = [Example(w, rng.choice(words)) for w in words]
    return TaskFamily("words", concepts)


def scaled_tiny_lm(folder, seed: int = 0, std: float = 0.3) -> LoadedModel:
    """The tiny Llama saved in `folder` (byte tokenizer), matrices redrawn with `std` so layers differ."""
    loaded = load_model(str(folder))
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in loaded.model.parameters():
            if param.dim() >= 2:
                param.normal_(0, std)
    return loaded
