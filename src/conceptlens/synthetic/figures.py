"""The figures of the synthetic study (matplotlib, Agg backend), drawn from the tidy tables.

`loss_per_basis.png` (per-basis test MSE over training, moments (a)(b)(c) marked, baseline
levels, the curriculum shaded), `decodability.png` (TD block x checkpoint, both tokens), `pairwise_td.png`
(which bases a layer tells apart, per moment), `umap.png` (the analysis layer at each
moment), `patching.png` (source x target loss change), `head_importance.png`, `baselines.png`
(error against number of examples, the final model on the same axes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from conceptlens.figures import plt, save_png

_MOMENT_STYLE = {"a": ":", "b": "--", "c": "-."}


def _save(fig, path: Path) -> str:
    return save_png(fig, path).name


def loss_figure(loss: pd.DataFrame, moments: dict, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(7, 4))
    for basis, rows in loss.groupby("basis", sort=False):
        ax.plot(rows.step, rows.mse, marker=".", label=basis)
    colors = {"lasso": "grey", "ridge": "tan", "oracle": "black", "ols": "lightgrey"}
    labels: list[list] = []  # [level, names]: a level within 15% of the one below shares its label
    previous = None
    for name, level in sorted(moments.get("baseline_levels", {}).items(), key=lambda item: item[1]):
        if name == "ols" and level > 10 * loss.mse.max():
            continue
        ax.axhline(level, color=colors.get(name, "grey"), lw=0.8, ls="-", alpha=0.7)
        if previous is not None and level < 1.15 * previous:
            labels[-1][1].append(name)
        else:
            labels.append([level, [name]])
        previous = level
    for level, names in labels:
        ax.text(loss.step.max(), level, " " + " / ".join(names), va="center", fontsize=7)
    for moment, style in _MOMENT_STYLE.items():
        if moments.get(moment) is not None:
            ax.axvline(moments[moment], color="red", ls=style, lw=1)
            ax.text(moments[moment], ax.get_ylim()[1] if ax.get_yscale() == "linear" else loss.mse.max(),
                    f"({moment})", color="red", fontsize=8, ha="center", va="bottom")
    if moments.get("curriculum_until"):  # test MSE is on the full task, so it rises while the curriculum runs
        ax.axvspan(0, moments["curriculum_until"], color="grey", alpha=0.12, lw=0)
        ax.text(moments["curriculum_until"] / 2, loss.mse.min(), "curriculum", ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"test MSE (predictions with ≥ {moments.get('eval_from_points', 5)} examples)")
    ax.set_title("Decoding: per-basis error over training")
    ax.legend(fontsize=8)
    return _save(fig, path)


def decodability_figure(td: pd.DataFrame, moments: dict, path: Path) -> str:
    """TD block x checkpoint, one panel per token; the paper's depth (block `paper_block`) marked."""
    tokens = [t for t in ("y", "x") if t in set(td.token)]
    fig, axes = plt.subplots(len(tokens), 1, figsize=(8, 2.8 * len(tokens)), squeeze=False)
    for ax, token in zip(axes[:, 0], tokens):
        mean = td[td.token == token].groupby(["block", "step"]).td.mean().unstack("step")
        image = ax.imshow(mean.values, aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis")
        ax.set_yticks(range(len(mean.index)), [str(b) for b in mean.index])
        ticks = np.linspace(0, len(mean.columns) - 1, min(8, len(mean.columns))).round().astype(int)
        ax.set_xticks(ticks, [str(mean.columns[t]) for t in ticks], fontsize=7)
        if moments.get("paper_block") is not None:
            ax.axhline(moments["paper_block"], color="red", lw=1.2, ls="--")
            ax.text(len(mean.columns) - 0.5, moments["paper_block"], " paper's depth (5 of 12)", color="red",
                    fontsize=7, va="center")
        ax.set_ylabel("block")
        name = "y token of demonstration K" if token == "y" else "x token of example K"
        ax.set_title(f"Encoding: concept decodability (kNN TD) per block, {name}", fontsize=9)
        fig.colorbar(image, ax=ax, label="TD")
    axes[-1, 0].set_xlabel("checkpoint (step)")
    return _save(fig, path)


def umap_figure(frame: pd.DataFrame, path: Path, summary: dict | None = None) -> str | None:
    if frame.empty:
        return None
    moments = list(dict.fromkeys(frame.moment))
    fig, axes = plt.subplots(1, len(moments), figsize=(3.6 * len(moments), 3.4), squeeze=False)
    for ax, moment in zip(axes[0], moments):
        rows = frame[frame.moment == moment]
        for concept, group in rows.groupby("concept", sort=False):
            ax.scatter(group.x, group.y, s=6, label=concept)
        where = f", {summary.get('token')} token, block {summary.get('block')}" if summary else ""
        ax.set_title(f"({moment}) step {int(rows.step.iloc[0])}{where}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=7, markerscale=2)
    return _save(fig, path)


def _matrix(ax, frame: pd.DataFrame, index: str, columns: str, title: str):
    matrix = frame.pivot(index=index, columns=columns, values="loss_change")
    order = list(dict.fromkeys(frame[index])) if index != "block" else sorted(matrix.index)
    matrix = matrix.loc[order]
    if columns != "head":
        matrix = matrix[list(dict.fromkeys(frame[columns]))]
    bound = float(np.abs(matrix.values).max()) or 1.0
    image = ax.imshow(matrix.values, cmap="RdBu_r", vmin=-bound, vmax=bound)
    ax.set_yticks(range(len(matrix.index)), [str(v) for v in matrix.index])
    ax.set_xticks(range(len(matrix.columns)), [str(v) for v in matrix.columns])
    ax.set_ylabel(index)
    ax.set_xlabel(columns)
    ax.set_title(title, fontsize=9)
    return image


def patching_figure(patching: pd.DataFrame, path: Path) -> str:
    """One source x target matrix per mode (rows) and moment x scoring window (columns)."""
    modes = list(dict.fromkeys(patching["mode"]))
    panels = list(dict.fromkeys(zip(patching.moment, patching.window)))
    fig, axes = plt.subplots(len(modes), len(panels), figsize=(3.6 * len(panels), 3.3 * len(modes)), squeeze=False)
    for i, mode in enumerate(modes):
        for j, (moment, window) in enumerate(panels):
            rows = patching[(patching["mode"] == mode) & (patching.moment == moment) & (patching.window == window)]
            title = f"{mode}, {moment} (step {int(rows.step.iloc[0])}, block {int(rows.block.iloc[0])}), {window}"
            image = _matrix(axes[i, j], rows, "source", "target", title)
            fig.colorbar(image, ax=axes[i, j], shrink=0.8)
    return _save(fig, path)


def heads_figure(heads: pd.DataFrame, path: Path) -> str:
    concepts = list(dict.fromkeys(heads.concept))
    fig, axes = plt.subplots(1, len(concepts), figsize=(2.6 * len(concepts), 3), squeeze=False)
    for ax, concept in zip(axes[0], concepts):
        image = _matrix(ax, heads[heads.concept == concept], "block", "head", f"{concept}: pruning Δloss")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    return _save(fig, path)


def baselines_figure(base: pd.DataFrame, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in base.groupby("baseline", sort=False):
        curve = rows.groupby("n_examples").mse.mean()
        style = {"lw": 2.2, "color": "red"} if name.startswith("model") else {"lw": 1}
        ax.plot(curve.index, curve.values, marker=".", label=name, **style)
    ax.set_yscale("log")
    ax.set_xlabel("number of in-context examples")
    ax.set_ylabel("squared error of the next prediction")
    ax.set_title("Model vs baselines")
    ax.legend(fontsize=8)
    return _save(fig, path)


def pairwise_figure(frame: pd.DataFrame, path: Path) -> str | None:
    """One basis x basis heatmap of pairwise TD per moment (0.5 = that pair shares a cluster)."""
    if frame is None or frame.empty:
        return None
    moments = list(dict.fromkeys(frame.moment))
    fig, axes = plt.subplots(1, len(moments), figsize=(3.2 * len(moments), 3.0), squeeze=False)
    for ax, moment in zip(axes[0], moments):
        rows = frame[frame.moment == moment]
        names = list(dict.fromkeys(rows.basis_a))
        matrix = rows.pivot(index="basis_a", columns="basis_b", values="td").loc[names, names]
        image = ax.imshow(matrix.values, vmin=0.5, vmax=1.0, cmap="viridis")
        for i in range(len(names)):
            for j in range(len(names)):
                if i != j:
                    ax.text(j, i, f"{matrix.values[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white")
        ax.set_xticks(range(len(names)), names)
        ax.set_yticks(range(len(names)), names)
        ax.set_title(f"({moment}) step {int(rows.step.iloc[0])}", fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="pairwise TD")
    return _save(fig, path)


def draw_all(run_dir: Path, result, config=None) -> list[str]:
    """Every figure of a `SyntheticAnalysis` into `run_dir`; returns the file names written."""
    run_dir = Path(run_dir)
    moments = result.moments
    names = [loss_figure(result.loss_per_basis, moments, run_dir / "loss_per_basis.png"),
             decodability_figure(result.decodability, moments, run_dir / "decodability.png"),
             pairwise_figure(result.pairwise_td, run_dir / "pairwise_td.png"),
             umap_figure(result.umap, run_dir / "umap.png", moments),
             patching_figure(result.patching, run_dir / "patching.png"),
             heads_figure(result.head_importance, run_dir / "head_importance.png"),
             baselines_figure(result.baselines, run_dir / "baselines.png")]
    return [n for n in names if n]


def seeds_figure(loss: pd.DataFrame, td: pd.DataFrame, moments: dict, path: Path) -> str:
    """Seeds side by side: per-basis test MSE (a panel per basis) and mean TD at each seed's analysis
    token and block, over training, a line per seed; each seed's moments (b) and (c) marked."""
    bases = list(dict.fromkeys(loss.basis))
    fig, axes = plt.subplots(1, len(bases) + 1, figsize=(3.2 * (len(bases) + 1), 3.0), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, seed in enumerate(sorted(moments)):
        color, m = colors[i % len(colors)], moments[seed]
        for ax, basis in zip(axes[0], bases):
            rows = loss[(loss.seed == seed) & (loss.basis == basis)]
            ax.plot(rows.step, rows.mse, color=color, label=f"seed {seed}")
        rows = td[(td.seed == seed) & (td.token == m["token"]) & (td.block == m["block"])]
        curve = rows.groupby("step").td.mean()
        axes[0][-1].plot(curve.index, curve.values, color=color, label=f"seed {seed}")
        for moment in ("b", "c"):
            if m.get(moment) is not None:
                axes[0][-1].axvline(m[moment], color=color, ls=_MOMENT_STYLE[moment], lw=0.8)
    for i, (ax, basis) in enumerate(zip(axes[0], bases)):
        if i:
            ax.sharey(axes[0][0])
            ax.tick_params(labelleft=False, which="both")
        ax.set_yscale("log")
        ax.set_title(f"{basis}: test MSE", fontsize=9)
        ax.set_xlabel("training step")
    last = axes[0][-1]
    first = moments[min(moments)]
    last.set_title(f"TD, {first['token']} token, block {first['block']} (-- (b), -. (c))", fontsize=9)
    last.set_ylim(0, 1.02)
    last.set_xlabel("training step")
    last.legend(fontsize=7)
    return _save(fig, path)
