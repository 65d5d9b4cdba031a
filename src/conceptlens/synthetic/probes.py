"""Read and edit a regression GPT's residual stream through the canonical hooks.

All reads and edits go through `conceptlens.hooks.Trace`: representations at one token of every
sequence (`blocks.{l}.resid_post`) and head pruning (zero one head in `blocks.{l}.head_out`);
the patching matrix is `conceptlens.synthetic.patching`.
DECISION: the default token is the paper's, the y token of the K-th (20th) demonstration, which
has seen every pair; `token="x"` reads the x token of the last example (the one predicting y_K).
"""

from __future__ import annotations

import pandas as pd
import torch

from conceptlens.hooks import Trace, layout_for
from conceptlens.synthetic.model import RegressionGPT, x_position, y_position
from conceptlens.synthetic.tasks import RegressionBatch


TOKENS = ("y", "x")


def token_position(n_points: int, token: str = "y") -> int:
    """`y`: the y token of the K-th demonstration (the paper's); `x`: the x token of the last example."""
    return x_position(n_points) if token == "x" else y_position(n_points)


@torch.no_grad()
def representations(model: RegressionGPT, batch: RegressionBatch, layers: list[int],
                    token: str = "y") -> tuple[torch.Tensor, torch.Tensor]:
    """`(predictions [N, K], acts [layers, N, d_model])` at one token of every sequence."""
    layout = layout_for(model)
    n, k = batch.ys.shape
    positions = torch.full((n,), token_position(k, token))
    points = [f"blocks.{layer}.resid_post" for layer in layers]
    with Trace(layout, points, positions=positions) as trace:
        predictions = model(batch.xs, batch.ys)
    return predictions, torch.stack([trace.captured[p] for p in points])


def squared_errors(predictions: torch.Tensor, batch: RegressionBatch) -> torch.Tensor:
    return (predictions - batch.ys).pow(2)


def per_concept_mean(values: torch.Tensor, concepts: torch.Tensor, n_concepts: int) -> torch.Tensor:
    total = torch.zeros(n_concepts, dtype=values.dtype).index_add_(0, concepts, values)
    return total / torch.bincount(concepts, minlength=n_concepts).clamp(min=1)


@torch.no_grad()
def head_importance(model: RegressionGPT, batch: RegressionBatch, names: list[str],
                    from_points: int = 5) -> pd.DataFrame:
    """Loss change per basis when one attention head is zeroed (one head at a time)."""
    layout = layout_for(model)
    n_concepts = len(names)

    def loss(predictions: torch.Tensor) -> torch.Tensor:
        errors = squared_errors(predictions, batch)[:, from_points:].mean(1)
        return per_concept_mean(errors, batch.concepts, n_concepts)

    clean = loss(model(batch.xs, batch.ys))
    rows = []
    for layer in range(layout.n_layers):
        for head in range(layout.n_heads):
            def prune(heads: torch.Tensor, pos, head: int = head) -> torch.Tensor:
                heads = heads.clone()
                heads[..., head, :] = 0.0
                return heads

            with Trace(layout, edits={f"blocks.{layer}.head_out": prune}):
                pruned = loss(model(batch.xs, batch.ys))
            for c in range(n_concepts):
                rows.append({"block": layer, "head": head, "concept": names[c],
                             "loss_change": float(pruned[c] - clean[c]), "clean_loss": float(clean[c])})
    return pd.DataFrame(rows)
