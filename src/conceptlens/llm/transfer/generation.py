"""Greedy answers of zero-shot prompts with a task vector written at their last token, per condition.

Attention models go through `decoding.verdicts_under_edits` (the prompt prefix's key/value cache is
computed once and copied for every condition, as in `interventions.generation.answers_under_edits`;
a row stops once it can no longer be right). A recurrent model (HF Mamba,
Mamba-2) carries a running state instead, and the prefix trick is not safe there: on HF Mamba it
silently gives other answers than decoding from scratch (checked in tests/llm/test_transfer.py).
So recurrent models fall back to full recomputation: every condition decodes every prompt from
scratch through `greedy_answers`, with the edit applied in the prefill. DECISION: both paths edit
the same point and token and score by the same exact match; only the cost differs.
"""

from __future__ import annotations

from typing import Hashable

from conceptlens.llm.generation import GenerationResult
from conceptlens.llm.interventions.generation import Condition, answers_by_recomputation, has_kv_cache
from conceptlens.llm.transfer.decoding import verdicts_under_edits
from conceptlens.models.loader import LoadedModel
from conceptlens.prompts import Prompt


def patched_answers(lm: LoadedModel, prompts: list[Prompt], conditions: dict[Hashable, Condition], *,
                    role: str = "query_separator", batch_size: int = 16, max_new_tokens: int | None = None,
                    progress=None, task=None) -> dict[Hashable, GenerationResult]:
    """Greedy completions of `prompts` under each condition: shared KV-cache prefix when the model has
    one, full recomputation otherwise (recurrent models)."""
    run = verdicts_under_edits if has_kv_cache(lm) else answers_by_recomputation
    return run(lm, prompts, conditions, role=role, batch_size=batch_size, max_new_tokens=max_new_tokens,
               progress=progress, task=task)
