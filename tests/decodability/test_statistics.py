"""Held-out layer choice splits disjointly, bootstrap intervals bracket TD, the shuffled control sits
at chance, and the same seed gives the same numbers."""

from __future__ import annotations

import numpy as np
import pytest

from conceptlens.decodability import (bootstrap_ci, heldout_layer_choice, probe_decodability, shuffled_control,
                                      task_decodability)
from conceptlens.decodability.statistics import stratified_halves


@pytest.fixture(scope="module")
def layered():
    """Three layers of 3 concepts x 40 points: noise, well separated, half separated."""
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(3), 40)
    centres = rng.normal(size=(3, 6))
    acts = np.stack([rng.normal(size=(120, 6)), centres[codes] * 10 + rng.normal(size=(120, 6)),
                     centres[codes] * 1.0 + rng.normal(size=(120, 6))])
    return acts, [f"concept{c}" for c in codes], codes


def test_stratified_halves_are_disjoint_and_cover(layered):
    _, _, codes = layered
    first, second = stratified_halves(codes, seed=3)
    assert len(np.intersect1d(first, second)) == 0
    assert np.array_equal(np.sort(np.concatenate([first, second])), np.arange(len(codes)))
    assert np.bincount(codes[first]).tolist() == [20, 20, 20]
    other = stratified_halves(codes, seed=4)[0]
    assert not np.array_equal(first, other)


def test_heldout_layer_choice(layered, monkeypatch):
    acts, labels, codes = layered
    seen = []
    import conceptlens.decodability.statistics as statistics

    original = statistics.task_decodability

    def spy(acts_, labels_, k, layers, seed):
        seen.append(set(map(tuple, np.asarray(acts_)[0].round(9))))
        return original(acts_, labels_, k=k, layers=layers, seed=seed)

    monkeypatch.setattr(statistics, "task_decodability", spy)
    result = heldout_layer_choice(acts, labels, k=5, seed=1, layers=[10, 20, 30])
    assert len(seen) == 2 and not seen[0] & seen[1]  # the two splits share no point
    assert len(seen[0]) + len(seen[1]) == 120
    assert result["best_layer_heldout"] == 20
    assert result["td_heldout"] > 0.9
    assert set(result) == {"skipped", "best_layer_heldout", "td_heldout", "td_at_choice_split", "td_report_split_max",
                           "note"}
    assert result["skipped"] is False and result["note"] is None


@pytest.mark.parametrize("per_concept, skipped", [(11, True), (21, True), (22, False)])
def test_heldout_layer_choice_is_skipped_with_a_note_when_halves_are_too_small(per_concept, skipped):
    """k = 10 needs 11 per concept in each half (22 per concept); below that, a note and no exception,
    while TD itself (k + 1 = 11 per concept) is still computed."""
    rng = np.random.default_rng(1)
    codes = np.repeat(np.arange(3), per_concept)
    acts = rng.normal(size=(2, len(codes), 4))
    labels = [f"c{c}" for c in codes]
    result = heldout_layer_choice(acts, labels, k=10, seed=0)
    assert result["skipped"] is skipped
    if skipped:
        assert result["td_heldout"] is None and result["best_layer_heldout"] is None
        assert f"has {per_concept} prompts" in result["note"] and "k + 1 = 11" in result["note"]
    else:
        assert result["note"] is None and 0 <= result["td_heldout"] <= 1
    assert task_decodability(acts, labels, k=10).mean.shape == (2,)


def test_bootstrap_interval_brackets_td(layered):
    acts, labels, _ = layered
    result = task_decodability(acts, labels, k=5)
    ci = bootstrap_ci(result, n_boot=300, seed=0)
    assert ci.shape == (3, 2)
    assert (ci[:, 0] <= result.mean + 1e-12).all() and (result.mean <= ci[:, 1] + 1e-12).all()
    assert (ci[:, 1] - ci[:, 0])[0] > 0.05  # noise layer: a wide interval
    assert np.array_equal(ci, bootstrap_ci(result, n_boot=300, seed=0))
    assert not np.array_equal(ci, bootstrap_ci(result, n_boot=300, seed=1))


def test_same_seed_same_numbers(layered):
    acts, labels, _ = layered
    assert heldout_layer_choice(acts, labels, k=5, seed=2) == heldout_layer_choice(acts, labels, k=5, seed=2)
    first = shuffled_control(acts, labels, k=5, seed=2)
    assert np.array_equal(first, shuffled_control(acts, labels, k=5, seed=2))
    assert not np.array_equal(first, shuffled_control(acts, labels, k=5, seed=3))
    assert np.array_equal(task_decodability(acts, labels, k=5).correct, task_decodability(acts, labels, k=5).correct)


def test_shuffled_control_sits_at_chance(layered):
    acts, labels, _ = layered
    control = shuffled_control(acts, labels, k=5, seed=0)
    assert control.shape == (3,)
    assert np.abs(control - 1 / 3).max() < 0.15
    assert task_decodability(acts, labels, k=5).mean[1] > 0.95


def test_probe_decodability(layered):
    acts, labels, _ = layered
    scores = probe_decodability(acts, labels, folds=4, seed=0)
    assert scores.shape == (3,)
    assert scores[1] > 0.95 and abs(scores[0] - 1 / 3) < 0.2
    assert np.array_equal(scores, probe_decodability(acts, labels, folds=4, seed=0))
