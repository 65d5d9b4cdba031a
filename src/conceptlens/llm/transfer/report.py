"""Where decodability and use part: summary numbers and the figure of a task-vector transfer run.

Per variant: the best transfer layer, transfer at the best TD layer, recovery (transfer − zero-shot)
/ (ICL − zero-shot) per concept, Pearson correlations of TD and transfer (bootstrap 95% intervals),
and the layers where the two part, by the run's own intervals (`parting.RULE`: TD's Wilson interval
above chance = decodable, transfer's above the zero-shot interval = usable).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from conceptlens.llm.transfer.parting import RULE, parting
from conceptlens.storage import write_json, write_table

THRESHOLDS = {"interval": "Wilson 95% of the pooled counts", "decodable": "TD interval above chance",
              "usable": "transfer interval above the zero-shot interval"}
BOOTSTRAP = 1000


def pearson_with_interval(x, y, n_boot: int = BOOTSTRAP, seed: int = 0) -> dict:
    """Pearson r of paired values with a percentile bootstrap 95% interval over the pairs (None if undefined)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    out = {"r": None, "low": None, "high": None, "n": int(len(x))}
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return {**out, "note": "undefined: fewer than 3 pairs or a constant variable"}
    rng, draws = np.random.default_rng(seed), []
    for _ in range(n_boot):
        index = rng.integers(0, len(x), len(x))
        if np.std(x[index]) > 0 and np.std(y[index]) > 0:
            draws.append(np.corrcoef(x[index], y[index])[0, 1])
    low, high = (np.percentile(draws, [2.5, 97.5]) if draws else (np.nan, np.nan))
    return {**out, "r": round(float(np.corrcoef(x, y)[0, 1]), 4), "low": round(float(low), 4),
            "high": round(float(high), 4)}


def recovery(transfer: pd.Series, zero: pd.Series, icl: pd.Series) -> tuple[dict, list[str]]:
    """Per concept (transfer − zero-shot) / (ICL − zero-shot); None, with a note, where ICL == zero-shot."""
    values, notes = {}, []
    for concept in transfer.index:
        gap = icl[concept] - zero[concept]
        if abs(gap) < 1e-12:
            values[concept] = None
            notes.append(f"{concept}: ICL accuracy equals zero-shot ({icl[concept]:.2f}); recovery undefined")
        else:
            values[concept] = round(float((transfer[concept] - zero[concept]) / gap), 4)
    return values, notes


def _variant(frame: pd.DataFrame, td: pd.DataFrame, td_grid: pd.DataFrame, variant: str, zero: pd.Series,
             icl: pd.Series) -> dict:
    """The summary of one variant (per_query or mean); `td` is td.csv's rows, `td_grid` TD as [layer, concept]."""
    patched = frame[(frame.condition == "task_vector") & (frame.variant == variant)]
    grid = patched.pivot_table(index="layer", columns="concept", values="accuracy")[td_grid.columns]
    grid.index = grid.index.astype(int)
    by_layer, td_by_layer = grid.mean(axis=1), td_grid.mean(axis=1)
    best, best_td = int(by_layer.idxmax()), int(td_by_layer.idxmax())
    parts = parting(frame, td, variant)
    at_best, notes = recovery(grid.loc[best], zero, icl)
    at_best_td, _ = recovery(grid.loc[best_td], zero, icl)
    defined = [v for v in at_best.values() if v is not None]
    cells = grid.stack().rename("transfer").to_frame().join(td_grid.stack().rename("td"))
    return {"best_transfer_layer": best, "transfer_at_best_transfer_layer": round(float(by_layer[best]), 4),
            "transfer_at_best_td_layer": round(float(by_layer[best_td]), 4),
            "recovery_at_best_transfer_layer": at_best, "recovery_at_best_td_layer": at_best_td,
            "mean_recovery_at_best_transfer_layer": round(float(np.mean(defined)), 4) if defined else None,
            "recovery_notes": notes,
            "correlation": {"across_layers": pearson_with_interval(td_by_layer.values, by_layer.values),
                            "across_concepts_at_best_td_layer": pearson_with_interval(td_grid.loc[best_td].values,
                                                                                      grid.loc[best_td].values),
                            "across_layer_concept_cells": pearson_with_interval(cells.td.values, cells.transfer.values)},
            "decodable_not_usable": parts["decodable_not_usable"], "usable_not_decodable": parts["usable_not_decodable"],
            "accuracy_by_layer": {int(l): round(float(v), 4) for l, v in by_layer.items()}}


def summarize(frame: pd.DataFrame, td: pd.DataFrame) -> dict:
    """summary.json's results: baselines, TD peak and, per variant, transfer, recovery and correlations."""
    td_grid = td.pivot_table(index="layer", columns="concept", values="td")
    concepts = list(dict.fromkeys(td.concept))
    td_grid = td_grid[concepts]
    zero = frame[frame.condition == "zero_shot"].set_index("concept").accuracy[concepts]
    icl = frame[frame.condition == "icl"].set_index("concept").accuracy[concepts]
    td_by_layer = td_grid.mean(axis=1)
    variants = {v: _variant(frame, td, td_grid, v, zero, icl) for v in sorted(set(frame.variant) - {"none"})}
    main = variants.get("per_query") or next(iter(variants.values()))
    return {"best_transfer_layer": main["best_transfer_layer"], "best_td_layer": int(td_by_layer.idxmax()),
            "transfer_at_best_td_layer": main["transfer_at_best_td_layer"],
            "td_peak": round(float(td_by_layer.max()), 4), "td_chance": round(1.0 / len(concepts), 4),
            "zero_shot": round(float(zero.mean()), 4), "icl": round(float(icl.mean()), 4),
            "zero_shot_by_concept": zero.round(4).to_dict(), "icl_by_concept": icl.round(4).to_dict(),
            "td_by_layer": {int(l): round(float(v), 4) for l, v in td_by_layer.items()},
            "variants": variants, "thresholds": THRESHOLDS,
            "thresholds_meaning": RULE}


def _panel(ax, layers, td, curves: dict, zero: float, icl: float, chance: float, title: str, legend: bool) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.plot(layers, td, color="black", linewidth=1.8, label="TD (task vectors)")
    for (variant, values), colour in zip(curves.items(), ("#2b8cbe", "#f16913")):
        ax.plot(layers, values, color=colour, linewidth=1.4, marker=".", label=f"transfer ({variant})")
    ax.axhline(zero, color="grey", linestyle="--", linewidth=1, label="zero-shot")
    ax.axhline(icl, color="#31a354", linestyle="--", linewidth=1, label="ICL (k-shot)")
    ax.axhline(chance, color="black", linestyle=":", linewidth=0.8, label="TD chance")
    ax.set_ylim(-0.02, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=9)
    if legend:
        ax.legend(fontsize=7, loc="best")


PARTING_COLOURS = {"decodable_not_usable": ("#e34a33", "decodable, not usable"),
                   "usable_not_decodable": ("#31a354", "usable, not decodable")}


def shade_parting(ax, variant: dict) -> None:
    """Shade the layers of `variant["decodable_not_usable"]` red and `["usable_not_decodable"]` green, one legend
    entry each (named "none" when a list is empty, so the legend always says what the colours mean)."""
    for key, (colour, label) in PARTING_COLOURS.items():
        layers = variant.get(key) or []
        for i, layer in enumerate(layers):
            ax.axvspan(layer - 0.5, layer + 0.5, color=colour, alpha=0.15, linewidth=0,
                       label=f"{label} ({len(layers)} layer{'s' if len(layers) > 1 else ''})" if i == 0 else None)
        if not layers:
            ax.axvspan(0, 0, color=colour, alpha=0.15, linewidth=0, label=f"{label}: none")


def plot(frame: pd.DataFrame, td: pd.DataFrame, summary: dict, title: str):
    """Averaged panel (parting layers shaded) above one small panel per concept; TD and accuracy share [0, 1]."""
    from conceptlens.figures import plt

    concepts = list(dict.fromkeys(td.concept))
    columns = min(4, len(concepts))
    rows = int(np.ceil(len(concepts) / columns))
    fig = plt.figure(figsize=(3.2 * columns + 1, 4.2 + 2.6 * rows))
    grid = fig.add_gridspec(1 + rows, columns, height_ratios=[1.6] + [1] * rows)
    patched = frame[frame.condition == "task_vector"]
    variants = sorted(set(patched.variant))
    main = fig.add_subplot(grid[0, :])
    layers = sorted(int(l) for l in td.layer.unique())
    curves = {v: [summary["variants"][v]["accuracy_by_layer"][l] for l in layers] for v in variants}
    _panel(main, layers, [summary["td_by_layer"][l] for l in layers], curves, summary["zero_shot"], summary["icl"],
           summary["td_chance"], "mean over concepts; shaded: the layers where decodability and use part", False)
    shade_parting(main, summary["variants"]["per_query" if "per_query" in summary["variants"] else variants[0]])
    main.legend(fontsize=7, loc="best")
    main.set_xlabel("HF hidden-state layer (0 = embeddings)")
    main.set_ylabel("TD / exact-match accuracy")
    for i, concept in enumerate(concepts):
        ax = fig.add_subplot(grid[1 + i // columns, i % columns])
        mine = patched[patched.concept == concept]
        concept_curves = {v: mine[mine.variant == v].set_index("layer").accuracy.reindex(layers).values for v in variants}
        concept_td = td[td.concept == concept].set_index("layer").td.reindex(layers).values
        _panel(ax, layers, concept_td, concept_curves, summary["zero_shot_by_concept"][concept],
               summary["icl_by_concept"][concept], summary["td_chance"], concept, False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_outputs(out: Path, frame: pd.DataFrame, td: pd.DataFrame, summary: dict) -> None:
    """transfer.csv/.parquet, td.csv/.parquet, transfer.png, then summary.json (written last)."""
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / "transfer.csv", frame)
    write_table(out / "td.csv", td[["layer", "concept", "td"]])
    save_figure(out, frame, td, summary)
    write_json(out / "summary.json", summary)


def save_figure(out: Path, frame: pd.DataFrame, td: pd.DataFrame, summary: dict) -> None:
    """transfer.png (atomic write)."""
    from conceptlens.figures import save_png

    fig = plot(frame, td, summary, f"{summary['model']} · {summary['family']} · {summary['shots']}-shot task vectors "
                                   f"({summary['prompts_per_concept']} test prompts per concept)")
    save_png(fig, out / "transfer.png", dpi=110, tight=False)


def load_summary(out: Path) -> dict:
    """A run folder's summary.json with its per-layer keys back to integers (JSON made them strings)."""
    import json

    summary = json.loads((Path(out) / "summary.json").read_text(encoding="utf-8"))
    summary["td_by_layer"] = {int(k): v for k, v in summary["td_by_layer"].items()}
    for variant in summary["variants"].values():
        variant["accuracy_by_layer"] = {int(k): v for k, v in variant["accuracy_by_layer"].items()}
    return summary


def with_current_parting(frame: pd.DataFrame, td: pd.DataFrame, summary: dict) -> dict:
    """`summary` with each variant's parting layers recomputed under `parting.RULE` (older runs used other rules)."""
    variants = {}
    for name, variant in summary["variants"].items():
        parts = parting(frame, td, name)
        variants[name] = {**variant, "decodable_not_usable": parts["decodable_not_usable"],
                          "usable_not_decodable": parts["usable_not_decodable"]}
    return {**summary, "variants": variants, "thresholds": THRESHOLDS, "thresholds_meaning": RULE}


def redraw(out: Path) -> None:
    """Draw transfer.png again from a finished run folder's tables and summary.json (under the current rule)."""
    out = Path(out)
    frame, td = pd.read_csv(out / "transfer.csv"), pd.read_csv(out / "td.csv")
    save_figure(out, frame, td, with_current_parting(frame, td, load_summary(out)))
