"""Exact k-nearest-neighbour candidates in bounded memory: float32 tiles propose, float64 decides.

Squared distances are computed tile by tile (`block` x `block` points, one matmul serving both
triangles) as |x|^2 + |y|^2 - 2 x.y in float32 on data centred per layer. A rigorous bound on the
float32 error keeps every point that could be among the k nearest; those candidates' distances are
recomputed in float64 as sums of squared differences, and `ties.py` picks the k nearest from them.
DECISION: exact duplicates are merged first (one search per distinct vector, with its count), and
memory is bounded by `block`, never N x N: a few block x block tiles, two float32 tiles of points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_BLOCK = 2048
CACHE_BYTES = 256 * 2 ** 20  # centred float32 copies of the points are kept up to this size
_U32 = 2.0 ** -24  # unit roundoff of float32


@dataclass
class UniquePoints:
    """Exact duplicates merged: `representative[g]` is the first point of group g, `group[point]`."""

    representative: np.ndarray  # [U]
    group: np.ndarray  # [N]
    count: np.ndarray  # [U]

    @property
    def coincident_fraction(self) -> float:
        """Fraction of the points that share their vector with at least one other point."""
        return float(self.count[self.count > 1].sum() / len(self.group))


@dataclass
class Candidates:
    """Pairs (query group, candidate group) sorted by (query, distance, candidate); a group is its own
    candidate (distance 0) when it has duplicates. `distance` orders each query's candidates exactly:
    float64 sums of squared differences, or, where the float32 bounds already separate the k
    candidates of a query, their lower bounds (comparable within one query only)."""

    query: np.ndarray  # [P]
    point: np.ndarray  # [P]
    distance: np.ndarray  # [P]


def unique_points(points: np.ndarray) -> UniquePoints:
    """Group byte-identical rows of `points` `[N, d]`; groups are numbered by first occurrence.

    Rows are grouped by a 64-bit hash of their words first; groups are then checked byte by byte (a
    collision falls back to sorting the rows' bytes).
    """
    rows = np.ascontiguousarray(points)
    words = rows.view(np.uint32 if rows.dtype.itemsize == 4 else np.uint64)
    multipliers = np.random.default_rng(0).integers(1, 2 ** 63, size=words.shape[1], dtype=np.uint64) * 2 + 1
    keys = np.concatenate([(words[start:start + 4096].astype(np.uint64) * multipliers).sum(axis=1)
                           for start in range(0, len(rows), 4096)])
    _, first, inverse, count = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    shared = np.flatnonzero(count[inverse] > 1)
    if len(shared) and not (rows[shared] == rows[first[inverse[shared]]]).all():  # a hash collision
        keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
        _, first, inverse, count = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return UniquePoints(first[order], rank[inverse], count[order])


def _centre(points: np.ndarray, block: int) -> np.ndarray:
    """Mean point in float64, accumulated block by block."""
    total = np.zeros(points.shape[1])
    for start in range(0, len(points), block):
        total += points[start:start + block].sum(axis=0, dtype=np.float64)
    return total / len(points)


class _Tiles:
    """Centred float32 tiles of the distinct points, with their squared norms (float64); the tiles are
    kept when they fit in `CACHE_BYTES`, otherwise recomputed (memory stays bounded)."""

    def __init__(self, points: np.ndarray, rows: np.ndarray, block: int):
        self.points, self.rows, self.block = points, rows, block
        self.mean = torch.from_numpy(_centre(points, block))
        self.starts = list(range(0, len(rows), block))
        self.cache = {} if len(rows) * points.shape[1] * 4 <= CACHE_BYTES else None
        self.norms = torch.cat([self.tile(i).double().square().sum(1) for i in range(len(self.starts))])

    def index(self, i: int) -> slice:
        return slice(self.starts[i], self.starts[i] + self.block)

    def tile(self, i: int) -> torch.Tensor:
        """`[block, d]` float32: the rows of tile i minus the mean."""
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        index = self.index(i)
        chunk = self.points[index] if len(self.rows) == len(self.points) else self.points[self.rows[index]]
        centred = (torch.from_numpy(np.asarray(chunk)).double() - self.mean).float()
        if self.cache is not None:
            self.cache[i] = centred
        return centred


class _RunningBound:
    """Per query: the k smallest upper bounds seen so far (with their counts), and the pairs whose
    lower bound is within the current k-th upper bound. The k-th bound only falls, so no true
    neighbour is ever dropped; `finish` keeps the pairs within the final bound."""

    def __init__(self, n: int, k: int, counts: torch.Tensor):
        self.k, self.counts, self.weighted = k, counts, bool((counts > 1).any())
        self.values = torch.full((n, k), float("inf"))
        self.weights = torch.ones((n, k), dtype=torch.long)
        self.found: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def kth(self, values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if not self.weighted:
            return values[:, -1]
        reached = weights.cumsum(1) >= self.k
        kth = values.gather(1, reached.float().argmax(1, keepdim=True))[:, 0]
        return torch.where(reached.any(1), kth, torch.full_like(kth, float("inf")))

    def update(self, rows: slice, cols: slice, upper: torch.Tensor, lower: torch.Tensor, own: bool) -> None:
        values = torch.cat([self.values[rows], upper], dim=1)
        best, where = torch.topk(values, self.k, dim=1, largest=False, sorted=True)
        self.values[rows] = best
        if self.weighted:
            weights = self.counts[cols].expand(upper.shape[0], -1)
            if own:  # the query's own group offers its other members only
                weights = weights - torch.eye(upper.shape[0], upper.shape[1], dtype=torch.long)
            self.weights[rows] = torch.cat([self.weights[rows], weights], dim=1).gather(1, where)
        bound = self.kth(self.values[rows], self.weights[rows])
        r, c = torch.nonzero(lower <= bound[:, None], as_tuple=True)
        self.found.append((r + rows.start, c + cols.start, lower[r, c]))

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        query, point, lower = (torch.cat(parts) for parts in zip(*self.found))
        keep = lower <= self.kth(self.values, self.weights)[query]
        return query[keep].numpy(), point[keep].numpy(), lower[keep].double().numpy()


def _bounds(tiles: _Tiles, i: int, j: int, xi: torch.Tensor, xj: torch.Tensor, slack: float):
    """(upper, lower) bounds `[bi, bj]` on the squared distances of tiles i and j."""
    norm_sum = (tiles.norms[tiles.index(i)][:, None] + tiles.norms[tiles.index(j)][None, :]).float()
    approx = torch.mm(xi, xj.T).mul_(-2.0).add_(norm_sum)
    margin = norm_sum.mul_(slack)
    return approx + margin, approx.sub_(margin)


def _exact_distances(points: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray, block: int) -> np.ndarray:
    """Squared distances in float64 as sums of squared differences (0 exactly for equal rows)."""
    out = np.empty(len(rows_a))
    step = max(1, block * block // points.shape[1])
    for start in range(0, len(rows_a), step):
        part = slice(start, start + step)
        diff = np.subtract(points[rows_a[part]], points[rows_b[part]], dtype=np.float64)
        out[part] = np.einsum("pd,pd->p", diff, diff)  # unaligned SIMD loads: the same sum for every row
    return out


def candidate_neighbours(points: np.ndarray, unique: UniquePoints, k: int, block: int | None = None) -> Candidates:
    """Every distinct point that can be among the k nearest of each group, exactly ordered.

    `points` `[N, d]` (float32 or float64); the float32 pass does 2 U^2 d / 2 FLOPs (one triangle).
    """
    block = block or DEFAULT_BLOCK
    rows = unique.representative
    tiles = _Tiles(points, rows, block)
    # float32 error of |x|^2 + |y|^2 - 2 x.y, rounding of the centred points and of the bounds themselves,
    # all <= (d + 8) u (|x|^2 + |y|^2); twice that, to be safe
    slack = 2.0 * (points.shape[1] + 16) * _U32
    counts = torch.from_numpy(unique.count.astype(np.int64))
    running = _RunningBound(len(rows), k, counts)
    n_tiles = len(tiles.starts)
    for i in range(n_tiles):
        xi = tiles.tile(i)
        for j in range(i, n_tiles):
            xj = xi if j == i else tiles.tile(j)
            upper, lower = _bounds(tiles, i, j, xi, xj, slack)
            if i == j:  # a group's own vector: distance exactly 0, offered only if it has duplicates
                own = torch.where(counts[tiles.index(i)] > 1, 0.0, float("inf"))
                upper.diagonal().copy_(own), lower.diagonal().copy_(own)
            running.update(tiles.index(i), tiles.index(j), upper, lower, own=i == j)
            if i != j:
                running.update(tiles.index(j), tiles.index(i), upper.T, lower.T, own=False)
    query, point, lower = running.finish()
    upper = lower + 2.001 * slack * (tiles.norms.numpy()[query] + tiles.norms.numpy()[point])
    order = np.lexsort((point, lower, query))
    query, point, lower, upper = query[order], point[order], lower[order], upper[order]
    exact = ~_separated(query, point, lower, upper, unique.count, k)[query]
    distance = np.where(exact, 0.0, lower)
    other = exact & (query != point)
    distance[other] = _exact_distances(points, rows[query[other]], rows[point[other]], block)
    order = np.lexsort((point, distance, query))
    return Candidates(query[order], point[order], distance[order])


def _separated(query, point, lower, upper, count, k: int) -> np.ndarray:
    """`[groups]` bool: the float32 bounds alone fix the k nearest and their order (exactly k single
    candidates, sorted by lower bound, each interval below the next): no float64 pass needed."""
    n_groups = len(count)
    n_candidates = np.bincount(query, minlength=n_groups)
    same_query = query[1:] == query[:-1]
    overlap = same_query & (upper[:-1] >= lower[1:])
    bad = np.bincount(query[1:][overlap], minlength=n_groups) + np.bincount(query[count[point] > 1],
                                                                            minlength=n_groups)
    return (n_candidates == k) & (bad == 0) & (count == 1)
