"""Several seeds of one config trained in one process, their weights stacked into one `StackedGPT`.

`train_seeds(load_config("quick"), [0, 1, 2], "runs/quick3")` writes `runs/quick3/seed0`, ... each
the folder `train(config with seed=S, "runs/quick3/seedS")` writes: the same initial weights, the
same batches (the per-step generators of its seed), its own Adam moments, clipping norm,
checkpoints, metrics and RNG state. On the CPU every folder is bit-identical to the separate
run's, the wall-clock `timing.jsonl` and `elapsed_s` aside (tests/synthetic/test_train_seeds.py).
DECISION: a killed run resumes every seed from the latest step at which all seeds hold an intact
checkpoint (older optimizer files are pruned only once all seeds have written the new ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from conceptlens.errors import ConceptLensError
from conceptlens.synthetic.checkpoints import common_resume_point
from conceptlens.synthetic.config import RunConfig
from conceptlens.synthetic.schedule import learning_rate
from conceptlens.synthetic.stacked import StackedGPT, clip_each
from conceptlens.synthetic.tasks import RegressionBatch
from conceptlens.synthetic.train import build_model, concept_errors, make_optimizer, open_run, run_loop, training_device


def seed_folder(out: str | Path, seed: int) -> Path:
    """Where seed `seed` of a multi-seed run in `out` writes: `out/seed<seed>`."""
    return Path(out) / f"seed{seed}"


def seed_configs(config: RunConfig, seeds: list[int]) -> list[RunConfig]:
    """`config` once per seed (its `seed` field set), the seeds checked."""
    if not seeds:
        raise ConceptLensError("no seeds to train.", "pass at least one seed, e.g. seeds=[0, 1, 2].")
    if len(set(seeds)) != len(seeds):
        raise ConceptLensError(f"seeds {seeds} repeat a seed.", "list every seed once.")
    if config.train.init_from is not None:
        raise ConceptLensError("train.init_from continues one run; seeds trained together start from their own "
                               "initial weights.", "continue each seed's run on its own, or unset train.init_from.")
    configs = []
    for seed in seeds:
        one = config.model_copy(deep=True)
        one.seed = seed
        configs.append(one)
    return configs


def _stack_optimizer_states(states: list[dict]) -> dict:
    """Per-model `optimizer.state_dict()`s -> the stacked model's (the shared step count kept once)."""
    slots = {index: {key: value if key == "step" else torch.stack([s["state"][index][key] for s in states])
                     for key, value in slot.items()} for index, slot in states[0]["state"].items()}
    return {"state": slots, "param_groups": states[0]["param_groups"]}


def _optimizer_state_of(state: dict, index: int) -> dict:
    """Model `index`'s part of the stacked optimizer's state dict: what its own optimizer would hold."""
    slots = {i: {key: value if key == "step" else value[index] for key, value in slot.items()}
             for i, slot in state["state"].items()}
    return {"state": slots, "param_groups": state["param_groups"]}


def train_seeds(config: RunConfig, seeds: list[int], out: str | Path, resume: bool = False,
                callback: Callable[[int, dict], None] | None = None, device: str = "cpu") -> list[Path]:
    """Train (or resume) `config` with each of `seeds` into `out/seed<S>`; returns those folders.

    `callback(step, info)` is called after every step (`info["losses"]`, `info["records"]`: one per seed).
    """
    device = training_device(device)
    runs = [open_run(one, seed_folder(out, seed), resume, device)
            for one, seed in zip(seed_configs(config, seeds), seeds)]  # every seed checked before any writes
    t = runs[0].config.train
    if t.threads:
        torch.set_num_threads(t.threads)
    models = []
    for run in runs:
        torch.manual_seed(run.config.seed)
        models.append(build_model(run.config))
        run.rng = torch.get_rng_state()
    point = common_resume_point([run.dir for run in runs]) if resume else None
    starts = [run.begin(point) for run in runs]
    for model, (weights, _) in zip(models, starts):
        if weights is not None:
            model.load_state_dict(weights)
    model = StackedGPT.from_models(models).to(device)
    optimizer = make_optimizer(model.parameters(), runs[0].config)
    if point is not None:
        optimizer.load_state_dict(_stack_optimizer_states([state for _, state in starts]))
    test_xs = torch.stack([run.test.xs for run in runs])
    test_ys = torch.stack([run.test.ys for run in runs])

    def one_step(step: int, batches: list[RegressionBatch]) -> list[float]:
        xs = torch.stack([b.xs for b in batches]).to(device, non_blocking=True)
        ys = torch.stack([b.ys for b in batches]).to(device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, runs[0].config)
        predictions = model(xs, ys)
        losses = [F.mse_loss(predictions[i], ys[i]) for i in range(len(runs))]
        optimizer.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()  # d(sum)/d(loss_i) = 1: each seed gets its own gradient exactly
        if t.grad_clip:
            clip_each(model, t.grad_clip)
        optimizer.step()
        return [loss.item() for loss in losses]

    @torch.no_grad()
    def errors() -> list[torch.Tensor]:
        predictions = model(test_xs, test_ys)
        return [concept_errors(predictions[i], test_ys[i], run.test.concepts, run.task.n_concepts,
                               run.config.schedule.eval_from_points) for i, run in enumerate(runs)]

    def states() -> list[tuple[dict, dict]]:
        state = optimizer.state_dict()
        return [(model.state_dict_of(i), _optimizer_state_of(state, i)) for i in range(len(runs))]

    run_loop(runs, point, one_step, errors, states, callback)
    return [run.dir for run in runs]
