"""One greedy decoder for every LLM experiment: batched, with the cache, edits and capture in the prefill.

    result = greedy_answers(lm, prompts, capture_layers=[8])           # encoding study, finetune evaluation
    results = edited_answers(lm, prompts, {"base": None, "tv": edits})  # interventions, transfer (early_stop)
`text` holds the scoring rules, `plan` the batching, `edits` the bookkeeping, `loop` the decoding steps.
"""

from conceptlens.llm.decode.decoder import decode, edited_answers, greedy_answers
from conceptlens.llm.decode.edits import Condition, Edit
from conceptlens.llm.decode.loop import has_kv_cache
from conceptlens.llm.decode.text import (GenerationResult, answer_budgets, can_still_match, first_line, is_correct,
                                         stop_token_ids)

__all__ = ["decode", "greedy_answers", "edited_answers", "has_kv_cache", "Condition", "Edit", "GenerationResult",
           "answer_budgets", "can_still_match", "first_line", "is_correct", "stop_token_ids"]
