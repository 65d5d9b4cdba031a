"""What a completion is and when it is right (PAPER.md: exact match), for every decoding path.

A completion is the decoded text up to the end of its line, stripped; it is correct when it equals
the stripped answer. DECISION: stop tokens are every vocabulary entry whose text contains the
format's newline (BPE merges "\\n" with other characters), plus EOS; a prompt may write its answer's
tokens (as tokenized alone) and its newline, plus 2 spare tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from conceptlens.prompts import Prompt

_STOP_CACHE: dict[tuple[int, str], list[int]] = {}


@dataclass
class GenerationResult:
    """Greedy completions of N prompts, their exact-match scores and (optionally) activations."""

    completions: list[str]  # decoded text after the prompt, cut at the end of the line, stripped
    correct: np.ndarray  # bool [N], exact match of the stripped completion with prompt.answer
    layers: list[int]  # hidden-state indices captured (HF convention: 0 = embeddings)
    activations: torch.Tensor | None  # [layers, N, d_model] at the `role` token, from the same prefill
    touched: dict = field(default_factory=dict)  # {point: edits.Touched}: where each edit landed

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if len(self.correct) else float("nan")


def first_line(text: str, newline: str = "\n") -> str:
    """The completion a model wrote: everything before the first newline, stripped."""
    return text.split(newline, 1)[0].strip()


def is_correct(completion: str, answer: str, newline: str = "\n") -> bool:
    """Exact match of the first line of a completion (stripped) with the stripped answer."""
    return first_line(completion, newline) == answer.strip()


def scored(completions: list[str], prompts: Sequence[Prompt], layers: list[int] | None = None,
           activations: torch.Tensor | None = None, touched: dict | None = None) -> GenerationResult:
    """Completions (first lines already) with their exact-match verdicts against `prompts`' answers."""
    correct = np.array([c == p.answer.strip() for c, p in zip(completions, prompts)], dtype=bool)
    return GenerationResult(completions, correct, list(layers or []), activations, dict(touched or {}))


def can_still_match(text: str, answer: str, newline: str = "\n") -> bool:
    """False once no continuation of `text` (new tokens, no newline yet) can make its first line,
    stripped, equal the stripped answer; trailing U+FFFD (a character cut between tokens) is ignored."""
    if newline in text:
        return False
    head, target = text.rstrip("\ufffd").lstrip(), answer.strip()
    return target.startswith(head) or head.rstrip() == target


def stop_token_ids(tokenizer, newline: str = "\n") -> list[int]:
    """Every token whose decoded text contains `newline`, plus EOS (cached per tokenizer), sorted."""
    key = (id(tokenizer), newline)
    if key not in _STOP_CACHE:
        vocab = len(tokenizer)
        texts = tokenizer.batch_decode([[i] for i in range(vocab)])
        ids = [i for i, text in enumerate(texts) if newline in text]
        if tokenizer.eos_token_id is not None:
            ids.append(int(tokenizer.eos_token_id))
        _STOP_CACHE[key] = sorted(set(ids))
    return _STOP_CACHE[key]


def answer_budgets(tokenizer, prompts: Sequence[Prompt]) -> list[int]:
    """Per prompt, new tokens enough for its answer and newline (as tokenized alone), plus 2 spare.

    Each row is cut at its own budget, so a completion never depends on the other prompts of its
    batch; the exact-match verdict does not depend on the budget at all (an answer followed by
    anything but the newline is wrong however long the completion runs).
    """
    return [len(tokenizer(p.completion, add_special_tokens=False)["input_ids"]) + 2 for p in prompts]
