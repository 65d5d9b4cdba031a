"""The paper's intervention experiment: does the concept representation drive ICL accuracy?

For each replicate (fresh demonstrations) and concept, k-shot prompts are decoded greedily three
ways: untouched (baseline), with the hidden state at the query token of layer L replaced by the
held-out mean of the correct concept (positive), and by the mean of Null (negative); the accuracy
change is averaged over replicates (mean ± std). DECISION: the means are computed once per run
from held-out prompts; in `add` mode the added vector is the concept mean minus the average of
all concept means (adding a raw mean would double the activation's norm, not steer it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from conceptlens.activations.capture import hidden_state_point
from conceptlens.decodability import task_decodability
from conceptlens.errors import ConceptLensError
from conceptlens.hooks.nethook import parse_point
from conceptlens.llm.interventions.generation import answers_under_edits
from conceptlens.llm.interventions.report import write_outputs
from conceptlens.llm.interventions.definitions import (AddVector, ReplaceWith, heldout_prompts, means_by_concept,
                                           query_activations, query_positions)
from conceptlens.models.loader import LoadedModel
from conceptlens.prompts import Prompt, PromptFormat, sample_prompts
from conceptlens.tasks.family import NULL, TaskFamily

MODES = ("replace", "add")
CONDITIONS = ("baseline", "positive", "negative")


@dataclass
class LayerChoice:
    layers: list[int]
    source: str  # "given", "from_run:<path>" or "td_on_heldout_means_prompts"
    td: pd.DataFrame | None = None  # per-layer per-concept TD on the means prompts (layer, concept, td)


def read_best_layer(run: Path, lm: LoadedModel) -> int:
    """`best_layer` from the `summary.json` of an `llm run` folder (checked against the model)."""
    path = Path(run) / "summary.json"
    if not path.exists():
        raise ConceptLensError(f"{path} does not exist.", "pass --from-run a folder written by `conceptlens llm run`.")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        layer = int(summary["best_layer"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConceptLensError(f"{path} has no integer 'best_layer' ({type(exc).__name__}).",
                               "pass a run folder written by `conceptlens llm run`, or give --layer explicitly.") from exc
    if summary.get("n_layers") not in (None, lm.n_layers):
        raise ConceptLensError(f"{path} comes from a model with {summary['n_layers']} layers; {lm.name} has {lm.n_layers}.",
                               "use a run of the same model, or give --layer explicitly.")
    hidden_state_point(layer, lm.n_layers)
    return layer


def validate(lm: LoadedModel, family: TaskFamily, means_family: TaskFamily, layers: Sequence[int] | str, *,
             shots: int, prompts_per_concept: int, means_per_concept: int, replicates: int, mode: str,
             from_run: Path | None, out: Path | None) -> None:
    """Every bad-input check, before any model call or file write."""
    if mode not in MODES:
        raise ConceptLensError(f"unknown intervention mode '{mode}'.", f"use one of {', '.join(MODES)}.")
    for name, value, low in (("shots", shots, 0), ("prompts per concept", prompts_per_concept, 1),
                             ("replicates", replicates, 1), ("means per concept", means_per_concept, 1)):
        if value < low:
            raise ConceptLensError(f"{name} must be at least {low}, got {value}.", f"pass a {name} of {low} or more.")
    for fam, what in ((family, "evaluated"), (means_family, "held-out (means)")):
        if NULL not in fam.concepts:
            raise ConceptLensError(f"family '{fam.name}' has no '{NULL}' concept: the negative intervention needs it.",
                                   "load the family with a Null concept (e.g. --null for a folder family).")
        if len(fam.concepts) < 2:
            raise ConceptLensError(f"family '{fam.name}' has only the Null concept.", "give at least one real concept.")
        for concept, examples in fam.concepts.items():
            if len(examples) < shots + 1:
                raise ConceptLensError(f"concept '{concept}' has {len(examples)} {what} example(s); {shots} shots need "
                                       f"at least {shots + 1}.", f"use fewer --shots, or add examples to '{concept}'.")
    if set(family.concepts) != set(means_family.concepts):
        raise ConceptLensError("the evaluated and held-out families have different concepts.",
                               "split one family into two parts (e.g. train and test).")
    if isinstance(layers, str):
        if layers != "best":
            raise ConceptLensError(f"layer '{layers}' is not an integer list or 'best'.", "use e.g. --layer 14 or --layer best.")
        if from_run is not None:
            read_best_layer(from_run, lm)
        elif means_per_concept < 2:
            raise ConceptLensError("choosing the best layer by TD needs at least 2 held-out prompts per concept.",
                                   "raise --prompts-per-concept, or give --layer / --from-run.")
    else:
        if not layers:
            raise ConceptLensError("no layer to intervene at.", "give --layer L, L1,L2,... or best.")
        for layer in layers:
            hidden_state_point(layer, lm.n_layers)
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ConceptLensError(f"--out {out} exists and is not a folder.", "choose a folder path for the run.")


def edit_record(lm: LoadedModel, layer: int, prompt: Prompt, role: str) -> dict:
    """Which point, component and token an edit at `layer` touches (shown on one example prompt)."""
    point = hidden_state_point(layer, lm.n_layers)
    component, block = parse_point(point)
    ids, positions = query_positions(lm, [prompt], role)
    index = positions[0]
    return {"layer": layer, "point": point, "component": component, "block": block, "position_role": role,
            "which": "last", "example_token_index": index, "example_token": lm.tokenizer.decode([ids[0][index]]),
            "example_prompt_tail": prompt.text[-40:]}


def _vectors(means: dict[str, torch.Tensor], layer_index: int, mode: str) -> dict[str, torch.Tensor]:
    """Per concept, the vector a positive (or, for Null, negative) edit writes at one layer."""
    at_layer = {concept: mean[layer_index] for concept, mean in means.items()}
    if mode == "replace":
        return at_layer
    grand = torch.stack(list(at_layer.values())).mean(dim=0)
    return {concept: vector - grand for concept, vector in at_layer.items()}


def choose_layers(lm: LoadedModel, layers: Sequence[int] | str, from_run: Path | None,
                  acts: torch.Tensor, labels: list[str], captured: list[int]) -> LayerChoice:
    """The layers to edit, and the per-concept TD of the held-out prompts at the captured layers."""
    td = None
    if len(captured) and pd.Series(labels).value_counts().min() >= 2:
        k = min(10, int(pd.Series(labels).value_counts().min()) - 1)
        td = task_decodability(acts, labels, k=k, layers=captured)
    if not isinstance(layers, str):
        return LayerChoice(list(layers), "given", td.per_class if td else None)
    if from_run is not None:
        return LayerChoice([read_best_layer(from_run, lm)], f"from_run:{from_run}", td.per_class if td else None)
    return LayerChoice([td.best_layer], "td_on_heldout_means_prompts", td.per_class)


def replicate_rows(lm: LoadedModel, by_concept: dict[str, list[Prompt]], means: dict[str, torch.Tensor],
                   captured: list[int], layers: list[int], *, mode: str, role: str, batch_size: int,
                   progress, task) -> tuple[list[dict], dict[str, int]]:
    """One replicate: every prompt decoded once per condition; rows of accuracy per layer × condition × concept."""
    concepts = list(by_concept)
    prompts = [p for c in concepts for p in by_concept[c]]
    labels = [c for c in concepts for _ in by_concept[c]]
    make = ReplaceWith if mode == "replace" else AddVector
    conditions: dict = {("baseline", None): None}
    for layer in layers:
        point = hidden_state_point(layer, lm.n_layers)
        vectors = _vectors(means, captured.index(layer), mode)
        conditions[("positive", layer)] = {point: make(torch.stack([vectors[c] for c in labels]))}  # [N, d]
        conditions[("negative", layer)] = {point: make(vectors[NULL])}
    results = answers_under_edits(lm, prompts, conditions, role=role, batch_size=batch_size, progress=progress,
                                  task=task)
    edited: dict[str, int] = {}
    for edit in conditions.values():
        for point, intervention in (edit or {}).items():
            edited[point] = edited.get(point, 0) + intervention.rows
    rows = []
    for layer in layers:
        point = hidden_state_point(layer, lm.n_layers)
        for condition in CONDITIONS:
            correct = results[(condition, None if condition == "baseline" else layer)].correct
            for concept in concepts:
                mine = correct[[i for i, c in enumerate(labels) if c == concept]]
                rows.append({"layer": layer, "component": parse_point(point)[0], "point": point,
                             "position_role": role, "mode": mode, "concept": concept, "condition": condition,
                             "accuracy": float(mine.mean()), "n": int(len(mine))})
    return rows, edited


def run_interventions(lm: LoadedModel, family_name: str, family: TaskFamily, layers: Sequence[int] | str, *,
                      shots: int = 4, prompts_per_concept: int = 25, replicates: int = 5, mode: str = "replace",
                      seed: int = 0, means_family: TaskFamily | None = None, means_per_concept: int | None = None,
                      from_run: Path | None = None, role: str = "query_separator", batch_size: int = 16,
                      fmt: PromptFormat = PromptFormat(), out: Path | None = None, progress=None) -> pd.DataFrame:
    """Baseline, positive and negative accuracy per replicate × layer × concept (tidy rows).

    `layers`: HF hidden-state indices, or "best" (from `from_run`'s summary.json, else the TD peak
    on the held-out prompts). `means_family` holds the held-out examples of the concept means;
    without it `family` is split in two halves by `seed`. With `out`, writes interventions.csv
    (+ .parquet), interventions_summary.csv, interventions.png and interventions.json, only after
    every generation has finished (bad input raises `ConceptLensError` before any work).
    """
    if means_family is None:
        means_family, family = family.split(seed, test_fraction=0.5)
    means_per_concept = prompts_per_concept if means_per_concept is None else means_per_concept
    validate(lm, family, means_family, layers, shots=shots, prompts_per_concept=prompts_per_concept,
             means_per_concept=means_per_concept, replicates=replicates, mode=mode, from_run=from_run, out=out)
    concepts = [c for c in family.concept_names if c != NULL]
    seeds = [seed * 100_003 + r for r in range(replicates)]
    evaluated = [{c: sample_prompts(family, c, prompts_per_concept, shots, s, fmt) for c in concepts} for s in seeds]

    # held-out means; every layer is captured when the best layer is chosen by TD here
    if isinstance(layers, str):
        captured = list(range(lm.n_layers + 1)) if from_run is None else [read_best_layer(from_run, lm)]
    else:
        captured = list(dict.fromkeys(layers))
    mean_prompts, labels = heldout_prompts(means_family, shots, means_per_concept, seed, fmt)
    acts = query_activations(lm, mean_prompts, captured, role=role, batch_size=batch_size, progress=progress)
    choice = choose_layers(lm, layers, from_run, acts, labels, captured)
    means = means_by_concept(acts, labels)

    task = progress.add_task("interventions", total=replicates * len(concepts) * prompts_per_concept,
                             info=f"{family_name}, layers {choice.layers}") if progress else None
    rows, edited = [], {}
    for replicate, by_concept in enumerate(evaluated):
        part, counts = replicate_rows(lm, by_concept, means, captured, choice.layers, mode=mode, role=role,
                                      batch_size=batch_size, progress=progress, task=task)
        rows += [{"model": lm.name, "family": family_name, "shots": shots, "seed": seed, "replicate": replicate, **row}
                 for row in part]
        for point, count in counts.items():
            edited[point] = edited.get(point, 0) + count
    columns = ["model", "family", "layer", "component", "point", "position_role", "mode", "shots", "seed", "concept",
               "replicate", "condition", "accuracy", "n"]
    frame = pd.DataFrame(rows)[columns]
    if out is not None:
        suffix = " minus the mean of all concept means" if mode == "add" else ""
        record = {"model": lm.name, "family": family_name, "mode": mode, "shots": shots, "seed": seed,
                  "replicates": replicates, "prompts_per_concept": prompts_per_concept, "concepts": concepts,
                  "layers": choice.layers, "layer_source": choice.source,
                  "edits": [edit_record(lm, layer, evaluated[0][concepts[0]][0], role) for layer in choice.layers],
                  "rows_edited": edited,
                  "positive_vector": "held-out mean of the prompt's own concept" + suffix,
                  "negative_vector": f"held-out mean of {NULL}" + suffix,
                  "means": {"source": "held-out examples (disjoint from the evaluated ones)",
                            "n_per_concept": means_per_concept, "seed": seed, "layers_captured": captured},
                  "evaluation_seeds": seeds,
                  "format": {"separator": fmt.separator, "answer_prefix": fmt.answer_prefix, "newline": fmt.newline}}
        write_outputs(Path(out), frame, record, choice.td)
    return frame
