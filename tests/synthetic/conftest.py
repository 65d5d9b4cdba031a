"""Tiny configs shared by the synthetic tests (every run here takes well under a second)."""

import pytest
import torch

from conceptlens.synthetic.config import config_from_dict


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def tiny_config():
    return config_from_dict({
        "name": "tiny", "seed": 3,
        "task": {"kind": "sparse", "n_dims": 4, "basis_dim": 1, "n_bases": 4, "n_points": 6},
        "model": {"n_layers": 2, "n_heads": 2, "d_model": 16},
        "train": {"steps": 12, "batch_size": 8, "lr": 3e-3, "warmup": 2},
        "schedule": {"eval_every": 3, "eval_per_concept": 4, "eval_from_points": 1,
                     "dense_every": 2, "dense_until": 6, "sparse_every": 4},
    })
