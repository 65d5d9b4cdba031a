"""Leave-one-out kNN TD: scikit-learn's neighbours and votes wherever the vote is not tied, our tie
rule on a hand-made case, a point never its own neighbour, and the obvious extremes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlens.decodability import pairwise_decodability, task_decodability
from conceptlens.decodability.knn import neighbours, vote
from conceptlens.errors import ConceptLensError


def sklearn_loo(points: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, tied) per point from scikit-learn, refitting without the point each time."""
    from sklearn.neighbors import KNeighborsClassifier

    predictions, tied = [], []
    for i in range(len(points)):
        keep = np.arange(len(points)) != i
        knn = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(points[keep], codes[keep])
        predictions.append(knn.predict(points[i:i + 1])[0])
        near = codes[keep][knn.kneighbors(points[i:i + 1], return_distance=False)[0]]
        counts = np.bincount(near, minlength=codes.max() + 1)
        tied.append((counts == counts.max()).sum() > 1)
    return np.array(predictions), np.array(tied)


@pytest.mark.parametrize("k, n_classes, seed", [(10, 4, 0), (4, 3, 1), (5, 6, 2), (1, 2, 3)])
def test_equals_sklearn_leave_one_out_where_not_tied(k, n_classes, seed):
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(n_classes), 30)
    centres = rng.normal(size=(n_classes, 8)) * 0.5  # overlapping clusters: many wrong votes too
    layers = np.stack([centres[codes] + rng.normal(size=(len(codes), 8)) for _ in range(2)])
    labels = [f"c{c}" for c in codes]  # names in first-seen order map to the same codes
    result = task_decodability(layers, labels, k=k)
    n_tied = 0
    for li in range(2):
        predicted, tied = sklearn_loo(layers[li], codes, k)
        n_tied += tied.sum()
        assert tied.mean() < 0.5  # most points are compared
        ours = result.correct[li]
        assert np.array_equal(ours[~tied], (predicted == codes)[~tied])
        assert 0 < ours.mean() < 1  # a test where every vote is right (or wrong) could not catch much
        ours_pred = vote(codes[neighbours(layers[li], k)], n_classes)
        assert np.array_equal(ours_pred[~tied], predicted[~tied])
    assert (n_tied > 0) == (k > 1)  # ties happen, so leaving them out is a real exclusion


def test_neighbours_are_sklearns():
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(4)
    points = rng.normal(size=(60, 5))
    mine = neighbours(points, 7)
    theirs = NearestNeighbors(n_neighbors=8, algorithm="brute").fit(points).kneighbors(points, return_distance=False)
    assert (theirs[:, 0] == np.arange(60)).all()
    assert np.array_equal(mine, theirs[:, 1:])


def test_vote_rule():
    # majority wins regardless of distance order
    assert vote(np.array([[1, 0, 0]]), 2).tolist() == [0]
    # a tie goes to the tied class with the nearest member
    assert vote(np.array([[1, 0]]), 2).tolist() == [1]
    assert vote(np.array([[0, 1]]), 2).tolist() == [0]
    assert vote(np.array([[2, 0, 1, 0, 1, 2]]), 3).tolist() == [2]
    # a class nearer than the tied ones but with fewer votes does not win
    assert vote(np.array([[2, 0, 1, 0, 1]]), 3).tolist() == [0]


def test_tie_rule_on_a_hand_made_layout():
    """1-D, k = 2: the query at 0 has one 'a' at distance 1.5 and one 'b' at distance 1.0; scikit-learn
    would give the tie to 'a' (lowest label), the nearest-member rule gives it to 'b'."""
    xs = [0.0, 1.0, -1.5, 100.0, 101.0, 200.0, 201.0]
    labels = ["b", "b", "a", "a", "a", "b", "b"]
    result = task_decodability(np.array(xs)[:, None], labels, k=2)
    assert bool(result.correct[0, 0])
    mirrored = task_decodability(-np.array([0.0, 1.5, -1.0, 100.0, 101.0, 200.0, 201.0])[:, None],
                                 labels, k=2)
    assert not bool(mirrored.correct[0, 0])
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=2, algorithm="brute").fit(np.array(xs[1:])[:, None], labels[1:])
    assert knn.predict([[0.0]])[0] == "a"  # the rule really differs from scikit-learn's here


def test_a_point_is_never_its_own_neighbour():
    """Pairs of identical points with different labels: the only point at distance 0 is the twin."""
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(12, 4)) * 100
    points = np.repeat(centres, 2, axis=0)
    labels = ["x", "y"] * 12
    assert task_decodability(points, labels, k=1).mean[0] == 0.0
    far = task_decodability(rng.normal(size=(24, 4)) * 100, labels, k=1)  # no twins: about half
    assert 0 < far.mean[0] < 1


def test_separated_clusters_give_one_and_shuffled_labels_about_chance():
    rng = np.random.default_rng(6)
    codes = np.repeat(np.arange(4), 50)
    centres = rng.normal(size=(4, 16)) * 20
    points = centres[codes] + rng.normal(size=(200, 16))
    labels = np.array(["noun", "verb", "adj", "adv"])[codes]
    result = task_decodability(points, labels, k=10)
    assert result.mean[0] == 1.0 and (result.per_class_matrix == 1.0).all()
    assert result.chance == 0.25
    shuffled = rng.permutation(labels)
    assert abs(task_decodability(points, shuffled, k=10).mean[0] - 0.25) < 0.1
    noise = task_decodability(rng.normal(size=(200, 16)), labels, k=10)
    assert abs(noise.mean[0] - 0.25) < 0.1


def test_per_class_mean_and_best_layer():
    rng = np.random.default_rng(7)
    codes = np.repeat([0, 1, 2], [15, 15, 30])
    good = np.eye(3)[codes] * 50 + rng.normal(size=(60, 3))
    bad = rng.normal(size=(60, 3))
    result = task_decodability(torch.tensor(np.stack([bad, good, bad])), list("abc"[c] for c in codes), k=5,
                               layers=[4, 8, 12])
    assert result.best_layer == 8 and result.layers == [4, 8, 12]
    assert result.concepts == ["a", "b", "c"]
    for li in range(3):
        by_hand = [result.correct[li, codes == c].mean() for c in range(3)]
        assert np.allclose(result.per_class_matrix[li], by_hand)
        assert np.isclose(result.mean[li], np.mean(by_hand))  # mean of classes, not of points
    table = result.per_class
    assert list(table.columns) == ["layer", "concept", "td"] and len(table) == 9
    assert table.query("layer == 8").td.tolist() == [1.0, 1.0, 1.0]


def test_pairwise_matrix():
    rng = np.random.default_rng(8)
    codes = np.repeat(np.arange(3), 20)
    centres = np.array([[0.0, 0], [0.3, 0], [30, 30]])  # a and b overlap, c stands apart
    points = centres[codes] + rng.normal(size=(60, 2))
    matrix = pairwise_decodability(points, np.array(["a", "b", "c"])[codes], k=5)
    assert list(matrix.index) == list(matrix.columns) == ["a", "b", "c"]
    values = matrix.values
    assert np.array_equal(values, values.T) and (np.diag(values) == 1).all()
    assert values[0, 2] == values[1, 2] == 1.0
    assert values[0, 1] < 0.8
    keep = codes < 2
    assert values[0, 1] == task_decodability(points[keep], codes[keep], k=5).mean[0]


@pytest.mark.parametrize("acts, labels, k, match", [
    (np.zeros((4, 2)), ["a", "b", "a"], 1, "3 labels for 4 activation rows"),
    (np.zeros((6, 2)), ["a", "a", "a", "b", "b", "b"], 0, "k must be a positive"),
    (np.zeros((6, 2)), ["a", "a", "a", "b", "b", "b"], -3, "k must be a positive"),
    (np.zeros((6, 2)), ["a", "a", "a", "a", "b", "b"], 2, r"\['b'\] have fewer than k \+ 1 = 3"),
    (np.zeros((6, 2)), ["a"] * 6, 2, "at least two concepts"),
    (np.zeros(6), ["a"] * 3 + ["b"] * 3, 2, "shape"),
    (np.zeros((1, 1, 6, 2)), ["a"] * 3 + ["b"] * 3, 2, "shape"),
    (np.array([[0.0, np.nan]] + [[0.0, 1.0]] * 5), ["a"] * 3 + ["b"] * 3, 2, "NaN or Inf"),
    (np.array([[0.0, np.inf]] + [[0.0, 1.0]] * 5), ["a"] * 3 + ["b"] * 3, 2, "NaN or Inf"),
])
def test_bad_inputs(acts, labels, k, match):
    with pytest.raises(ConceptLensError, match=match):
        task_decodability(acts, labels, k=k)
