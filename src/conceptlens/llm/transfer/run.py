"""Decodable vs. usable: task-vector transfer (Hendel et al. 2023) beside TD, on every layer.

Per concept and layer l, the query-token state at HF hidden-state layer l of a k-shot prompt (train
split) is written over the last token of a zero-shot prompt (a test input's query line alone) at l,
and the greedy answer is scored by exact match; TD is read from the very same k-shot states. Two
variants: `per_query` (one fresh demonstration set per test input, Hendel's) and `mean` (the
concept's mean of those vectors). Baselines on the same inputs: `zero_shot` (no patch), `icl`.
DECISION: the `mean` vector averages the same N per-query vectors (the variants differ only by the
averaging); TD uses the real concepts only (no Null: it has no task to transfer).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from conceptlens.activations.capture import hidden_state_point
from conceptlens.decodability import task_decodability
from conceptlens.errors import ConceptLensError
from conceptlens.llm.interventions.definitions import ReplaceWith, edits_at, means_by_concept, query_activations
from conceptlens.llm.decode import edited_answers, has_kv_cache
from conceptlens.llm.transfer.prompts import TransferPrompts, transfer_prompts
from conceptlens.models.loader import LoadedModel
from conceptlens.prompts import PromptFormat, fit_format_to_tokenizer
from conceptlens.tasks.family import NULL, TaskFamily

VARIANTS = ("per_query", "mean")
COLUMNS = ["model", "family", "shots", "layer", "concept", "variant", "condition", "accuracy", "n"]
ROLE = "query_separator"


def resolve_layers(lm: LoadedModel, layers: Sequence[int] | str) -> list[int]:
    """"all" -> 0..n_layers; a list is checked against the model (HF hidden-state indices)."""
    if isinstance(layers, str):
        if layers != "all":
            raise ConceptLensError(f"layers '{layers}' is neither 'all' nor a list of integers.", "use layers='all' or e.g. [4, 8].")
        return list(range(lm.n_layers + 1))
    if not layers:
        raise ConceptLensError("no layer to patch at.", "give layers='all' or a list of hidden-state layers.")
    for layer in layers:
        hidden_state_point(layer, lm.n_layers)
    return list(dict.fromkeys(int(layer) for layer in layers))


def conditions_for(lm: LoadedModel, layers: list[int], vectors: torch.Tensor, labels: list[str],
                   variants: Sequence[str] = VARIANTS) -> dict:
    """`{(condition, variant, layer): {point: ReplaceWith([N, d])}}` plus the unpatched zero-shot key.

    `vectors [layers, N, d]` are the per-query task vectors, aligned with `labels`.
    """
    means = means_by_concept(vectors, labels)
    conditions: dict = {("zero_shot", "none", None): None}
    for li, layer in enumerate(layers):
        for variant in variants:
            rows = vectors[li] if variant == "per_query" else torch.stack([means[c][li] for c in labels])
            conditions[("task_vector", variant, layer)] = edits_at(lm, layer, ReplaceWith(rows))
    return conditions


def accuracy_rows(results: dict, labels: list[str]) -> list[dict]:
    """One row per condition key × concept: accuracy and n."""
    rows = []
    for (condition, variant, layer), result in results.items():
        for concept in dict.fromkeys(labels):
            mine = result.correct[[i for i, c in enumerate(labels) if c == concept]]
            rows.append({"layer": layer, "concept": concept, "variant": variant, "condition": condition,
                         "accuracy": float(mine.mean()), "n": int(len(mine))})
    return rows


def td_table(vectors: torch.Tensor, labels: list[str], layers: list[int], k: int) -> pd.DataFrame:
    """Per-layer, per-concept leave-one-out kNN TD of the task vectors (layer, concept, td)."""
    smallest = int(pd.Series(labels).value_counts().min())
    if smallest < 2 or len(set(labels)) < 2:
        raise ConceptLensError("TD needs at least two concepts and two prompts of each.",
                               "use prompts_per_concept >= 2 and a family with two or more concepts.")
    return task_decodability(vectors, labels, k=min(k, smallest - 1), layers=layers).per_class


def run_transfer(lm: LoadedModel, family_name: str, train: TaskFamily, test: TaskFamily, *, shots: int = 4,
                 layers: Sequence[int] | str = "all", prompts_per_concept: int = 50, seed: int = 0, k: int = 10,
                 fmt: PromptFormat = PromptFormat(), fit_format: bool = True, batch_size: int = 16,
                 out: Path | None = None, progress=None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Transfer accuracy rows (`COLUMNS`), TD rows (layer, concept, td) and the summary dict.

    `fmt` is first fitted to the tokenizer (`prompts.fit_format_to_tokenizer`) unless `fit_format` is
    False, as in the encoding study. With `out`, writes transfer.csv/.parquet, td.csv/.parquet, summary.json and transfer.png there
    (bad input raises `ConceptLensError` before any model call).
    """
    from conceptlens.llm.transfer.report import summarize, write_outputs

    chosen = resolve_layers(lm, layers)
    if prompts_per_concept < 2:
        raise ConceptLensError(f"prompts_per_concept must be at least 2, got {prompts_per_concept}.",
                               "use e.g. prompts_per_concept=50.")
    concepts = [c for c in test.concept_names if c != NULL]
    note = {"changed": False, "reason": "fit_format is off: the format is used as given."}
    if fit_format:
        examples = [e for fam in (train, test) for c in concepts for e in fam.concepts.get(c, [])]
        fmt, note = fit_format_to_tokenizer(fmt, lm.tokenizer, examples)
    built = transfer_prompts(train, test, concepts, prompts_per_concept, shots, seed, fmt)
    started = time.perf_counter()
    vectors = query_activations(lm, built.source, chosen, role=ROLE, batch_size=batch_size, progress=progress)
    td = td_table(vectors, built.labels, chosen, k)
    task = progress.add_task("transfer", total=2 * len(built.labels), info=f"{family_name}, {len(chosen)} layers") \
        if progress else None
    results = edited_answers(lm, built.icl, {("icl", "none", None): None}, role=ROLE, batch_size=batch_size,
                             early_stop=True, progress=progress, task=task)
    conditions = conditions_for(lm, chosen, vectors, built.labels)
    results.update(edited_answers(lm, built.zero_shot, conditions, role=ROLE, batch_size=batch_size,
                                  early_stop=True, progress=progress, task=task))
    untouched = [key for key, edit in conditions.items() for point in edit or {}
                 if results[key].touched[point].rows != len(built.labels)]
    if untouched:
        raise RuntimeError(f"conditions {untouched[:3]} did not patch every zero-shot prompt")
    frame = pd.DataFrame([{"model": lm.name, "family": family_name, "shots": shots, **row}
                          for row in accuracy_rows(results, built.labels)])[COLUMNS]
    frame["layer"] = frame["layer"].astype("Int64")  # <NA> for the unpatched baselines
    summary = summarize(frame, td)
    summary.update(_record(lm, family_name, built, chosen, shots, seed, fmt, time.perf_counter() - started))
    summary["format_fit"] = note
    if out is not None:
        write_outputs(Path(out), frame, td, summary)
    return frame, td, summary


def _record(lm: LoadedModel, family_name: str, built: TransferPrompts, layers: list[int], shots: int, seed: int,
            fmt: PromptFormat, seconds: float) -> dict:
    """What summary.json records of the run's settings beside its results."""
    return {"model": lm.name, "family": family_name, "shots": shots, "seed": seed, "n_layers": lm.n_layers,
            "layers": layers, "concepts": built.concepts, "prompts_per_concept": len(built.labels) // len(built.concepts),
            "distinct_test_inputs": built.distinct_queries, "position_role": ROLE,
            "patch": "replace the zero-shot prompt's last-token hidden state (HF hidden-state layer l)",
            "generation": "shared KV-cache prefix" if has_kv_cache(lm) else "full recomputation (no KV cache)",
            "format": {"separator": fmt.separator, "answer_prefix": fmt.answer_prefix, "newline": fmt.newline},
            "example": {"source": built.source[0].text, "icl": built.icl[0].text, "zero_shot": built.zero_shot[0].text},
            "seconds": round(seconds, 1)}
