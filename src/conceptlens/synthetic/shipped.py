"""Checkpoint series shipped inside the package, so the demo shows emergence from real weights.

Two CPU cores cannot train the synthetic emergence inside the demo's budget, so a run trained
here (`conceptlens synthetic train`, resumed as needed) ships as a thinned series of float16
safetensors checkpoints with its config and metrics (both cut at the last shipped step: with a
constant learning rate that is exactly the run trained to that step); `copy_shipped_run` lays it
out as an ordinary run folder that `analyze` reads like any other. Each series' README gives its
command.
"""

from __future__ import annotations

import importlib.resources
import shutil
from pathlib import Path

from conceptlens.errors import ConceptLensError


def shipped_root() -> Path:
    return Path(str(importlib.resources.files("conceptlens") / "assets" / "synthetic"))


def shipped_runs() -> list[str]:
    root = shipped_root()
    return sorted(p.name for p in root.iterdir() if (p / "config.yaml").exists()) if root.exists() else []


def copy_shipped_run(name: str, out: str | Path) -> Path:
    """Copy shipped series `name` into run folder `out` (checksums travel with the checkpoints)."""
    source = shipped_root() / name
    if not (source / "config.yaml").exists():
        raise ConceptLensError(f"no shipped synthetic run named '{name}'.",
                               f"choose one of {shipped_runs() or 'none (train one with conceptlens synthetic train)'}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for path in source.rglob("*"):
        if path.is_file():
            target = out / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return out


def ship_run(run_dir: str | Path, name: str, steps: list[int], command: str) -> Path:
    """Thin a trained run to `steps`, store weights as float16, and write it under the assets."""
    import json

    from conceptlens.safetensors_io import load_tensors, save_tensors
    from conceptlens.storage import read_jsonl, write_text
    from conceptlens.synthetic.train import checkpoint_path, load_run_config

    run_dir = Path(run_dir)
    target = shipped_root() / name
    if target.exists():
        shutil.rmtree(target)
    (target / "checkpoints").mkdir(parents=True)
    config = load_run_config(run_dir)  # a run stopped early ships as the run of exactly its last step
    config.train.steps = min(config.train.steps, max(steps))
    write_text(target / "config.yaml", config.to_yaml())
    kept = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["step"] <= max(steps)]
    write_text(target / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept))
    for step in steps:
        weights = load_tensors(checkpoint_path(run_dir, step), verify=True)
        save_tensors(checkpoint_path(target, step), {k: v.half() for k, v in weights.items()},
                     metadata={"step": str(step), "dtype": "float16 (shipped)"}, checksum=True)
    write_text(target / "README.md", f"# Shipped synthetic run `{name}`\n\nReproduce with:\n\n```\n{command}\n```\n\n"
               f"Checkpoints kept (float16): {', '.join(map(str, steps))}.\n")
    return target
