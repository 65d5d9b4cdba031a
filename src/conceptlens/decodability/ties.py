"""The k nearest other points of every point, exact ties broken by a seeded random order.

From the candidates of `search.py` (exact float64 distances between distinct vectors, with counts),
each point takes the points strictly nearer than its k-th distance, and fills the remaining places
from the points *at* that distance uniformly at random; the k are then ordered by distance, equal
distances in random order (the vote's "nearest member" rule then reads that order).
DECISION: the random order is drawn per point from `(seed, layer, point)`, so it does not depend on
the index order of the prompts, on the block size, or on the other layers; a point is never its
own neighbour, also when other points coincide with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from conceptlens.decodability.search import Candidates, UniquePoints


@dataclass
class Neighbours:
    """`indices[point]`: its k nearest other points, nearest first; `tied[point]`: the k-th place was
    shared with a point left out (the seeded order chose); `coincident_fraction` of the layer."""

    indices: np.ndarray  # [N, k]
    tied: np.ndarray  # [N] bool
    coincident_fraction: float


class _Groups:
    """Members of every group of identical points, in index order."""

    def __init__(self, unique: UniquePoints):
        self.order = np.argsort(unique.group, kind="stable")
        self.start = np.concatenate([[0], np.cumsum(unique.count)])

    def members(self, group: int, without: int) -> np.ndarray:
        members = self.order[self.start[group]:self.start[group + 1]]
        return members[members != without]


def _segments(candidates: Candidates, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    starts = np.searchsorted(candidates.query, np.arange(n_groups), side="left")
    ends = np.searchsorted(candidates.query, np.arange(n_groups), side="right")
    return starts, ends


def _untied(candidates: Candidates, unique: UniquePoints, k: int, starts, ends) -> tuple[np.ndarray, np.ndarray]:
    """(mask over groups, `[groups, k]` nearest groups) where distance alone decides: a single point
    whose k + 1 nearest candidates are single points at strictly increasing distances."""
    pos = starts[:, None] + np.arange(k + 1)[None, :]
    valid = pos < ends[:, None]
    pos = np.minimum(pos, len(candidates.query) - 1)
    distance = np.where(valid, candidates.distance[pos], np.inf)
    single = valid[:, :k] & (unique.count[candidates.point[pos[:, :k]]] == 1)
    with np.errstate(invalid="ignore"):
        increasing = (np.diff(distance, axis=1) > 0).all(axis=1)
    mask = (unique.count == 1) & single.all(axis=1) & increasing
    return mask, candidates.point[pos[:, :k]]


def _choose(point: int, group: int, segment: slice, candidates: Candidates, unique: UniquePoints,
            groups: _Groups, k: int, seed: int, layer: int) -> tuple[np.ndarray, bool]:
    """The k nearest of one point, ties at the k-th distance filled at random; (indices, tied)."""
    rng = np.random.default_rng([seed, layer, point])
    near, distance = candidates.point[segment], candidates.distance[segment]
    sizes = unique.count[near] - (near == group)
    kth = distance[np.searchsorted(np.cumsum(sizes), k)]
    chosen, chosen_distance = [], []
    for g, dist in zip(near[distance < kth], distance[distance < kth]):
        members = groups.members(g, without=point)
        chosen.append(members), chosen_distance.append(np.full(len(members), dist))
    at_kth = distance == kth
    boundary, boundary_sizes = near[at_kth], sizes[at_kth]
    needed = k - sum(len(c) for c in chosen)
    picks = np.sort(rng.choice(int(boundary_sizes.sum()), size=needed, replace=False))
    ends = np.cumsum(boundary_sizes)
    which = np.searchsorted(ends, picks, side="right")
    offsets = picks - (ends - boundary_sizes)[which]
    chosen.append(np.array([groups.members(boundary[w], without=point)[o] for w, o in zip(which, offsets)], dtype=int))
    chosen_distance.append(np.full(needed, kth))
    indices, dist = np.concatenate(chosen), np.concatenate(chosen_distance)
    order = np.lexsort((rng.random(k), dist))
    return indices[order], bool(boundary_sizes.sum() > needed)


def select_neighbours(candidates: Candidates, unique: UniquePoints, k: int, seed: int = 0,
                      layer: int = 0) -> Neighbours:
    """`Neighbours` of every point from the candidates of its group (see the module docstring)."""
    n_points, n_groups = len(unique.group), len(unique.count)
    starts, ends = _segments(candidates, n_groups)
    untied, nearest = _untied(candidates, unique, k, starts, ends)
    indices = np.empty((n_points, k), dtype=np.int64)
    tied = np.zeros(n_points, dtype=bool)
    indices[unique.representative[untied]] = unique.representative[nearest[untied]]
    groups = _Groups(unique)
    for group in np.flatnonzero(~untied):
        segment = slice(starts[group], ends[group])
        for point in groups.members(group, without=-1):
            indices[point], tied[point] = _choose(int(point), int(group), segment, candidates, unique, groups,
                                                  k, seed, layer)
    return Neighbours(indices, tied, unique.coincident_fraction)
