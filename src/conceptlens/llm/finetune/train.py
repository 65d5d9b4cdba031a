"""The finetuning loop: LoRA or full finetuning of chosen blocks, answer-only loss, resumable.

`prepare_model` wraps the model (peft LoRA on the chosen blocks' linear maps, or unfreezes only
those blocks); `train_model` runs AdamW over a fixed batch schedule with linear warm-up and decay,
logs the loss to `train_log.jsonl`, checkpoints every few steps and calls `evaluate` now and then.
`save_finetuned` / `load_finetuned` write and read the result: peft's `adapter/` folder
(`adapter_model.safetensors`) for LoRA, `finetuned_blocks.safetensors` for full finetuning.
DECISION: the loss is the mean over the batch's answer tokens (HF's convention), gradients are
clipped to norm 1, and evaluation runs with the RNG forked so it never shifts dropout masks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from conceptlens.errors import ConceptLensError
from conceptlens.llm.finetune.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from conceptlens.llm.finetune.data import IGNORE, TrainingExample, batch_schedule, collate
from conceptlens.llm.finetune.layers import freeze_except_blocks, lora_target_modules
from conceptlens.models.loader import LoadedModel
from conceptlens.safetensors_io import load_tensors, save_tensors
from conceptlens.storage import append_jsonl, atomic_folder, read_jsonl, remove_stale_temporaries, write_text

METHODS = ("lora", "full")
LOG = "train_log.jsonl"


@dataclass
class TrainingConfig:
    """Everything that decides the trained weights (a resumed run must match it exactly)."""

    layers: list[int]
    method: str = "lora"
    rank: int = 16
    alpha: float = 16.0
    dropout: float = 0.1
    epochs: int = 1
    lr: float = 2e-4
    batch_size: int = 8
    weight_decay: float = 0.0
    warmup_fraction: float = 0.05
    max_grad_norm: float = 1.0
    seed: int = 0

    def validate(self) -> "TrainingConfig":
        if self.method not in METHODS:
            raise ConceptLensError(f"unknown --method '{self.method}'.", "use lora or full.")
        checks = [(self.rank >= 1, "--rank must be at least 1."), (self.alpha > 0, "--alpha must be positive."),
                  (0 <= self.dropout < 1, "--dropout must be in [0, 1)."),
                  (self.epochs >= 1, "--epochs must be at least 1."),
                  (self.lr > 0, "--lr must be positive."), (self.batch_size >= 1, "--batch-size must be at least 1."),
                  (bool(self.layers), "no layers selected.")]
        for ok, problem in checks:
            if not ok:
                raise ConceptLensError(problem, "see `conceptlens llm finetune --help`.")
        return self


def prepare_model(lm: LoadedModel, config: TrainingConfig) -> torch.nn.Module:
    """The model to train: a peft LoRA wrapper of `lm.model`, or `lm.model` with only the chosen blocks trainable."""
    torch.manual_seed(config.seed)  # LoRA's A matrices are drawn here
    if config.method == "full":
        freeze_except_blocks(lm.model, lm.layout, config.layers)
        return lm.model
    from peft import LoraConfig, get_peft_model

    targets = lora_target_modules(lm.model, lm.layout, config.layers)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(lm.model, lora)


def answer_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over the labelled (answer) tokens, computing logits only where they are needed.

    Rows are left-padded, so every answer sits at the end: the LM head runs on the last columns
    only (`logits_to_keep`), which skips most of the vocabulary projection. Equals HF's `.loss`.
    """
    labels = batch["labels"]
    first = int((labels != IGNORE).any(0).nonzero().min())  # first column holding any label
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    width = labels.shape[1] - first + 1  # logits at positions first-1 .. end-1 (the last one is unused)
    try:
        logits = model(**inputs, logits_to_keep=width).logits
    except TypeError:  # a model without logits_to_keep: full logits
        logits = model(**inputs).logits
    logits, targets = logits[:, -width:-1], labels[:, first:]
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                             ignore_index=IGNORE)


def learning_rate(step: int, total: int, config: TrainingConfig) -> float:
    """Linear warm-up over `warmup_fraction` of the steps, then linear decay to zero."""
    warmup = max(1, int(round(total * config.warmup_fraction)))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    return config.lr * max(0.0, (total - step) / max(1, total - warmup))


def train_model(model: torch.nn.Module, examples: Sequence[TrainingExample], config: TrainingConfig, run: str | Path,
                pad_id: int, *, resume: bool = False, checkpoint_every: int = 25, eval_every: int = 0,
                evaluate: Callable[[torch.nn.Module], dict] | None = None, progress=None,
                on_step: Callable[[int, float], None] | None = None) -> list[dict]:
    """Train in place; return the log (one record per step: step, loss, lr, [eval metrics]).

    `on_step(step, loss)` runs after every step (tests use it to simulate a kill).
    """
    run = Path(run)
    device = next(model.parameters()).device
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ConceptLensError("nothing to train: no parameter requires a gradient.", "check --layers and --method.")
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    schedule = batch_schedule(len(examples), config.epochs, config.batch_size, config.seed)
    start = 0
    if resume:
        remove_stale_temporaries(run)
    if resume and (run / CHECKPOINT).exists():
        start = int(load_checkpoint(run, model, optimizer)["step"])
        kept = [r for r in read_jsonl(run / LOG) if r["step"] <= start]
        write_text(run / LOG, "".join(json.dumps(r) + "\n" for r in kept))
    else:
        (run / LOG).unlink(missing_ok=True)
        torch.manual_seed(config.seed)
    task = progress.add_task("finetune", total=len(schedule), completed=start, info="") if progress else None
    model.train()
    for step in range(start, len(schedule)):
        batch = {k: v.to(device) for k, v in collate([examples[i] for i in schedule[step]], pad_id).items()}
        lr = learning_rate(step, len(schedule), config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = answer_loss(model, batch)
        if not torch.isfinite(loss):
            raise ConceptLensError(f"the loss became {loss.item()} at step {step + 1}.", "lower --lr.")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        record = {"step": step + 1, "loss": float(loss.item()), "lr": lr}
        done = step + 1 == len(schedule)
        if evaluate and eval_every and ((step + 1) % eval_every == 0 or done):
            model.eval()
            with torch.random.fork_rng(devices=[]):
                record.update(evaluate(model))
            model.train()
        append_jsonl(run / LOG, record)
        if (step + 1) % checkpoint_every == 0 or done:
            save_checkpoint(run, step + 1, model, optimizer)
        if progress:
            extra = f" acc {record['eval_accuracy']:.2f}" if "eval_accuracy" in record else ""
            progress.update(task, advance=1, info=f"loss {record['loss']:.3f}{extra}")
        if on_step:
            on_step(step + 1, record["loss"])
    model.eval()
    return read_jsonl(run / LOG)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def save_finetuned(model: torch.nn.Module, run: str | Path, config: TrainingConfig) -> Path:
    """LoRA: peft `save_pretrained` into `run/adapter/` (atomically); full: the trained blocks' tensors."""
    run = Path(run)
    if config.method == "full":
        path = run / "finetuned_blocks.safetensors"
        save_tensors(path, trainable_state(model), metadata={"config": str(asdict(config))}, checksum=True)
        return path
    target = run / "adapter"
    with atomic_folder(target) as staging:
        model.save_pretrained(staging, safe_serialization=True)
    return target / "adapter_model.safetensors"


def load_finetuned(lm: LoadedModel, run: str | Path, method: str = "lora") -> torch.nn.Module:
    """Apply a saved finetuning result to `lm.model` (LoRA: a PeftModel; full: weights copied in place)."""
    run = Path(run)
    if method == "full":
        tensors = load_tensors(run / "finetuned_blocks.safetensors", verify=True)
        missing, unexpected = lm.model.load_state_dict(tensors, strict=False)
        if unexpected:
            raise ConceptLensError(f"{run} holds weights this model does not have ({unexpected[:3]}...).",
                                   "load it onto the model it was trained from.")
        return lm.model
    if not (run / "adapter" / "adapter_model.safetensors").exists():
        raise ConceptLensError(f"{run} holds no adapter (adapter/adapter_model.safetensors).",
                               "finish the run first: conceptlens llm finetune ... --resume.")
    from peft import PeftModel

    return PeftModel.from_pretrained(lm.model, run / "adapter").eval()
