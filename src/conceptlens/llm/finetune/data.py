"""Training examples for finetuning: k-shot prompts from the training split, loss on the answer only.

A sample is a prompt built exactly like an evaluation prompt (same format, same shots, demonstrations
and query from the training split) followed by its completion (answer prefix + answer + newline).
The prompt's tokens are those `token_roles` gives at evaluation; the completion is tokenized on its
own and appended, so training sees the same prompt tokens evaluation does. Labels are -100 on
every prompt token and padding. DECISION: the completion's newline is trained too (greedy decoding
stops there), and Null is left out of training (its answers are random by construction).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

from conceptlens.activations.capture import left_pad
from conceptlens.errors import ConceptLensError
from conceptlens.prompts import Prompt, PromptFormat, sample_prompts, token_roles
from conceptlens.tasks.family import NULL, TaskFamily

IGNORE = -100


@dataclass(frozen=True)
class TrainingExample:
    """Token ids of prompt + completion, and labels (-100 except on the completion tokens)."""

    input_ids: list[int]
    labels: list[int]
    concept: str


def training_prompts(family: TaskFamily, n_samples: int, shots: int, seed: int,
                     fmt: PromptFormat = PromptFormat(), include_null: bool = False) -> list[tuple[str, Prompt]]:
    """`n_samples` k-shot prompts spread evenly over the concepts (Null excluded), in seeded random order."""
    concepts = [c for c in family.concept_names if include_null or c != NULL]
    if not concepts:
        raise ConceptLensError(f"family '{family.name}' has no concept to train on.",
                               "give a family with concepts besides Null.")
    if n_samples < len(concepts):
        raise ConceptLensError(f"--train-samples {n_samples} is fewer than the {len(concepts)} concepts.",
                               f"use at least {len(concepts)} samples.")
    per_concept = [n_samples // len(concepts) + (i < n_samples % len(concepts)) for i in range(len(concepts))]
    pairs = []
    for concept, n in zip(concepts, per_concept):
        pairs += [(concept, p) for p in sample_prompts(family, concept, n, shots, seed=seed, fmt=fmt)]
    random.Random(f"{seed}:order").shuffle(pairs)
    return pairs


def encode_example(tokenizer, prompt: Prompt, concept: str = "") -> TrainingExample:
    """Prompt tokens (as at evaluation) + completion tokens; labels only on the completion."""
    prompt_ids, _ = token_roles(tokenizer, prompt)
    answer_ids = tokenizer(prompt.completion, add_special_tokens=False)["input_ids"]
    if not answer_ids:
        raise ConceptLensError(f"the answer '{prompt.answer}' tokenizes to nothing.", "check the family's outputs.")
    return TrainingExample(list(prompt_ids) + list(answer_ids), [IGNORE] * len(prompt_ids) + list(answer_ids), concept)


def collate(examples: Sequence[TrainingExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad a batch -> input_ids, attention_mask, position_ids, labels, each `[batch, seq]`."""
    ids, mask, position_ids = left_pad([e.input_ids for e in examples], pad_id)
    labels = torch.full_like(ids, IGNORE)
    for i, example in enumerate(examples):
        labels[i, ids.shape[1] - len(example.labels):] = torch.tensor(example.labels, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": position_ids, "labels": labels}


def epoch_order(n_examples: int, epoch: int, seed: int) -> list[int]:
    """The example order of one epoch: a pure function of (seed, epoch), so a resumed run replays it."""
    order = list(range(n_examples))
    random.Random(f"{seed}:epoch:{epoch}").shuffle(order)
    return order


def batch_schedule(n_examples: int, epochs: int, batch_size: int, seed: int) -> list[list[int]]:
    """Example indices of every optimizer step, in order (the last batch of an epoch may be short)."""
    steps = []
    for epoch in range(epochs):
        order = epoch_order(n_examples, epoch, seed)
        steps += [order[i:i + batch_size] for i in range(0, n_examples, batch_size)]
    return steps
