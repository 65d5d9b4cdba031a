"""Train the regression GPT on a concept mixture; checkpoints dense early, sparse late; exact resume.

`train(load_config("quick"), "runs/quick")` writes `config.yaml`, `metrics.jsonl` (one object per
evaluation: step, train loss, per-concept test MSE), `timing.jsonl` (wall-clock seconds per
evaluation, kept apart so metrics are bit-for-bit reproducible) and
`checkpoints/step_NNNNNNN.safetensors` with `.optim.safetensors` (optimizer + RNG state) and
`.state.json` beside it. The batch of step s is drawn from a generator seeded by (seed, s), so a
run killed at any point and resumed from its last checkpoint ends with exactly the same weights
and metrics as an uninterrupted one. No pickle is written or read. The loop (`run_loop`) and the
run-folder bookkeeping (`Run`) also serve seeds trained together (`conceptlens.synthetic.train_seeds`);
what each step uses (learning rate, curriculum, batch, checkpoint or not) is `synthetic.schedule`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from conceptlens.errors import ConceptLensError
from conceptlens.safetensors_io import load_tensors
from conceptlens.storage import append_jsonl, read_jsonl, remove_stale_temporaries, write_text
from conceptlens.synthetic.checkpoints import (checkpoint_path, checkpoint_steps, copy_series, init_source,
                                               load_run_config, prune_optimizer_files, read_checkpoint,
                                               resume_point, same_run, save_checkpoint, truncate_jsonl)
from conceptlens.synthetic.config import RunConfig
from conceptlens.synthetic.model import GPTConfig, RegressionGPT
from conceptlens.synthetic.schedule import batch_generator, is_checkpoint_step, learning_rate, points_at, support_at
from conceptlens.synthetic.tasks import RegressionBatch, RegressionMixture, make_task

TEST_SEED = 10_000


def build_task(config: RunConfig) -> RegressionMixture:
    t = config.task
    return make_task(t.kind, t.n_dims, t.basis_dim, t.n_bases, t.n_points, t.noise_var, t.shuffle, config.seed)


def build_model(config: RunConfig) -> RegressionGPT:
    m = config.model
    return RegressionGPT(GPTConfig(config.task.n_dims, config.task.n_points, m.n_layers, m.n_heads, m.d_model,
                                   m.mlp_ratio, m.y_channel, paired=m.paired))


def concept_errors(predictions: torch.Tensor, ys: torch.Tensor, concepts: torch.Tensor, n_concepts: int,
                   from_points: int) -> torch.Tensor:
    """Test MSE per concept `[n_concepts]`, over predictions made with >= `from_points` examples."""
    errors = (predictions - ys)[:, from_points:].pow(2).mean(dim=1).cpu()
    return torch.zeros(n_concepts).index_add_(0, concepts, errors) / torch.bincount(
        concepts, minlength=n_concepts).clamp(min=1)


@torch.no_grad()
def evaluate(model: RegressionGPT, test: RegressionBatch, n_concepts: int, from_points: int) -> torch.Tensor:
    """Test MSE per concept `[n_concepts]`, over predictions made with >= `from_points` examples."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    xs, ys = test.xs.to(device), test.ys.to(device)
    errors = concept_errors(model(xs, ys), ys, test.concepts, n_concepts, from_points)
    model.train(was_training)
    return errors


def load_checkpoint(run_dir: str | Path, step: int, config: RunConfig | None = None) -> RegressionGPT:
    """The model of one checkpoint (weights only, checksum verified), in eval mode."""
    config = config or load_run_config(run_dir)
    model = build_model(config)
    model.load_state_dict(load_tensors(checkpoint_path(run_dir, step), verify=True))
    return model.eval()


def make_optimizer(params, config: RunConfig) -> torch.optim.Optimizer:
    t = config.train
    opt_cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return opt_cls(params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)


def training_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConceptLensError(f"unknown device '{name}'.", "pass --device cpu, cuda, cuda:1 or mps.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConceptLensError(f"--device {name}: this machine has no CUDA device.", "train with --device cpu.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConceptLensError(f"--device {name}: MPS is not available here.", "train with --device cpu.")
    return device


@dataclass
class Run:
    """One run folder in training: its config, task and test set, and the sums its next record needs."""

    config: RunConfig
    dir: Path
    task: RegressionMixture
    test: RegressionBatch
    source: tuple[Path, int] | None
    resume: bool
    rng: torch.Tensor = field(default_factory=torch.get_rng_state)  # stored with every checkpoint
    start: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    elapsed: float = 0.0

    def begin(self, point: int | None) -> tuple[dict | None, dict | None]:
        """Write config.yaml and set the series up to resume from `point` (None: start afresh);
        returns the weights and optimizer state to start from (None: the fresh ones)."""
        write_text(self.dir / "config.yaml", self.config.to_yaml())
        if self.resume:  # only where this run writes: the folder may sit above other runs
            for folder in (self.dir, self.dir / "checkpoints"):
                remove_stale_temporaries(folder, recursive=False)
        if point is not None:
            weights, optimizer_state, self.rng, meta = read_checkpoint(self.dir, point)
            self.start, self.loss_sum, self.loss_count = point, meta["loss_sum"], meta["loss_count"]
            self.elapsed = meta["elapsed_s"]
            for name in ("metrics.jsonl", "timing.jsonl"):
                truncate_jsonl(self.dir / name, point)
            return weights, optimizer_state
        for name in ("metrics.jsonl", "timing.jsonl"):
            (self.dir / name).unlink(missing_ok=True)
        if self.source is None:
            return None, None
        weights = copy_series(*self.source, self.dir)
        self.start = self.source[1]
        timing = read_jsonl(self.dir / "timing.jsonl") if (self.dir / "timing.jsonl").is_file() else []
        self.elapsed = timing[-1]["elapsed_s"] if timing else 0.0
        return weights, None

    def batch(self, step: int) -> RegressionBatch:
        """The training batch of `step`: the same for this seed whatever else trains beside it."""
        c = self.config
        return self.task.sample(c.train.batch_size, batch_generator(c.seed, step), n_points=points_at(step, c),
                                support=support_at(step, c))

    def log(self, step: int, mse: torch.Tensor) -> dict:
        c, before = self.config, max(step - 1, 0)
        record = {"step": step, "train_loss": self.loss_sum / self.loss_count if self.loss_count else None,
                  "lr": learning_rate(before, c), "n_points": points_at(before, c),
                  **({"support": support_at(before, c)} if support_at(0, c) else {}),
                  "test_mse": dict(zip(self.task.concept_names, mse.tolist())), "test_mse_mean": float(mse.mean())}
        append_jsonl(self.dir / "metrics.jsonl", record)
        append_jsonl(self.dir / "timing.jsonl", {"step": step, "elapsed_s": round(self.elapsed, 3)})
        self.loss_sum, self.loss_count = 0.0, 0
        return record

    def save(self, step: int, weights: dict, optimizer_state: dict) -> None:
        save_checkpoint(self.dir, step, weights, optimizer_state, self.rng,
                        {"loss_sum": self.loss_sum, "loss_count": self.loss_count, "elapsed_s": self.elapsed})


def open_run(config: RunConfig, out: str | Path, resume: bool, device: torch.device) -> Run:
    """Check `config` against what `out` holds and build its task and test set; writes nothing."""
    run_dir = Path(out)
    source = init_source(config)
    if source is not None:
        config = config.model_copy(deep=True)
        config.train.init_step = source[1]  # the saved config names the step it continued from
    if resume and (run_dir / "config.yaml").is_file():
        if not same_run(load_run_config(run_dir), config):
            raise ConceptLensError(f"the config differs from the one {run_dir} was started with.",
                                   "resume with the same config (omit --config to use the saved one); only "
                                   "train.steps may grow, and only with a constant learning rate.")
    elif checkpoint_steps(run_dir) and not resume:
        raise ConceptLensError(f"{run_dir} already holds a run.", "pass --resume, or choose a new --out folder.")
    task = build_task(config)  # validates the task before anything is written
    if support_at(0, config) is not None:
        task.support_masks(1)  # a support curriculum on a task without bases fails here, not mid-run
    test = task.test_set(config.schedule.eval_per_concept, seed=TEST_SEED)
    test = RegressionBatch(test.xs.to(device), test.ys.to(device), test.concepts, test.weights)  # moved once
    return Run(config, run_dir, task, test, source, resume)


def run_loop(runs: list[Run], point: int | None, step: Callable[[int, list[RegressionBatch]], list[float]],
             errors: Callable[[], list[torch.Tensor]], states: Callable[[], list[tuple[dict, dict]]],
             callback: Callable[[int, dict], None] | None) -> None:
    """Train `runs` (one schedule) in lockstep from their start: `step(s, batches)` takes optimizer step
    s and returns each run's loss, `errors()` each run's test MSE per concept, `states()` each run's
    (weights, optimizer state). Older optimizer files go only once every run has written its own."""
    config = runs[0].config
    records: list[dict] = [{} for _ in runs]

    def checkpoint(done: int) -> None:
        for run, (weights, optimizer_state) in zip(runs, states()):
            run.save(done, weights, optimizer_state)
        for run in runs:
            prune_optimizer_files(run.dir, done, run.config)

    if point is None:  # a fresh start (resuming from step 0 keeps its record: logging it again would double it)
        if runs[0].source is None:  # a continuation already has the other run's record of its first step
            records = [run.log(0, mse) for run, mse in zip(runs, errors())]
        checkpoint(runs[0].start)
    base, clock = [run.elapsed for run in runs], time.perf_counter()
    for s in range(runs[0].start, config.train.steps):
        losses = step(s, [run.batch(s) for run in runs])
        done, now = s + 1, time.perf_counter() - clock
        for run, loss, before in zip(runs, losses, base):
            run.loss_sum, run.loss_count, run.elapsed = run.loss_sum + loss, run.loss_count + 1, before + now
        if done % config.schedule.eval_every == 0 or done == config.train.steps:
            records = [run.log(done, mse) for run, mse in zip(runs, errors())]
        if is_checkpoint_step(done, config):
            checkpoint(done)
        if callback is not None:
            callback(done, {"loss": losses[0], "record": records[0], "elapsed_s": runs[0].elapsed,
                            "losses": losses, "records": records})


def train(config: RunConfig, out: str | Path, resume: bool = False,
          callback: Callable[[int, dict], None] | None = None, device: str = "cpu") -> Path:
    """Train (or resume) a run into `out`; `callback(step, info)` is called after every step.

    `device` ("cpu", "cuda", "cuda:1", ...) is where the model trains; batches are drawn on the CPU
    from the same per-step generators, and checkpoints are stored from the CPU, so a run may move
    between devices when it resumes (its numbers then change in the last bits).
    """
    device = training_device(device)
    run = open_run(config, out, resume, device)
    config, t = run.config, run.config.train
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    run.rng = torch.get_rng_state()
    optimizer = make_optimizer(model.parameters(), config)
    point = resume_point(run.dir) if resume else None
    weights, optimizer_state = run.begin(point)
    if weights is not None:
        model.load_state_dict(weights)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
        torch.set_rng_state(run.rng)

    def one_step(step: int, batches: list[RegressionBatch]) -> list[float]:
        xs, ys = batches[0].xs.to(device, non_blocking=True), batches[0].ys.to(device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        loss = F.mse_loss(model(xs, ys), ys)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        return [loss.item()]

    model.train()
    run_loop([run], point, one_step,
             lambda: [evaluate(model, run.test, run.task.n_concepts, config.schedule.eval_from_points)],
             lambda: [(model.state_dict(), optimizer.state_dict())], callback)
    return run.dir
