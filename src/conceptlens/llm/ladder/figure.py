"""The scaling figure of a model ladder: four panels against parameters (log scale), ours and the paper's.

R² of accuracy vs TD (with its bootstrap interval), TD at the peak beside the answers' surface control,
ICL accuracy, and the depth fraction of the TD peak; one colour per family, filled markers for our
models, open markers for the paper's (which publishes R² for every model, and the peak layer and the
pretrained 4-shot TD and accuracy only for Llama-3.1 8B).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from matplotlib.ticker import NullFormatter

from conceptlens.figures import plt, save_png
from conceptlens.report.paper_values import FINETUNING

PANELS = [("r2", "R² of accuracy vs TD"), ("td_peak", "TD at the peak layer"), ("icl_accuracy", "ICL accuracy (exact match)"),
          ("depth_fraction", "TD peak, fraction of depth")]


def _paper_llama(column: str, family: str) -> float | None:
    """The paper's pretrained Llama-3.1 8B value at 4 shots (its finetuning table): TD or accuracy."""
    pretrained = FINETUNING["pretrained"].get(family)
    if not pretrained:
        return None
    return pretrained[0] if column == "td_peak" else pretrained[2] / 100


def draw_ladder(table: pd.DataFrame, path: Path) -> Path:
    """Write the four-panel scaling figure of `table` (from `ladder_table`) to `path`."""
    return save_png(ladder_figure(table), path)


def ladder_figure(table: pd.DataFrame):
    """The four-panel scaling figure of `table` (from `ladder_table` or ladder.csv), as an open figure."""
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    colours = {family: plt.get_cmap("tab10")(i) for i, family in enumerate(dict.fromkeys(table.family))}
    ours, paper = table[table.source == "ours"].dropna(subset=["parameters"]), table[table.source == "paper"]
    for ax, (column, title) in zip(axes, PANELS):
        for family, colour in colours.items():
            mine = ours[ours.family == family].sort_values("parameters")
            if len(mine) and mine[column].notna().any():
                ax.plot(mine.parameters, mine[column].astype(float), "o-", color=colour, label=f"{family} (ours)")
            if column == "r2" and len(mine):
                low, high = mine.r2_ci_low.astype(float), mine.r2_ci_high.astype(float)
                ax.vlines(mine.parameters, low, high, color=colour, alpha=0.5)
            if column == "td_peak" and len(mine) and mine.surface_control_td.notna().any():
                ax.plot(mine.parameters, mine.surface_control_td.astype(float), "s--", color=colour, alpha=0.6,
                        mfc="none", label=f"{family} surface control")
            theirs = paper[paper.family == family]
            values = theirs[column] if column in ("r2", "depth_fraction") else None
            if column in ("td_peak", "icl_accuracy") and _paper_llama(column, family) is not None:
                theirs, values = theirs[theirs.model == "Llama-3.1 8B"], pd.Series([_paper_llama(column, family)])
            if values is not None and len(theirs) and pd.Series(values).notna().any():
                ax.scatter(theirs.parameters, np.asarray(values, dtype=float), marker="D", facecolors="none",
                           edgecolors=colour, label=f"{family} (paper)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("parameters")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    for ax in axes[:2]:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle("Concept encoding across scale: our ladder (filled) beside the paper's models (open)")
    fig.tight_layout()
    return fig
