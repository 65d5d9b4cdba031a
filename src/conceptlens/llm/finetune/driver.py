"""Layer-selective finetuning (paper 4.4): does training the early layers help ICL more than the late ones?

LoRA (or full finetuning) on a block range only, on k-shot prompts from the family's training
split with the loss on the answer tokens; then the same TD-by-layer and accuracy study as
`llm run`, on the test split, before (pretrained) and after, into `RUN/before/` and `RUN/after/`,
with `td_before_after.png`. If encoding is the bottleneck, first-layer training should lift TD
at the middle layers and accuracy more than last-layer training (which cannot move TD there).
DECISION: the caller's model is restored on exit (adapters unloaded, full-finetuned blocks put
back), so a shared model stays pretrained; the "before" study may be reused from an `llm run`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import torch

from conceptlens.errors import ConceptLensError
from conceptlens.llm.finetune.checkpoint import CHECKPOINT
from conceptlens.llm.finetune.data import encode_example, training_prompts
from conceptlens.llm.finetune.layers import block_prefixes, parse_layer_range
from conceptlens.llm.finetune.report import plot_td_before_after, study_summary
from conceptlens.llm.finetune.train import TrainingConfig, load_finetuned, prepare_model, save_finetuned, train_model
from conceptlens.models.loader import LoadedModel
from conceptlens.prompts import sample_prompts
from conceptlens.storage import read_jsonl, remove_stale_temporaries, write_json
from conceptlens.tasks.family import NULL, TaskFamily

TRAINED = "training.json"  # written once the finetuned weights are saved
STUDY_FILES = ("decodability.csv", "decodability.parquet", "accuracy.csv", "accuracy.parquet", "summary.json")


@contextlib.contextmanager
def adapted(lm: LoadedModel, config: TrainingConfig, run: Path | None = None) -> Iterator[torch.nn.Module]:
    """The model to train (run=None) or the saved result of `run`; `lm.model` is restored on exit."""
    flags = {name: p.requires_grad for name, p in lm.model.named_parameters()}
    was_training = lm.model.training
    saved = None
    if config.method == "full":
        prefixes = tuple(block_prefixes(lm.layout, config.layers))
        saved = {n: p.detach().clone() for n, p in lm.model.named_parameters() if n.startswith(prefixes)}
    model = prepare_model(lm, config) if run is None else load_finetuned(lm, run, config.method)
    try:
        yield model
    finally:
        if config.method == "lora":
            model.unload()
        else:
            with torch.no_grad():
                params = dict(lm.model.named_parameters())
                for name, value in saved.items():
                    params[name].copy_(value)
        for name, p in lm.model.named_parameters():
            p.requires_grad_(flags[name])
        lm.model.train(was_training)


def _settings(lm: LoadedModel, family_name: str, layers: str, config: TrainingConfig, train_samples: int,
              shots: int, prompts_per_concept: int, seed: int) -> dict:
    return {"kind": "finetune", "model": lm.name, "family": family_name, "layers_spec": layers,
            "n_layers": lm.n_layers, "train_samples": train_samples, "shots": shots,
            "prompts_per_concept": prompts_per_concept, "state_concept": False, **asdict(config)}


def _check_folder(out: Path, settings: dict, resume: bool) -> None:
    """Refuse to mix runs: a used folder needs --resume, and --resume needs the same settings."""
    path = out / "config.json"
    if not path.exists():
        if out.exists() and any(out.iterdir()) and not resume:
            raise ConceptLensError(f"{out} already holds other files.", "choose a new --out folder.")
        return
    if not resume:
        raise ConceptLensError(f"{out} already holds a finetuning run.",
                               "pass --resume to continue it, or choose a new --out.")
    previous = json.loads(path.read_text())
    changed = sorted(k for k in settings if previous.get(k) != settings[k])
    if changed:
        raise ConceptLensError(f"{out} holds a run with other settings (differs in {', '.join(changed)}).",
                               "resume with the same options, or choose a new --out folder.")


def _reuse_before(before_run: Path, target: Path, lm: LoadedModel, family_name: str, shots: int) -> bool:
    """Copy the study tables of a pretrained `llm run` folder into `target` if they fit; True if copied."""
    import pandas as pd

    summary_path = before_run / "summary.json"
    if not all((before_run / name).exists() for name in ("summary.json", "decodability.csv", "accuracy.csv")):
        return False
    summary = json.loads(summary_path.read_text())
    if (summary.get("settings", {}).get("state_concept") or summary.get("model", lm.name) != lm.name
            or summary.get("family", family_name) != family_name):
        return False
    if shots not in set(pd.read_csv(before_run / "accuracy.csv")["shots"]):
        return False
    target.mkdir(parents=True, exist_ok=True)
    for name in STUDY_FILES:
        if (before_run / name).exists():
            shutil.copyfile(before_run / name, target / name)
    write_json(target / "reused_from.json", {"run": str(before_run.resolve())})
    return True


def _study(lm: LoadedModel, family_name: str, family: TaskFamily, shots: int, prompts_per_concept: int, seed: int,
           out: Path, k: int, progress, settings: dict) -> None:
    from conceptlens.llm.encoding.study import run_study

    run_study(lm, family_name, family, [shots], prompts_per_concept, seed, out, k=k, progress=progress,
              settings=settings)


def finetune(lm: LoadedModel, family_name: str, train_family: TaskFamily, test_family: TaskFamily,
             layers: str = "first:10", method: str = "lora", rank: int = 16, alpha: float = 16.0, dropout: float = 0.1, train_samples: int = 600,
             epochs: int = 1, lr: float = 2e-4, batch_size: int = 8, shots: int = 4, prompts_per_concept: int = 100,
             seed: int = 0, out: str | Path = "runs/finetune", resume: bool = False, progress=None,
             before_run: str | Path | None = None, checkpoint_every: int = 25, evaluations: int = 4,
             eval_prompts: int = 4, k: int = 10) -> dict:
    """Finetune `layers` of `lm` on `train_family`, then study it on `test_family`; returns the summary.

    Writes `RUN/config.json`, `train_log.jsonl`, `adapter/` (LoRA) or `finetuned_blocks.safetensors`
    (full), `before/` and `after/` (the `llm run` tables), `td_before_after.png`, `summary.json`.
    """
    out = Path(out)
    config = TrainingConfig(parse_layer_range(layers, lm.n_layers), method, rank, alpha, dropout, epochs, lr,
                            batch_size, seed=seed).validate()
    if prompts_per_concept < 2 * (k + 1):
        raise ConceptLensError(f"--prompts-per-concept {prompts_per_concept} is too few for TD with k = {k}.",
                               f"use at least {2 * (k + 1)}, e.g. --prompts-per-concept 50.")
    settings = _settings(lm, family_name, layers, config, train_samples, shots, prompts_per_concept, seed)
    _check_folder(out, settings, resume)
    # everything that can fail on bad input happens before the first write
    pairs = training_prompts(train_family, train_samples, shots, seed)
    examples = [encode_example(lm.tokenizer, prompt, concept) for concept, prompt in pairs]
    monitor = [p for c in test_family.concept_names if c != NULL
               for p in sample_prompts(test_family, c, eval_prompts, shots, seed + 1)]
    if resume:
        remove_stale_temporaries(out)  # also in before/ and after/, which the training loop does not see
    write_json(out / "config.json", settings)

    started = time.time()
    if not (out / "before" / "summary.json").exists():
        if before_run is None or not _reuse_before(Path(before_run), out / "before", lm, family_name, shots):
            _study(lm, family_name, test_family, shots, prompts_per_concept, seed, out / "before", k, progress,
                   {"variant": "pretrained"})
    before_seconds = time.time() - started

    from conceptlens.llm.generation import greedy_answers

    def evaluate(model) -> dict:
        result = greedy_answers(LoadedModel(lm.name, model, lm.tokenizer, lm.layout), monitor, batch_size=batch_size)
        return {"eval_accuracy": result.accuracy}

    steps = -(-len(examples) // batch_size) * epochs
    started = time.time()
    if not (out / TRAINED).exists():
        with adapted(lm, config) as model:
            log = train_model(model, examples, config, out, lm.tokenizer.pad_token_id, resume=resume,
                              checkpoint_every=checkpoint_every,
                              eval_every=-(-steps // evaluations) if evaluations else 0,  # at most `evaluations`
                              evaluate=evaluate, progress=progress)
            saved = save_finetuned(model, out, config)
        write_json(out / TRAINED, {"steps": steps, "final_loss": log[-1]["loss"], "seconds": time.time() - started,
                                   "saved": saved.name})
        (out / CHECKPOINT).unlink(missing_ok=True)  # the saved result supersedes it (optimizer moments are large)
    train_seconds = json.loads((out / TRAINED).read_text())["seconds"]

    started = time.time()
    if not (out / "after" / "summary.json").exists():
        with adapted(lm, config, run=out) as model:
            tuned = LoadedModel(f"{lm.name}+{method}[{layers}]", model, lm.tokenizer, lm.layout)
            _study(tuned, family_name, test_family, shots, prompts_per_concept, seed, out / "after", k, progress,
                   {"variant": "finetuned", "layers": layers, "method": method})
    after_seconds = time.time() - started

    plot_td_before_after(out, shots)
    marker = out / "before" / "reused_from.json"
    reused = json.loads(marker.read_text()) if marker.exists() else None
    log = read_jsonl(out / "train_log.jsonl")
    summary = {**settings, **study_summary(out, shots),
               "training": {"steps": steps, "examples": len(examples), "first_loss": log[0]["loss"] if log else None,
                            "final_loss": log[-1]["loss"] if log else None,
                            "eval_accuracy": [(r["step"], r["eval_accuracy"]) for r in log if "eval_accuracy" in r]},
               "seconds_this_run": {"before": before_seconds, "train": train_seconds, "after": after_seconds},
               "before_reused_from": reused["run"] if reused else None}
    write_json(out / "summary.json", summary)
    return summary
