"""Few-shot prompts whose every token knows its role (demo input, separator, demo answer, query).

One `PromptFormat` object holds the template: by default `input -> output`, one demonstration a
line, the query line ending in `->` (PAPER.md DECISION). Positions are chosen by role, e.g. the
last `query_separator` token (the token right before the answer), never by raw index, so they
stay right under any padding.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from conceptlens.errors import ConceptLensError
from conceptlens.tasks.family import Example, TaskFamily

ROLES = ("special", "instruction", "demo_input", "demo_separator", "demo_answer", "demo_newline",
         "query_input", "query_separator", "answer")


@dataclass(frozen=True)
class PromptFormat:
    """`{input}{separator}{answer_prefix}{output}{newline}` per demonstration; the query stops at the separator."""

    separator: str = " ->"
    answer_prefix: str = " "
    newline: str = "\n"
    instruction_suffix: str = "\n"

    def build(self, demos: Sequence[Example], query: Example, instruction: str | None = None) -> "Prompt":
        pieces: list[tuple[str, str]] = []
        if instruction:
            pieces.append((instruction + self.instruction_suffix, "instruction"))
        for demo in demos:
            pieces += [(demo.input, "demo_input"), (self.separator, "demo_separator"),
                       (self.answer_prefix + demo.output, "demo_answer"), (self.newline, "demo_newline")]
        pieces += [(query.input, "query_input"), (self.separator, "query_separator")]
        spans, cursor = [], 0
        for text, role in pieces:
            spans.append((cursor, cursor + len(text), role))
            cursor += len(text)
        return Prompt("".join(text for text, _ in pieces), query.output, tuple(spans), self)


@dataclass(frozen=True)
class Prompt:
    """Prompt text, its expected answer, and character spans labelled by role."""

    text: str
    answer: str
    spans: tuple[tuple[int, int, str], ...]
    format: PromptFormat

    @property
    def completion(self) -> str:
        """What a correct model writes after the prompt: answer prefix, answer, end of line."""
        return self.format.answer_prefix + self.answer + self.format.newline


def token_roles(tokenizer, prompt: Prompt) -> tuple[list[int], list[str]]:
    """Token ids of the prompt and the role of each token (from the tokenizer's offset mapping)."""
    encoded = tokenizer(prompt.text, return_offsets_mapping=True)
    roles = []
    for start, end in encoded["offset_mapping"]:
        if end <= start:
            roles.append("special")
            continue
        # a token belongs to the span holding its last character (BPE merges a leading space forward)
        roles.append(next(role for s, e, role in prompt.spans if s <= end - 1 < e))
    return list(encoded["input_ids"]), roles


def role_position(roles: Sequence[str], role: str, which: str = "last") -> int:
    """Index (in the unpadded prompt) of the first or last token with `role`."""
    if role not in ROLES:
        raise ConceptLensError(f"unknown token role '{role}'.", f"use one of {', '.join(ROLES)}.")
    hits = [i for i, r in enumerate(roles) if r == role]
    if not hits:
        raise ConceptLensError(f"the prompt has no '{role}' token.", "check the prompt format and the shots.")
    return hits[-1] if which == "last" else hits[0]


def sample_prompts(family: TaskFamily, concept: str, n: int, shots: int, seed: int,
                   fmt: PromptFormat = PromptFormat(), state_concept: bool = False,
                   query_pool: Sequence[Example] | None = None) -> list[Prompt]:
    """`n` k-shot prompts for one concept: distinct demonstrations and query, seeded."""
    examples = family.concepts.get(concept)
    if examples is None:
        raise ConceptLensError(f"family '{family.name}' has no concept '{concept}'.",
                               f"choose one of {', '.join(family.concept_names)}.")
    if len(examples) < shots + 1:
        raise ConceptLensError(f"concept '{concept}' has {len(examples)} examples; {shots} shots need at least {shots + 1}.",
                               f"use at most --shots {len(examples) - 1}, or add examples.")
    rng = random.Random(f"{seed}:{family.name}:{concept}:{shots}")
    instruction = family.instructions.get(concept) if state_concept else None
    prompts = []
    for _ in range(n):
        picked = rng.sample(range(len(examples)), shots + 1)
        demos = [examples[i] for i in picked[:shots]]
        query = examples[picked[shots]] if query_pool is None else rng.choice(list(query_pool))
        prompts.append(fmt.build(demos, query, instruction))
    return prompts
