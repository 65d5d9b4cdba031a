"""What one finetuning run changed: TD per layer and accuracy, before vs after, as numbers and a figure.

`td_before_after.png` draws the mean TD across concepts (Null excluded) at every layer for the
pretrained and the finetuned model, shades the finetuned blocks (block i writes hidden state
i + 1) and marks the pretrained best layer, where the comparison table reads TD.
"""

from __future__ import annotations

import json
from pathlib import Path

from conceptlens.llm.compare import best_layer, concept_stats, read_study
from conceptlens.tasks.family import NULL


def study_summary(run: str | Path, shots: int) -> dict:
    """Before/after statistics of a finished run at the pretrained best layer (see `compare`)."""
    run = Path(run)
    td_before, acc_before = read_study(run / "before", shots)
    td_after, acc_after = read_study(run / "after", shots)
    layer = best_layer(td_before)
    return {"layer": layer, "before": concept_stats(td_before, acc_before, layer),
            "after": concept_stats(td_after, acc_after, layer),
            "after_own_best_layer": best_layer(td_after)}


def plot_td_before_after(run: str | Path, shots: int) -> Path:
    from conceptlens.figures import plt, save_png
    from matplotlib.ticker import MaxNLocator

    run = Path(run)
    config = json.loads((run / "config.json").read_text())
    fig, ax = plt.subplots(figsize=(7, 4))
    layer = None
    for name, color in (("before", "tab:gray"), ("after", "tab:red")):
        td, acc = read_study(run / name, shots)
        curve = td[td["concept"] != NULL].groupby("layer")["td"].mean()
        accuracy = acc[acc["concept"] != NULL]["accuracy"].mean() * 100
        label = ("pretrained" if name == "before" else f"{config['method']} {config['layers_spec']}")
        ax.plot(curve.index, curve.values, marker=".", color=color, label=f"{label} (acc {accuracy:.1f}%)")
        if name == "before":
            layer = best_layer(td)
    blocks = config["layers"]
    ax.axvspan(blocks[0] + 0.5, blocks[-1] + 1.5, color="tab:red", alpha=0.08, label="finetuned blocks")
    ax.axvline(layer, color="black", linestyle=":", linewidth=1, label=f"pretrained best layer ({layer})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (hidden state; 0 = embeddings)")
    ax.set_ylabel("mean TD (Null excluded)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{config['model']} · {config['family']} · {shots}-shot")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = run / "td_before_after.png"
    save_png(fig, path, tight=False)
    return path
