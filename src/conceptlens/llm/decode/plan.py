"""The settings every batch of a decoding shares: token ids, the role token, budgets, stops, pad id.

Prompts are encoded with their token roles, checked once (not empty, within the model's context),
and batched longest first (peak memory early, least padding), left-padded with position ids from
the attention mask. DECISION: without a tokenizer pad token, padding uses the smallest stop token
(a padded position is masked out, so its id never changes a completion).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from conceptlens.activations.capture import left_pad, padded_positions
from conceptlens.errors import ConceptLensError
from conceptlens.llm.decode.text import answer_budgets, stop_token_ids
from conceptlens.models.loader import LoadedModel
from conceptlens.prompts import Prompt, role_position, token_roles


@dataclass
class Plan:
    """What decoding `prompts` needs, in the order of `prompts`."""

    prompts: list[Prompt]
    encoded: list[list[int]]  # token ids of each prompt (with the tokenizer's special tokens)
    positions: list[int]  # index of each prompt's last `role` token, unpadded
    budgets: list[int]  # new tokens each prompt may write
    stops: set[int]  # tokens that end a completion
    pad_id: int
    newline: str

    def batches(self, batch_size: int) -> Iterator[list[int]]:
        """Prompt indices, longest prompt first, in batches of `batch_size`."""
        order = sorted(range(len(self.encoded)), key=lambda i: -len(self.encoded[i]))
        for start in range(0, len(order), batch_size):
            yield order[start:start + batch_size]

    def padded(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask, position_ids) `[batch, width]` of `rows`, left-padded, and the
        `role` token of each row in padded coordinates `[batch]`."""
        batch = [self.encoded[i] for i in rows]
        ids, mask, position_ids = left_pad(batch, self.pad_id)
        pos = padded_positions([len(r) for r in batch], [self.positions[i] for i in rows], ids.shape[1])
        return ids, mask, position_ids, pos


def plan_decoding(lm: LoadedModel, prompts: Sequence[Prompt], *, role: str = "query_separator",
                  batch_size: int = 16, max_new_tokens: int | None = None, role_last: bool = False) -> Plan:
    """Encode and check `prompts` once; `role_last` demands that the `role` token ends every prompt."""
    if not prompts:
        raise ConceptLensError("no prompts to generate from.", "give at least one prompt.")
    if batch_size < 1:
        raise ConceptLensError(f"batch_size must be positive, got {batch_size}.", "use e.g. batch_size=16.")
    tokenizer = lm.tokenizer
    encoded, positions = [], []
    for prompt in prompts:
        ids, roles = token_roles(tokenizer, prompt)
        encoded.append(ids)
        positions.append(role_position(roles, role))
    not_last = [i for i, (ids, pos) in enumerate(zip(encoded, positions)) if pos != len(ids) - 1]
    if role_last and not_last:
        raise ConceptLensError(f"the '{role}' token is not the last token of prompt {not_last[0]}.",
                               "edit the query separator (role='query_separator', the token right before the answer).")
    budgets = [max_new_tokens] * len(prompts) if max_new_tokens else answer_budgets(tokenizer, prompts)
    limit = getattr(lm.model.config, "max_position_embeddings", None)
    longest = max(len(row) + budget for row, budget in zip(encoded, budgets))
    if limit and longest > limit:
        raise ConceptLensError(f"a prompt plus its new tokens needs {longest} positions, beyond the model's context "
                               f"of {limit}.", "use fewer shots (or a smaller max_new_tokens).")
    newline = prompts[0].format.newline
    stops = stop_token_ids(tokenizer, newline)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    return Plan(list(prompts), encoded, positions, budgets, set(stops), pad_id, newline)
