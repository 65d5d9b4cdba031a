"""Typed run configs for the synthetic study, loaded from YAML and overridable from the CLI.

`load_config("quick", ["train.steps=500", "seed=1"])`: a name is looked up in the packaged
`conceptlens/configs/*.yaml`, anything else is read as a file path. An override key may be
dotted (`train.lr`) or a bare field name if exactly one section has it (`steps`); values are
parsed as YAML and validated by pydantic, and unknown keys are rejected.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from conceptlens.errors import ConceptLensError
from conceptlens.yaml_input import parse_yaml_text, read_yaml_file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TaskConfig(_Strict):
    kind: Literal["sparse", "overlapping", "families"] = "sparse"
    n_dims: int = Field(16, ge=1)
    basis_dim: int = Field(4, ge=1)
    n_bases: int = Field(4, ge=2)
    n_points: int = Field(20, ge=2)
    noise_var: float = Field(0.01, ge=0)
    shuffle: bool = False


class ModelConfig(_Strict):
    n_layers: int = Field(4, ge=1)
    n_heads: int = Field(4, ge=1)
    d_model: int = Field(64, ge=8)
    mlp_ratio: int = Field(4, ge=1)
    y_channel: bool = False  # True: y gets its own input dimension instead of sharing x's first
    paired: bool = False  # True: y tokens are [x_i, y_i] (von Oswald et al.), with the y channel


class CurriculumConfig(_Strict):
    """Garg et al.: start with few examples per sequence and add `step_points` every `every` steps.
    `start_support` (sparse tasks) is Garg's curriculum over dimensions kept inside each basis: w
    starts on the first `start_support` coordinates of its basis and gains one every `support_every`."""

    enabled: bool = False
    start_points: int = Field(5, ge=2)
    step_points: int = Field(1, ge=1)
    every: int = Field(200, ge=1)
    start_support: int | None = Field(None, ge=1)
    support_every: int = Field(1000, ge=1)


class TrainConfig(_Strict):
    steps: int = Field(20000, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    warmup: int = Field(500, ge=0)
    schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    grad_clip: float = Field(1.0, ge=0)  # 0 disables clipping
    threads: int = Field(0, ge=0)  # torch threads; 0 keeps torch's default
    curriculum: CurriculumConfig = CurriculumConfig()
    # Continue another run: its folder (or a shipped series' name) and step. Its weights start this
    # run with fresh optimizer moments (warm-up counted from there); its metrics and checkpoints up
    # to that step are copied in, so this folder holds the whole series.
    init_from: str | None = None
    init_step: int | None = Field(None, ge=0)  # default: the other run's last checkpoint


class ScheduleConfig(_Strict):
    """When to evaluate and checkpoint: every `dense_every` steps until `dense_until`, then every
    `sparse_every` (emergence is early). Evaluation uses `eval_per_concept` fixed test sequences."""

    eval_every: int = Field(250, ge=1)
    eval_per_concept: int = Field(64, ge=1)
    eval_from_points: int = Field(5, ge=0)  # score predictions made with at least this many examples
    dense_every: int = Field(250, ge=1)
    dense_until: int = Field(5000, ge=0)
    sparse_every: int = Field(2000, ge=1)
    keep_optimizer: Literal["last", "all"] = "last"


class RunConfig(_Strict):
    name: str = "run"
    seed: int = 0
    task: TaskConfig = TaskConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    schedule: ScheduleConfig = ScheduleConfig()

    @model_validator(mode="after")
    def _consistent(self) -> "RunConfig":
        if self.model.d_model % self.model.n_heads:
            raise ValueError(f"model.d_model {self.model.d_model} is not divisible by model.n_heads {self.model.n_heads}")
        if self.schedule.eval_from_points >= self.task.n_points:
            raise ValueError(f"schedule.eval_from_points {self.schedule.eval_from_points} leaves no scored prediction "
                             f"among task.n_points {self.task.n_points}")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _resolve_key(tree: dict, key: str) -> list[str]:
    """`steps` -> `['train', 'steps']` when unambiguous; dotted keys are taken as written."""
    if "." in key:
        return key.split(".")
    if key in RunConfig.model_fields:
        return [key]
    hits = [[section, key] for section, model in _sections().items() if key in model.model_fields]
    hits += [["train", "curriculum", key]] if key in CurriculumConfig.model_fields and not hits else []
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ConceptLensError(f"unknown config key '{key}'.", f"use one of: {', '.join(sorted(_all_keys()))}.")
    raise ConceptLensError(f"config key '{key}' is ambiguous ({', '.join('.'.join(h) for h in hits)}).",
                           "write it with its section, e.g. train.steps.")


def _sections() -> dict[str, type[BaseModel]]:
    return {"task": TaskConfig, "model": ModelConfig, "train": TrainConfig, "schedule": ScheduleConfig}


def _all_keys() -> list[str]:
    keys = [k for k, f in RunConfig.model_fields.items() if k not in _sections()]
    for section, model in _sections().items():
        keys += [f"{section}.{k}" for k in model.model_fields if k != "curriculum"]
    keys += [f"train.curriculum.{k}" for k in CurriculumConfig.model_fields]
    return keys


def apply_overrides(tree: dict, overrides: list[str]) -> dict:
    """Apply `key=value` strings to a nested dict (values parsed as YAML)."""
    if not isinstance(tree, dict):
        raise ConceptLensError(f"a config must be a mapping of sections, not a {type(tree).__name__}.",
                               "write `key: value` lines, e.g. `seed: 0` and `train: {steps: 500}`.")
    for item in overrides:
        if "=" not in item:
            raise ConceptLensError(f"override '{item}' has no '='.", "write --set key=value, e.g. --set steps=500.")
        key, raw = item.split("=", 1)
        path = _resolve_key(tree, key.strip())
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConceptLensError(f"'{key}' does not name a config field.", "check the key.")
        node[path[-1]] = parse_yaml_text(raw, f"the value of override '{item}'",
                                         "quote it or write a plain value, e.g. --set train.betas=[0.9,0.99].")
    return tree


def config_path(name: str) -> Path | None:
    """The packaged YAML for a config name, or None."""
    ref = resources.files("conceptlens") / "configs" / f"{name}.yaml"
    return Path(str(ref)) if ref.is_file() else None


def available_configs() -> list[str]:
    folder = resources.files("conceptlens") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load a packaged config by name or a YAML file by path, apply overrides, validate."""
    path = Path(name_or_path)
    if not path.is_file():
        path = config_path(str(name_or_path))
        if path is None:
            raise ConceptLensError(f"no config named '{name_or_path}' and no such file.",
                                   f"use one of {', '.join(available_configs())} or a YAML file path.")
    tree = read_yaml_file(path, "config file") or {}
    if not isinstance(tree, dict):
        raise ConceptLensError(f"{path} holds a {type(tree).__name__}, not a mapping of config sections.",
                               "write `key: value` lines, e.g. `seed: 0` and `train: {steps: 500}`.")
    return config_from_dict(tree, overrides)


def config_from_dict(tree: dict, overrides: list[str] | None = None) -> RunConfig:
    tree = apply_overrides(tree, list(overrides or []))
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConceptLensError(f"invalid config value at '{where}': {first['msg']}." if where else
                               f"invalid config: {first['msg']}.",
                               "fix the YAML or the --set value.") from exc
