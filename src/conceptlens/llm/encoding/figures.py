"""Figures of the pretrained-LM study, drawn from its tidy tables (matplotlib, Agg backend).

`td_by_layer.png` (mean TD per layer, one line per shots, chance dashed), `td_per_concept.png`
(per-concept TD across layers at the largest shots, and at the best layer across shots),
`accuracy_vs_td.png` (one point per concept with the least-squares line and R²),
`pairwise.png` (concept x concept TD) and `umap.png` (best layer, largest shots), plus
`checkpoint_series.png` for a series of revisions. Each PNG is written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from conceptlens.figures import plt, save_png
from conceptlens.tasks.family import NULL


def save(fig, path: Path) -> None:
    save_png(fig, path, dpi=130)


def _number(value, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if value is not None and np.isfinite(value) else "n/a"


def _colors(concepts: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {c: ("0.4" if c == NULL else cmap(i % 10)) for i, c in enumerate(concepts)}


def td_by_layer(decodability: pd.DataFrame, summary: dict, path: Path) -> None:
    mean = decodability.groupby(["shots", "layer"])["td"].mean().reset_index()
    fig, ax = plt.subplots(figsize=(6, 4))
    for shots, frame in mean.groupby("shots"):
        line, = ax.plot(frame.layer, frame.td, marker="o", ms=3, label=f"{shots} shots")
        control = decodability[decodability.shots == shots].get("surface_answers_td")
        if control is not None and control.notna().any():  # one value per concept: the control has no layer
            level = control.groupby(decodability.concept).first().mean()
            ax.axhline(level, ls="--", lw=1, c=line.get_color(), label=f"{shots} shots: answers' surface control")
    ax.axhline(summary["chance"], ls=":", c="0.5", lw=1, label="chance")
    ax.axvline(summary["best_layer"], ls=":", c="k", lw=1, label=f"best layer {summary['best_layer']}")
    coincident = summary.get("coincident_layers") or []
    if coincident:
        ax.scatter(coincident, [0.01] * len(coincident), marker="x", c="r", label="points coincide (ties)")
    ax.set(xlabel="layer (hidden-state index)", ylabel="mean TD", ylim=(0, 1.02),
           title=f"{summary['model']} · {summary['family']}: concept decodability")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    save(fig, path)


def td_per_concept(decodability: pd.DataFrame, summary: dict, path: Path) -> None:
    concepts = summary["concepts"]
    colors = _colors(concepts)
    largest = decodability.shots.max()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for concept, frame in decodability[decodability.shots == largest].groupby("concept", sort=False):
        left.plot(frame.layer, frame.td, color=colors[concept], label=concept)
    left.set(xlabel="layer", ylabel="TD", ylim=(0, 1.02), title=f"per concept, {largest} shots")
    left.axhline(summary["chance"], ls="--", c="0.5", lw=1)
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    at_best = decodability[decodability.layer == summary["best_layer"]]
    for concept, frame in at_best.groupby("concept", sort=False):
        right.plot(frame.shots, frame.td, marker="o", color=colors[concept], label=concept)
    right.set(xlabel="shots", ylabel="TD", ylim=(0, 1.02), title=f"per concept at layer {summary['best_layer']}")
    right.set_xticks(sorted(decodability.shots.unique()))
    right.legend(fontsize=8, loc="best")
    save(fig, path)


def accuracy_vs_td(decodability: pd.DataFrame, accuracy: pd.DataFrame, summary: dict, path: Path) -> None:
    shots_values = sorted(accuracy.shots.unique())
    colors = _colors(summary["concepts"])
    fig, axes = plt.subplots(1, len(shots_values), figsize=(4.2 * len(shots_values), 4), squeeze=False)
    at_best = decodability[decodability.layer == summary["best_layer"]]
    for ax, shots in zip(axes[0], shots_values):
        merged = at_best[at_best.shots == shots].merge(accuracy[accuracy.shots == shots], on="concept")
        for _, row in merged.iterrows():
            ax.scatter(row.td, row.accuracy, color=colors[row.concept], marker="x" if row.concept == NULL else "o")
            ax.annotate(row.concept, (row.td, row.accuracy), fontsize=7, xytext=(3, 3), textcoords="offset points")
        fit = summary["fits"][str(shots)]
        if np.isfinite(fit["slope"]):
            xs = np.linspace(0, 1, 20)
            ax.plot(xs, fit["slope"] * xs + fit["intercept"], c="k", lw=1)
        lo, hi = fit["r2_ci95"]
        ax.set(xlim=(0, 1.02), ylim=(-0.02, 1.02), xlabel=f"TD at layer {summary['best_layer']}", ylabel="accuracy",
               title=f"{shots}-shot: R² {_number(fit['r2'])} [{_number(lo)}, {_number(hi)}]")
    fig.suptitle(f"{summary['model']} · {summary['family']} (Null, marked x, is not fitted)", fontsize=9)
    save(fig, path)


def pairwise_matrix(pairwise: pd.DataFrame, summary: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4.4))
    image = ax.imshow(pairwise.values, vmin=0.5, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(pairwise)), pairwise.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(pairwise)), pairwise.index)
    for i in range(len(pairwise)):
        for j in range(len(pairwise)):
            ax.text(j, i, f"{pairwise.values[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="w" if pairwise.values[i, j] < 0.8 else "k")
    fig.colorbar(image, ax=ax, label="pairwise TD (chance 0.5)")
    ax.set_title(f"pairwise TD, layer {summary['best_layer']}")
    save(fig, path)


def umap_scatter(frame: pd.DataFrame, summary: dict, path: Path) -> None:
    colors = _colors(summary["concepts"])
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for concept, part in frame.groupby("concept", sort=False):
        ax.scatter(part.x, part.y, s=6, color=colors[concept], label=concept)
    ax.set(xticks=[], yticks=[], title=f"UMAP, layer {summary['best_layer']}, "
                                       f"{max(int(s) for s in summary['per_shots'])} shots")
    ax.legend(fontsize=7, markerscale=2)
    save(fig, path)


def draw_study(out: Path, result: dict, umap_frame: pd.DataFrame) -> None:
    """Every figure of one study run into `out`."""
    summary = result["summary"]
    td_by_layer(result["decodability"], summary, out / "td_by_layer.png")
    td_per_concept(result["decodability"], summary, out / "td_per_concept.png")
    accuracy_vs_td(result["decodability"], result["accuracy"], summary, out / "accuracy_vs_td.png")
    pairwise_matrix(result["pairwise"], summary, out / "pairwise.png")
    umap_scatter(umap_frame, summary, out / "umap.png")


def checkpoint_series(series: pd.DataFrame, path: Path) -> None:
    """Mean TD (best layer of each revision) and mean accuracy against revision order, per shots."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    order = list(dict.fromkeys(series.revision))
    x = np.arange(len(order))
    for shots, frame in series.groupby("shots"):
        frame = frame.set_index("revision").loc[order]
        line, = ax.plot(x, frame.mean_td, marker="o", label=f"TD, {shots} shots")
        ax.plot(x, frame.accuracy, marker="s", ls="--", color=line.get_color(), label=f"accuracy, {shots} shots")
    ax.set_xticks(x, order, rotation=30, ha="right")
    ax.set(xlabel="revision (training order)", ylabel="mean TD / accuracy", ylim=(0, 1.02),
           title="concept encoding and ICL accuracy across checkpoints")
    ax.legend(fontsize=7)
    save(fig, path)
