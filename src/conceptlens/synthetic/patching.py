"""The synthetic causal test: edit the demonstration tokens of source-basis sequences with a
target basis's mean representation at one middle block, and score the change in prediction error.

Modes (data, one row each): `replace` (h <- mean_T), `add` (h <- h + mean_T: the paper's
Appendix wording, the mean is "added"), `shift` (h <- h - mean_S + mean_T: a no-op when S = T).
DECISION: the paper patches "the representation" at layer 5 of 12 and reads it at the y tokens;
we edit every demonstration y token y_1..y_{K-1} (y_K precedes no prediction) at block
`paper_block(n_blocks)` (about 0.4 of depth, never the last block), with position-wise basis
means, so the query's own x token is never overwritten. Scores: the predictions where knowing the
basis matters (r < n < D examples seen) and all predictions.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch

from conceptlens.hooks import Trace, layout_for
from conceptlens.synthetic.model import RegressionGPT, y_position
from conceptlens.synthetic.tasks import RegressionBatch

PatchMode = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
PATCH_MODES: dict[str, PatchMode] = {
    "replace": lambda h, mean_source, mean_target: mean_target.expand_as(h).clone(),
    "add": lambda h, mean_source, mean_target: h + mean_target,
    "shift": lambda h, mean_source, mean_target: h - mean_source + mean_target,
}


def paper_block(n_blocks: int) -> int:
    """0-based block at the paper's depth (layer 5 of 12 -> block 4), never the last block."""
    return max(0, min(n_blocks - 2, round(5 * n_blocks / 12) - 1))


def demonstration_positions(n_points: int) -> torch.Tensor:
    """Token indices of the demonstration y tokens y_1..y_{K-1} (the ones a later prediction reads)."""
    return torch.tensor([y_position(i) for i in range(1, n_points)])


def scoring_windows(basis_dim: int, n_dims: int, n_points: int) -> dict[str, list[int]]:
    """Prediction indices (= examples seen) per window: `informative` r < n < D, `all` 0..K-1."""
    windows = {"informative": list(range(basis_dim + 1, min(n_dims, n_points))), "all": list(range(n_points))}
    return {name: index for name, index in windows.items() if index}


def patch_edit(mode: str, means: torch.Tensor, concepts: torch.Tensor, target: int, positions: torch.Tensor):
    """A `Trace` edit: rows of basis S get `PATCH_MODES[mode](h, mean_S, mean_T)` at `positions`.

    `means [n_concepts, P, d_model]` are position-wise means at `positions` (P of them)."""
    rule = PATCH_MODES[mode]

    def edit(hidden: torch.Tensor, _positions) -> torch.Tensor:
        hidden = hidden.clone()
        hidden[:, positions] = rule(hidden[:, positions], means[concepts], means[target])
        return hidden

    return edit


@torch.no_grad()
def basis_means(model: RegressionGPT, batch: RegressionBatch, block: int, positions: torch.Tensor,
                n_concepts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(clean predictions [N, K], means [n_concepts, P, d_model])` at `positions` of `block`."""
    point = f"blocks.{block}.resid_post"
    with Trace(layout_for(model), [point]) as trace:
        clean = model(batch.xs, batch.ys)
    acts = trace.captured[point][:, positions]
    return clean, torch.stack([acts[batch.concepts == c].mean(0) for c in range(n_concepts)])


@torch.no_grad()
def patching_matrix(model: RegressionGPT, batch: RegressionBatch, block: int, names: list[str],
                    windows: dict[str, list[int]], modes: tuple[str, ...] = tuple(PATCH_MODES)
                    ) -> tuple[pd.DataFrame, dict]:
    """Tidy rows (mode, window, source, target, loss_change, clean_loss) and the per-sequence
    changes `{(mode, window): [N, n_targets]}` for the interval; a negative change helps."""
    positions = demonstration_positions(batch.ys.shape[1])
    clean, means = basis_means(model, batch, block, positions, len(names))
    clean_errors = (clean - batch.ys).pow(2)
    rows, per_sequence = [], {}
    for mode in modes:
        changes = {w: torch.zeros(len(batch), len(names)) for w in windows}
        for target in range(len(names)):
            edit = patch_edit(mode, means, batch.concepts, target, positions)
            with Trace(layout_for(model), edits={f"blocks.{block}.resid_post": edit}):
                errors = (model(batch.xs, batch.ys) - batch.ys).pow(2)
            for window, index in windows.items():
                changes[window][:, target] = (errors[:, index] - clean_errors[:, index]).mean(1)
        for window, index in windows.items():
            per_sequence[mode, window] = changes[window]
            clean_w = clean_errors[:, index].mean(1)
            for s, source in enumerate(names):
                rows_s = batch.concepts == s
                for t, target in enumerate(names):
                    rows.append({"block": block, "mode": mode, "window": window, "source": source, "target": target,
                                 "loss_change": float(changes[window][rows_s, t].mean()),
                                 "clean_loss": float(clean_w[rows_s].mean())})
    return pd.DataFrame(rows), per_sequence


def diagonal_contrast(changes: torch.Tensor, concepts: torch.Tensor, names: list[str], resamples: int = 1000,
                      seed: int = 0) -> pd.DataFrame:
    """Per source basis: diagonal minus the mean of its row's off-diagonal, per sequence, then the mean
    with a 95% bootstrap interval over sequences (negative: the own basis's mean helps most)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s, source in enumerate(names):
        own = changes[concepts == s].numpy()
        others = np.delete(own, s, axis=1).mean(1)
        contrast = own[:, s] - others
        boots = contrast[rng.integers(0, len(contrast), (resamples, len(contrast)))].mean(1)
        rows.append({"source": source, "diagonal": float(own[:, s].mean()), "off_diagonal_mean": float(others.mean()),
                     "diagonal_minus_row": float(contrast.mean()), "ci_low": float(np.quantile(boots, 0.025)),
                     "ci_high": float(np.quantile(boots, 0.975)), "n_sequences": len(contrast)})
    return pd.DataFrame(rows)
