"""One stage of the encoding study: the prompts of one shots value, decoded once, saved with a checksum.

Greedy decoding scores each prompt while every hidden-state layer is read at the query separator in
the same prefill (`llm.decode.greedy_answers`); the activations (float16-rounded), completions and
timings are saved beside a fingerprint of the model's weights, the prompts and the format, so a rerun
loads a finished stage instead of decoding again. DECISION: a stage whose fingerprint differs is
recomputed (never mixed), and its timing file says whether it was resumed.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from conceptlens.errors import ConceptLensError
from conceptlens.llm.decode import greedy_answers
from conceptlens.models.loader import LoadedModel
from conceptlens.prompts import Prompt
from conceptlens.safetensors_io import load_tensors, safetensors_metadata, save_tensors
from conceptlens.storage import verify_checksum, write_json

@dataclass
class Stage:
    """One shots value: prompts, labels and what the model did with them."""

    shots: int
    prompts: list[Prompt]
    labels: list[str]
    activations: torch.Tensor | None = None  # [layers, N, d_model], float16-rounded
    layers: list[int] | None = None
    completions: list[str] | None = None
    correct: np.ndarray | None = None
    seconds: float = 0.0  # wall time of generation
    cpu_seconds: float = 0.0  # CPU time of this process during generation (all threads)
    resumed: bool = False


@torch.inference_mode()
def weights_signature(model) -> str:
    """A cheap signature of the weights (sum and count of every parameter): finetuned != pretrained.

    Summed in float64 and printed to 9 digits, so the thread count (summation order) does not change it.
    """
    total, count = 0.0, 0
    for param in model.parameters():
        total += float(param.detach().sum(dtype=torch.float64))
        count += param.numel()
    return f"{count}:{total:.8e}"


def _fingerprint(lm: LoadedModel, family_name: str, stage: Stage) -> str:
    digest = hashlib.sha256(json.dumps([lm.name, family_name, stage.shots, str(lm.model.dtype),
                                        weights_signature(lm.model)]).encode())
    for prompt, label in zip(stage.prompts, stage.labels):
        digest.update(json.dumps([prompt.text, prompt.answer, label]).encode())
    return digest.hexdigest()[:24]


def stage_path(out: Path, shots: int) -> Path:
    """One finished stage: `activations` [layers, N, d_model] float16 at the query separator, `layers`
    (HF hidden-state indices), `labels` [N] (codes into the JSON list in metadata `concepts`),
    `correct` [N]; metadata also holds `completions` and a fingerprint of model, weights and prompts.
    `conceptlens.activations.capture.load_activations` reads it."""
    return out / f"activations_shots{shots}.safetensors"


def _load_stage(path: Path, stage: Stage, fingerprint: str) -> bool:
    """Fill `stage` from a finished stage file; False if absent, torn or from other settings."""
    if not path.exists():
        return False
    try:
        verify_checksum(path)
        meta = safetensors_metadata(path)
    except ConceptLensError:
        return False
    if meta.get("fingerprint") != fingerprint:
        return False
    tensors = load_tensors(path)
    stage.activations = tensors["activations"]
    stage.layers = tensors["layers"].tolist()
    stage.correct = tensors["correct"].numpy().astype(bool)
    stage.completions = json.loads(meta["completions"])
    timing = _timing_path(path)
    times = json.loads(timing.read_text()) if timing.exists() else meta  # older files kept it in the metadata
    stage.seconds = float(times.get("seconds", 0.0))
    stage.cpu_seconds = float(times.get("cpu_seconds", 0.0))
    stage.resumed = True
    return True


def run_stage(lm: LoadedModel, family_name: str, stage: Stage, out: Path, batch_size: int = 16, progress=None) -> Stage:
    """Generate and capture every hidden-state layer for one shots value, or load a finished stage."""
    path = stage_path(out, stage.shots)
    fingerprint = _fingerprint(lm, family_name, stage)
    if _load_stage(path, stage, fingerprint):
        return stage
    start, cpu = time.perf_counter(), time.process_time()
    result = greedy_answers(lm, stage.prompts, batch_size=batch_size, capture_layers=list(range(lm.n_layers + 1)),
                            progress=progress)
    stage.seconds, stage.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    activations = result.activations.to(torch.float16)
    if not torch.isfinite(activations).all():
        raise ConceptLensError("activations overflow float16.", "report this: the study stores activations as float16.")
    stage.activations, stage.layers = activations, result.layers
    stage.completions, stage.correct = result.completions, result.correct
    concepts = list(dict.fromkeys(stage.labels))
    codes = torch.tensor([concepts.index(label) for label in stage.labels])
    # wall time goes beside the activations, not in them, so two runs write the same bytes
    write_json(_timing_path(path), {"seconds": round(stage.seconds, 3), "cpu_seconds": round(stage.cpu_seconds, 3)})
    save_tensors(path, {"activations": activations, "layers": torch.tensor(result.layers), "labels": codes,
                        "correct": torch.tensor(result.correct, dtype=torch.uint8)},
                 metadata={"fingerprint": fingerprint, "concepts": json.dumps(concepts),
                           "completions": json.dumps(result.completions), "shots": str(stage.shots),
                           "model": lm.name, "family": family_name,
                           "format": "conceptlens.activations.v1", "role": "query_separator"},
                 checksum=True)
    return stage


def _timing_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".safetensors") + ".timing.json")
