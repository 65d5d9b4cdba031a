"""A sweep file: a grid of settings, expanded into cells, each with a stable readable id.

```yaml
command: llm run                  # llm run | llm finetune | llm intervene | synthetic train | python
grid:                             # every combination is one cell
  model: [smollm2-135m, /models/Llama-3.1-8B]
  family: [pos, bitwise]
  shots: [[1, 4, 10]]
  seed: [0, 1, 2]
include:                          # extra cells (any keys), beside the grid
  - {model: smollm2-135m, family: pos, shots: [4], seed: 7}
fixed: {prompts_per_concept: 100} # the same in every cell
```
Every setting of the command is a key, the prompt format included (`separator`, `answer_prefix`,
`fit_format` on `llm run` / `llm finetune`; `separator`, `answer_prefix` on `llm intervene`), and
`llm finetune` takes `layers: [before-peak, after-peak]`.
A cell's id is a slug of its grid values plus the first 8 hex digits of a hash of everything the
cell runs (command, function, grid and fixed values), so it is the same on every rerun and
changes whenever what the cell computes changes. DECISION: the slug holds every grid key, not
only those that vary, so adding a value to a grid list leaves the existing cells' folders valid.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from conceptlens.errors import ConceptLensError
from conceptlens.yaml_input import read_yaml_file

COMMANDS = ("llm run", "llm finetune", "llm intervene", "synthetic train", "python")


class Resources(BaseModel):
    """What one cell asks of the cluster: GPUs where the cluster has any, else CPUs."""

    model_config = ConfigDict(extra="forbid")

    gpus_per_cell: float = Field(1.0, ge=0)
    cpus_per_cell: float = Field(1.0, gt=0)
    max_retries: int = Field(1, ge=0, description="reruns of a cell whose worker died (not of one that raised)")


class SweepSpec(BaseModel):
    """A validated sweep file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    command: str
    function: str | None = None
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    include: list[dict[str, Any]] = Field(default_factory=list)
    fixed: dict[str, Any] = Field(default_factory=dict)
    out: str | None = None
    resources: Resources = Field(default_factory=Resources)

    @field_validator("command")
    @classmethod
    def _known_command(cls, value: str) -> str:
        value = " ".join(value.split())
        if value not in COMMANDS:
            raise ValueError(f"unknown command '{value}'; use one of: {', '.join(COMMANDS)}")
        return value

    @field_validator("grid")
    @classmethod
    def _non_empty_lists(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [key for key, values in grid.items() if not values]
        if empty:
            raise ValueError(f"grid key(s) {empty} have no values; give each a non-empty list")
        return grid

    @model_validator(mode="after")
    def _consistent(self) -> "SweepSpec":
        if (self.command == "python") != (self.function is not None):
            raise ValueError("`function` is required with command 'python', and only there")
        if not self.grid and not self.include:
            raise ValueError("the sweep has no cells: give a `grid` and/or `include`")
        overlap = set(self.grid) & set(self.fixed)
        if overlap:
            raise ValueError(f"key(s) {sorted(overlap)} are both in `grid` and `fixed`; keep one")
        return self


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep YAML (a `ConceptLensError` names every problem)."""
    path = Path(path)
    if not path.exists():
        raise ConceptLensError(f"sweep file {path} does not exist.", "check the path.")
    data = read_yaml_file(path, "sweep file")
    return parse_sweep(data, str(path))


def parse_sweep(data: Any, where: str = "the sweep") -> SweepSpec:
    if not isinstance(data, dict):
        raise ConceptLensError(f"{where} must be a YAML mapping with `command` and `grid`.",
                               "see `conceptlens sweep --help` and docs/large_models.md.")
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'sweep'}: {err['msg']}" for err in exc.errors())
        raise ConceptLensError(f"{where} is not a valid sweep: {problems}.",
                               "fix those fields (command, function, grid, include, fixed, out, resources).") from exc


def _slug_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(_slug_value(v) for v in value)
    if value is None:
        return "none"
    text = str(value).rstrip("/")
    if "/" in text:
        text = text.rsplit("/", 1)[1]  # a model folder: its name
    return text


def cell_id(grid_values: dict[str, Any], identity: dict[str, Any]) -> str:
    """`family-pos_seed-0-3f9a1c2b`: a readable slug of the grid values and a short hash of `identity`."""
    slug = "_".join(f"{key}-{_slug_value(value)}" for key, value in grid_values.items())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", slug).strip("-._")[:80] or "cell"
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{slug}-{digest}"


def expand(spec: SweepSpec) -> list[dict]:
    """The cells of a sweep: `[{"id", "grid": {key: value}, "kwargs": grid + fixed}]`, in grid order."""
    combos: list[dict[str, Any]] = []
    if spec.grid:
        keys = list(spec.grid)
        combos += [dict(zip(keys, values)) for values in itertools.product(*(spec.grid[k] for k in keys))]
    combos += [dict(extra) for extra in spec.include]
    cells, seen = [], set()
    for grid_values in combos:
        kwargs = {**spec.fixed, **grid_values}
        identity = {"command": spec.command, "function": spec.function, "kwargs": kwargs}
        cid = cell_id(grid_values, identity)
        if cid in seen:
            continue  # an `include` entry equal to a grid cell
        seen.add(cid)
        cells.append({"id": cid, "grid": grid_values, "kwargs": kwargs})
    return cells
