"""Analyse a training run: decoding (per-basis error) and encoding (TD, clusters) over checkpoints.

`analyze("runs/quick")` returns a `SyntheticAnalysis` and writes its tables (`decodability.csv`:
step, token, block, concept, td for both tokens; `patching.csv`, `patching_diagonal.csv`, ...) and
the PNGs of `conceptlens.synthetic.figures` into the run folder.
Moments (paper section 3): (a) all bases one cluster, (b) the first basis separated, (c) all
separated. DECISION: a basis is "separated" when its per-class TD at the analysis token (default
the paper's y token of the K-th demonstration) and block (default the paper's depth, block
`paper_block`) reaches `separation_td`; (a) is the last checkpoint before (b). The same moments at
the best block of the last checkpoint are stored beside them (`moments["at_best_block"]`).
`analyze_seeds(RUN)` does so for every `seed<S>` folder of `synthetic train --seeds` and sets the seeds side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from conceptlens.errors import ConceptLensError, require
from conceptlens.synthetic.baselines import baseline_errors, summary
from conceptlens.synthetic.patching import diagonal_contrast, paper_block, patching_matrix, scoring_windows
from conceptlens.synthetic.probes import TOKENS, head_importance, per_concept_mean, representations, squared_errors
from conceptlens.synthetic.results import SyntheticAnalysis
from conceptlens.synthetic.schedule import curriculum_end
from conceptlens.synthetic.train import TEST_SEED, build_task, checkpoint_steps, load_checkpoint, load_run_config


def select_steps(steps: list[int], max_checkpoints: int | None) -> list[int]:
    """At most `max_checkpoints` steps, evenly spread over the list, always the first and last."""
    if not max_checkpoints or len(steps) <= max_checkpoints:
        return list(steps)
    index = np.unique(np.round(np.linspace(0, len(steps) - 1, max_checkpoints)).astype(int))
    return [steps[i] for i in index]


def find_moments(td: pd.DataFrame, block: int, names: list[str], separation_td: float) -> dict:
    """Steps of moments (a), (b), (c) from per-class TD at one block; None where not reached."""
    at_layer = td[td.block == block].pivot(index="step", columns="concept", values="td")[names].sort_index()
    separated = at_layer >= separation_td
    first = {name: (int(separated.index[separated[name]].min()) if separated[name].any() else None)
             for name in names}
    any_sep, all_sep = separated.any(axis=1), separated.all(axis=1)
    b = int(any_sep.index[any_sep].min()) if any_sep.any() else None
    c = int(all_sep.index[all_sep].min()) if all_sep.any() else None
    # (a): the last step before (b) at which the bases are still one cluster (mean TD near chance)
    one_cluster = at_layer.mean(axis=1) <= 1 / len(names) + 0.1
    before = [s for s in at_layer.index if (b is None or s < b) and one_cluster[s]]
    a = int(before[-1]) if before else int(at_layer.index[0])
    order = sorted((s, n) for n, s in first.items() if s is not None)
    return {"a": a, "b": b, "c": c, "block": block, "separation_td": separation_td,
            "separated_step": first, "separation_order": [n for _, n in order]}


def _drop_steps(loss: pd.DataFrame, level: float) -> dict:
    out = {}
    for basis, rows in loss.groupby("basis"):
        below = rows[rows.mse <= level].step
        out[basis] = int(below.min()) if len(below) else None
    return out


def analyze(run_dir: str | Path, max_checkpoints: int | None = 40, sequences_per_basis: int = 100,
            token: str = "y", block: int | None = None, separation_td: float = 0.9, k: int = 10,
            patch_modes: tuple[str, ...] = ("replace", "add", "shift"), baseline_sequences_per_basis: int = 25,
            figures: bool = True, umap: bool = True, progress=None) -> SyntheticAnalysis:
    """Run every analysis on a run folder; returns (and saves into it) a `SyntheticAnalysis`.

    `token` (y or x) and `block` (default `paper_block(n_blocks)`) choose where moments, UMAP and
    patching read; TD is measured at both tokens and every block."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    steps = select_steps(checkpoint_steps(run_dir), max_checkpoints)
    if len(steps) < 2:
        raise ConceptLensError(f"{run_dir} has fewer than two checkpoints.", "train longer, or check the folder.")
    require(token in TOKENS, f"unknown token '{token}'.", "use token='y' (the paper's) or token='x'.")
    n_blocks = config.model.n_layers
    block = paper_block(n_blocks) if block is None else block
    require(0 <= block < n_blocks, f"block {block} is outside the model's blocks 0..{n_blocks - 1}.",
            "choose block between 0 and n_layers - 1.")
    task = build_task(config)
    names = task.concept_names
    batch = task.test_set(sequences_per_basis, seed=TEST_SEED + 1)
    labels = [names[c] for c in batch.concepts.tolist()]
    from_points = config.schedule.eval_from_points

    loss, td, acts_by_step, final_pred = _measure_checkpoints(run_dir, config, steps, batch, labels, token, k,
                                                             from_points, progress)
    moments = find_moments(td[td.token == token], block, names, separation_td)
    final_td = td[(td.step == steps[-1]) & (td.token == token)].groupby("block").td.mean()
    best = int(final_td.idxmax())
    moments["at_best_block"] = {key: value for key, value in find_moments(
        td[td.token == token], best, names, separation_td).items() if key in ("a", "b", "c", "block", "separation_order")}
    moments.update(token=token, n_blocks=n_blocks, paper_block=paper_block(n_blocks))
    moments["final_td_by_block"] = {t: {int(b): float(v) for b, v in rows.groupby("block").td.mean().items()}
                                    for t, rows in td[td.step == steps[-1]].groupby("token")}
    moments["final_td_best_block"] = float(final_td.max())
    moments["steps_analysed"] = steps
    if (until := curriculum_end(config)) is not None:
        moments["curriculum_until"] = until
    moments["eval_from_points"] = from_points
    base = _baselines(task, batch, final_pred, steps[-1], names, baseline_sequences_per_basis, from_points, moments, loss)

    windows = scoring_windows(config.task.basis_dim, config.task.n_dims, config.task.n_points)
    patching, diagonal = _patching(run_dir, config, batch, names, block, windows, patch_modes,
                                   {"b": moments["b"], "end": steps[-1]})
    moments["scoring_windows"] = {w: [index[0], index[-1]] for w, index in windows.items()}
    heads = head_importance(load_checkpoint(run_dir, steps[-1], config), batch, names, from_points)
    heads.insert(0, "step", steps[-1])
    result = SyntheticAnalysis(
        moments=moments, loss_per_basis=loss, decodability=td,
        pairwise_td=_pairwise_table(acts_by_step, moments, block, labels, k), patching=patching,
        patching_diagonal=diagonal, head_importance=heads, baselines=base,
        umap=_umap_table(acts_by_step, moments, block, labels) if umap else pd.DataFrame())
    result.files = result.save(run_dir)
    if figures:
        from conceptlens.synthetic.figures import draw_all

        result.files += draw_all(run_dir, result, config)
    return result


def _measure_checkpoints(run_dir, config, steps, batch, labels, token, k, from_points, progress):
    """Per-basis error, TD at both tokens and every block, per checkpoint; keeps `token`'s activations."""
    from conceptlens.decodability import task_decodability

    names = sorted(set(labels), key=labels.index)
    blocks = list(range(config.model.n_layers))
    loss_rows, td_frames, acts_by_step, final_pred = [], [], {}, None
    for i, step in enumerate(steps):
        model = load_checkpoint(run_dir, step, config)
        for read in TOKENS:
            predictions, acts = representations(model, batch, blocks, read)
            frame = task_decodability(acts, labels, k=k, layers=blocks).per_class.rename(columns={"layer": "block"})
            frame.insert(0, "token", read)
            frame.insert(0, "step", step)
            td_frames.append(frame)
            if read == token:
                acts_by_step[step] = acts
        errors = squared_errors(predictions, batch)[:, from_points:].mean(1)
        for c, mse in enumerate(per_concept_mean(errors, batch.concepts, len(names)).tolist()):
            loss_rows.append({"step": step, "basis": names[c], "mse": mse})
        final_pred = predictions
        if progress is not None:
            progress(i + 1, len(steps), step)
    return pd.DataFrame(loss_rows), pd.concat(td_frames, ignore_index=True), acts_by_step, final_pred


def _baselines(task, batch, final_pred, last_step, names, per_basis, from_points, moments, loss) -> pd.DataFrame:
    sub = task.test_set(per_basis, seed=TEST_SEED + 1)
    base = baseline_errors(task, sub)
    model_curve = squared_errors(final_pred, batch)
    for n in range(batch.ys.shape[1]):
        for c, mse in enumerate(per_concept_mean(model_curve[:, n], batch.concepts, len(names)).tolist()):
            base.loc[len(base)] = {"baseline": f"model step {last_step}", "n_examples": n, "concept": names[c],
                                   "mse": mse}
    levels = summary(base[~base.baseline.str.startswith("model")], from_points)
    moments["baseline_levels"] = levels
    if "lasso" in levels:
        moments["beats_lasso_step"] = _drop_steps(loss, levels["lasso"])
    if "oracle" in levels:
        moments["near_oracle_step"] = _drop_steps(loss, 2.0 * levels["oracle"])
    return base


def _patching(run_dir, config, batch, names, block, windows, modes, at: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The source x target matrix per mode and window at each moment, and its diagonal-minus-row contrast."""
    frames, contrasts = [], []
    for moment, step in at.items():
        if step is None:
            continue
        frame, changes = patching_matrix(load_checkpoint(run_dir, step, config), batch, block, names, windows, modes)
        frames.append(frame.assign(moment=moment, step=step))
        for (mode, window), change in changes.items():
            contrasts.append(diagonal_contrast(change, batch.concepts, names).assign(
                moment=moment, step=step, block=block, mode=mode, window=window))
    lead = ["moment", "step", "block", "mode", "window"]

    def order(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[lead + [c for c in frame.columns if c not in lead]]

    return order(pd.concat(frames, ignore_index=True)), order(pd.concat(contrasts, ignore_index=True))


def _pairwise_table(acts_by_step: dict, moments: dict, layer: int, labels: list[str], k: int) -> pd.DataFrame:
    """TD of every pair of bases alone at the analysis layer, at (a), (b), (c) and the last checkpoint:
    which bases a layer already tells apart (a run stuck at TD 0.5 of 4 bases separates two pairs)."""
    from conceptlens.decodability import pairwise_decodability

    frames, drawn = [], set()
    for moment, step in (("a", moments.get("a")), ("b", moments.get("b")), ("c", moments.get("c")),
                         ("end", max(acts_by_step))):
        if step is None or step not in acts_by_step or step in drawn:
            continue
        drawn.add(step)
        matrix = pairwise_decodability(acts_by_step[step][layer], labels, k=k)
        tidy = matrix.rename_axis(index="basis_a", columns="basis_b").stack().rename("td").reset_index()
        tidy.insert(0, "step", step)
        tidy.insert(0, "moment", moment)
        frames.append(tidy)
    return pd.concat(frames, ignore_index=True)


def _umap_table(acts_by_step: dict, moments: dict, layer: int, labels: list[str]) -> pd.DataFrame:
    """2-D UMAP (n_neighbors 15, min_dist 0.1) of the analysis layer at moments (a), (b), (c) and the
    last checkpoint (when it is none of them: a run that has not separated yet shows where it is)."""
    import umap

    frames, drawn = [], set()
    last = max(acts_by_step)
    for moment, step in (("a", moments.get("a")), ("b", moments.get("b")), ("c", moments.get("c")), ("end", last)):
        if step is None or step not in acts_by_step or step in drawn:
            continue
        drawn.add(step)
        points = acts_by_step[step][layer].numpy()
        threads = torch.get_num_threads()  # numba's first parallel call resets OpenMP's (and torch's) thread count
        try:
            embedding = umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=0).fit_transform(points)
        finally:
            torch.set_num_threads(threads)
        frames.append(pd.DataFrame({"moment": moment, "step": step, "concept": labels,
                                    "x": embedding[:, 0], "y": embedding[:, 1]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["moment", "step", "concept", "x", "y"])


def seed_folders(run_dir: str | Path) -> dict[int, Path]:
    """The `seed<S>` run folders of a multi-seed run (`synthetic train --seeds`), by seed; {} if none."""
    import re

    run_dir = Path(run_dir)
    if not run_dir.is_dir() or (run_dir / "config.yaml").is_file():
        return {}
    found = {int(m.group(1)): p for p in run_dir.iterdir()
             if (m := re.fullmatch(r"seed(\d+)", p.name)) and (p / "config.yaml").is_file()}
    return dict(sorted(found.items()))


def analyze_seeds(run_dir: str | Path, figures: bool = True, progress=None, **options) -> dict[int, SyntheticAnalysis]:
    """`analyze` every seed folder of a multi-seed run (each writes its own files, as alone), then the
    seeds side by side into `run_dir`: `seeds_loss_per_basis.csv`, `seeds_decodability.csv` (a `seed`
    column first), `seeds_moments.json` and `seeds.png` (error and TD over training, a line per seed)."""
    from conceptlens.storage import write_json, write_table

    run_dir = Path(run_dir)
    folders = seed_folders(run_dir)
    if not folders:
        raise ConceptLensError(f"{run_dir} holds neither a run nor seed<S> run folders.",
                               "pass the --out folder of `conceptlens synthetic train` (with or without --seeds).")
    results = {seed: analyze(folder, figures=figures, progress=progress, **options) for seed, folder in folders.items()}
    loss = pd.concat([r.loss_per_basis.assign(seed=s) for s, r in results.items()], ignore_index=True)
    td = pd.concat([r.decodability.assign(seed=s) for s, r in results.items()], ignore_index=True)
    loss, td = (frame[["seed"] + [c for c in frame.columns if c != "seed"]] for frame in (loss, td))
    write_table(run_dir / "seeds_loss_per_basis.csv", loss)
    write_table(run_dir / "seeds_decodability.csv", td)
    write_json(run_dir / "seeds_moments.json", {str(s): r.moments for s, r in results.items()})
    if figures:
        from conceptlens.synthetic.figures import seeds_figure

        seeds_figure(loss, td, {s: r.moments for s, r in results.items()}, run_dir / "seeds.png")
    return results
