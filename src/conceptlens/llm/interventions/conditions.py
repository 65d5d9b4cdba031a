"""The vectors each intervention condition writes at the query token, and what each is scored against.

Per layer and concept: positive = the concept's own vector, negative = Null's, random = a seeded random
direction with the positive vector's norm, cross = another concept T's vector, scored against T's answer
for the same query input. The vector of a concept depends on the mode: `add` (the paper's Appendix C)
adds h_task, the raw held-out mean activation at the query token; `add_centered` adds that mean minus
the average of all concept means; `replace` writes the mean in place of the activation.
DECISION: cross conditions are organised by shift (prompt of concept i gets concept (i + s) mod C),
so every cross condition edits every prompt; a prompt whose target answer is not in the family (no
example of T with its query input), or equals its own answer, is not scored against T (counted).
"""

from __future__ import annotations

import zlib
from typing import Sequence

import torch

from conceptlens.errors import ConceptLensError
from conceptlens.llm.interventions.definitions import AddVector, Intervention, ReplaceWith
from conceptlens.prompts import Prompt
from conceptlens.tasks.family import NULL, TaskFamily

MODES = ("add", "add_centered", "replace")
MODE_TEXT = {"add": "added to the activation (paper, Appendix C: h_task = the raw held-out mean)",
             "add_centered": "minus the average of all concept means, added to the activation",
             "replace": "written in place of the activation"}


def edit_vectors(means: dict[str, torch.Tensor], layer_index: int, mode: str) -> dict[str, torch.Tensor]:
    """Per concept (Null included), the vector its edit writes at one layer (`means[c]` is `[layers, d]`)."""
    if mode not in MODES:
        raise ConceptLensError(f"unknown intervention mode '{mode}'.", f"use one of {', '.join(MODES)}.")
    at_layer = {concept: mean[layer_index] for concept, mean in means.items()}
    if mode != "add_centered":
        return at_layer
    grand = torch.stack(list(at_layer.values())).mean(dim=0)
    return {concept: vector - grand for concept, vector in at_layer.items()}


def make_edit(mode: str, vector: torch.Tensor) -> Intervention:
    """`ReplaceWith(vector)` in replace mode, else `AddVector(vector)`."""
    return ReplaceWith(vector) if mode == "replace" else AddVector(vector)


def random_vectors(vectors: dict[str, torch.Tensor], concepts: Sequence[str], seed: int,
                   layer: int) -> dict[str, torch.Tensor]:
    """One seeded Gaussian direction per concept, scaled to the norm of that concept's vector."""
    out = {}
    for concept in concepts:
        target = vectors[concept]
        generator = torch.Generator().manual_seed(zlib.crc32(f"random:{seed}:{layer}:{concept}".encode()))
        direction = torch.randn(target.shape, generator=generator, dtype=torch.float64)
        out[concept] = (direction / direction.norm() * target.double().norm()).to(target.dtype)
    return out


def query_input(prompt: Prompt) -> str:
    """The text of the prompt's query input (its `query_input` span)."""
    return next(prompt.text[start:end] for start, end, role in prompt.spans if role == "query_input")


def answer_lookup(family: TaskFamily, concept: str) -> dict[str, str | None]:
    """`{input: output}` of one concept; None for an input with several different outputs (ambiguous)."""
    out: dict[str, str | None] = {}
    for example in family.concepts[concept]:
        known = out.get(example.input, example.output)
        out[example.input] = example.output if known == example.output else None
    return out


def target_answers(family: TaskFamily, prompts: Sequence[Prompt], target: str) -> list[str | None]:
    """Per prompt, what concept `target` answers for its query input (None when the family does not say)."""
    lookup = answer_lookup(family, target)
    return [lookup.get(query_input(p)) for p in prompts]


def cross_shifts(concepts: Sequence[str]) -> list[int]:
    """Shifts 1..C-1: under shift s a prompt of concept i gets the vector of concept (i + s) mod C."""
    return list(range(1, len(concepts)))


def cross_target(concepts: Sequence[str], source: str, shift: int) -> str:
    return concepts[(list(concepts).index(source) + shift) % len(concepts)]


def layer_conditions(vectors: dict[str, torch.Tensor], randoms: dict[str, torch.Tensor], labels: Sequence[str],
                     concepts: Sequence[str], point: str, layer: int, mode: str, cross: bool = True) -> dict:
    """`{(condition, layer, shift): {point: edit}}` for positive, negative, random and (`cross`) every cross shift."""
    def per_prompt(pick) -> torch.Tensor:  # [N, d], row i for prompt i
        return torch.stack([pick(label) for label in labels])

    conditions = {("positive", layer, 0): {point: make_edit(mode, per_prompt(lambda c: vectors[c]))},
                  ("negative", layer, 0): {point: make_edit(mode, vectors[NULL])},
                  ("random", layer, 0): {point: make_edit(mode, per_prompt(lambda c: randoms[c]))}}
    for shift in cross_shifts(concepts) if cross else []:
        conditions[("cross", layer, shift)] = {
            point: make_edit(mode, per_prompt(lambda c: vectors[cross_target(concepts, c, shift)]))}
    return conditions
