"""Tables and figures of an intervention run: accuracy change per concept, mean ± std over replicates.

The change of a replicate is its edited accuracy minus its own baseline (same prompts, same
demonstrations), so the spread reflects the demonstrations drawn, not prompt-to-prompt noise; the
cross matrix gives, per source x target, the fraction of prompts that answer as the target would.
DECISION: std is the sample standard deviation (ddof 1) over replicates; NaN with one replicate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from conceptlens.llm.interventions.conditions import MODE_TEXT
from conceptlens.storage import write_json, write_table
from conceptlens.tasks.family import NULL

MEAN = "mean"  # the concept name of the rows averaged over concepts


def summarize(frame: pd.DataFrame, td: pd.DataFrame | None = None, peak: int | None = None) -> pd.DataFrame:
    """Tidy rows (layer, concept, replicate, condition, accuracy) -> one row per concept x layer x condition.

    Columns: concept, layer, condition (positive|negative|random), mean_change, std_change, baseline_accuracy,
    edited_accuracy, edited_std, n_replicates, td (TD of the concept at that layer on the held-out
    prompts) and at_td_peak. Rows with concept "mean" average the concepts within each replicate first
    (per layer x condition, mean ± std across replicates). Cross rows are summarised by `cross_summary`.
    """
    frame = frame[frame.condition != "cross"]
    keys = ["layer", "concept", "replicate"]
    base = frame[frame.condition == "baseline"][keys + ["accuracy"]].rename(columns={"accuracy": "baseline"})
    edited = frame[frame.condition != "baseline"].merge(base, on=keys, how="left")
    edited["change"] = edited["accuracy"] - edited["baseline"]
    pooled = (edited.groupby(["layer", "condition", "replicate"], sort=False)[["accuracy", "baseline", "change"]]
              .mean().reset_index().assign(concept=MEAN))
    parts = []
    for part in (edited, pooled):
        parts.append(part.groupby(["concept", "layer", "condition"], sort=False)
                     .agg(mean_change=("change", "mean"), std_change=("change", "std"),
                          baseline_accuracy=("baseline", "mean"), edited_accuracy=("accuracy", "mean"),
                          edited_std=("accuracy", "std"), n_replicates=("replicate", "nunique"))
                     .reset_index())
    summary = pd.concat(parts, ignore_index=True)
    columns = ["mean_change", "std_change", "edited_std"]
    summary[columns] = summary[columns].round(6) + 0.0  # no -2.8e-18, no -0.0
    if td is not None and len(td):
        summary = summary.merge(td, on=["layer", "concept"], how="left")
    else:
        summary["td"] = np.nan
    summary["at_td_peak"] = summary["layer"] == peak if peak is not None else False
    return summary


def cross_summary(cross: pd.DataFrame) -> pd.DataFrame:
    """Per (source, target, layer): accuracy against the target's answer and the baseline's, over replicates.

    `n` sums the prompts scored over replicates (prompts with an unknown target answer, or one equal
    to the source's, are not scored: their counts are `n_unknown_target` and `n_same_answer`).
    """
    if cross is None or cross.empty:
        return pd.DataFrame(columns=["source", "target", "layer", "accuracy_vs_target", "baseline_vs_target", "n"])
    out = (cross.groupby(["source", "target", "layer"], sort=False)
           .agg(accuracy_vs_target=("accuracy_vs_target", "mean"), accuracy_vs_target_std=("accuracy_vs_target", "std"),
                baseline_vs_target=("baseline_vs_target", "mean"), accuracy_vs_source=("accuracy_vs_source", "mean"),
                n=("n", "sum"), n_unknown_target=("n_unknown_target", "sum"), n_same_answer=("n_same_answer", "sum"),
                n_replicates=("replicate", "nunique"))
           .reset_index())
    out["follow_gain"] = out["accuracy_vs_target"] - out["baseline_vs_target"]
    return out


def run_record(model, family, mode, shots, seed, replicates, prompts_per_concept, concepts, choice, edits, edited,
               means_per_concept, captured, seeds, fmt, from_run, cross_layers=()) -> dict:
    """The JSON record of a run: settings, the layer choice, what each condition writes, where edits landed."""
    how = MODE_TEXT[mode]
    return {"model": model, "family": family, "mode": mode, "shots": shots, "seed": seed, "replicates": replicates,
            "prompts_per_concept": prompts_per_concept, "concepts": concepts, "layers": choice.layers,
            "layer_source": choice.source, "layer_note": choice.note, "td_peak_layer": choice.peak,
            "from_run": str(from_run) if from_run else None,
            "from_run_used": choice.source.startswith("from_run"), "edits": edits, "rows_edited": edited,
            "positive_vector": f"held-out mean of the prompt's own concept, {how}",
            "negative_vector": f"held-out mean of {NULL}, {how}",
            "random_vector": "a seeded Gaussian direction per concept and layer with the norm of the positive vector, "
                             + how,
            "cross_vector": f"held-out mean of another concept T, {how}; scored against T's answer for the same "
                            "query input (unknown or equal answers not scored)", "cross_layers": list(cross_layers),
            "means": {"source": "held-out examples (disjoint from the evaluated ones)",
                      "n_per_concept": means_per_concept, "seed": seed, "layers_captured": captured},
            "evaluation_seeds": seeds,
            "format": {"separator": fmt.separator, "answer_prefix": fmt.answer_prefix, "newline": fmt.newline}}


def plot(summary: pd.DataFrame, title: str):
    """Left: the mean accuracy change over concepts per layer (positive, negative, random; ± std over
    replicates). Right: per concept, the changes at the TD peak (else the last layer)."""
    from conceptlens.figures import plt

    colours = {"positive": "#2b8cbe", "negative": "#e34a33", "random": "#969696"}
    labels = {"positive": "positive (own concept)", "negative": f"negative ({NULL})", "random": "random (same norm)"}
    present = [c for c in colours if c in set(summary.condition)]
    concepts = [c for c in dict.fromkeys(summary.concept) if c != MEAN]
    fig, (left, right) = plt.subplots(1, 2, figsize=(5.5 + 0.9 * len(concepts) + 1, 3.9),
                                      gridspec_kw={"width_ratios": [1, 1.2]})
    pooled = summary[summary.concept == MEAN] if (summary.concept == MEAN).any() else summary
    for condition in present:
        rows = pooled[pooled.condition == condition].groupby("layer")[["mean_change", "std_change"]].mean()
        left.errorbar(rows.index, 100 * rows.mean_change, yerr=100 * rows.std_change.fillna(0), marker="o",
                      capsize=3, color=colours[condition], label=labels[condition])
    left.axhline(0, color="black", linewidth=0.8)
    left.set_xlabel("layer (HF hidden state)")
    left.set_ylabel("accuracy change (points)")
    left.set_title("mean over concepts")
    left.legend(fontsize=8, loc="best")
    peak = summary.loc[summary.get("at_td_peak", pd.Series(False, index=summary.index)).astype(bool), "layer"]
    layer = int(peak.iloc[0]) if len(peak) else int(summary.layer.max())
    part = summary[summary.layer == layer]
    x = np.arange(len(concepts))
    width = 0.8 / max(1, len(present))
    for j, condition in enumerate(present):
        rows = part[part.condition == condition].set_index("concept").reindex(concepts)
        right.bar(x + (j - (len(present) - 1) / 2) * width, 100 * rows.mean_change, width=width,
                  color=colours[condition], yerr=100 * rows.std_change.fillna(0), capsize=2)
    right.axhline(0, color="black", linewidth=0.8)
    base = part[part.condition == present[0]].set_index("concept").reindex(concepts).baseline_accuracy
    right.set_xticks(x, [f"{c}\n(base {100 * b:.0f}%)" for c, b in zip(concepts, base)], rotation=30, ha="right")
    right.set_title(f"per concept, layer {layer}" + (" (TD peak)" if len(peak) else ""))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_cross(cross: pd.DataFrame, title: str):
    """Per layer a source x target heatmap: % of prompts answering as the target (baseline in brackets)."""
    from conceptlens.figures import plt

    layers = list(dict.fromkeys(cross["layer"]))
    names = list(dict.fromkeys(list(cross["source"]) + list(cross["target"])))
    fig, axes = plt.subplots(1, len(layers), figsize=(0.9 * len(names) * len(layers) + 2, 0.8 * len(names) + 1.6),
                             squeeze=False)
    for ax, layer in zip(axes[0], layers):
        part = cross[cross.layer == layer]
        grid = part.pivot(index="source", columns="target", values="accuracy_vs_target").reindex(index=names, columns=names)
        base = part.pivot(index="source", columns="target", values="baseline_vs_target").reindex(index=names, columns=names)
        image = ax.imshow(100 * grid.to_numpy(dtype=float), vmin=0, vmax=100, cmap="viridis")
        for i in range(len(names)):
            for j in range(len(names)):
                value, before = grid.iat[i, j], base.iat[i, j]
                if not pd.isna(value):
                    ax.text(j, i, f"{100 * value:.0f}\n({100 * before:.0f})", ha="center", va="center", fontsize=7,
                            color="white" if value < 0.6 else "black")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("target concept (its vector, its answer)")
        ax.set_ylabel("source concept (the prompts)")
        ax.set_title(f"layer {layer}")
    fig.colorbar(image, ax=axes[0].tolist(), label="% answering as the target")
    fig.suptitle(title)
    return fig


def _save(fig, path: Path) -> None:
    from conceptlens.figures import save_png

    save_png(fig, path)


def write_outputs(out: Path, frame: pd.DataFrame, record: dict, td: pd.DataFrame | None,
                  cross: pd.DataFrame | None = None, control: pd.DataFrame | None = None) -> pd.DataFrame:
    """interventions.csv/_summary.csv/_cross.csv/_layers.csv (+ .parquet), interventions(_cross).png, .json."""
    summary = summarize(frame, td, record.get("td_peak_layer"))
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / "interventions.csv", frame)
    write_table(out / "interventions_summary.csv", summary)
    matrix = cross_summary(cross)
    write_table(out / "interventions_cross.csv", matrix)
    if td is not None and len(td):
        layers = td.groupby("layer", as_index=False)["td"].mean()
        if control is not None:
            layers = layers.merge(control.drop(columns="td"), on="layer", how="left")
        layers["intervened"] = layers["layer"].isin(record["layers"])
        write_table(out / "interventions_layers.csv", layers)
        record = {**record, "td_by_layer": layers.set_index("layer")["td"].round(4).to_dict()}
    setting = f"{record['model']} · {record['family']} · {record['shots']}-shot · {record['mode']} at the query token"
    _save(plot(summary, f"{setting} ({record['replicates']} replicates)"), out / "interventions.png")
    if len(matrix) and matrix["n"].sum() > 0:
        _save(plot_cross(matrix, f"cross-concept interventions: {setting}"), out / "interventions_cross.png")
    skipped = matrix[matrix["n"] == 0][["source", "target", "layer"]].to_dict("records") if len(matrix) else []
    write_json(out / "interventions.json", {**record, "cross_cells_not_scored": skipped})
    return summary
