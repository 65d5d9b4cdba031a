"""In-context regression mixtures: each sequence is K pairs (x, y) from one latent concept z.

The paper's task (section 3): x ~ N(0, I_D), a basis B_z (r of the D coordinates) drawn uniformly,
w ~ N(0, I) on B_z and 0 elsewhere, y = w·x + ε with ε ~ N(0, noise_var). Variants: 6 bases in
D = 24, 8 overlapping bases (two groups of four inside two 8-dim blocks) and a mixture of
regression families (linear, sparse linear, leaky-ReLU, quadratic).
DECISION: bases are contiguous blocks unless `shuffle=True` (a seeded permutation of coordinates).

`task.sample(n, generator)` -> `RegressionBatch(xs [n, K, D], ys [n, K], concepts [n])`;
`task.test_set(per_concept, seed)` is fixed by its seed and sorted by concept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from conceptlens.errors import ConceptLensError, require


@dataclass
class RegressionBatch:
    """`xs [n, K, D]`, `ys [n, K]`, `concepts [n]` (long), `weights [n, D]` (the w of each sequence)."""

    xs: torch.Tensor
    ys: torch.Tensor
    concepts: torch.Tensor
    weights: torch.Tensor

    def __len__(self) -> int:
        return self.xs.shape[0]

    def select(self, rows: torch.Tensor) -> "RegressionBatch":
        return RegressionBatch(self.xs[rows], self.ys[rows], self.concepts[rows], self.weights[rows])


class RegressionMixture:
    """Base class: subclasses define `concept_names`, `_weights` and optionally `_targets`."""

    n_dims: int
    n_points: int
    noise_var: float
    concept_names: list[str]

    @property
    def n_concepts(self) -> int:
        return len(self.concept_names)

    def _weights(self, concepts: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def _targets(self, xs: torch.Tensor, weights: torch.Tensor, concepts: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nkd,nd->nk", xs, weights)

    def support(self, concept: int) -> torch.Tensor | None:
        """The coordinates a concept's w lives on (for the oracle baseline); None if not sparse-linear."""
        return None

    def support_masks(self, size: int) -> torch.Tensor:
        raise ConceptLensError(f"a support curriculum needs a sparse task, not {type(self).__name__}.",
                               "unset train.curriculum.start_support, or use task.kind sparse or overlapping.")

    def sample(self, n: int, gen: torch.Generator, concepts: torch.Tensor | None = None,
               n_points: int | None = None, support: int | None = None) -> RegressionBatch:
        """Draw `n` sequences (concepts uniform unless given) with `n_points` (default K) pairs each;
        `support` keeps w on the first `support` coordinates of its basis (sparse tasks only)."""
        k = n_points or self.n_points
        if concepts is None:
            concepts = torch.randint(0, self.n_concepts, (n,), generator=gen)
        xs = torch.randn(n, k, self.n_dims, generator=gen)
        weights = self._weights(concepts, gen)
        if support is not None:
            weights = weights * self.support_masks(support)[concepts]
        noise = torch.randn(n, k, generator=gen) * self.noise_var ** 0.5
        ys = self._targets(xs, weights, concepts) + noise
        return RegressionBatch(xs, ys, concepts.long(), weights)

    def test_set(self, per_concept: int = 100, seed: int = 12345) -> RegressionBatch:
        """A fixed test set: `per_concept` sequences of every concept, sorted by concept id."""
        gen = torch.Generator().manual_seed(seed)
        concepts = torch.arange(self.n_concepts).repeat_interleave(per_concept)
        return self.sample(len(concepts), gen, concepts=concepts)


class SparseRegressionMixture(RegressionMixture):
    """w lives on one of `bases` (lists of coordinates); the paper's D=16, r=4, 4 disjoint bases."""

    def __init__(self, bases: list[list[int]], n_dims: int, n_points: int = 20, noise_var: float = 0.01,
                 names: list[str] | None = None):
        require(len(bases) >= 2, "a regression mixture needs at least two bases.", "set n_bases >= 2.")
        for basis in bases:
            require(all(0 <= c < n_dims for c in basis), f"basis {basis} leaves the {n_dims} dimensions.",
                    "use coordinates below n_dims.")
        self.bases = [list(b) for b in bases]
        self.n_dims, self.n_points, self.noise_var = n_dims, n_points, noise_var
        self.concept_names = names or [f"B{i + 1}" for i in range(len(bases))]
        masks = torch.zeros(len(bases), n_dims)
        for i, basis in enumerate(bases):
            masks[i, basis] = 1.0
        self.masks = masks

    def _weights(self, concepts: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return torch.randn(len(concepts), self.n_dims, generator=gen) * self.masks[concepts]

    def support(self, concept: int) -> torch.Tensor:
        return torch.tensor(self.bases[concept])

    def support_masks(self, size: int) -> torch.Tensor:
        """`[n_concepts, D]`: 1 on the first `size` coordinates of each basis."""
        masks = torch.zeros_like(self.masks)
        for i, basis in enumerate(self.bases):
            masks[i, basis[:size]] = 1.0
        return masks


def disjoint_bases(n_dims: int, basis_dim: int, n_bases: int, shuffle: bool = False,
                   seed: int = 0) -> list[list[int]]:
    """`n_bases` disjoint blocks of `basis_dim` coordinates (contiguous, or a seeded permutation)."""
    require(basis_dim * n_bases <= n_dims,
            f"{n_bases} disjoint bases of {basis_dim} dims do not fit in {n_dims} dims.",
            "raise n_dims or lower n_bases/basis_dim.")
    order = list(range(n_dims))
    if shuffle:
        order = torch.randperm(n_dims, generator=torch.Generator().manual_seed(seed)).tolist()
    return [order[i * basis_dim:(i + 1) * basis_dim] for i in range(n_bases)]


def overlapping_bases(block_dim: int = 8, basis_dim: int = 4, per_group: int = 4) -> list[list[int]]:
    """Two groups of `per_group` bases; group g's bases are cyclic windows inside block g.

    Default: D = 16, B1..B4 ⊂ coords 0..7 and B5..B8 ⊂ coords 8..15, neighbours share 2 coordinates.
    """
    step = max(1, block_dim // per_group)
    bases = []
    for group in range(2):
        for j in range(per_group):
            bases.append([group * block_dim + (j * step + c) % block_dim for c in range(basis_dim)])
    return bases


class RegressionFamilies(RegressionMixture):
    """Four regression families: linear (dense w), sparse linear (w on the first r coordinates),
    leaky-ReLU (y = leaky_relu(w·x, 0.1)) and quadratic (y = w·(x²)/√3, as in Garg et al.)."""

    FAMILIES = ("linear", "sparse_linear", "leaky_relu", "quadratic")

    def __init__(self, n_dims: int = 16, basis_dim: int = 4, n_points: int = 20, noise_var: float = 0.01):
        self.n_dims, self.basis_dim, self.n_points, self.noise_var = n_dims, basis_dim, n_points, noise_var
        self.concept_names = list(self.FAMILIES)

    def _weights(self, concepts: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        weights = torch.randn(len(concepts), self.n_dims, generator=gen)
        sparse = concepts == 1
        weights[sparse, self.basis_dim:] = 0.0
        return weights

    def _targets(self, xs, weights, concepts):
        linear = torch.einsum("nkd,nd->nk", xs, weights)
        quadratic = torch.einsum("nkd,nd->nk", xs ** 2, weights) / 3 ** 0.5
        leaky = F.leaky_relu(linear, 0.1)
        c = concepts[:, None]
        return torch.where(c == 3, quadratic, torch.where(c == 2, leaky, linear))

    def support(self, concept: int) -> torch.Tensor | None:
        return torch.arange(self.basis_dim) if concept == 1 else None


def make_task(kind: str, n_dims: int = 16, basis_dim: int = 4, n_bases: int = 4, n_points: int = 20,
              noise_var: float = 0.01, shuffle: bool = False, seed: int = 0) -> RegressionMixture:
    """Build a task by name: `sparse` (paper, and six-bases with n_dims=24, n_bases=6),
    `overlapping` (8 bases in two 8-dim blocks) or `families`."""
    if kind == "sparse":
        return SparseRegressionMixture(disjoint_bases(n_dims, basis_dim, n_bases, shuffle, seed),
                                       n_dims, n_points, noise_var)
    if kind == "overlapping":
        require(n_dims % 2 == 0, "overlapping bases need an even n_dims (two blocks).", "use n_dims=16.")
        bases = overlapping_bases(n_dims // 2, basis_dim, n_bases // 2)
        if shuffle:
            perm = torch.randperm(n_dims, generator=torch.Generator().manual_seed(seed)).tolist()
            bases = [[perm[c] for c in b] for b in bases]
        return SparseRegressionMixture(bases, n_dims, n_points, noise_var)
    if kind == "families":
        return RegressionFamilies(n_dims, basis_dim, n_points, noise_var)
    raise ConceptLensError(f"unknown task kind '{kind}'.", "use sparse, overlapping or families.")
