import torch

from conceptlens.synthetic.baselines import (baseline_errors, lasso_predictions, least_squares_predictions,
                                             oracle_predictions, summary)
from conceptlens.synthetic.tasks import make_task


def _noiseless(n=6, k=12):
    task = make_task("sparse", n_dims=8, basis_dim=2, n_bases=4, n_points=k, noise_var=0.0)
    return task, task.test_set(n, seed=1)


def test_ols_recovers_w_once_determined():
    task, batch = _noiseless()
    pred = least_squares_predictions(batch.xs, batch.ys, n=8)
    assert torch.allclose(pred, batch.ys[:, 8], atol=1e-4)


def test_zero_examples_predict_zero():
    task, batch = _noiseless()
    assert (least_squares_predictions(batch.xs, batch.ys, 0) == 0).all()


def test_ridge_matches_closed_form():
    task, batch = _noiseless()
    n, lam = 5, 0.7
    x, y = batch.xs[0, :n].double(), batch.ys[0, :n].double()
    w = torch.linalg.inv(x.T @ x + lam * torch.eye(8, dtype=torch.float64)) @ x.T @ y
    expected = float(w @ batch.xs[0, n].double())
    assert abs(float(least_squares_predictions(batch.xs, batch.ys, n, ridge=lam)[0]) - expected) < 1e-5


def test_min_norm_ols_matches_pinv():
    task, batch = _noiseless()
    x, y = batch.xs[1, :3].double(), batch.ys[1, :3].double()
    expected = float((torch.linalg.pinv(x) @ y) @ batch.xs[1, 3].double())
    assert abs(float(least_squares_predictions(batch.xs, batch.ys, 3)[1]) - expected) < 1e-5


def test_oracle_exact_after_r_examples():
    task, batch = _noiseless()
    assert torch.allclose(oracle_predictions(task, batch, 2), batch.ys[:, 2], atol=1e-4)


def test_lasso_close_to_truth_with_enough_examples():
    task, batch = _noiseless(n=2, k=12)
    pred = lasso_predictions(batch.xs, batch.ys, 10, alpha=1e-4)
    assert torch.allclose(pred, batch.ys[:, 10], atol=0.05)


def test_table_and_ordering():
    task = make_task("sparse", n_dims=8, basis_dim=2, n_bases=4, n_points=10)
    table = baseline_errors(task, task.test_set(4, seed=2))
    assert set(table.columns) == {"baseline", "n_examples", "concept", "mse"}
    levels = summary(table, 5)
    assert levels["oracle"] < levels["lasso"] < levels["ridge"]
