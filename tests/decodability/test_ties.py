"""Exact ties: broken by a seeded random order (never by index), coincident layers flagged, a point never
its own neighbour even among duplicates, and the blockwise search equal to the dense one and to a
brute-force reference (float64 differences, the same tie rule written out plainly)."""

from __future__ import annotations

import numpy as np
import pytest

from conceptlens.decodability import task_decodability
from conceptlens.decodability.knn import nearest_neighbours


def brute_force_sets(points: np.ndarray, k: int) -> tuple[list[set], list[set], np.ndarray]:
    """Per point: (the points surely among its k nearest, the points tied at the k-th distance), and the
    k-th distance; from the full float64 matrix of sums of squared differences."""
    diff = points[:, None, :].astype(np.float64) - points[None, :, :].astype(np.float64)
    dist = (diff ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    kth = np.sort(dist, axis=1)[:, k - 1]
    inside = [set(np.flatnonzero(row < t)) for row, t in zip(dist, kth)]
    boundary = [set(np.flatnonzero(row == t)) for row, t in zip(dist, kth)]
    return inside, boundary, dist


def with_duplicates(seed: int, n: int = 240, d: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, d)).astype(np.float32)
    points[40:70] = points[3]  # a big group of 31 coincident points
    points[100:104] = points[200]  # a small one
    points[150] = points[151]  # a pair
    points[160:170] = np.round(points[160:170])  # a few points on a lattice: exactly equal distances
    return points


@pytest.mark.parametrize("seed, k", [(0, 10), (1, 5), (2, 1)])
def test_neighbours_match_brute_force_with_duplicates(seed, k):
    points = with_duplicates(seed)
    found = nearest_neighbours(points, k, seed=seed)
    inside, boundary, dist = brute_force_sets(points, k)
    for p in range(len(points)):
        chosen = set(found.indices[p].tolist())
        assert p not in chosen and len(chosen) == k  # never its own neighbour, never twice the same
        assert inside[p] <= chosen and chosen - inside[p] <= boundary[p]
        assert np.all(np.diff(dist[p, found.indices[p]]) >= 0)  # nearest first
        assert found.tied[p] == (len(inside[p]) + len(boundary[p]) > k)
    assert found.tied[40:70].all() and found.coincident_fraction == pytest.approx((31 + 5 + 2) / 240)


@pytest.mark.parametrize("block", [5, 64, 239])
def test_blockwise_equals_dense(block):
    points = with_duplicates(3)
    dense = nearest_neighbours(points, 10, seed=5)  # one tile: the whole matrix at once
    tiled = nearest_neighbours(points, 10, seed=5, block=block)
    assert np.array_equal(dense.indices, tiled.indices) and np.array_equal(dense.tied, tiled.tied)


def test_blockwise_equals_dense_on_clustered_float64_data():
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(5, 64)) * 3
    points = 100.0 + centres[rng.integers(0, 5, 500)] + rng.normal(size=(500, 64))  # a large shared offset
    points[::50] = points[1]
    dense = nearest_neighbours(points, 10, seed=0)
    assert np.array_equal(dense.indices, nearest_neighbours(points, 10, seed=0, block=97).indices)
    inside, boundary, _ = brute_force_sets(points, 10)
    assert all(inside[p] <= set(dense.indices[p]) <= inside[p] | boundary[p] for p in range(500))


def test_ties_are_not_broken_by_index_order():
    """All points coincide: which others are 'nearest' is drawn per point, not the lowest indices."""
    points = np.zeros((60, 3))
    found = nearest_neighbours(points, 5, seed=0)
    assert found.tied.all() and found.coincident_fraction == 1.0
    lowest = np.array([[j for j in range(60) if j != p][:5] for p in range(60)])
    assert (found.indices != lowest).any(axis=1).mean() > 0.9
    assert len({tuple(sorted(row)) for row in found.indices.tolist()}) > 50
    again = nearest_neighbours(points, 5, seed=0)
    other = nearest_neighbours(points, 5, seed=1)
    assert np.array_equal(found.indices, again.indices) and not np.array_equal(found.indices, other.indices)


def test_coincident_layer_gives_chance_for_every_class():
    """Layer 0 of a real study: every prompt's last token is the same vector. Before, index order made one
    concept read 1.00 and the others 0.00; now every concept reads about chance, and the layer is flagged."""
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(4), 100)
    labels = [f"c{c}" for c in codes]
    layers = np.stack([np.ones((400, 8)), rng.normal(size=(400, 8)) + np.eye(8)[codes] * 20])
    result = task_decodability(layers, labels, k=10, seed=0)
    assert np.abs(result.per_class_matrix[0] - 0.25).max() < 0.12
    assert (result.per_class_matrix[1] == 1.0).all()
    table = result.per_layer
    assert table.degenerate.tolist() == [True, False] and table.coincident_fraction.tolist() == [1.0, 0.0]
    assert table.tie_fraction.tolist() == [1.0, 0.0]
    same = task_decodability(layers, labels, k=10, seed=0)
    assert np.array_equal(same.correct, result.correct)
    assert not np.array_equal(task_decodability(layers, labels, k=10, seed=1).correct[0], result.correct[0])


def test_permuting_the_prompts_does_not_favour_the_first_concept():
    """With index-order ties the concept listed first won the coincident layer; with seeded random ties the
    per-concept TD is about chance whichever order the prompts come in."""
    codes = np.repeat(np.arange(3), 60)
    for order in (np.arange(180), np.arange(180)[::-1]):
        result = task_decodability(np.zeros((180, 4)), [f"c{c}" for c in codes[order]], k=10, seed=2)
        assert result.per_class_matrix.max() < 0.6 and result.per_class_matrix.min() > 0.1


def test_duplicates_inside_the_k_are_all_taken_and_self_left_out():
    """Five copies of one point and far-away others, k = 6: each copy takes its 4 twins, never itself."""
    rng = np.random.default_rng(9)
    points = np.concatenate([np.zeros((5, 2)), rng.normal(size=(30, 2)) + 50])
    found = nearest_neighbours(points, 6, seed=0)
    for p in range(5):
        assert set(found.indices[p, :4]) == set(range(5)) - {p}
        assert (found.indices[p, 4:] >= 5).all()
    assert not found.tied[:5].any()
