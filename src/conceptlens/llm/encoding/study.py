"""The pretrained-LM encoding study (paper section 4): TD per layer x shots, ICL accuracy, their link.

For each number of shots, N seeded prompts per concept go through the model once: greedy
decoding scores the answer (exact match) while every hidden-state layer is read at the query
separator. Then: TD per layer, shots and concept; the best layer (the paper's way, max mean TD
at the largest shots, and held out); a linear fit of accuracy against TD across concepts with a
bootstrap interval; pairwise TD and a UMAP of the best layer. Each shots value is a stage saved
with a checksum, so a rerun skips finished stages. DECISION: Null is left out of the
accuracy-vs-TD fit (its "accuracy" is matching random outputs), but kept in TD and the figures.
The prompt format is fitted to the tokenizer first (`prompts.fit_format_to_tokenizer`: a
whitespace-only first answer token moves into the separator), and summary.json records the format
used. With fewer than 2(k + 1) prompts per concept only the held-out layer choice is skipped (noted).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from conceptlens.decodability import (bootstrap_ci, heldout_layer_choice, pairwise_decodability, shuffled_control,
                                      task_decodability)
from conceptlens.errors import ConceptLensError
from conceptlens.llm.encoding.controls import control_columns, study_controls
from conceptlens.llm.encoding.stages import Stage, run_stage, stage_path  # noqa: F401  (stage_path re-exported)
from conceptlens.models.loader import LoadedModel
from conceptlens.prompts import PromptFormat, fit_format_to_tokenizer, sample_prompts
from conceptlens.storage import write_json, write_table
from conceptlens.tasks.family import NULL, TaskFamily


def check_settings(family: TaskFamily, shots: list[int], prompts_per_concept: int, k: int = 10) -> None:
    """Raise ConceptLensError for settings no study can run with (before any model is loaded)."""
    if not shots:
        raise ConceptLensError("no shots given.", "pass e.g. --shots 1,4,10.")
    if len(set(shots)) != len(shots) or min(shots) < 0:
        raise ConceptLensError(f"shots {shots} must be distinct non-negative integers.", "pass e.g. --shots 1,4,10.")
    if len(family.concepts) < 2:
        raise ConceptLensError(f"family '{family.name}' has {len(family.concepts)} concept(s); TD needs at least two.",
                               "add concepts (or keep Null on).")
    if prompts_per_concept < k + 1:  # fewer than 2(k + 1): only the held-out layer choice is skipped
        raise ConceptLensError(f"{prompts_per_concept} prompts per concept are too few for k = {k}: TD's leave-one-out "
                               f"vote needs k + 1 = {k + 1} prompts of every concept.",
                               f"use --prompts-per-concept {max(2 * (k + 1), 100)} (or at least {k + 1}), or a smaller --k.")
    family.validate(min_examples=max(shots) + 1)


def study_format(tokenizer, family: TaskFamily, fmt: PromptFormat | None = None,
                 fit: bool = True) -> tuple[PromptFormat, dict]:
    """The prompt format a study uses, fitted to the tokenizer when `fit`, and what summary.json records
    of it (`separator`, `answer_prefix`, `newline`, `fitted_to_tokenizer`: the note of the fit)."""
    fmt = fmt or PromptFormat()
    note = {"changed": False, "reason": "fit_format is off: the format is used as given."}
    if fit:
        fmt, note = fit_format_to_tokenizer(fmt, tokenizer, [e for ex in family.concepts.values() for e in ex])
    return fmt, {"separator": fmt.separator, "answer_prefix": fmt.answer_prefix, "newline": fmt.newline,
                 "fitted_to_tokenizer": note}


def plan_study(lm: LoadedModel, family: TaskFamily, shots: list[int], prompts_per_concept: int, seed: int,
               state_concept: bool = False, k: int = 10, fmt: PromptFormat = PromptFormat()) -> list[Stage]:
    """Check every setting and sample every prompt; raises ConceptLensError before anything is written."""
    check_settings(family, shots, prompts_per_concept, k)
    stages = []
    for n_shots in sorted(shots):
        prompts, labels = [], []
        for concept in family.concept_names:
            prompts += sample_prompts(family, concept, prompts_per_concept, n_shots, seed, fmt=fmt,
                                      state_concept=state_concept)
            labels += [concept] * prompts_per_concept
        stages.append(Stage(n_shots, prompts, labels))
    limit = getattr(lm.model.config, "max_position_embeddings", None)
    longest = max(stages[-1].prompts, key=lambda p: len(p.text))
    n_tokens = len(lm.tokenizer(longest.text)["input_ids"])
    if limit and n_tokens + 8 > limit:
        raise ConceptLensError(f"a {stages[-1].shots}-shot prompt has {n_tokens} tokens; the model's context is {limit}.",
                               "use fewer shots.")
    return stages


def fit_accuracy_vs_td(td: np.ndarray, accuracy: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """Least-squares line accuracy = slope * TD + intercept across concepts; R² with a bootstrap
    95% interval over concepts (resamples where TD or accuracy is constant are skipped)."""
    def r2(x, y):
        if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
            return float("nan")
        return float(np.corrcoef(x, y)[0, 1] ** 2)

    out = {"n_concepts": int(len(td)), "r2": r2(td, accuracy), "slope": float("nan"), "intercept": float("nan"),
           "r2_ci95": [float("nan"), float("nan")]}
    if len(td) >= 2 and np.ptp(td) > 0:
        out["slope"], out["intercept"] = (float(v) for v in np.polyfit(td, accuracy, 1))
    rng = np.random.default_rng(seed)
    samples = [r2(td[idx], accuracy[idx]) for idx in rng.integers(0, len(td), size=(n_boot, len(td)))]
    samples = np.array([s for s in samples if np.isfinite(s)])
    if len(samples) >= n_boot // 2:
        out["r2_ci95"] = [float(v) for v in np.percentile(samples, [2.5, 97.5])]
    return out


def analyse(stages: list[Stage], model: str, family_name: str, seed: int, k: int) -> dict:
    """Tables and statistics of a finished study (see the module docstring)."""
    base = {"model": model, "family": family_name}
    td_rows, acc_rows, results = [], [], {}
    for stage in stages:
        res = task_decodability(stage.activations.float(), stage.labels, k=k, layers=stage.layers)
        results[stage.shots] = res
        td_rows.append(res.per_class.assign(**base, shots=stage.shots, seed=seed))
        frame = pd.DataFrame({"concept": stage.labels, "correct": stage.correct})
        acc = frame.groupby("concept", sort=False)["correct"].agg(accuracy="mean", n="size").reset_index()
        acc_rows.append(acc.assign(**base, shots=stage.shots, seed=seed))
    decodability = pd.concat(td_rows)[["model", "family", "shots", "layer", "concept", "td", "seed"]]
    accuracy = pd.concat(acc_rows)[["model", "family", "shots", "concept", "accuracy", "n", "seed"]]
    last = stages[-1]
    best = results[last.shots].best_layer
    best_index = last.layers.index(best)
    acts_last = last.activations.float()
    heldout = heldout_layer_choice(acts_last, last.labels, k=k, seed=seed, layers=last.layers)
    fits, per_shots = {}, {}
    for stage in stages:
        res = results[stage.shots]
        li = stage.layers.index(best)
        td_concept = dict(zip(res.concepts, res.per_class_matrix[li]))
        acc = accuracy[accuracy.shots == stage.shots].set_index("concept")["accuracy"]
        fit_concepts = [c for c in res.concepts if c != NULL]
        fits[stage.shots] = fit_accuracy_vs_td(np.array([td_concept[c] for c in fit_concepts]),
                                               np.array([acc[c] for c in fit_concepts]), seed=seed)
        ci = bootstrap_ci(res, seed=seed)[li]
        per_shots[stage.shots] = {"td_best_layer": float(res.mean[li]), "td_best_layer_ci95": [float(v) for v in ci],
                                  "td_peak": float(res.mean.max()), "td_peak_layer": res.best_layer,
                                  "accuracy_mean": float(acc[fit_concepts].mean()),
                                  "accuracy_null": float(acc[NULL]) if NULL in acc else None,
                                  "generation_seconds": stage.seconds, "resumed": stage.resumed}
    pairwise = pairwise_decodability(acts_last[best_index], last.labels, k=k)
    pairwise_long = (pairwise.rename_axis("concept_a").reset_index()
                     .melt(id_vars="concept_a", var_name="concept_b", value_name="td")
                     .assign(**base, shots=last.shots, layer=best, seed=seed))
    pairwise_long = pairwise_long[["model", "family", "shots", "layer", "concept_a", "concept_b", "td", "seed"]]
    shuffled = float(shuffled_control(acts_last[best_index], last.labels, k=k, seed=seed)[0])
    n_layers = len(last.layers) - 1
    summary = {"model": model, "family": family_name, "best_layer": best, "best_layer_fraction": best / n_layers,
               "best_layer_heldout": heldout["best_layer_heldout"], "td_heldout": heldout["td_heldout"],
               "td_at_choice_split": heldout["td_at_choice_split"],
               "heldout_layer_choice": {"skipped": heldout["skipped"], "note": heldout["note"]},
               "r2": fits[last.shots]["r2"],
               "r2_ci95": fits[last.shots]["r2_ci95"], "n_layers": n_layers, "chance": results[last.shots].chance,
               "td_shuffled_labels": shuffled, "concepts": results[last.shots].concepts,
               "coincident_layers": [int(layer) for layer, flat in zip(results[last.shots].layers,
                                                                       results[last.shots].degenerate) if flat],
               "mean_td_best_layer": {str(s): v["td_best_layer"] for s, v in per_shots.items()},
               "per_shots": {str(s): v for s, v in per_shots.items()}, "fits": {str(s): v for s, v in fits.items()}}
    return {"summary": summary, "decodability": decodability, "accuracy": accuracy, "pairwise": pairwise,
            "pairwise_long": pairwise_long, "results": results}


def umap_embedding(points: np.ndarray, seed: int) -> np.ndarray:
    """2-D UMAP (n_neighbors 15, min_dist 0.1, as the paper) of `[N, d]` points."""
    import warnings

    import umap

    threads = torch.get_num_threads()  # numba's first parallel call resets OpenMP's (and so torch's) thread count
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reducer = umap.UMAP(n_neighbors=min(15, len(points) - 1), min_dist=0.1, random_state=seed)
            return reducer.fit_transform(points)
    finally:
        torch.set_num_threads(threads)


def run_study(lm: LoadedModel, family_name: str, family: TaskFamily, shots: list[int], prompts_per_concept: int,
              seed: int, out: Path, state_concept: bool = False, k: int = 10, progress=None,
              batch_size: int = 16, settings: dict | None = None, fmt: PromptFormat | None = None,
              fit_format: bool = True) -> dict:
    """Run (or resume) the whole study into `out`; returns the summary dict (also `summary.json`).

    `fmt` (default `PromptFormat()`) is fitted to the tokenizer first unless `fit_format` is False."""
    from conceptlens.llm.encoding import figures

    started = time.perf_counter()
    check_settings(family, shots, prompts_per_concept, k)  # before the format fit reads the family
    fmt, format_record = study_format(lm.tokenizer, family, fmt, fit_format)
    stages = plan_study(lm, family, shots, prompts_per_concept, seed, state_concept, k, fmt=fmt)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stage in stages:
        run_stage(lm, family_name, stage, out, batch_size=batch_size, progress=progress)
    analysis_start = time.perf_counter()
    result = analyse(stages, lm.name, family_name, seed, k)
    controls, result["summary"]["surface_control"] = study_controls(lm, stages, result["results"],
                                                                     result["summary"]["best_layer"], k, seed)
    write_table(out / "surface_control.csv", controls.assign(model=lm.name, family=family_name))
    write_table(out / "decodability.csv", control_columns(result["decodability"], controls))
    write_table(out / "accuracy.csv", result["accuracy"])
    write_table(out / "pairwise.csv", result["pairwise_long"])
    generations = pd.concat([pd.DataFrame({"model": lm.name, "family": family_name, "shots": s.shots,
                                           "concept": s.labels, "answer": [p.answer for p in s.prompts],
                                           "completion": s.completions, "correct": s.correct}) for s in stages])
    write_table(out / "generations.csv", generations)
    analysis_seconds = time.perf_counter() - analysis_start
    umap_start = time.perf_counter()
    last = stages[-1]
    best_index = last.layers.index(result["summary"]["best_layer"])
    embedding = umap_embedding(last.activations[best_index].float().numpy(), seed)
    umap_frame = pd.DataFrame({"concept": last.labels, "x": embedding[:, 0], "y": embedding[:, 1]})
    write_table(out / "umap.csv", umap_frame)
    umap_seconds = time.perf_counter() - umap_start
    figures_start = time.perf_counter()
    figures.draw_study(out, result, umap_frame)
    summary = result["summary"]
    summary["format"] = format_record
    summary["timings"] = {"generation_seconds": {str(s.shots): s.seconds for s in stages},
                          "generation_cpu_seconds": {str(s.shots): s.cpu_seconds for s in stages},
                          "analysis_seconds": analysis_seconds, "umap_seconds": umap_seconds, "figures_seconds": time.perf_counter() - figures_start,
                          "total_seconds_this_run": time.perf_counter() - started}
    summary["settings"] = {"shots": sorted(shots), "prompts_per_concept": prompts_per_concept, "seed": seed, "k": k,
                           "state_concept": state_concept, "batch_size": batch_size, "role": "query_separator",
                           "dtype": str(lm.model.dtype).replace("torch.", ""), **(settings or {})}
    summary = finite_or_none(summary)
    write_json(out / "summary.json", summary)
    return summary


def finite_or_none(obj):
    """NaN and Inf -> None, recursively, so summary.json is strict JSON."""
    if isinstance(obj, dict):
        return {key: finite_or_none(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(value) for value in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj
