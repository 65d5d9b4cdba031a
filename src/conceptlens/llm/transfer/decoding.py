"""Exact-match verdicts of many patched conditions, decoding each row only while it can still be right.

The same shared-prefix scheme as `interventions.generation.answers_under_edits` (the key/value cache
of every prompt token but the last is computed once per batch and copied per condition; the patched
last token runs inside a `Trace`), with one saving that a layer sweep needs: a row leaves the batch
(`Cache.batch_select_indices`) as soon as its text can no longer equal the answer, so a condition
whose first tokens are all wrong costs one step. DECISION: the verdict is exactly `generation`'s
(first line, stripped, equals the stripped answer); a stopped row's completion is its text so far.
"""

from __future__ import annotations

import copy
from typing import Hashable

import numpy as np
import torch

from conceptlens.activations.capture import left_pad
from conceptlens.errors import ConceptLensError
from conceptlens.hooks import Trace
from conceptlens.llm.generation import GenerationResult, answer_budgets, first_line, stop_token_ids
from conceptlens.llm.interventions.definitions import query_positions
from conceptlens.llm.interventions.generation import cache_kwarg, cache_of, record_edits, rows_of
from conceptlens.models.loader import LoadedModel
from conceptlens.prompts import Prompt


def can_still_match(text: str, answer: str, newline: str = "\n") -> bool:
    """False once no continuation of `text` (new tokens, no newline yet) can make its first line,
    stripped, equal the stripped answer; trailing U+FFFD (a character cut between tokens) is ignored."""
    if newline in text:
        return False
    head, target = text.rstrip("\ufffd").lstrip(), answer.strip()
    return target.startswith(head) or head.rstrip() == target


def _decode(lm: LoadedModel, logits: torch.Tensor, cache, mask: torch.Tensor, next_pos: torch.Tensor,
            budgets: list[int], answers: list[str], stops: set[int], newline: str) -> list[list[int]]:
    """Greedy continuation of a batch; each row stops at a stop token, at its budget, or once hopeless."""
    tokens = logits.argmax(-1)
    out = [[int(t)] for t in tokens]
    live = list(range(len(out)))  # rows of the batch still in the cache, in cache order
    for step in range(1, max(budgets)):
        keep = [i for i, row in enumerate(live) if out[row][-1] not in stops and len(out[row]) < budgets[row]
                and can_still_match(lm.tokenizer.decode(out[row], skip_special_tokens=True), answers[row], newline)]
        if not keep:
            break
        if len(keep) < len(live):
            index = torch.tensor(keep)
            cache.batch_select_indices(index.to(lm.device))
            mask, next_pos, tokens = mask[index], next_pos[index], tokens[index]
            live = [live[i] for i in keep]
        mask = torch.cat([mask, torch.ones(mask.shape[0], 1, dtype=mask.dtype)], dim=1)
        step_logits = lm.model(input_ids=tokens[:, None].to(lm.device), attention_mask=mask.to(lm.device),
                               position_ids=(next_pos + step - 1)[:, None].to(lm.device), use_cache=True,
                               **{cache_kwarg(lm.model): cache}).logits[:, -1].float().cpu()
        tokens = step_logits.argmax(-1)
        for row, token in zip(live, tokens.tolist()):
            out[row].append(token)
    return out


@torch.inference_mode()
def verdicts_under_edits(lm: LoadedModel, prompts: list[Prompt], conditions: dict[Hashable, dict | None], *,
                         role: str = "query_separator", batch_size: int = 16, max_new_tokens: int | None = None,
                         progress=None, task=None) -> dict[Hashable, GenerationResult]:
    """Like `answers_under_edits` (same conditions, same verdicts), decoding only while a row can match."""
    encoded, positions = query_positions(lm, prompts, role)
    if any(pos != len(ids) - 1 for ids, pos in zip(encoded, positions)):
        raise ConceptLensError(f"the '{role}' token is not the last prompt token.", "patch the query separator.")
    newline = prompts[0].format.newline
    stops = set(stop_token_ids(lm.tokenizer, newline))
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else min(stops)
    budgets = [max_new_tokens] * len(prompts) if max_new_tokens else answer_budgets(lm.tokenizer, prompts)
    texts = {key: [""] * len(prompts) for key in conditions}
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        ids, mask, position_ids = left_pad([encoded[i] for i in rows], pad_id)
        prefix = None
        if ids.shape[1] > 1:
            prefix = cache_of(lm.model(input_ids=ids[:, :-1].to(lm.device), attention_mask=mask[:, :-1].to(lm.device),
                                        position_ids=position_ids[:, :-1].to(lm.device), use_cache=True))
        for key, condition in conditions.items():
            cache = copy.deepcopy(prefix) if prefix is not None else None
            edits = {point: rows_of(iv, rows, len(prompts)) for point, iv in (condition or {}).items()}
            with Trace(lm.layout, [], positions=torch.zeros(len(rows), dtype=torch.long), edits=edits):
                step = lm.model(input_ids=ids[:, -1:].to(lm.device), attention_mask=mask.to(lm.device),
                                position_ids=position_ids[:, -1:].to(lm.device), use_cache=True,
                                **{cache_kwarg(lm.model): cache})
            record_edits(condition, edits, len(rows))
            new = _decode(lm, step.logits[:, -1].float().cpu(), cache_of(step), mask, position_ids[:, -1] + 1,
                          [budgets[i] for i in rows], [prompts[i].answer for i in rows], stops, newline)
            for row, tokens in zip(rows, new):
                texts[key][row] = first_line(lm.tokenizer.decode(tokens[:budgets[row]], skip_special_tokens=True), newline)
        if progress is not None and task is not None:
            progress.advance(task, len(rows))
    return {key: GenerationResult(done, np.array([c == p.answer.strip() for c, p in zip(done, prompts)], dtype=bool),
                                  [], None) for key, done in texts.items()}
