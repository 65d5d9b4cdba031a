"""Edits at chosen (point, role token) positions, applied batch by batch, each reporting what it touched.

A condition maps a canonical point (`blocks.3.resid_post`) to an edit `fn(hidden [batch, seq, ...],
positions [batch]) -> hidden`. For each batch the decoder wraps every edit in a `Touch`, which runs it
on that batch's rows only (an `Intervention` with one vector per prompt `[N, d]` gets its rows' vectors)
and records the positions it was given; afterwards `record` refuses a skipped row and adds the batch
to the condition's ledger (`Touched`: calls, rows, last positions per point), which the decoder returns
as `GenerationResult.touched`. The edits themselves stay stateless.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Hashable

import torch

from conceptlens.llm.interventions.definitions import Intervention

Edit = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
Condition = dict[str, Edit] | None  # {point: edit}; None = no edit


@dataclass
class Touched:
    """Where one edit of one condition landed: forward passes, rows (prompts) and the last call's positions."""

    calls: int = 0
    rows: int = 0
    positions: torch.Tensor | None = None  # [batch] of the last call, padded coordinates


def rows_of(edit: Edit, rows: list[int], n_prompts: int) -> Edit:
    """The edit restricted to the prompts `rows`: an `Intervention`'s per-prompt vector `[N, d]` is sliced
    (on a shallow copy: the caller's object never changes); any other edit as given."""
    if not isinstance(edit, Intervention):
        return edit
    vector = edit.vector
    if vector.dim() == 2 and vector.shape[0] == n_prompts:
        vector = vector[rows]
    part = copy.copy(edit)
    part.vector = vector
    return part


class Touch:
    """One edit on one batch: returns `edit(hidden, positions)` and keeps the positions it touched."""

    def __init__(self, edit: Edit):
        self.edit = edit
        self.touched: list[torch.Tensor] = []  # positions [batch] of each call

    def __call__(self, hidden: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        edited = self.edit(hidden, positions)
        if positions is not None:
            self.touched.append(positions.detach().cpu().clone())
        return edited


def batch_edits(condition: Condition, rows: list[int], n_prompts: int) -> dict[str, Touch]:
    """`{point: Touch}` for one batch of prompts `rows` (indices into the N prompts)."""
    return {point: Touch(rows_of(edit, rows, n_prompts)) for point, edit in (condition or {}).items()}


def record(key: Hashable, touches: dict[str, Touch], n_rows: int, ledger: dict[str, Touched]) -> None:
    """Check that every edit touched each of the batch's `n_rows` rows once; count the batch in `ledger`
    (`{point: Touched}` of the condition `key`)."""
    for point, touch in touches.items():
        if len(touch.touched) != 1 or len(touch.touched[0]) != n_rows:
            raise RuntimeError(f"the edit of condition {key!r} at {point} touched "
                               f"{[len(t) for t in touch.touched]} rows of a batch of {n_rows}")
        seen = ledger.setdefault(point, Touched())
        seen.calls += 1
        seen.rows += n_rows
        seen.positions = touch.touched[0]
