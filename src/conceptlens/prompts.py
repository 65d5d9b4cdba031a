"""Few-shot prompts whose every token knows its role (demo input, separator, demo answer, query).

One `PromptFormat` object holds the template: by default `input -> output`, one demonstration a
line, the query line ending in `->` (PAPER.md DECISION). Positions are chosen by role, e.g. the
last `query_separator` token (the token right before the answer), never by raw index, so they
stay right under any padding. `fit_format_to_tokenizer` moves the answer's leading whitespace into
the prompt when the tokenizer writes it as a token of its own (SmolLM2: `' 00100'` -> `' '`, `'0'`, ...),
so the prompt ends on the token right before the first content token.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

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


@dataclass(frozen=True)
class AnswerBoundary:
    """Where one prompt stops and its answer starts, in the tokens of one tokenizer.

    `last_prompt_token` is what TD, interventions and generation read; `first_answer_token` is the first
    token a correct model writes, `first_content_token` the first one that is not pure whitespace.
    `prompt_is_prefix`: the prompt alone tokenizes as the start of prompt + answer (no token spans the cut).
    """

    last_prompt_token: str
    first_answer_token: str
    first_content_token: str
    prompt_is_prefix: bool

    @property
    def answer_starts_with_whitespace(self) -> bool:
        return self.first_answer_token != "" and not self.first_answer_token.strip()

    def describe(self) -> str:
        line = (f"the prompt ends on {self.last_prompt_token!r}; the answer starts with {self.first_answer_token!r}"
                + (f", then {self.first_content_token!r}" if self.answer_starts_with_whitespace else ""))
        return line if self.prompt_is_prefix else line + " (a token spans the end of the prompt)"


def _token_spans(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Ids and the characters each token covers: from the previous token's end to its own, so offsets
    trimmed of their whitespace (some byte-level tokenizers trim them) still give the whitespace back."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ends = [end for _, end in encoded["offset_mapping"]]
    return list(encoded["input_ids"]), list(zip([0] + ends[:-1], ends))


def answer_boundary(fmt: PromptFormat, tokenizer, query: Example, demos: Sequence[Example] = ()) -> AnswerBoundary:
    """The last prompt token and the first answer tokens of `fmt.build(demos, query)` under `tokenizer`
    (token texts are the characters of prompt + answer prefix + answer that each token covers)."""
    prompt = fmt.build(demos, query)
    full, cut = prompt.text + fmt.answer_prefix + query.output, len(prompt.text)
    prompt_ids = list(tokenizer(prompt.text, add_special_tokens=False)["input_ids"])
    ids, spans = _token_spans(tokenizer, full)
    before = [i for i, (_, end) in enumerate(spans) if end <= cut]
    answer = [full[max(cut, start):end] for start, end in spans if end > cut]  # parts after the cut
    if not answer or not prompt_ids:
        raise ConceptLensError(f"example {query.input!r} -> {query.output!r} has an empty prompt or answer.",
                               "give every example a non-empty input and output.")
    last = before[-1] if before else None
    return AnswerBoundary(
        last_prompt_token=full[slice(*spans[last])] if last is not None else "",
        first_answer_token=answer[0],
        first_content_token=next((piece for piece in answer if piece.strip()), answer[-1]),
        prompt_is_prefix=last is not None and spans[last][1] == cut and ids[:len(prompt_ids)] == prompt_ids)


def fit_format_to_tokenizer(fmt: PromptFormat, tokenizer,
                            examples: Iterable[Example]) -> tuple[PromptFormat, dict]:
    """`fmt`, with the answer's leading whitespace moved into the separator when the tokenizer writes
    that whitespace as a token of its own, and a note (JSON-ready) of what was checked and changed.

    SmolLM2 cuts `' 00100'` into `' '`, `'0'`, ...: with the default format the prompt ends at `' ->'`,
    and the model must still write the space, so the state right before the first digit is never read.
    Moved (separator `' -> '`, answer_prefix `''`), the text of every demonstration is unchanged and the
    prompt ends on that `' '` token.

    DECISION: the whitespace moves only when *every* distinct answer of `examples` starts with the same
    pure-whitespace token, that whitespace lies inside `answer_prefix`, and every moved prompt still
    tokenizes as the start of its own text. One format serves the whole family, and for an answer
    the tokenizer writes as `' storm'` a prompt ending on a lone `' '` is a token sequence the model never
    sees in the demonstrations; so a family where only some answers split keeps its format, and the
    note says how many split.
    """
    distinct = list({example.output: example for example in examples}.values())
    if not distinct:
        raise ConceptLensError("no examples were given to fit the prompt format to the tokenizer.",
                               "pass the family's examples (all concepts).")
    split = [b.first_answer_token for b in (answer_boundary(fmt, tokenizer, e) for e in distinct)
             if b.answer_starts_with_whitespace]
    note = {"changed": False, "moved_whitespace": "", "separator_before": fmt.separator,
            "answer_prefix_before": fmt.answer_prefix, "separator": fmt.separator,
            "answer_prefix": fmt.answer_prefix, "answers_checked": len(distinct),
            "answers_starting_with_whitespace_token": len(split)}
    moved = split[0] if split else ""
    if not split:
        return fmt, {**note, "reason": "no answer's first token is pure whitespace: format kept."}
    if len(split) < len(distinct) or len(set(split)) > 1:
        return fmt, {**note, "reason": f"{len(split)} of {len(distinct)} distinct answers start with a pure-"
                                       "whitespace token (not all, or not the same one): format kept."}
    if not fmt.answer_prefix.startswith(moved):
        return fmt, {**note, "reason": f"the leading whitespace {moved!r} is not inside the answer prefix "
                                       f"{fmt.answer_prefix!r}: format kept."}
    fitted = replace(fmt, separator=fmt.separator + moved, answer_prefix=fmt.answer_prefix[len(moved):])
    if not all(answer_boundary(fitted, tokenizer, e).prompt_is_prefix for e in distinct):
        return fmt, {**note, "reason": f"moving {moved!r} into the separator changes how some prompts tokenize: "
                                       "format kept."}
    return fitted, {**note, "changed": True, "moved_whitespace": moved, "separator": fitted.separator,
                    "answer_prefix": fitted.answer_prefix,
                    "reason": f"every answer starts with the token {moved!r}: moved into the separator, so the "
                              "prompt ends on the token right before the first content token."}
