import pytest
import torch

from conceptlens.errors import ConceptLensError
from conceptlens.synthetic.tasks import (RegressionFamilies, SparseRegressionMixture, disjoint_bases, make_task,
                                          overlapping_bases)


class TestSparseMixture:
    def test_shapes_and_concepts(self):
        task = make_task("sparse", n_dims=16, basis_dim=4, n_bases=4, n_points=20)
        batch = task.sample(32, torch.Generator().manual_seed(0))
        assert batch.xs.shape == (32, 20, 16) and batch.ys.shape == (32, 20) and batch.concepts.shape == (32,)
        assert batch.concepts.dtype == torch.long and set(batch.concepts.tolist()) <= {0, 1, 2, 3}

    def test_weights_live_on_the_concept_basis(self):
        task = make_task("sparse", n_dims=16, basis_dim=4, n_bases=4)
        batch = task.sample(64, torch.Generator().manual_seed(1))
        for w, c in zip(batch.weights, batch.concepts):
            support = set(torch.nonzero(w).flatten().tolist())
            assert support <= set(range(4 * c, 4 * c + 4))

    def test_noise_level(self):
        task = make_task("sparse", n_dims=8, basis_dim=2, n_bases=4, n_points=50, noise_var=0.01)
        batch = task.sample(400, torch.Generator().manual_seed(2))
        residual = batch.ys - torch.einsum("nkd,nd->nk", batch.xs, batch.weights)
        assert residual.var().item() == pytest.approx(0.01, rel=0.05)

    def test_noiseless_targets_are_exact(self):
        task = make_task("sparse", n_dims=8, basis_dim=2, n_bases=4, noise_var=0.0)
        batch = task.sample(8, torch.Generator().manual_seed(3))
        assert torch.allclose(batch.ys, torch.einsum("nkd,nd->nk", batch.xs, batch.weights))

    def test_seeded_and_fixed_test_set(self):
        task = make_task("sparse", n_dims=8, basis_dim=2, n_bases=4)
        a, b = task.test_set(5, seed=7), task.test_set(5, seed=7)
        assert torch.equal(a.xs, b.xs) and torch.equal(a.ys, b.ys)
        assert a.concepts.tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5

    def test_shuffled_bases_are_disjoint_and_cover(self):
        bases = disjoint_bases(16, 4, 4, shuffle=True, seed=5)
        flat = sorted(c for b in bases for c in b)
        assert flat == list(range(16)) and bases != disjoint_bases(16, 4, 4)

    def test_six_bases(self):
        task = make_task("sparse", n_dims=24, basis_dim=4, n_bases=6)
        assert task.n_concepts == 6 and task.sample(4, torch.Generator()).xs.shape[-1] == 24

    def test_too_many_bases_is_a_user_error(self):
        with pytest.raises(ConceptLensError):
            make_task("sparse", n_dims=8, basis_dim=4, n_bases=4)


def test_overlapping_bases_form_two_groups():
    bases = overlapping_bases()
    assert len(bases) == 8
    assert all(set(b) <= set(range(8)) for b in bases[:4]) and all(set(b) <= set(range(8, 16)) for b in bases[4:])
    assert set(bases[0]) & set(bases[1])  # neighbours overlap
    assert isinstance(make_task("overlapping"), SparseRegressionMixture)


def test_families_targets():
    task = RegressionFamilies(n_dims=4, basis_dim=2, n_points=5, noise_var=0.0)
    batch = task.test_set(3, seed=0)
    linear = torch.einsum("nkd,nd->nk", batch.xs, batch.weights)
    c = batch.concepts
    assert torch.allclose(batch.ys[c == 0], linear[c == 0])
    assert (batch.weights[c == 1][:, 2:] == 0).all()
    assert torch.allclose(batch.ys[c == 2], torch.nn.functional.leaky_relu(linear[c == 2], 0.1))
    quad = torch.einsum("nkd,nd->nk", batch.xs ** 2, batch.weights) / 3 ** 0.5
    assert torch.allclose(batch.ys[c == 3], quad[c == 3])


def test_support_curriculum_keeps_w_on_the_first_coordinates_of_its_basis():
    task = make_task("sparse", n_dims=16, basis_dim=4, n_bases=4, n_points=6)
    batch = task.sample(200, torch.Generator().manual_seed(0), support=2)
    for concept, weights in zip(batch.concepts.tolist(), batch.weights):
        assert set(torch.nonzero(weights).flatten().tolist()) == set(task.bases[concept][:2])
    full = task.sample(200, torch.Generator().manual_seed(0))
    assert torch.equal(full.xs, batch.xs) and torch.equal(full.concepts, batch.concepts)  # same draws, masked w
    assert torch.equal(task.support_masks(4), task.masks)


def test_support_curriculum_needs_a_sparse_task():
    with pytest.raises(ConceptLensError, match="needs a sparse task"):
        make_task("families").sample(4, torch.Generator().manual_seed(0), support=1)
