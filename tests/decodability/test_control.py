"""The surface control: mean input embedding per prompt and its TD equal a hand computation on a toy
family; the verdict 'TD exceeds the control' follows the paired bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlens.decodability import (exceeds_control, mean_input_embedding, surface_decodability,
                                      task_decodability)
from conceptlens.errors import ConceptLensError

EMBEDDING = np.array([[0, 0], [2, 0], [0, 2], [10, 10], [12, 10], [10, 12]], dtype=np.float32)
# two concepts, three prompts each; a3 and b3 borrow tokens of the other concept
TOKENS = [[0, 1], [0, 2], [1, 2, 3], [3, 4], [3, 5], [0, 4]]
LABELS = ["a", "a", "a", "b", "b", "b"]


def test_mean_input_embedding_by_hand():
    expected = np.array([[1, 0], [0, 1], [4, 4], [11, 10], [10, 11], [6, 5]], dtype=float)
    assert np.array_equal(mean_input_embedding(EMBEDDING, TOKENS), expected)
    assert np.array_equal(mean_input_embedding(torch.from_numpy(EMBEDDING), TOKENS), expected)
    assert np.array_equal(mean_input_embedding(EMBEDDING, [[3, 3, 0]]), [[20 / 3, 20 / 3]])  # repeats count


@pytest.mark.parametrize("k", [1, 2])
def test_surface_td_by_hand(k):
    """Squared distances: a3 (4,4) is 5 from b3 (6,5) but 25 from a1 and a2, so both a3 and b3 are voted
    wrong; with k = 2, b3's second place is an exact tie (a1 and b1 both at 50) and the 1-1 vote goes to
    the nearest member, a3: wrong whichever tie is drawn (a3's second place ties too: a1, a2 at 25). Every other prompt is right: 2/3 per concept."""
    for seed in range(4):
        control = surface_decodability(EMBEDDING, TOKENS, LABELS, k=k, seed=seed)
        assert control.layers == [0] and control.concepts == ["a", "b"]
        assert control.correct[0].tolist() == [True, True, False, True, True, False]
        assert np.allclose(control.per_class_matrix[0], [2 / 3, 2 / 3]) and np.isclose(control.mean[0], 2 / 3)
    assert surface_decodability(EMBEDDING, TOKENS, LABELS, k=2).tie_fraction[0] == pytest.approx(2 / 6)


def test_exceeds_control():
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(3), 40)
    labels = [f"c{c}" for c in codes]
    vocab = rng.normal(size=(50, 8))
    tokens = [rng.integers(0, 50, size=4).tolist() for _ in codes]  # no concept information at all
    control = surface_decodability(vocab, tokens, labels, k=5)
    surface = mean_input_embedding(vocab, tokens)
    layers = np.stack([surface, np.eye(8)[codes] * 30 + rng.normal(size=(120, 8))])
    result = task_decodability(layers, labels, k=5, layers=[3, 7])
    table = exceeds_control(result, control, layer=7, n_boot=300)
    assert table.concept.tolist() == ["c0", "c1", "c2", "mean"]
    assert table.exceeds.all() and (table.td == 1.0).all()
    assert np.allclose(table.control_td[:3], control.per_class_matrix[0])
    assert np.isclose(table.control_td.iloc[3], control.mean[0])
    assert np.allclose(table.difference, table.td - table.control_td)
    assert (table.td_ci_low <= table.td).all() and (table.control_ci_low <= table.control_td).all()
    same = exceeds_control(result, control, layer=3, n_boot=300)  # layer 3 *is* the surface vector
    assert not same.exceeds.any() and (same.difference == 0).all()
    assert exceeds_control(result, control, layer=7, n_boot=300).equals(table)  # same seed, same numbers


def test_control_errors_name_the_parameter():
    with pytest.raises(ConceptLensError, match=r"token_ids\[1\] has no token ids"):
        mean_input_embedding(EMBEDDING, [[0], []])
    with pytest.raises(ConceptLensError, match=r"token_ids\[0\] has token ids outside 0..5"):
        mean_input_embedding(EMBEDDING, [[6]])
    with pytest.raises(ConceptLensError, match="embedding has shape"):
        mean_input_embedding(np.zeros(6), [[0]])
    control = surface_decodability(EMBEDDING, TOKENS, LABELS, k=1)
    other = task_decodability(mean_input_embedding(EMBEDDING, TOKENS[::-1]), LABELS[::-1], k=1)
    with pytest.raises(ConceptLensError, match="other prompts"):
        exceeds_control(other, control, layer=0)
    with pytest.raises(ConceptLensError, match="layer 4 is not among"):
        exceeds_control(control, control, layer=4)
