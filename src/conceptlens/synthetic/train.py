"""Train the regression GPT on a concept mixture; checkpoints dense early, sparse late; exact resume.

`train(load_config("quick"), "runs/quick")` writes `config.yaml`, `metrics.jsonl` (one object per
evaluation: step, train loss, per-concept test MSE), `timing.jsonl` (wall-clock seconds per
evaluation, kept apart so metrics are bit-for-bit reproducible) and
`checkpoints/step_NNNNNNN.safetensors` with `.optim.safetensors` (optimizer + RNG state) and
`.state.json` beside it. The batch of step s is drawn from a generator seeded by (seed, s), so a
run killed at any point and resumed from its last checkpoint ends with exactly the same weights
and metrics as an uninterrupted one. No pickle is written or read.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from conceptlens.errors import ConceptLensError
from conceptlens.storage import (append_jsonl, load_tensors, read_jsonl, remove_stale_temporaries, save_tensors,
                                 verify_checksum, write_json, write_text)
from conceptlens.synthetic.config import RunConfig, config_from_dict
from conceptlens.synthetic.model import GPTConfig, RegressionGPT
from conceptlens.synthetic.tasks import RegressionBatch, RegressionMixture, make_task

TEST_SEED = 10_000
_CKPT = re.compile(r"^step_(\d{7})\.safetensors$")


def build_task(config: RunConfig) -> RegressionMixture:
    t = config.task
    return make_task(t.kind, t.n_dims, t.basis_dim, t.n_bases, t.n_points, t.noise_var, t.shuffle, config.seed)


def build_model(config: RunConfig) -> RegressionGPT:
    m = config.model
    return RegressionGPT(GPTConfig(config.task.n_dims, config.task.n_points, m.n_layers, m.n_heads, m.d_model,
                                   m.mlp_ratio, m.y_channel, paired=m.paired))


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


@torch.no_grad()
def evaluate(model: RegressionGPT, test: RegressionBatch, n_concepts: int, from_points: int) -> torch.Tensor:
    """Test MSE per concept `[n_concepts]`, over predictions made with >= `from_points` examples."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    xs, ys = test.xs.to(device), test.ys.to(device)
    errors = (model(xs, ys) - ys)[:, from_points:].pow(2).mean(dim=1).cpu()
    model.train(was_training)
    return torch.zeros(n_concepts).index_add_(0, test.concepts, errors) / torch.bincount(
        test.concepts, minlength=n_concepts).clamp(min=1)


def checkpoint_steps(run_dir: str | Path) -> list[int]:
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _CKPT.match(p.name)))


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}.safetensors"


def load_run_config(run_dir: str | Path) -> RunConfig:
    from conceptlens.yaml_input import read_yaml_file

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConceptLensError(f"{run_dir} has no config.yaml: it is not a synthetic run folder.",
                               "pass the --out folder of `conceptlens synthetic train`.")
    return config_from_dict(read_yaml_file(path, "run config"))


def load_checkpoint(run_dir: str | Path, step: int, config: RunConfig | None = None) -> RegressionGPT:
    """The model of one checkpoint (weights only, checksum verified), in eval mode."""
    config = config or load_run_config(run_dir)
    model = build_model(config)
    model.load_state_dict(load_tensors(checkpoint_path(run_dir, step), verify=True))
    return model.eval()


def _optim_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:07d}.optim.safetensors"


def _state_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:07d}.state.json"


def _save_checkpoint(run_dir: Path, step: int, model, optimizer, extra: dict, config: RunConfig) -> None:
    save_tensors(checkpoint_path(run_dir, step), model.state_dict(), metadata={"step": str(step)}, checksum=True)
    state = optimizer.state_dict()
    tensors = {f"state.{i}.{key}": value for i, slot in state["state"].items() for key, value in slot.items()}
    tensors["rng.torch"] = torch.get_rng_state()
    save_tensors(_optim_path(run_dir, step), tensors, checksum=True)
    write_json(_state_path(run_dir, step), {"step": step, "param_groups": state["param_groups"], **extra})
    if config.schedule.keep_optimizer == "last":
        for old in checkpoint_steps(run_dir):
            if old < step:
                for path in (_optim_path(run_dir, old), Path(str(_optim_path(run_dir, old)) + ".sha256")):
                    path.unlink(missing_ok=True)


def _resume_point(run_dir: Path) -> int | None:
    """The latest step whose weights, optimizer state and state file are all present and intact."""
    for step in reversed(checkpoint_steps(run_dir)):
        try:
            verify_checksum(checkpoint_path(run_dir, step))
            verify_checksum(_optim_path(run_dir, step))
            json.loads(_state_path(run_dir, step).read_text())
            return step
        except (ConceptLensError, OSError, ValueError):
            continue
    return None


def _restore(run_dir: Path, step: int, model, optimizer) -> dict:
    model.load_state_dict(load_tensors(checkpoint_path(run_dir, step)))
    tensors = load_tensors(_optim_path(run_dir, step))
    meta = json.loads(_state_path(run_dir, step).read_text())
    slots: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("state."):
            _, index, key = name.split(".", 2)
            slots.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": slots, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    return meta


def init_source(config: RunConfig) -> tuple[Path, int] | None:
    """The run folder and step that `train.init_from` / `train.init_step` name, checked; None if unset."""
    t = config.train
    if t.init_from is None:
        return None
    from conceptlens.synthetic.shipped import shipped_root, shipped_runs

    source = Path(t.init_from)
    if not (source / "config.yaml").is_file():
        if t.init_from not in shipped_runs():
            raise ConceptLensError(f"train.init_from '{t.init_from}' is neither a run folder nor a shipped run.",
                                   "pass a folder written by `conceptlens synthetic train` or one of "
                                   f"{shipped_runs()}.")
        source = shipped_root() / t.init_from
    steps = checkpoint_steps(source)
    step = t.init_step if t.init_step is not None else (steps[-1] if steps else None)
    if step is None or step not in steps:
        raise ConceptLensError(f"{source} has no checkpoint at step {step}.", f"choose train.init_step among {steps}.")
    if step >= t.steps:
        raise ConceptLensError(f"train.steps {t.steps} does not go past train.init_step {step}.",
                               "set train.steps above the step you continue from.")
    other = load_run_config(source)
    if other.model != config.model or other.task != config.task:
        raise ConceptLensError(f"{source} was trained with another model or task.",
                               "continue a run only with its own task and model settings.")
    return source, step


def _start_from(source: Path, step: int, run_dir: Path, model) -> None:
    """Copy `source`'s series up to `step` into `run_dir` and load its weights at `step` into `model`."""
    import shutil

    for name in ("metrics.jsonl", "timing.jsonl"):
        if (source / name).is_file():
            _truncate_jsonl(source / name, step, out=run_dir / name)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    for earlier in checkpoint_steps(source):
        if earlier <= step:
            for suffix in ("", ".sha256"):
                shutil.copyfile(str(checkpoint_path(source, earlier)) + suffix,
                                str(checkpoint_path(run_dir, earlier)) + suffix)
    weights = load_tensors(checkpoint_path(source, step), verify=True)
    model.load_state_dict({k: v.to(torch.float32) for k, v in weights.items()})


def _truncate_jsonl(path: Path, step: int, out: Path | None = None) -> None:
    """Keep the records up to `step`, in place or written to `out`."""
    kept = [r for r in read_jsonl(path) if r["step"] <= step]
    write_text(out or path, "".join(json.dumps(r) + "\n" for r in kept))


def _same_run(saved: RunConfig, config: RunConfig) -> bool:
    """Resuming may only lengthen a constant-lr run: its first `saved.train.steps` steps stay the same."""
    if saved == config:
        return True
    longer = saved.model_copy(deep=True)
    longer.train.steps = config.train.steps
    return longer == config and config.train.steps > saved.train.steps and config.train.schedule == "constant"


def _training_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConceptLensError(f"unknown device '{name}'.", "pass --device cpu, cuda, cuda:1 or mps.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConceptLensError(f"--device {name}: this machine has no CUDA device.", "train with --device cpu.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConceptLensError(f"--device {name}: MPS is not available here.", "train with --device cpu.")
    return device


def train(config: RunConfig, out: str | Path, resume: bool = False,
          callback: Callable[[int, dict], None] | None = None, device: str = "cpu") -> Path:
    """Train (or resume) a run into `out`; `callback(step, info)` is called after every step.

    `device` ("cpu", "cuda", "cuda:1", ...) is where the model trains; batches are drawn on the CPU
    from the same per-step generators, and checkpoints are stored from the CPU, so a run may move
    between devices when it resumes (its numbers then change in the last bits).
    """
    run_dir = Path(out)
    device = _training_device(device)
    saved = run_dir / "config.yaml"
    source = init_source(config)
    if source is not None:
        config = config.model_copy(deep=True)
        config.train.init_step = source[1]  # the saved config names the step it continued from
    if resume and saved.is_file():
        if not _same_run(load_run_config(run_dir), config):
            raise ConceptLensError(f"the config differs from the one {run_dir} was started with.",
                                   "resume with the same config (omit --config to use the saved one); only "
                                   "train.steps may grow, and only with a constant learning rate.")
    elif checkpoint_steps(run_dir) and not resume:
        raise ConceptLensError(f"{run_dir} already holds a run.", "pass --resume, or choose a new --out folder.")
    if config.train.threads:
        torch.set_num_threads(config.train.threads)

    task = build_task(config)  # validates the task before anything is written
    if support_at(0, config) is not None:
        task.support_masks(1)  # a support curriculum on a task without bases fails here, not mid-run
    test = task.test_set(config.schedule.eval_per_concept, seed=TEST_SEED)
    test = RegressionBatch(test.xs.to(device), test.ys.to(device), test.concepts, test.weights)  # moved once
    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    write_text(saved, config.to_yaml())
    t = config.train
    opt_cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)

    start, loss_sum, loss_count, elapsed = 0, 0.0, 0, 0.0
    point = _resume_point(run_dir) if resume else None
    if resume:  # only where this run writes: the folder may sit above other runs
        for folder in (run_dir, run_dir / "checkpoints"):
            remove_stale_temporaries(folder, recursive=False)
    if point is not None:
        meta = _restore(run_dir, point, model, optimizer)
        start, loss_sum, loss_count, elapsed = point, meta["loss_sum"], meta["loss_count"], meta["elapsed_s"]
        _truncate_jsonl(run_dir / "metrics.jsonl", point)
        _truncate_jsonl(run_dir / "timing.jsonl", point)
    else:
        for name in ("metrics.jsonl", "timing.jsonl"):
            (run_dir / name).unlink(missing_ok=True)
        if source is not None:
            _start_from(*source, run_dir, model)
            start = source[1]
            timing = read_jsonl(run_dir / "timing.jsonl") if (run_dir / "timing.jsonl").is_file() else []
            elapsed = timing[-1]["elapsed_s"] if timing else 0.0

    def log(step: int) -> dict:
        nonlocal loss_sum, loss_count
        mse = evaluate(model, test, task.n_concepts, config.schedule.eval_from_points)
        record = {"step": step, "train_loss": loss_sum / loss_count if loss_count else None,
                  "lr": learning_rate(max(step - 1, 0), config), "n_points": points_at(max(step - 1, 0), config),
                  **({"support": support_at(max(step - 1, 0), config)} if support_at(0, config) else {}),
                  "test_mse": dict(zip(task.concept_names, mse.tolist())), "test_mse_mean": float(mse.mean())}
        append_jsonl(run_dir / "metrics.jsonl", record)
        append_jsonl(run_dir / "timing.jsonl", {"step": step, "elapsed_s": round(elapsed, 3)})
        loss_sum, loss_count = 0.0, 0
        return record

    record: dict = {}
    if point is None:  # a fresh start (resuming from step 0 keeps its record: logging it again would double it)
        if source is None:  # a continuation already has the other run's record of its first step
            record = log(0)
        _save_checkpoint(run_dir, start, model, optimizer, {"loss_sum": 0.0, "loss_count": 0, "elapsed_s": elapsed},
                         config)
    model.train()
    base_elapsed, clock = elapsed, time.perf_counter()
    for step in range(start, t.steps):
        batch = task.sample(t.batch_size, batch_generator(config.seed, step), n_points=points_at(step, config),
                            support=support_at(step, config))
        xs, ys = batch.xs.to(device, non_blocking=True), batch.ys.to(device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        loss = F.mse_loss(model(xs, ys), ys)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        loss_sum, loss_count = loss_sum + loss.item(), loss_count + 1
        done = step + 1
        elapsed = base_elapsed + time.perf_counter() - clock
        if done % config.schedule.eval_every == 0 or done == t.steps:
            record = log(done)
        if is_checkpoint_step(done, config):
            _save_checkpoint(run_dir, done, model, optimizer,
                             {"loss_sum": loss_sum, "loss_count": loss_count, "elapsed_s": elapsed}, config)
        if callback is not None:
            callback(done, {"loss": loss.item(), "record": record, "elapsed_s": elapsed})
    return run_dir
