"""Layer-selective finetuning (paper 4.4): does training the early layers help ICL more than the late ones?

LoRA (or full finetuning) on a block range only, on k-shot prompts from the family's training
split with the loss on the answer tokens; then the same TD-by-layer and accuracy study as
`llm run`, on the test split, before (pretrained) and after, into `RUN/before/` and `RUN/after/`,
with `td_before_after.png`. If encoding is the bottleneck, first-layer training should lift TD
at the middle layers and accuracy more than last-layer training (which cannot move TD there).
`before-peak` / `after-peak` (see `layers.py`) are resolved from the pretrained study's TD peak at
the run's shots (where the before/after table reads TD), once the "before" study exists. One prompt
format, fitted to the tokenizer like `llm run`'s, serves training, monitoring and both studies.
DECISION: the caller's model is restored on exit (adapters unloaded, full-finetuned blocks put
back), so a shared model stays pretrained; the "before" study may be reused from an `llm run`
whose prompts had the same format.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from conceptlens.llm.finetune.layers import block_prefixes, needs_peak, parse_layer_range
from conceptlens.llm.finetune.report import plot_td_before_after, study_summary
from conceptlens.llm.finetune.train import TrainingConfig, load_finetuned, prepare_model, save_finetuned, train_model
from conceptlens.models.loader import LoadedModel
from conceptlens.prompts import PromptFormat, sample_prompts
from conceptlens.runs import LOCK, RECORD  # the CLI's run record and lock: no results
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
              shots: int, prompts_per_concept: int, seed: int, fmt: PromptFormat) -> dict:
    """What config.json records before the layers are resolved (`layers` is added once they are)."""
    settings = {"kind": "finetune", "model": lm.name, "family": family_name, "layers_spec": layers,
                "n_layers": lm.n_layers, "train_samples": train_samples, "shots": shots,
                "prompts_per_concept": prompts_per_concept, "state_concept": False, **asdict(config),
                "separator": fmt.separator, "answer_prefix": fmt.answer_prefix}
    settings.pop("layers")
    return settings


def resolve_layers(spec: str, n_layers: int, before: Path, shots: int) -> tuple[list[int], int]:
    """The blocks `spec` names, and the pretrained TD peak (best layer of `before` at `shots`) they may hang on."""
    from conceptlens.llm.compare import best_layer, read_study

    peak = best_layer(read_study(before, shots)[0])
    return parse_layer_range(spec, n_layers, peak if needs_peak(spec) else None), peak


def _check_folder(out: Path, settings: dict, resume: bool) -> None:
    """Refuse to mix runs: a used folder needs --resume, and --resume needs the same settings."""
    path = out / "config.json"
    if not path.exists():
        if out.exists() and any(p.name not in (LOCK, RECORD) for p in out.iterdir()) and not resume:
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


def _reuse_before(before_run: Path, target: Path, lm: LoadedModel, family_name: str, shots: int,
                  fmt: PromptFormat) -> bool:
    """Copy the study tables of a pretrained `llm run` folder into `target` if they fit; True if copied."""
    import pandas as pd

    summary_path = before_run / "summary.json"
    if not all((before_run / name).exists() for name in ("summary.json", "decodability.csv", "accuracy.csv")):
        return False
    summary = json.loads(summary_path.read_text())
    used = summary.get("format", {"separator": " ->", "answer_prefix": " "})  # older runs: the default format
    if (summary.get("settings", {}).get("state_concept") or summary.get("model", lm.name) != lm.name
            or summary.get("family", family_name) != family_name
            or (used.get("separator"), used.get("answer_prefix")) != (fmt.separator, fmt.answer_prefix)):
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
           out: Path, k: int, progress, settings: dict, fmt: PromptFormat, fit_format: bool) -> None:
    from conceptlens.llm.encoding.study import run_study

    # the study fits `fmt` to the tokenizer on the same test family, so it uses the format training used
    run_study(lm, family_name, family, [shots], prompts_per_concept, seed, out, k=k, progress=progress,
              settings=settings, fmt=fmt, fit_format=fit_format)


def finetune(lm: LoadedModel, family_name: str, train_family: TaskFamily, test_family: TaskFamily,
             layers: str = "first:10", method: str = "lora", rank: int = 16, alpha: float = 16.0, dropout: float = 0.1, train_samples: int = 600,
             epochs: int = 1, lr: float = 2e-4, batch_size: int = 8, shots: int = 4, prompts_per_concept: int = 100,
             seed: int = 0, out: str | Path = "runs/finetune", resume: bool = False, progress=None,
             before_run: str | Path | None = None, checkpoint_every: int = 25, evaluations: int = 4,
             eval_prompts: int = 4, k: int = 10, fmt: PromptFormat | None = None, fit_format: bool = True) -> dict:
    """Finetune `layers` of `lm` on `train_family`, then study it on `test_family`; returns the summary.

    Writes `RUN/config.json`, `train_log.jsonl`, `adapter/` (LoRA) or `finetuned_blocks.safetensors`
    (full), `before/` and `after/` (the `llm run` tables), `td_before_after.png`, `summary.json`.
    """
    from conceptlens.llm.encoding.study import study_format

    out, asked = Path(out), fmt or PromptFormat()
    if not needs_peak(layers):
        parse_layer_range(layers, lm.n_layers)  # a bad range fails before any write
    config = TrainingConfig([0], method, rank, alpha, dropout, epochs, lr, batch_size, seed=seed).validate()
    if prompts_per_concept < k + 1:
        raise ConceptLensError(f"prompts_per_concept={prompts_per_concept} is too few for k = {k}: TD's vote needs "
                               f"k + 1 = {k + 1} prompts of every concept.", "use e.g. prompts_per_concept=50.")
    fmt, format_record = study_format(lm.tokenizer, test_family, asked, fit_format)
    settings = _settings(lm, family_name, layers, config, train_samples, shots, prompts_per_concept, seed, fmt)
    _check_folder(out, settings, resume)
    # everything that can fail on bad input happens before the first write
    pairs = training_prompts(train_family, train_samples, shots, seed, fmt=fmt)
    examples = [encode_example(lm.tokenizer, prompt, concept) for concept, prompt in pairs]
    monitor = [p for c in test_family.concept_names if c != NULL
               for p in sample_prompts(test_family, c, eval_prompts, shots, seed + 1, fmt=fmt)]
    if resume:
        remove_stale_temporaries(out)  # also in before/ and after/, which the training loop does not see
    write_json(out / "config.json", {**json.loads((out / "config.json").read_text()), **settings}
               if (out / "config.json").exists() else settings)

    started = time.time()
    if not (out / "before" / "summary.json").exists():
        if before_run is None or not _reuse_before(Path(before_run), out / "before", lm, family_name, shots, fmt):
            _study(lm, family_name, test_family, shots, prompts_per_concept, seed, out / "before", k, progress,
                   {"variant": "pretrained"}, asked, fit_format)
    before_seconds = time.time() - started
    blocks, peak = resolve_layers(layers, lm.n_layers, out / "before", shots)
    config = dataclasses.replace(config, layers=blocks)
    settings = {**settings, "layers": blocks, "peak_layer": peak}
    write_json(out / "config.json", settings)
    train_seconds = _train(lm, config, examples, monitor, out, batch_size, resume, checkpoint_every, evaluations,
                           progress)

    started = time.time()
    if not (out / "after" / "summary.json").exists():
        with adapted(lm, config, run=out) as model:
            tuned = LoadedModel(f"{lm.name}+{method}[{layers}]", model, lm.tokenizer, lm.layout)
            _study(tuned, family_name, test_family, shots, prompts_per_concept, seed, out / "after", k, progress,
                   {"variant": "finetuned", "layers": layers, "method": method}, asked, fit_format)
    after_seconds = time.time() - started
    return _summarize(out, settings, shots, len(examples), -(-len(examples) // batch_size) * epochs, format_record,
                      {"before": before_seconds, "train": train_seconds, "after": after_seconds})


def _train(lm: LoadedModel, config: TrainingConfig, examples: list, monitor: list, out: Path, batch_size: int,
           resume: bool, checkpoint_every: int, evaluations: int, progress) -> float:
    """Train and save the blocks of `config` (skipped once `training.json` exists); returns the training seconds."""
    from conceptlens.llm.decode import greedy_answers

    def evaluate(model) -> dict:
        result = greedy_answers(LoadedModel(lm.name, model, lm.tokenizer, lm.layout), monitor, batch_size=batch_size)
        return {"eval_accuracy": result.accuracy}

    steps = -(-len(examples) // batch_size) * config.epochs
    started, cpu = time.time(), time.process_time()
    if not (out / TRAINED).exists():
        with adapted(lm, config) as model:
            log = train_model(model, examples, config, out, lm.tokenizer.pad_token_id, resume=resume,
                              checkpoint_every=checkpoint_every,
                              eval_every=-(-steps // evaluations) if evaluations else 0,  # at most `evaluations`
                              evaluate=evaluate, progress=progress)
            saved = save_finetuned(model, out, config)
        write_json(out / TRAINED, {"steps": steps, "final_loss": log[-1]["loss"], "seconds": time.time() - started,
                                   "cpu_seconds": time.process_time() - cpu, "saved": saved.name})
        (out / CHECKPOINT).unlink(missing_ok=True)  # the saved result supersedes it (optimizer moments are large)
    return json.loads((out / TRAINED).read_text())["seconds"]


def _summarize(out: Path, settings: dict, shots: int, n_examples: int, steps: int, format_record: dict,
               seconds: dict) -> dict:
    """Figure and summary.json of a finished run."""
    plot_td_before_after(out, shots)
    marker = out / "before" / "reused_from.json"
    reused = json.loads(marker.read_text()) if marker.exists() else None
    log = read_jsonl(out / "train_log.jsonl")
    blocks, peak = settings["layers"], settings["peak_layer"]
    summary = {**settings, **study_summary(out, shots),
               "blocks": f"blocks {blocks[0]}-{blocks[-1]} ({len(blocks)}) write hidden-state layers "
                         f"{blocks[0] + 1}-{blocks[-1] + 1}; the pretrained TD peak is layer {peak}",
               "format": format_record,
               "training": {"steps": steps, "examples": n_examples, "first_loss": log[0]["loss"] if log else None,
                            "final_loss": log[-1]["loss"] if log else None,
                            "eval_accuracy": [(r["step"], r["eval_accuracy"]) for r in log if "eval_accuracy" in r]},
               "seconds_this_run": seconds, "before_reused_from": reused["run"] if reused else None}
    write_json(out / "summary.json", summary)
    return summary
