"""Read and edit a regression GPT's residual stream through the canonical hooks.

All reads and edits go through `conceptlens.hooks.Trace`: representations at one token of every
sequence (`blocks.{l}.resid_post`), the patching matrix (replace the representation of source-basis
sequences by a target basis's mean) and head pruning (zero one head in `blocks.{l}.head_out`).
DECISION: the patched token is the x-token of the last example (the one that predicts y_K), and
the loss is that prediction's squared error; `mode="shift"` instead moves the representation by
(mean_T - mean_S), keeping what is specific to the sequence (its query x).
"""

from __future__ import annotations

import pandas as pd
import torch

from conceptlens.hooks import Trace, layout_for
from conceptlens.synthetic.model import RegressionGPT, x_position, y_position
from conceptlens.synthetic.tasks import RegressionBatch


def token_position(n_points: int, token: str = "x") -> int:
    """`x`: the x-token of the last example; `y`: the y-token of the last demonstration."""
    return x_position(n_points) if token == "x" else y_position(n_points - 1)


def predicted_example(token: str, n_points: int) -> int:
    """0-based index of the first prediction a patch at `token` can change (both: the last one)."""
    return n_points - 1


@torch.no_grad()
def representations(model: RegressionGPT, batch: RegressionBatch, layers: list[int],
                    token: str = "x") -> tuple[torch.Tensor, torch.Tensor]:
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
def patching_matrix(model: RegressionGPT, batch: RegressionBatch, layer: int, names: list[str],
                    token: str = "x", mode: str = "replace") -> pd.DataFrame:
    """Source x target loss change: sequences of basis S get the mean representation of basis T.

    Returns tidy rows (source, target, loss_change, clean_loss); a negative change helps.
    """
    layout = layout_for(model)
    n, k = batch.ys.shape
    position = token_position(k, token)
    target_index = predicted_example(token, k)
    clean_pred, acts = representations(model, batch, [layer], token)
    acts = acts[0]
    n_concepts = len(names)
    means = torch.stack([acts[batch.concepts == c].mean(0) for c in range(n_concepts)])
    clean = squared_errors(clean_pred, batch)[:, target_index]
    rows_index = torch.arange(n)
    positions = torch.full((n,), position)
    rows = []
    for target in range(n_concepts):
        def edit(hidden: torch.Tensor, pos: torch.Tensor, target: int = target) -> torch.Tensor:
            hidden = hidden.clone()
            if mode == "shift":
                hidden[rows_index, pos] += means[target] - means[batch.concepts]
            else:
                hidden[rows_index, pos] = means[target]
            return hidden

        with Trace(layout, positions=positions, edits={f"blocks.{layer}.resid_post": edit}):
            patched = model(batch.xs, batch.ys)
        change = squared_errors(patched, batch)[:, target_index] - clean
        by_source = per_concept_mean(change, batch.concepts, n_concepts)
        clean_by_source = per_concept_mean(clean, batch.concepts, n_concepts)
        for source in range(n_concepts):
            rows.append({"source": names[source], "target": names[target], "loss_change": float(by_source[source]),
                         "clean_loss": float(clean_by_source[source])})
    return pd.DataFrame(rows)


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
                rows.append({"layer": layer, "head": head, "concept": names[c],
                             "loss_change": float(pruned[c] - clean[c]), "clean_loss": float(clean[c])})
    return pd.DataFrame(rows)
