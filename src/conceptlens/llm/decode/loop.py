"""Greedy decoding with the cache: one prefill of the prompt, then one new token per step and row.

The prefill runs inside a `Trace` that captures and edits at the `role` token; a row ends at a stop
token or at its budget. With `can_match`, a row also leaves the batch (`Cache.batch_select_indices`)
once its text can no longer equal the answer, so a hopeless condition costs a step or two. The step
inputs are what `generate` passes: position ids when the model takes them, the attention mask on an
attention model (a recurrent one, HF Mamba, sees it only in the prefill), logits of the last token only.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Callable

import torch

from conceptlens.hooks import Trace
from conceptlens.models.loader import LoadedModel


@dataclass(frozen=True)
class StepInputs:
    """Which keyword arguments the model's forward takes (read once per call of the decoder)."""

    cache: str  # "cache" in recent transformers, "past_key_values" before
    position_ids: bool
    logits_to_keep: bool
    mask_in_steps: bool  # False for a recurrent model: its running state already holds the prompt

    @classmethod
    def of(cls, lm: LoadedModel) -> "StepInputs":
        parameters = _forward_parameters(lm.model)
        return cls("cache" if "cache" in parameters else "past_key_values", "position_ids" in parameters,
                   "logits_to_keep" in parameters, lm.layout.n_heads > 0)


def _forward_parameters(model) -> dict:
    """The parameters of the model's own forward; a PEFT wrapper's (`**kwargs`) hide them, so read its base."""
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    return dict(inspect.signature(base.forward).parameters)


def has_kv_cache(lm: LoadedModel) -> bool:
    """True for an attention model whose forward takes a key/value cache (`past_key_values` or `cache`);
    False for a recurrent one (no attention heads: its cache is a running state, not keys and values)."""
    parameters = _forward_parameters(lm.model)
    return lm.layout.n_heads > 0 and ("past_key_values" in parameters or "cache" in parameters)


def _cache_of(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def forward(lm: LoadedModel, inputs: StepInputs, ids: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor,
            cache=None, first: bool = True):
    """One cached forward pass of `ids [batch, seq]` -> (last-token logits `[batch, vocab]`, cache)."""
    device = lm.device
    kwargs = {"input_ids": ids.to(device), "use_cache": True}
    if first or inputs.mask_in_steps:
        kwargs["attention_mask"] = mask.to(device)
    if inputs.position_ids:
        kwargs["position_ids"] = position_ids.to(device)
    if inputs.logits_to_keep:
        kwargs["logits_to_keep"] = 1
    if cache is not None:
        kwargs[inputs.cache] = cache
    output = lm.model(**kwargs)
    return output.logits[:, -1].float(), _cache_of(output)


def prefix_cache(lm: LoadedModel, inputs: StepInputs, ids: torch.Tensor, mask: torch.Tensor,
                 position_ids: torch.Tensor):
    """The cache of every prompt token but the last (None for one-token prompts), shared by conditions."""
    if ids.shape[1] < 2:
        return None
    return forward(lm, inputs, ids[:, :-1], mask[:, :-1], position_ids[:, :-1])[1]


def prefill(lm: LoadedModel, inputs: StepInputs, ids: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor,
            pos: torch.Tensor, points: list[str], edits: dict, prefix=None):
    """The prompt's forward pass inside a `Trace` at `pos` -> (logits, cache, `{point: [batch, d]}`).

    With `prefix` (a cache of all tokens but the last, copied here) only the last token runs, and the
    Trace acts on it (the plan has checked that `pos` is every row's last token); else the whole prompt.
    """
    if prefix is not None:
        cache = copy.deepcopy(prefix)
        here = torch.zeros(ids.shape[0], dtype=torch.long)  # the last token is position 0 of its own pass
        with Trace(lm.layout, points, positions=here, edits=edits) as trace:
            logits, cache = forward(lm, inputs, ids[:, -1:], mask, position_ids[:, -1:], cache)
        return logits, cache, trace.captured
    with Trace(lm.layout, points, positions=pos, edits=edits) as trace:
        logits, cache = forward(lm, inputs, ids, mask, position_ids)
    return logits, cache, trace.captured


def continue_greedy(lm: LoadedModel, inputs: StepInputs, logits: torch.Tensor, cache, mask: torch.Tensor,
                    next_pos: torch.Tensor, budgets: list[int], stops: set[int],
                    can_match: Callable[[int, list[int]], bool] | None = None) -> list[list[int]]:
    """New tokens of each row `[batch]` from its last-prompt-token logits; at most `budgets[row]` each.

    Without `can_match` every row stays in the batch to the end (a finished row's token is ignored);
    with it, a row leaves the cache once finished or once `can_match(row, tokens)` is False.
    """
    tokens = logits.argmax(-1).cpu()
    out = [[token] for token in tokens.tolist()]
    live = list(range(len(out)))  # rows of the batch still in the cache, in cache order
    for step in range(1, max(budgets)):
        going = [i for i, row in enumerate(live) if out[row][-1] not in stops and len(out[row]) < budgets[row]
                 and (can_match is None or can_match(row, out[row]))]
        if not going:
            break
        writing = {live[i] for i in going}
        if can_match is not None and len(going) < len(live):
            index = torch.tensor(going)
            cache.batch_select_indices(index.to(lm.device))
            mask, next_pos, tokens = mask[index], next_pos[index], tokens[index]
            live = [live[i] for i in going]
        mask = torch.cat([mask, torch.ones(mask.shape[0], 1, dtype=mask.dtype)], dim=1)
        logits, cache = forward(lm, inputs, tokens[:, None], mask, (next_pos + step - 1)[:, None], cache, first=False)
        tokens = logits.argmax(-1).cpu()
        for row, token in zip(live, tokens.tolist()):
            if row in writing:
                out[row].append(token)
    return out
