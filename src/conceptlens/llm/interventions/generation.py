"""Greedy answers of the same prompts under several edits, sharing the prompt prefix between them.

An edit at the last prompt token (the query separator) cannot change anything before it (causal
attention), so the key/value cache of the other prompt tokens is computed once per batch and
copied for each condition (baseline, positive, negative, every layer): about three times fewer
FLOPs than decoding each condition from scratch. The edited token then runs alone inside a
`Trace`, and decoding continues greedily until a token with the format's newline.
DECISION: the edited token must be the last prompt token; scoring is `generation`'s exact match.
"""

from __future__ import annotations

import copy
import inspect
from typing import Hashable

import numpy as np
import torch

from conceptlens.activations.capture import left_pad
from conceptlens.errors import ConceptLensError
from conceptlens.hooks import Trace
from conceptlens.llm.generation import GenerationResult, answer_budgets, first_line, greedy_answers, stop_token_ids
from conceptlens.llm.interventions.definitions import Intervention, query_positions
from conceptlens.models.loader import LoadedModel
from conceptlens.prompts import Prompt

Condition = dict[str, Intervention] | None  # {point: intervention with vector [d] or [N, d]}, None = no edit


def rows_of(intervention: Intervention, rows: list[int], n_prompts: int) -> Intervention:
    """The intervention restricted to the prompts `rows` (a per-prompt vector `[N, d]` is sliced)."""
    vector = intervention.vector
    if vector.dim() == 2 and vector.shape[0] == n_prompts:
        vector = vector[rows]
    part = copy.copy(intervention)
    part.vector, part.calls, part.rows, part.touched = vector, 0, 0, None
    return part


def record_edits(condition: Condition, edits: dict[str, Intervention], n_rows: int) -> None:
    """Add what the per-batch copies `edits` did to the condition's own interventions; refuse a skipped row."""
    for point, part in edits.items():
        if part.rows != n_rows:
            raise RuntimeError(f"the edit at {point} touched {part.rows} rows of a batch of {n_rows}")
        condition[point].rows += part.rows
        condition[point].calls += 1
        condition[point].touched = part.touched


def cache_kwarg(model) -> str:
    """`cache` in recent transformers, `past_key_values` before (the old name warns, then goes away)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def cache_of(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _decode(lm: LoadedModel, first_logits: torch.Tensor, cache, mask: torch.Tensor, next_pos: torch.Tensor,
            budget: int, stops: set[int]) -> list[list[int]]:
    """Greedy continuation from the logits of the last prompt token; `[batch]` lists of new tokens."""
    device = lm.device
    tokens = first_logits.argmax(-1)  # [batch]
    out = [[int(t)] for t in tokens]
    done = torch.tensor([int(t) in stops for t in tokens])
    for step in range(1, budget):
        if done.all():
            break
        mask = torch.cat([mask, torch.ones(mask.shape[0], 1, dtype=mask.dtype)], dim=1)
        logits = lm.model(input_ids=tokens[:, None].to(device), attention_mask=mask.to(device),
                          position_ids=(next_pos + step - 1)[:, None].to(device), use_cache=True,
                          **{cache_kwarg(lm.model): cache}).logits[:, -1].float().cpu()
        tokens = logits.argmax(-1)
        for row, token in enumerate(tokens.tolist()):
            if not done[row]:
                out[row].append(token)
                done[row] = token in stops
    return out


@torch.inference_mode()
def answers_under_edits(lm: LoadedModel, prompts: list[Prompt], conditions: dict[Hashable, Condition], *,
                        role: str = "query_separator", batch_size: int = 16, max_new_tokens: int | None = None,
                        progress=None, task=None) -> dict[Hashable, GenerationResult]:
    """Greedy completions and exact-match scores of `prompts` under each condition (None = no edit).

    A condition maps a canonical point to an `Intervention` whose vector is `[d]` (all prompts) or
    `[N, d]` (one per prompt, in the order of `prompts`); it edits the last `role` token, which
    must be the last prompt token. On each batch the conditions run in their dict order. Every
    intervention's `rows` counts the prompts it edited (a check that no edit was silently skipped).
    """
    if not prompts:
        raise ConceptLensError("no prompts to generate from.", "give at least one prompt.")
    tokenizer, model = lm.tokenizer, lm.model
    encoded, positions = query_positions(lm, prompts, role)
    not_last = [i for i, (ids, pos) in enumerate(zip(encoded, positions)) if pos != len(ids) - 1]
    if not_last:
        raise ConceptLensError(f"the '{role}' token is not the last token of prompt {not_last[0]}.",
                               "edit the query separator (the token right before the answer).")
    newline = prompts[0].format.newline
    stops = set(stop_token_ids(tokenizer, newline))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(stops)
    budgets = [max_new_tokens] * len(prompts) if max_new_tokens else answer_budgets(tokenizer, prompts)
    budget = max(budgets)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and max(len(r) for r in encoded) + budget > limit:
        raise ConceptLensError(f"a prompt of {max(len(r) for r in encoded)} tokens plus {budget} new tokens exceeds "
                               f"the model's context of {limit}.", "use fewer shots.")
    device = lm.device
    completions = {key: [""] * len(prompts) for key in conditions}
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        ids, mask, position_ids = left_pad([encoded[i] for i in rows], pad_id)
        prefix = None
        if ids.shape[1] > 1:  # the shared prefix: every prompt token before the edited one
            prefix = model(input_ids=ids[:, :-1].to(device), attention_mask=mask[:, :-1].to(device),
                           position_ids=position_ids[:, :-1].to(device), use_cache=True)
            prefix = cache_of(prefix)
        here = torch.zeros(len(rows), dtype=torch.long)  # the edited token is position 0 of its own step
        for key, condition in conditions.items():
            cache = copy.deepcopy(prefix) if prefix is not None else None
            edits = {point: rows_of(iv, rows, len(prompts)) for point, iv in (condition or {}).items()}
            with Trace(lm.layout, [], positions=here, edits=edits):
                step = model(input_ids=ids[:, -1:].to(device), attention_mask=mask.to(device),
                               position_ids=position_ids[:, -1:].to(device), use_cache=True,
                               **{cache_kwarg(model): cache})
            record_edits(condition, edits, len(rows))
            new = _decode(lm, step.logits[:, -1].float().cpu(), cache_of(step), mask,
                          position_ids[:, -1] + 1, max(budgets[i] for i in rows), stops)
            for row, tokens in zip(rows, new):
                completions[key][row] = first_line(tokenizer.decode(tokens[:budgets[row]], skip_special_tokens=True), newline)
        if progress is not None and task is not None:
            progress.advance(task, len(rows))
    return {key: GenerationResult(done, np.array([c == p.answer.strip() for c, p in zip(done, prompts)], dtype=bool),
                                  [], None) for key, done in completions.items()}


def has_kv_cache(lm: LoadedModel) -> bool:
    """True for an attention model whose forward takes a key/value cache (`past_key_values` or `cache`);
    False for a recurrent one (no attention heads: its cache is a running state, not keys and values)."""
    parameters = inspect.signature(lm.model.forward).parameters
    return lm.layout.n_heads > 0 and ("past_key_values" in parameters or "cache" in parameters)


def answers_by_recomputation(lm: LoadedModel, prompts: list[Prompt], conditions: dict[Hashable, Condition], *,
                             role: str = "query_separator", batch_size: int = 16, max_new_tokens: int | None = None,
                             progress=None, task=None) -> dict[Hashable, GenerationResult]:
    """`answers_under_edits` without a cache to share: each condition decodes each batch from scratch.

    Rows are pre-sorted by length (longest first) so `greedy_answers` keeps the batch's order and a
    per-prompt vector `[N, d]` lands on its own prompt.
    """
    encoded, _ = query_positions(lm, prompts, role)
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    completions = {key: [""] * len(prompts) for key in conditions}
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = [prompts[i] for i in rows]
        for key, condition in conditions.items():
            edits = {point: rows_of(iv, rows, len(prompts)) for point, iv in (condition or {}).items()}
            result = greedy_answers(lm, batch, batch_size=len(batch), max_new_tokens=max_new_tokens, role=role,
                                    edits=edits or None)
            record_edits(condition, edits, len(rows))
            for row, text in zip(rows, result.completions):
                completions[key][row] = text
        if progress is not None and task is not None:
            progress.advance(task, len(rows))
    return {key: GenerationResult(texts, np.array([c == p.answer.strip() for c, p in zip(texts, prompts)], dtype=bool),
                                  [], None) for key, texts in completions.items()}


def edited_answers(lm: LoadedModel, prompts: list[Prompt], conditions: dict[Hashable, Condition], **options
                   ) -> dict[Hashable, GenerationResult]:
    """`answers_under_edits` (shared key/value prefix) on an attention model; full recomputation on a
    recurrent one, where copying the running state gives other answers than decoding from scratch."""
    run = answers_under_edits if has_kv_cache(lm) else answers_by_recomputation
    return run(lm, prompts, conditions, **options)
