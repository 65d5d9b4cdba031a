"""The scaling table of a model ladder: one row per (model, family), ours beside the paper's models.

Each rung's `study/summary.json` and `rung.json` give parameters, the depth fraction of the TD peak,
TD at the peak beside its surface control and shuffled-label control, ICL accuracy, R² of accuracy vs
TD with its bootstrap interval, and (when run) the intervention effects; the paper's Gemma-2 and
Llama-3.1 models stand on the same axes from `report.paper_values`. DECISION: a rung that failed or has
not finished is listed with its status and no numbers, never dropped silently.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from conceptlens.report.paper_values import MODELS_BY_SCALE, PEAK_LAYER

COLUMNS = ["source", "model", "family", "status", "parameters", "n_layers", "shots", "td_peak_layer", "depth_fraction",
           "td_peak", "td_peak_ci_low", "td_peak_ci_high", "surface_control_td", "exceeds_surface_control",
           "td_shuffled_labels", "icl_accuracy", "r2", "r2_ci_low", "r2_ci_high", "positive_effect",
           "negative_effect", "dtype", "threads", "load_seconds", "study_seconds", "peak_memory_gib"]


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _surface(summary: dict, shots: str) -> tuple[float | None, bool | None]:
    """The answers' surface control at the largest shots, where the study wrote one."""
    control = (summary.get("surface_control") or {}).get(shots) or {}
    answers = control.get("answers") if isinstance(control, dict) else None
    if not isinstance(answers, dict) or answers.get("skipped", True):
        return None, None
    return answers.get("td"), answers.get("exceeds")


def intervention_effects(folder: Path) -> tuple[float | None, float | None]:
    """Positive and negative accuracy change (points) against the baseline, over concepts and replicates."""
    path = folder / "interventions.csv"
    if not path.exists():
        return None, None
    frame = pd.read_csv(path)
    means = frame.groupby("condition")["accuracy"].mean() * 100
    if "baseline" not in means:
        return None, None
    return tuple(float(means[c] - means["baseline"]) if c in means else None for c in ("positive", "negative"))


def rung_row(folder: Path, grid: dict, status: str) -> dict:
    """One table row of our own rung (numbers only where its study finished)."""
    row = {"source": "ours", "model": grid.get("model"), "family": grid.get("family"), "status": status}
    summary, rung = _read(folder / "study" / "summary.json"), _read(folder / "rung.json")
    if summary is None or rung is None:
        return row
    shots = str(max(int(s) for s in summary["per_shots"]))
    per_shots, fit = summary["per_shots"][shots], summary["fits"][shots]
    control_td, exceeds = _surface(summary, shots)
    positive, negative = intervention_effects(folder / "interventions")
    return {**row, "parameters": rung["parameters"], "n_layers": summary["n_layers"], "shots": int(shots),
            "td_peak_layer": summary["best_layer"], "depth_fraction": summary["best_layer_fraction"],
            "td_peak": per_shots["td_best_layer"], "td_peak_ci_low": per_shots["td_best_layer_ci95"][0],
            "td_peak_ci_high": per_shots["td_best_layer_ci95"][1], "surface_control_td": control_td,
            "exceeds_surface_control": exceeds, "td_shuffled_labels": summary.get("td_shuffled_labels"),
            "icl_accuracy": per_shots["accuracy_mean"], "r2": fit["r2"],
            "r2_ci_low": (fit.get("r2_ci95") or [None, None])[0], "r2_ci_high": (fit.get("r2_ci95") or [None, None])[1],
            "positive_effect": positive, "negative_effect": negative, "dtype": rung["dtype"], "threads": rung.get("threads"),
            "load_seconds": rung["load_seconds"], "study_seconds": rung["study_seconds"],
            "peak_memory_gib": rung["peak_memory_gib"]}


def paper_rows(families: list[str]) -> list[dict]:
    """The paper's models on the same axes: parameters, R² per family, the peak depth where it gives one."""
    rows = []
    for model, (parameters, r2) in MODELS_BY_SCALE.items():
        for family in families:
            if family not in r2:
                continue
            peak = PEAK_LAYER.get(family) if model == "Llama-3.1 8B" else None
            rows.append({"source": "paper", "model": model, "family": family, "status": "published",
                         "parameters": parameters, "n_layers": peak[1] if peak else None,
                         "td_peak_layer": peak[0] if peak else None,
                         "depth_fraction": peak[0] / peak[1] if peak else None, "r2": r2[family]})
    return rows


def ladder_table(out: Path, cells: list[dict], statuses: dict[str, str]) -> pd.DataFrame:
    """Our rungs (in ladder order) then the paper's models, one row per (model, family)."""
    rows = [rung_row(out / cell["id"], cell["grid"], statuses.get(cell["id"], "pending")) for cell in cells]
    families = list(dict.fromkeys(cell["grid"]["family"] for cell in cells))
    frame = pd.DataFrame(rows + paper_rows(families))
    for column in COLUMNS:
        if column not in frame:
            frame[column] = np.nan
    return frame[COLUMNS]
