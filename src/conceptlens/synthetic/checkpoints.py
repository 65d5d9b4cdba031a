"""The files of a synthetic run folder: checkpoints, their optimizer state, the resume point, series.

`checkpoints/step_NNNNNNN.safetensors` holds the weights; `.optim.safetensors` the optimizer
moments and the torch RNG state, `.state.json` the step, the optimizer's param groups and the
running loss sums. A checkpoint counts for resuming only when all three are present and intact.
DECISION: older optimizer files are pruned only after every run of a step has written its own
(`prune_optimizer_files`), so runs trained together always share an intact resume point.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch

from conceptlens.errors import ConceptLensError
from conceptlens.safetensors_io import load_tensors, save_tensors
from conceptlens.storage import read_jsonl, verify_checksum, write_json, write_text
from conceptlens.synthetic.config import RunConfig, config_from_dict

_CKPT = re.compile(r"^step_(\d{7})\.safetensors$")


def checkpoint_steps(run_dir: str | Path) -> list[int]:
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _CKPT.match(p.name)))


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}.safetensors"


def _optim_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:07d}.optim.safetensors"


def _state_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:07d}.state.json"


def load_run_config(run_dir: str | Path) -> RunConfig:
    from conceptlens.yaml_input import read_yaml_file

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConceptLensError(f"{run_dir} has no config.yaml: it is not a synthetic run folder.",
                               "pass the --out folder of `conceptlens synthetic train`.")
    return config_from_dict(read_yaml_file(path, "run config"))


def same_run(saved: RunConfig, config: RunConfig) -> bool:
    """Resuming may only lengthen a constant-lr run: its first `saved.train.steps` steps stay the same."""
    if saved == config:
        return True
    longer = saved.model_copy(deep=True)
    longer.train.steps = config.train.steps
    return longer == config and config.train.steps > saved.train.steps and config.train.schedule == "constant"


def save_checkpoint(run_dir: Path, step: int, weights: dict, optimizer_state: dict, rng: torch.Tensor,
                    extra: dict) -> None:
    """Write the weights, the optimizer state (`optimizer.state_dict()`) and `rng` of `step`."""
    save_tensors(checkpoint_path(run_dir, step), weights, metadata={"step": str(step)}, checksum=True)
    tensors = {f"state.{i}.{key}": value for i, slot in optimizer_state["state"].items() for key, value in slot.items()}
    tensors["rng.torch"] = rng
    save_tensors(_optim_path(run_dir, step), tensors, checksum=True)
    write_json(_state_path(run_dir, step), {"step": step, "param_groups": optimizer_state["param_groups"], **extra})


def prune_optimizer_files(run_dir: Path, step: int, config: RunConfig) -> None:
    """Delete the optimizer files older than `step` (with `schedule.keep_optimizer: last`)."""
    if config.schedule.keep_optimizer == "last":
        for old in checkpoint_steps(run_dir):
            if old < step:
                for path in (_optim_path(run_dir, old), Path(str(_optim_path(run_dir, old)) + ".sha256")):
                    path.unlink(missing_ok=True)


def read_checkpoint(run_dir: Path, step: int) -> tuple[dict, dict, torch.Tensor, dict]:
    """`(weights, optimizer state dict, rng state, state-file record)` of one checkpoint."""
    weights = load_tensors(checkpoint_path(run_dir, step))
    tensors = load_tensors(_optim_path(run_dir, step))
    meta = json.loads(_state_path(run_dir, step).read_text())
    slots: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("state."):
            _, index, key = name.split(".", 2)
            slots.setdefault(int(index), {})[key] = value
    return weights, {"state": slots, "param_groups": meta["param_groups"]}, tensors["rng.torch"], meta


def resume_point(run_dir: Path, at_most: int | None = None) -> int | None:
    """The latest step (<= `at_most`) whose weights, optimizer state and state file are all intact."""
    for step in reversed(checkpoint_steps(run_dir)):
        if at_most is not None and step > at_most:
            continue
        try:
            verify_checksum(checkpoint_path(run_dir, step))
            verify_checksum(_optim_path(run_dir, step))
            json.loads(_state_path(run_dir, step).read_text())
            return step
        except (ConceptLensError, OSError, ValueError):
            continue
    return None


def common_resume_point(run_dirs: list[Path]) -> int | None:
    """The latest step at which every folder has an intact checkpoint (None if there is none)."""
    point = None
    while True:
        points = [resume_point(folder, point) for folder in run_dirs]
        if any(p is None for p in points):
            return None
        if min(points) == point:
            return point
        point = min(points)


def truncate_jsonl(path: Path, step: int, out: Path | None = None) -> None:
    """Keep the records up to `step`, in place or written to `out`."""
    kept = [r for r in read_jsonl(path) if r["step"] <= step]
    write_text(out or path, "".join(json.dumps(r) + "\n" for r in kept))


def copy_series(source: Path, step: int, run_dir: Path) -> dict:
    """Copy `source`'s series up to `step` into `run_dir`; returns its weights at `step` (float32)."""
    for name in ("metrics.jsonl", "timing.jsonl"):
        if (source / name).is_file():
            truncate_jsonl(source / name, step, out=run_dir / name)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    for earlier in checkpoint_steps(source):
        if earlier <= step:
            for suffix in ("", ".sha256"):
                shutil.copyfile(str(checkpoint_path(source, earlier)) + suffix,
                                str(checkpoint_path(run_dir, earlier)) + suffix)
    weights = load_tensors(checkpoint_path(source, step), verify=True)
    return {k: v.to(torch.float32) for k, v in weights.items()}


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
