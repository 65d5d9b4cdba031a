"""Honest statistics around TD: bootstrap intervals, held-out layer choice, a shuffled control.

The paper picks the best layer on the same prompts it reports TD on, which flatters the peak.
DECISION: we also choose the layer on one half of the prompts (stratified) and report TD on the
other half. Bootstrap intervals resample prompts within each concept and keep each point's
leave-one-out prediction fixed (the kNN is not refit), which is fast and slightly narrow.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from conceptlens.decodability.knn import DecodabilityResult, as_layers, encode_labels, task_decodability


def bootstrap_ci(result: DecodabilityResult, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> np.ndarray:
    """`[layers, 2]` percentile interval of mean TD, resampling prompts within each concept."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(result.codes == c) for c in range(len(result.concepts))]
    stats = np.empty((n_boot, len(result.layers)))
    for b in range(n_boot):
        per_class = [result.correct[:, rng.choice(g, size=len(g), replace=True)].mean(axis=1) for g in groups]
        stats[b] = np.mean(per_class, axis=0)
    tail = (1 - level) / 2 * 100
    return np.percentile(stats, [tail, 100 - tail], axis=0).T


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
    """Choose the best layer on one stratified half, report TD of that layer on the other half."""
    array = as_layers(acts)
    codes, _ = encode_labels(labels, array.shape[1], k)
    layers = list(range(array.shape[0])) if layers is None else list(layers)
    choose, report = stratified_halves(codes, seed)
    td_choose = task_decodability(array[:, choose], codes[choose], k=k, layers=layers).mean
    td_report = task_decodability(array[:, report], codes[report], k=k, layers=layers).mean
    best = int(np.argmax(td_choose))
    return {"best_layer_heldout": int(layers[best]), "td_heldout": float(td_report[best]),
            "td_at_choice_split": float(td_choose[best]), "td_report_split_max": float(td_report.max())}


def shuffled_control(acts, labels: Sequence, k: int = 10, seed: int = 0,
                     layers: Sequence[int] | None = None) -> np.ndarray:
    """Mean TD per layer with the labels permuted: should sit at chance (1/|concepts|)."""
    labels = list(labels)
    permuted = [labels[i] for i in np.random.default_rng(seed).permutation(len(labels))]
    return task_decodability(acts, permuted, k=k, layers=layers).mean
