"""Concept (task) decodability: leave-one-out k-nearest-neighbour accuracy of the concept label.

For every point, its k nearest other points (Euclidean; exact float64 distances, found blockwise in
bounded memory by `search.py`) vote on its concept; TD is the fraction voted right, per concept and
as the mean of the per-concept values (chance = 1/|concepts|). DECISION (PAPER.md): a point is never
its own neighbour, and a tied vote goes to the tied concept whose member among the k is nearest.
DECISION: exactly equal distances are ordered by a seeded random draw (`ties.py`), never by index,
and every layer says how many of its points coincide (`coincident_fraction`, `degenerate`).
Written by hand because scikit-learn has no leave-one-out kNN and its ties go to the lowest label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from conceptlens.decodability.search import candidate_neighbours, unique_points
from conceptlens.decodability.ties import Neighbours, select_neighbours
from conceptlens.errors import ConceptLensError


def as_layers(acts) -> np.ndarray:
    """`[N, d]` or `[layers, N, d]` (numpy, memmap or torch) -> `[layers, N, d]` float32/float64, checked.

    No copy for float32/float64 input: TD reads the layers one at a time.
    """
    if hasattr(acts, "detach"):
        acts = acts.detach().cpu()
        if acts.dtype.is_complex or acts.dtype == torch.bool:
            raise ConceptLensError(f"activations are {str(acts.dtype).replace('torch.', '')}; real numbers are needed "
                                   "(a cast would drop the imaginary part).", "save real float activations.")
        acts = (acts if acts.dtype in (torch.float32, torch.float64) else acts.float()).numpy()
    array = np.asarray(acts)
    if np.iscomplexobj(array) or array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise ConceptLensError(f"activations are {array.dtype}; real numbers are needed (a cast would drop the "
                               "imaginary part, or invent numbers).", "save real float activations.")
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ConceptLensError(f"activations have shape {tuple(array.shape)}; [layers, N, d] or [N, d] is needed.",
                               "save activations as a 2-D or 3-D array.")
    if 0 in array.shape:
        empty = ("layers", "rows", "features")[array.shape.index(0)]
        raise ConceptLensError(f"activations have shape {tuple(array.shape)}: no {empty} (TD of empty vectors would "
                               "be a coin flip).",
                               "save activations with at least one layer, one row per prompt and one feature.")
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    bad = [li for li in range(array.shape[0]) if not _finite(array[li])]
    if bad:
        raise ConceptLensError(f"activations contain NaN or Inf values (layers {bad[:5]}).",
                               "recompute them in float32, or drop the bad layers/prompts.")
    return array


def _finite(points: np.ndarray, rows: int = 4096) -> bool:
    return all(np.isfinite(points[start:start + rows]).all() for start in range(0, len(points), rows))


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
        single = [names[i] for i in np.flatnonzero(counts < 2)]
        if single:  # no k helps: a lone point has no neighbour of its own concept (a stray label, a typo?)
            raise ConceptLensError(f"concept(s) {single} have a single point; every concept needs at least "
                                   f"k + 1 = {k + 1} (and 2 for any k).",
                                   "check those labels (a typo or a stray line?), or add prompts to those concepts.")
        raise ConceptLensError(f"concept(s) {small} have fewer than k + 1 = {k + 1} points.",
                               f"add prompts to those concepts or lower k (k={int(counts.min()) - 1}).")
    return codes, names


def nearest_neighbours(points, k: int, seed: int = 0, layer: int = 0, block: int | None = None) -> Neighbours:
    """The k nearest other points of each of `points` `[N, d]`, nearest first, exact ties at random.

    Memory is bounded by `block` (points per tile, default 2048), whatever N is.
    """
    return _search(as_layers(points)[0], k, seed, layer, block)


def _search(points: np.ndarray, k: int, seed: int, layer: int, block: int | None) -> Neighbours:
    unique = unique_points(points)
    candidates = candidate_neighbours(points, unique, k, block)
    return select_neighbours(candidates, unique, k, seed=seed, layer=layer)


def neighbours(points, k: int, seed: int = 0, block: int | None = None) -> np.ndarray:
    """Indices `[N, k]` of each point's k nearest *other* points, nearest first."""
    return nearest_neighbours(points, k, seed=seed, block=block).indices


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
    coincident_fraction: np.ndarray | None = None  # [layers] points sharing their vector with another
    tie_fraction: np.ndarray | None = None  # [layers] points whose k-th place was drawn among equals
    per_class_matrix: np.ndarray = field(init=False)

    def __post_init__(self):
        masks = np.stack([self.codes == c for c in range(len(self.concepts))])  # [C, N]
        zeros = np.zeros(len(self.layers))
        self.coincident_fraction = zeros if self.coincident_fraction is None else np.asarray(self.coincident_fraction)
        self.tie_fraction = zeros if self.tie_fraction is None else np.asarray(self.tie_fraction)
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
    def degenerate(self) -> np.ndarray:
        """`[layers]` bool: DECISION: a layer is degenerate when at least half its points coincide."""
        return self.coincident_fraction >= 0.5

    @property
    def per_layer(self) -> pd.DataFrame:
        """One row per layer: mean TD, coincident and tie fractions, the degenerate flag."""
        return pd.DataFrame({"layer": self.layers, "td": self.mean, "coincident_fraction": self.coincident_fraction,
                             "tie_fraction": self.tie_fraction, "degenerate": self.degenerate})

    @property
    def per_class(self) -> pd.DataFrame:
        rows = [{"layer": layer, "concept": concept, "td": float(self.per_class_matrix[li, ci])}
                for li, layer in enumerate(self.layers) for ci, concept in enumerate(self.concepts)]
        return pd.DataFrame(rows)


def task_decodability(acts, labels: Sequence, k: int = 10, layers: Sequence[int] | None = None, seed: int = 0,
                      block: int | None = None) -> DecodabilityResult:
    """Leave-one-out kNN TD for every layer of `acts` (`[layers, N, d]` or `[N, d]`), one layer at a time.

    `seed` draws the order of exactly equal distances; `block` bounds memory (points per tile).
    """
    array = as_layers(acts)
    codes, names = encode_labels(labels, array.shape[1], k)
    layers = list(range(array.shape[0])) if layers is None else list(layers)
    correct, coincident, tied = [], [], []
    for li in range(array.shape[0]):
        found = _search(array[li], k, seed, li, block)
        correct.append(vote(codes[found.indices], len(names)) == codes)
        coincident.append(found.coincident_fraction), tied.append(float(found.tied.mean()))
    return DecodabilityResult(layers, names, codes, np.stack(correct), k, np.array(coincident), np.array(tied))


def pairwise_decodability(points, labels: Sequence, k: int = 10, seed: int = 0) -> pd.DataFrame:
    """Concept x concept matrix of TD on each pair alone (one layer, `[N, d]`); diagonal 1."""
    array = as_layers(points)[0]
    codes, names = encode_labels(labels, array.shape[0], k)
    matrix = np.ones((len(names), len(names)))
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            keep = (codes == a) | (codes == b)
            pair = task_decodability(array[keep], codes[keep], k=k, seed=seed)
            matrix[a, b] = matrix[b, a] = float(pair.mean[0])
    return pd.DataFrame(matrix, index=names, columns=names)
