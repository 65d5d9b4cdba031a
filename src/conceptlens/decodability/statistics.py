"""Honest statistics around TD: bootstrap intervals, held-out layer choice, a shuffled control.

The paper picks the best layer on the same prompts it reports TD on, which flatters the peak.
DECISION: we also choose the layer on one half of the prompts (stratified) and report TD on the
other half; with too few prompts for two halves of k + 1 per concept that one statistic is skipped
with a note (never an error). Bootstrap intervals resample prompts within each concept and keep each
point's leave-one-out prediction fixed (the kNN is not refit), which is fast and slightly narrow.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from conceptlens.decodability.knn import DecodabilityResult, as_layers, encode_labels, task_decodability


def bootstrap_per_class(correct: np.ndarray, codes: np.ndarray, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """`[n_boot, rows, concepts]` per-concept TD of `correct` `[rows, N]` with the prompts resampled
    within each concept; every row is resampled with the same prompts (a paired bootstrap)."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(codes == c) for c in range(int(codes.max()) + 1)]
    stats = np.empty((n_boot, correct.shape[0], len(groups)))
    for b in range(n_boot):
        for c, g in enumerate(groups):
            stats[b, :, c] = correct[:, rng.choice(g, size=len(g), replace=True)].mean(axis=1)
    return stats


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> np.ndarray:
    """`[..., 2]` percentile interval over the first axis of `samples`."""
    tail = (1 - level) / 2 * 100
    return np.moveaxis(np.percentile(samples, [tail, 100 - tail], axis=0), 0, -1)


def bootstrap_ci(result: DecodabilityResult, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> np.ndarray:
    """`[layers, 2]` percentile interval of mean TD, resampling prompts within each concept."""
    stats = bootstrap_per_class(result.correct, result.codes, n_boot, seed).mean(axis=2)
    return percentile_interval(stats, level)


def stratified_halves(codes: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    first, second = [], []
    for c in np.unique(codes):
        members = rng.permutation(np.flatnonzero(codes == c))
        first.append(members[: len(members) // 2])
        second.append(members[len(members) // 2:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def heldout_layer_choice(acts, labels: Sequence, k: int = 10, seed: int = 0,
                         layers: Sequence[int] | None = None) -> dict:
    """Choose the best layer on one stratified half, report TD of that layer on the other half.

    Returns `skipped` False and the numbers, or, when a half would hold fewer than k + 1 prompts of
    some concept, `skipped` True, the numbers None and the reason in `note`.
    """
    array = as_layers(acts)
    codes, names = encode_labels(labels, array.shape[1], k)
    layers = list(range(array.shape[0])) if layers is None else list(layers)
    smallest = int(np.bincount(codes).min())
    if smallest // 2 < k + 1:
        concept = names[int(np.argmin(np.bincount(codes)))]
        return {"skipped": True, "best_layer_heldout": None, "td_heldout": None, "td_at_choice_split": None,
                "td_report_split_max": None,
                "note": f"held-out layer choice skipped: concept '{concept}' has {smallest} prompts, and each half "
                        f"needs k + 1 = {k + 1} of every concept ({2 * (k + 1)} prompts per concept)."}
    choose, report = stratified_halves(codes, seed)
    td_choose = task_decodability(array[:, choose], codes[choose], k=k, layers=layers, seed=seed).mean
    td_report = task_decodability(array[:, report], codes[report], k=k, layers=layers, seed=seed).mean
    best = int(np.argmax(td_choose))
    return {"skipped": False, "best_layer_heldout": int(layers[best]), "td_heldout": float(td_report[best]),
            "td_at_choice_split": float(td_choose[best]), "td_report_split_max": float(td_report.max()), "note": None}


def shuffled_control(acts, labels: Sequence, k: int = 10, seed: int = 0,
                     layers: Sequence[int] | None = None) -> np.ndarray:
    """Mean TD per layer with the labels permuted: should sit at chance (1/|concepts|)."""
    labels = list(labels)
    permuted = [labels[i] for i in np.random.default_rng(seed).permutation(len(labels))]
    return task_decodability(acts, permuted, k=k, layers=layers, seed=seed).mean
