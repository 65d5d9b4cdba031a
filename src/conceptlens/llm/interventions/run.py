"""The paper's intervention experiment: does the concept representation drive ICL accuracy?

For each replicate (fresh demonstrations) and concept, k-shot prompts are decoded greedily under
several edits of the hidden state at the query token of layer L: none (baseline), the held-out mean
of the correct concept (positive), of Null (negative), a random vector of the positive's norm
(random), and another concept T's mean scored against T's answer (cross, a source x target matrix).
By default (`add`, the paper's Appendix C) the mean is added; the layers sweep the rise of TD.
DECISION: the means are computed once per run from held-out prompts (see `conditions.py`, `sweep.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from conceptlens.activations.capture import hidden_state_point
from conceptlens.decodability import task_decodability
from conceptlens.errors import ConceptLensError
from conceptlens.hooks.nethook import parse_point
from conceptlens.llm.interventions.conditions import (MODES, cross_shifts, cross_target, edit_vectors,
                                                      layer_conditions, random_vectors, target_answers)
from conceptlens.llm.interventions.definitions import heldout_prompts, means_by_concept, query_activations, query_positions
from conceptlens.llm.decode import edited_answers
from conceptlens.llm.interventions.report import run_record, write_outputs
from conceptlens.llm.interventions.sweep import MAX_SWEEP_LAYERS, control_by_layer, sweep_layers
from conceptlens.models.loader import LoadedModel
from conceptlens.prompts import Prompt, PromptFormat, sample_prompts
from conceptlens.tasks.family import NULL, TaskFamily

CONDITIONS = ("baseline", "positive", "negative", "random", "cross")
LAYER_CHOICES = ("sweep", "best")
CROSS_AT = ("peak", "all")  # the cross matrix at the TD peak only (C - 1 conditions per layer), or every layer


@dataclass
class LayerChoice:
    layers: list[int]
    source: str  # "given", "from_run:<path>", "td_on_heldout_means_prompts" or "td_rise_over_control"
    td: pd.DataFrame | None = None  # per-layer per-concept TD on the means prompts (layer, concept, td)
    control: pd.DataFrame | None = None  # per layer: td, control_td, exceeds (the surface control)
    note: str = ""
    peak: int | None = None  # the TD peak among the captured layers (None without TD)


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
             from_run: Path | None, out: Path | None, cross_at: str = "peak") -> None:
    """Every bad-input check, before any model call or file write."""
    if mode not in MODES:
        raise ConceptLensError(f"unknown intervention mode '{mode}'.", f"use one of {', '.join(MODES)}.")
    if cross_at not in CROSS_AT:
        raise ConceptLensError(f"unknown cross_at '{cross_at}'.", f"use one of {', '.join(CROSS_AT)}.")
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
        if layers not in LAYER_CHOICES:
            raise ConceptLensError(f"layer '{layers}' is not an integer list, 'sweep' or 'best'.",
                                   "use e.g. layers=[14], layers='sweep' (the TD rise) or layers='best' (the TD peak).")
        if layers == "best" and from_run is not None:
            read_best_layer(from_run, lm)
        elif means_per_concept < 2:
            raise ConceptLensError(f"choosing layers by TD ('{layers}') needs at least 2 held-out prompts per concept.",
                                   "raise prompts_per_concept, or give the layers explicitly.")
    else:
        if not layers:
            raise ConceptLensError("no layer to intervene at.", "give layers=[L] or [L1, L2, ...], 'sweep' or 'best'.")
        for layer in layers:
            hidden_state_point(layer, lm.n_layers)
    if from_run is not None:  # a run folder given is checked whatever the layers (a typo is not silently ignored)
        read_best_layer(from_run, lm)
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ConceptLensError(f"out {out} exists and is not a folder.", "choose a folder path for the run.")


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
    return edit_vectors(means, layer_index, mode)


def choose_layers(lm: LoadedModel, layers: Sequence[int] | str, from_run: Path | None, acts: torch.Tensor,
                  labels: list[str], captured: list[int], prompts: Sequence[Prompt] | None = None,
                  seed: int = 0, max_layers: int = MAX_SWEEP_LAYERS) -> LayerChoice:
    """The layers to edit, the per-concept TD of the held-out prompts and (with `prompts`) the surface control."""
    td = None
    if len(captured) and pd.Series(labels).value_counts().min() >= 2:
        k = min(10, int(pd.Series(labels).value_counts().min()) - 1)
        td = task_decodability(acts, labels, k=k, layers=captured, seed=seed)
    per_class = td.per_class if td else None
    peak = td.best_layer if td else None
    control = control_by_layer(lm, td, prompts, labels, seed=seed) if td and prompts is not None else None
    if not isinstance(layers, str):
        return LayerChoice(list(layers), "given", per_class, control, "layers given", peak)
    if layers == "best":
        if from_run is not None:
            layer = read_best_layer(from_run, lm)
            return LayerChoice([layer], f"from_run:{from_run}", per_class, control, "best layer of the run", layer)
        return LayerChoice([td.best_layer], "td_on_heldout_means_prompts", per_class, control, "TD peak", peak)
    table = control if control is not None else td.per_layer[["layer", "td"]]
    chosen, note = sweep_layers(table, max_layers)
    return LayerChoice(chosen, "td_rise_over_control", per_class, control, note, peak)


def _cross_rows(results, baseline, prompts, labels, concepts, answers, layer) -> list[dict]:
    """Per source x target at one layer: accuracy against the target's answer, edited and baseline."""
    rows = []
    for shift in cross_shifts(concepts):
        done = results[("cross", layer, shift)].completions
        for source in concepts:
            target = cross_target(concepts, source, shift)
            mine = [i for i, label in enumerate(labels) if label == source]
            unknown = [i for i in mine if answers[target][i] is None]
            same = [i for i in mine if answers[target][i] is not None and answers[target][i].strip() == prompts[i].answer.strip()]
            scored = [i for i in mine if i not in unknown and i not in same]

            def follows(completions):
                return float(np.mean([completions[i] == answers[target][i].strip() for i in scored])) if scored else np.nan

            rows.append({"source": source, "target": target, "layer": layer, "accuracy_vs_target": follows(done),
                         "baseline_vs_target": follows(baseline.completions),
                         "accuracy_vs_source": float(np.mean([done[i] == prompts[i].answer.strip() for i in mine])),
                         "n": len(scored), "n_unknown_target": len(unknown), "n_same_answer": len(same)})
    return rows


def replicate_rows(lm: LoadedModel, by_concept: dict[str, list[Prompt]], means: dict[str, torch.Tensor],
                   captured: list[int], layers: list[int], *, mode: str, role: str, batch_size: int,
                   progress, task, family: TaskFamily | None = None, seed: int = 0,
                   cross_layers: Sequence[int] | None = None) -> tuple[list[dict], dict[str, int], list[dict]]:
    """One replicate: every prompt decoded once per condition; rows per layer x condition x concept, and cross rows
    (at `cross_layers`, default every layer)."""
    cross_layers = list(layers) if cross_layers is None else list(cross_layers)
    concepts = list(by_concept)
    prompts = [p for c in concepts for p in by_concept[c]]
    labels = [c for c in concepts for _ in by_concept[c]]
    conditions: dict = {("baseline", None, 0): None}
    for layer in layers:
        vectors = edit_vectors(means, captured.index(layer), mode)
        randoms = random_vectors(vectors, concepts, seed, layer)
        conditions.update(layer_conditions(vectors, randoms, labels, concepts, hidden_state_point(layer, lm.n_layers),
                                           layer, mode, cross=layer in cross_layers))
    results = edited_answers(lm, prompts, conditions, role=role, batch_size=batch_size, progress=progress, task=task)
    edited: dict[str, int] = {}
    for key, edit in conditions.items():
        for point in edit or {}:
            edited[point] = edited.get(point, 0) + results[key].touched[point].rows
    answers = {t: target_answers(family, prompts, t) if family is not None else [None] * len(prompts) for t in concepts}
    baseline = results[("baseline", None, 0)]
    rows, cross = [], []
    for layer in layers:
        point = hidden_state_point(layer, lm.n_layers)
        base = {"layer": layer, "component": parse_point(point)[0], "point": point, "position_role": role, "mode": mode}
        for condition in CONDITIONS[:-1]:
            correct = results[(condition, None, 0) if condition == "baseline" else (condition, layer, 0)].correct
            for concept in concepts:
                mine = correct[[i for i, c in enumerate(labels) if c == concept]]
                rows.append({**base, "concept": concept, "condition": condition, "target": "",
                             "accuracy": float(mine.mean()), "n": int(len(mine))})
        if layer not in cross_layers:
            continue
        layer_cross = _cross_rows(results, baseline, prompts, labels, concepts, answers, layer)
        rows += [{**base, "concept": r["source"], "condition": "cross", "target": r["target"],
                  "accuracy": r["accuracy_vs_target"], "n": r["n"]} for r in layer_cross]
        cross += layer_cross
    return rows, edited, cross


def run_interventions(lm: LoadedModel, family_name: str, family: TaskFamily, layers: Sequence[int] | str, *,
                      shots: int = 4, prompts_per_concept: int = 25, replicates: int = 5, mode: str = "add",
                      seed: int = 0, means_family: TaskFamily | None = None, means_per_concept: int | None = None,
                      from_run: Path | None = None, role: str = "query_separator", batch_size: int = 16,
                      fmt: PromptFormat = PromptFormat(), out: Path | None = None, progress=None,
                      cross_at: str = "peak", max_sweep_layers: int = MAX_SWEEP_LAYERS) -> pd.DataFrame:
    """Baseline, positive, negative, random and cross accuracy per replicate x layer x concept (tidy rows).

    `layers`: HF hidden-state indices, "sweep" (the TD rise over the surface control, on the held-out
    prompts) or "best" (from `from_run`'s summary.json, else the TD peak on the held-out prompts).
    `means_family` holds the held-out examples of the concept means; without it `family` is split in
    two halves by `seed`. Cross rows (condition "cross", `target` set) score against the target's
    answer, at the TD peak among the intervened layers (`cross_at="peak"`) or at every one ("all").
    With `out`, writes interventions.csv, _summary.csv, _cross.csv, _layers.csv, two figures and
    interventions.json, after every generation has finished.
    """
    if means_family is None:
        means_family, family = family.split(seed, test_fraction=0.5)
    means_per_concept = prompts_per_concept if means_per_concept is None else means_per_concept
    validate(lm, family, means_family, layers, shots=shots, prompts_per_concept=prompts_per_concept,
             means_per_concept=means_per_concept, replicates=replicates, mode=mode, from_run=from_run, out=out,
             cross_at=cross_at)
    concepts = [c for c in family.concept_names if c != NULL]
    seeds = [seed * 100_003 + r for r in range(replicates)]
    evaluated = [{c: sample_prompts(family, c, prompts_per_concept, shots, s, fmt) for c in concepts} for s in seeds]

    if layers == "best" and from_run is not None:
        captured = [read_best_layer(from_run, lm)]
    elif isinstance(layers, str):  # every layer is captured when the layers are chosen by TD here
        captured = list(range(lm.n_layers + 1))
    else:
        captured = list(dict.fromkeys(layers))
    mean_prompts, labels = heldout_prompts(means_family, shots, means_per_concept, seed, fmt)
    acts = query_activations(lm, mean_prompts, captured, role=role, batch_size=batch_size, progress=progress)
    choice = choose_layers(lm, layers, from_run, acts, labels, captured, prompts=mean_prompts, seed=seed,
                           max_layers=max_sweep_layers)
    means = means_by_concept(acts, labels)
    cross_layers = choice.layers if cross_at == "all" or choice.peak not in choice.layers else [choice.peak]

    task = progress.add_task("interventions", total=replicates * len(concepts) * prompts_per_concept,
                             info=f"{family_name}, layers {choice.layers}") if progress else None
    rows, edited, cross = [], {}, []
    for replicate, by_concept in enumerate(evaluated):
        part, counts, part_cross = replicate_rows(lm, by_concept, means, captured, choice.layers, mode=mode, role=role,
                                                  batch_size=batch_size, progress=progress, task=task, family=family,
                                                  seed=seed, cross_layers=cross_layers)
        tag = {"model": lm.name, "family": family_name, "shots": shots, "seed": seed, "replicate": replicate}
        rows += [{**tag, **row} for row in part]
        cross += [{**tag, **row} for row in part_cross]
        for point, count in counts.items():
            edited[point] = edited.get(point, 0) + count
    columns = ["model", "family", "layer", "component", "point", "position_role", "mode", "shots", "seed", "concept",
               "replicate", "condition", "target", "accuracy", "n"]
    frame = pd.DataFrame(rows)[columns]
    if out is not None:
        record = run_record(lm.name, family_name, mode, shots, seed, replicates, prompts_per_concept, concepts, choice,
                            [edit_record(lm, layer, evaluated[0][concepts[0]][0], role) for layer in choice.layers],
                            edited, means_per_concept, captured, seeds, fmt, from_run, cross_layers)
        write_outputs(Path(out), frame, record, choice.td, pd.DataFrame(cross), choice.control)
    return frame
