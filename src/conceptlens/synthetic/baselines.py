"""Reference errors per number of in-context examples: what a learner could reach.

For a query after n examples: least squares over all D dims (minimum-norm when n < D), oracle
least squares on the true basis (r dims), Lasso over D dims (scikit-learn) and ridge over D dims.
The paper's picture: a model that has not identified the basis sits near Lasso; one that has
identified it reaches the oracle after about r examples.
DECISION: Lasso alpha 0.01 and ridge lambda 1.0 by default (the paper does not give them).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch

from conceptlens.synthetic.tasks import RegressionBatch, RegressionMixture


def least_squares_predictions(xs: torch.Tensor, ys: torch.Tensor, n: int,
                              ridge: float = 0.0) -> torch.Tensor:
    """Predict y_{n+1} from the first n pairs: `xs [N, K, D]`, `ys [N, K]` -> `[N]`.

    ridge = 0: minimum-norm least squares (pinv); ridge > 0: (XᵀX + λI)⁻¹ Xᵀy.
    """
    if n == 0:
        return torch.zeros(xs.shape[0], dtype=xs.dtype)
    x, y, query = xs[:, :n].double(), ys[:, :n].double(), xs[:, n].double()
    if ridge > 0:
        gram = x.transpose(1, 2) @ x + ridge * torch.eye(x.shape[-1], dtype=x.dtype)
        w = torch.linalg.solve(gram, x.transpose(1, 2) @ y[..., None])[..., 0]
    else:
        w = (torch.linalg.pinv(x) @ y[..., None])[..., 0]
    return (w * query).sum(-1).to(xs.dtype)


def lasso_predictions(xs: torch.Tensor, ys: torch.Tensor, n: int, alpha: float = 0.01) -> torch.Tensor:
    """Lasso (no intercept) fitted on the first n pairs of every sequence; predicts y_{n+1}."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Lasso

    if n == 0:
        return torch.zeros(xs.shape[0], dtype=xs.dtype)
    out = np.zeros(xs.shape[0])
    x_np, y_np = xs.double().numpy(), ys.double().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i in range(xs.shape[0]):
            model = Lasso(alpha=alpha, fit_intercept=False, max_iter=5000).fit(x_np[i, :n], y_np[i, :n])
            out[i] = model.predict(x_np[i, n][None])[0]
    return torch.from_numpy(out).to(xs.dtype)


def oracle_predictions(task: RegressionMixture, batch: RegressionBatch, n: int) -> torch.Tensor | None:
    """Least squares restricted to each sequence's true support; None if the task has none."""
    out = torch.zeros(len(batch), dtype=batch.xs.dtype)
    for concept in batch.concepts.unique().tolist():
        support = task.support(concept)
        if support is None:
            return None
        rows = batch.concepts == concept
        out[rows] = least_squares_predictions(batch.xs[rows][..., support], batch.ys[rows], n)
    return out


def baseline_errors(task: RegressionMixture, batch: RegressionBatch, lasso_alpha: float = 0.01,
                    ridge: float = 1.0, include_lasso: bool = True) -> pd.DataFrame:
    """Tidy table (baseline, n_examples, concept, mse) for n = 0 .. K-1 examples."""
    rows = []
    names = task.concept_names
    for n in range(batch.xs.shape[1]):
        predictions = {"ols": least_squares_predictions(batch.xs, batch.ys, n),
                       "ridge": least_squares_predictions(batch.xs, batch.ys, n, ridge=ridge)}
        oracle = oracle_predictions(task, batch, n)
        if oracle is not None:
            predictions["oracle"] = oracle
        if include_lasso:
            predictions["lasso"] = lasso_predictions(batch.xs, batch.ys, n, lasso_alpha)
        for baseline, pred in predictions.items():
            errors = (pred - batch.ys[:, n]).pow(2)
            for concept in range(task.n_concepts):
                mask = batch.concepts == concept
                if mask.any():
                    rows.append({"baseline": baseline, "n_examples": n, "concept": names[concept],
                                 "mse": float(errors[mask].mean())})
    return pd.DataFrame(rows)


def summary(errors: pd.DataFrame, from_points: int) -> dict[str, float]:
    """Mean error of each baseline over n >= from_points (the model's headline metric)."""
    kept = errors[errors.n_examples >= from_points]
    return kept.groupby("baseline").mse.mean().to_dict()
