"""ICL answers by batched greedy decoding, under any number of edit conditions, with capture on the way.

Each batch of prompts (longest first, left-padded) is decoded once per condition; the prefill applies
the condition's edits at the `role` token and captures hidden states there, so every prompt goes
through the model once per condition. With `share_prefix` the cache of all prompt tokens but the last
is computed once per batch and copied per condition (an edit at the last token cannot change anything
before it), about three times fewer FLOPs for a sweep. DECISION: a recurrent model (HF Mamba) never
shares a prefix and never stops early: copying its running state gives other answers than decoding
from scratch (tests/llm/test_transfer.py), so `edited_answers` recomputes every condition there.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import torch

from conceptlens.activations.capture import _check_finite, hidden_state_point
from conceptlens.errors import ConceptLensError
from conceptlens.llm.decode.edits import Condition, Edit, Touched, batch_edits, record
from conceptlens.llm.decode.loop import StepInputs, continue_greedy, has_kv_cache, prefill, prefix_cache
from conceptlens.llm.decode.plan import Plan, plan_decoding
from conceptlens.llm.decode.text import GenerationResult, can_still_match, first_line, scored
from conceptlens.models.loader import LoadedModel
from conceptlens.prompts import Prompt


def _matcher(lm: LoadedModel, plan: Plan, rows: list[int]):
    """`can_match(batch_row, tokens)`: whether the row's text so far can still become its answer."""
    def can_match(row: int, tokens: list[int]) -> bool:
        text = lm.tokenizer.decode(tokens, skip_special_tokens=True)
        return can_still_match(text, plan.prompts[rows[row]].answer, plan.newline)
    return can_match


def _stack(captured: dict[str, torch.Tensor], points: list[str], rows: list[int]) -> torch.Tensor:
    """`{point: [batch, d]}` -> `[points, batch, d]`, refusing a point whose hook never fired."""
    missing = [p for p in points if p not in captured]
    if missing:
        raise RuntimeError(f"hooks did not fire for {missing}")
    chunk = torch.stack([captured[p] for p in points])
    _check_finite(chunk, f"prompts {rows[:3]}...")
    return chunk


@torch.inference_mode()
def decode(lm: LoadedModel, prompts: Sequence[Prompt], conditions: dict[Hashable, Condition], *,
           role: str = "query_separator", batch_size: int = 16, max_new_tokens: int | None = None,
           capture_layers: Sequence[int] | None = None, share_prefix: bool = False, early_stop: bool = False,
           progress=None, task=None) -> dict[Hashable, GenerationResult]:
    """Greedy completions, exact-match verdicts and captures of `prompts` under each condition.

    A condition maps canonical points to edits `fn(hidden, positions)` applied at the last `role`
    token (an `Intervention`'s per-prompt vector `[N, d]` follows its prompt); None = no edit.
    `capture_layers` (HF hidden-state indices) come back as `activations [layers, N, d_model]`.
    `early_stop` ends a row once it cannot match (its completion is then its text so far).
    Each result's `touched` says where its edits landed (`{point: Touched}`: calls, rows, positions).
    """
    if share_prefix and not has_kv_cache(lm):
        raise ConceptLensError(f"share_prefix needs a key/value cache, and {lm.name} is a recurrent model.",
                               "pass share_prefix=False (or use edited_answers, which chooses).")
    plan = plan_decoding(lm, prompts, role=role, batch_size=batch_size, max_new_tokens=max_new_tokens,
                         role_last=share_prefix)
    layers = list(capture_layers or [])
    points = [hidden_state_point(layer, lm.n_layers) for layer in layers]
    inputs, n = StepInputs.of(lm), len(plan.prompts)
    texts = {key: [""] * n for key in conditions}
    acts: dict[Hashable, torch.Tensor | None] = {key: None for key in conditions}
    touched: dict[Hashable, dict[str, Touched]] = {key: {} for key in conditions}
    for rows in plan.batches(batch_size):
        ids, mask, position_ids, pos = plan.padded(rows)
        prefix = prefix_cache(lm, inputs, ids, mask, position_ids) if share_prefix else None
        budgets = [plan.budgets[i] for i in rows]
        for key, condition in conditions.items():
            touches = batch_edits(condition, rows, n)
            logits, cache, captured = prefill(lm, inputs, ids, mask, position_ids, pos, points, touches, prefix)
            record(key, touches, len(rows), touched[key])
            new = continue_greedy(lm, inputs, logits, cache, mask, position_ids[:, -1] + 1, budgets, plan.stops,
                                  _matcher(lm, plan, rows) if early_stop else None)
            for row, tokens in zip(rows, new):
                text = lm.tokenizer.decode(tokens[:plan.budgets[row]], skip_special_tokens=True)
                texts[key][row] = first_line(text, plan.newline)
            if points:
                chunk = _stack(captured, points, rows)  # [layers, batch, d]
                if acts[key] is None:
                    acts[key] = torch.empty(len(points), n, chunk.shape[-1])
                acts[key][:, rows] = chunk
        if progress is not None and task is not None:
            progress.advance(task, len(rows))
    return {key: scored(texts[key], plan.prompts, layers, acts[key], touched[key]) for key in conditions}


def greedy_answers(lm: LoadedModel, prompts: Sequence[Prompt], *, batch_size: int = 16,
                   max_new_tokens: int | None = None, capture_layers: Sequence[int] | None = None,
                   role: str = "query_separator", edits: dict[str, Edit] | None = None,
                   progress=None) -> GenerationResult:
    """Greedy-decode every prompt (batched, cache), score exact match, capture `capture_layers` at `role`.

        result = greedy_answers(lm, prompts, capture_layers=[0, 8, 16]); result.accuracy, result.activations
    `edits` maps a canonical point to an edit applied in the prefill at each row's `role` token.
    """
    task = progress.add_task("generate", total=len(prompts), info="") if progress else None
    return decode(lm, prompts, {None: edits}, role=role, batch_size=batch_size, max_new_tokens=max_new_tokens,
                  capture_layers=capture_layers, progress=progress, task=task)[None]


def edited_answers(lm: LoadedModel, prompts: Sequence[Prompt], conditions: dict[Hashable, Condition], *,
                   role: str = "query_separator", batch_size: int = 16, max_new_tokens: int | None = None,
                   early_stop: bool = False, progress=None, task=None) -> dict[Hashable, GenerationResult]:
    """Greedy answers under each condition, edited at the last prompt token (the query separator):
    a shared key/value prefix (and `early_stop`) on an attention model, full recomputation on a recurrent one.

        results = edited_answers(lm, prompts, {"base": None, "add": edits_at(lm, 8, AddVector(v))})
    """
    shared = has_kv_cache(lm)
    return decode(lm, prompts, conditions, role=role, batch_size=batch_size, max_new_tokens=max_new_tokens,
                  share_prefix=shared, early_stop=early_stop and shared, progress=progress, task=task)
