"""Concept (task) decodability: leave-one-out k-nearest-neighbour accuracy of the concept label.

For every point, its k nearest other points (Euclidean, float64, exactly scikit-learn's brute
neighbours) vote on its concept; TD is the fraction voted right, per concept and as the mean of
the per-concept values (chance = 1/|concepts|). DECISION (PAPER.md): a point is never its own
neighbour, and a tied vote goes to the tied concept whose member among the k is nearest.
Written by hand because scikit-learn has no leave-one-out kNN and its ties go to the lowest label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from conceptlens.errors import ConceptLensError


def as_layers(acts) -> np.ndarray:
    """`[N, d]` or `[layers, N, d]` (numpy or torch) -> float64 `[layers, N, d]`, checked."""
    array = acts.detach().cpu().numpy() if hasattr(acts, "detach") else np.asarray(acts)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ConceptLensError(f"activations have shape {tuple(array.shape)}; [layers, N, d] or [N, d] is needed.",
                               "save activations as a 2-D or 3-D array.")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        bad = sorted(set(np.argwhere(~np.isfinite(array))[:, 0].tolist()))
        raise ConceptLensError(f"activations contain NaN or Inf values (layers {bad[:5]}).",
                               "recompute them in float32, or drop the bad layers/prompts.")
    return array


def encode_labels(labels: Sequence, n_points: int, k: int) -> tuple[np.ndarray, list]:
    """Labels -> (integer codes, concept names in first-seen order), with the k + 1 rule checked."""
    labels = list(labels)
    if len(labels) != n_points:
        raise ConceptLensError(f"{len(labels)} labels for {n_points} activation rows.",
                               "give exactly one label per prompt, in the same order as the activations.")
    if k < 1:
        raise ConceptLensError(f"k must be a positive integer, got {k}.", "use e.g. --k 10.")
    names = list(dict.fromkeys(labels))
    if len(names) < 2:
        raise ConceptLensError("decodability needs at least two concepts; all labels are the same.",
                               "label the prompts with their concepts.")
    index = {name: i for i, name in enumerate(names)}
    codes = np.array([index[label] for label in labels])
    counts = np.bincount(codes, minlength=len(names))
    small = [names[i] for i in np.flatnonzero(counts < k + 1)]
    if small:
        raise ConceptLensError(f"concept(s) {small} have fewer than k + 1 = {k + 1} points.",
                               f"add prompts to those concepts or lower k (--k {max(1, int(counts.min()) - 1)}).")
    return codes, names


def neighbours(points: np.ndarray, k: int) -> np.ndarray:
    """Indices `[N, k]` of each point's k nearest *other* points, nearest first (float64)."""
    squared = np.einsum("nd,nd->n", points, points)
    dist = points @ points.T  # one [N, N] buffer, updated in place (scikit-learn's order of operations)
    dist *= -2.0
    dist += squared[:, None]
    dist += squared[None, :]
    np.maximum(dist, 0, out=dist)
    np.fill_diagonal(dist, np.inf)  # never one's own neighbour
    part = np.argpartition(dist, k - 1, axis=1)[:, :k]
    order = np.argsort(np.take_along_axis(dist, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def vote(neighbour_codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Majority vote over `[N, k]` neighbour labels (nearest first); ties to the nearest tied class."""
    n, k = neighbour_codes.shape
    counts = np.zeros((n, n_classes), dtype=np.int64)
    np.add.at(counts, (np.arange(n)[:, None], neighbour_codes), 1)
    first_rank = np.full((n, n_classes), k, dtype=np.int64)
    ranks = np.broadcast_to(np.arange(k), (n, k))
    np.minimum.at(first_rank, (np.arange(n)[:, None], neighbour_codes), ranks)
    return np.argmax(counts * (k + 1) - first_rank, axis=1)


@dataclass
class DecodabilityResult:
    """TD of every layer: `correct[layer, point]`, `per_class[layer, concept]`, `mean[layer]`."""

    layers: list[int]
    concepts: list
    codes: np.ndarray
    correct: np.ndarray
    k: int
    per_class_matrix: np.ndarray = field(init=False)

    def __post_init__(self):
        masks = np.stack([self.codes == c for c in range(len(self.concepts))])  # [C, N]
        self.per_class_matrix = (self.correct[:, None, :] & masks[None]).sum(-1) / masks.sum(-1)[None]

    @property
    def mean(self) -> np.ndarray:
        return self.per_class_matrix.mean(axis=1)

    @property
    def chance(self) -> float:
        return 1.0 / len(self.concepts)

    @property
    def best_layer(self) -> int:
        return int(self.layers[int(np.argmax(self.mean))])

    @property
    def per_class(self) -> pd.DataFrame:
        rows = [{"layer": layer, "concept": concept, "td": float(self.per_class_matrix[li, ci])}
                for li, layer in enumerate(self.layers) for ci, concept in enumerate(self.concepts)]
        return pd.DataFrame(rows)


def task_decodability(acts, labels: Sequence, k: int = 10, layers: Sequence[int] | None = None) -> DecodabilityResult:
    """Leave-one-out kNN TD for every layer of `acts` (`[layers, N, d]` or `[N, d]`)."""
    array = as_layers(acts)
    codes, names = encode_labels(labels, array.shape[1], k)
    layers = list(range(array.shape[0])) if layers is None else list(layers)
    correct = np.stack([vote(codes[neighbours(points, k)], len(names)) == codes for points in array])
    return DecodabilityResult(layers, names, codes, correct, k)


def pairwise_decodability(points, labels: Sequence, k: int = 10) -> pd.DataFrame:
    """Concept x concept matrix of TD on each pair alone (one layer, `[N, d]`); diagonal 1."""
    array = as_layers(points)[0]
    codes, names = encode_labels(labels, array.shape[0], k)
    matrix = np.ones((len(names), len(names)))
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            keep = (codes == a) | (codes == b)
            pair = task_decodability(array[keep], codes[keep], k=k)
            matrix[a, b] = matrix[b, a] = float(pair.mean[0])
    return pd.DataFrame(matrix, index=names, columns=names)
