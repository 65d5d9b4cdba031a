"""Tables and figure of an intervention run: accuracy change per concept, mean ± std over replicates.

The change of a replicate is its edited accuracy minus its own baseline (same prompts, same
demonstrations), so the spread reflects the demonstrations drawn, not prompt-to-prompt noise.
DECISION: std is the sample standard deviation (ddof 1) over replicates; NaN with one replicate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from conceptlens.storage import atomic_path, write_json, write_table


def summarize(frame: pd.DataFrame, td: pd.DataFrame | None = None) -> pd.DataFrame:
    """Tidy rows (layer, concept, replicate, condition, accuracy) -> one row per concept × layer × condition.

    Columns: concept, layer, condition (positive|negative), mean_change, std_change, baseline_accuracy,
    edited_accuracy, n_replicates, and td (TD of the concept at that layer on the held-out prompts).
    """
    keys = ["layer", "concept", "replicate"]
    base = frame[frame.condition == "baseline"][keys + ["accuracy"]].rename(columns={"accuracy": "baseline"})
    edited = frame[frame.condition != "baseline"].merge(base, on=keys, how="left")
    edited["change"] = edited["accuracy"] - edited["baseline"]
    summary = (edited.groupby(["concept", "layer", "condition"], sort=False)
               .agg(mean_change=("change", "mean"), std_change=("change", "std"),
                    baseline_accuracy=("baseline", "mean"), edited_accuracy=("accuracy", "mean"),
                    n_replicates=("replicate", "nunique"))
               .reset_index())
    summary[["mean_change", "std_change"]] = summary[["mean_change", "std_change"]].round(6) + 0.0  # no -2.8e-18, no -0.0
    if td is not None and len(td):
        summary = summary.merge(td, on=["layer", "concept"], how="left")
    else:
        summary["td"] = np.nan
    return summary


def plot(summary: pd.DataFrame, title: str):
    """Bar figure: per layer a panel, per concept a positive and a negative bar with ±std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(dict.fromkeys(summary["layer"]))
    fig, axes = plt.subplots(1, len(layers), figsize=(max(5.0, 1.1 * summary.concept.nunique() + 2) * len(layers), 3.8),
                             squeeze=False, sharey=True)
    colours = {"positive": "#2b8cbe", "negative": "#e34a33"}
    for ax, layer in zip(axes[0], layers):
        part = summary[summary.layer == layer]
        concepts = list(dict.fromkeys(part.concept))
        x = np.arange(len(concepts))
        for offset, condition in ((-0.2, "positive"), (0.2, "negative")):
            rows = part[part.condition == condition].set_index("concept").reindex(concepts)
            ax.bar(x + offset, 100 * rows.mean_change, width=0.4, color=colours[condition],
                   yerr=100 * rows.std_change.fillna(0), capsize=3,
                   label=f"{condition} ({'correct concept' if condition == 'positive' else 'Null'} mean)")
        ax.axhline(0, color="black", linewidth=0.8)
        base = part[part.condition == "positive"].set_index("concept").reindex(concepts).baseline_accuracy
        ax.set_xticks(x, [f"{c}\n(base {100 * b:.0f}%)" for c, b in zip(concepts, base)], rotation=30, ha="right")
        ax.set_title(f"layer {layer}")
        ax.set_ylabel("accuracy change (points)")
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_outputs(out: Path, frame: pd.DataFrame, record: dict, td: pd.DataFrame | None) -> pd.DataFrame:
    """interventions.csv/.parquet, interventions_summary.csv/.parquet, interventions.png, interventions.json."""
    import matplotlib.pyplot as plt

    summary = summarize(frame, td)
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / "interventions.csv", frame)
    write_table(out / "interventions_summary.csv", summary)
    fig = plot(summary, f"{record['model']} · {record['family']} · {record['shots']}-shot · {record['mode']} "
                        f"at the query token ({record['replicates']} replicates)")
    with atomic_path(out / "interventions.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    if td is not None and len(td):
        record = {**record, "td_by_layer": td.groupby("layer")["td"].mean().round(4).to_dict()}
    write_json(out / "interventions.json", record)
    return summary
