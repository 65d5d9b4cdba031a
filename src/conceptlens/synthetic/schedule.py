"""The training schedule of a synthetic run as pure functions of (step, config): what step s uses.

The learning rate (warm-up, then constant or cosine), the curriculum (examples per sequence and
basis support growing with s), the seeded batch of s, and which steps are checkpointed.
"""

from __future__ import annotations

import math

import torch

from conceptlens.synthetic.config import RunConfig


def learning_rate(step: int, config: RunConfig) -> float:
    """Linear warm-up, then constant or cosine decay to `min_lr_ratio * lr` (counted from `init_step`)."""
    t = config.train
    origin = t.init_step or 0
    step = step - origin
    if t.warmup and step < t.warmup:
        return t.lr * (step + 1) / t.warmup
    if t.schedule == "constant":
        return t.lr
    progress = min(1.0, (step - t.warmup) / max(1, t.steps - origin - t.warmup))
    return t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def points_at(step: int, config: RunConfig) -> int:
    """Examples per training sequence at `step` (the curriculum of Garg et al., or always K)."""
    c, k = config.train.curriculum, config.task.n_points
    if not c.enabled:
        return k
    return min(k, c.start_points + c.step_points * (step // c.every))


def support_at(step: int, config: RunConfig) -> int | None:
    """Coordinates of its basis a training w may use at `step` (the support curriculum), None = all."""
    c = config.train.curriculum
    if not c.enabled or c.start_support is None:
        return None
    return min(config.task.basis_dim, c.start_support + step // c.support_every)


def curriculum_end(config: RunConfig) -> int | None:
    """The first step that trains on the full task (all K examples, whole bases); None without a curriculum."""
    c = config.train.curriculum
    if not c.enabled:
        return None
    points = -(-max(0, config.task.n_points - c.start_points) // c.step_points) * c.every
    support = 0 if c.start_support is None else max(0, config.task.basis_dim - c.start_support) * c.support_every
    return max(points, support)


def batch_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def is_checkpoint_step(step: int, config: RunConfig) -> bool:
    s = config.schedule
    if step == 0 or step == config.train.steps:
        return True
    return step % (s.dense_every if step <= s.dense_until else s.sparse_every) == 0
