"""Resumable finetuning: one safetensors file holds everything a killed run needs to go on exactly.

`checkpoint.safetensors` in the run folder stores the trainable parameters (`param.<name>`), the
AdamW moments (`optim.<index>.<key>`), the torch RNG state (`rng.cpu`, `rng.cuda.<i>`) and, as
JSON metadata, the step, the optimizer's hyperparameters and a sha256 of all tensor bytes. It is
written to a temporary file and renamed, so a kill leaves the previous checkpoint whole; the
digest catches a file altered afterwards. No pickle anywhere. The batch order is a pure function of
(seed, step) (`finetune_data.batch_schedule`), so the step alone says where to continue.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from conceptlens.errors import ConceptLensError
from conceptlens.safetensors_io import load_tensors, safetensors_metadata, save_tensors

CHECKPOINT = "checkpoint.safetensors"


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(tensors):
        digest.update(key.encode())
        digest.update(tensors[key].detach().contiguous().cpu().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(run: str | Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    extra: dict | None = None) -> Path:
    """Write the training state after `step` optimizer steps to `run/checkpoint.safetensors`."""
    tensors: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            tensors[f"param.{name}"] = param.detach()
    state = optimizer.state_dict()
    for index, values in state["state"].items():
        for key, value in values.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optim.{index}.{key}"] = value
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = rng
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {"step": step, "param_groups": state["param_groups"], "sha256": _digest(tensors), **(extra or {})}
    path = Path(run) / CHECKPOINT
    save_tensors(path, tensors, metadata={"state": json.dumps(meta)})
    return path


def checkpoint_step(run: str | Path) -> int | None:
    """The step of the checkpoint in `run`, or None if there is none."""
    path = Path(run) / CHECKPOINT
    if not path.exists():
        return None
    return int(json.loads(safetensors_metadata(path)["state"])["step"])


def load_checkpoint(run: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore parameters, optimizer moments and RNG from `run`; return the metadata (with 'step')."""
    path = Path(run) / CHECKPOINT
    tensors = load_tensors(path)
    try:
        meta = json.loads(safetensors_metadata(path)["state"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise ConceptLensError(f"{path} has no training state in its metadata.", f"delete {path} and rerun.") from exc
    if _digest(tensors) != meta.get("sha256"):
        raise ConceptLensError(f"{path} is corrupt (its tensors do not match the stored sha256).",
                               f"delete {path} to restart training from the beginning.")
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    saved = {key[len("param."):] for key in tensors if key.startswith("param.")}
    if saved != set(params):
        raise ConceptLensError(f"{path} was written for other trainable parameters (layers or method differ).",
                               "resume with the same --layers/--method/--rank, or use a new --out.")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(tensors[f"param.{name}"])
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    groups = meta["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    torch.set_rng_state(tensors["rng.cpu"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    return meta
