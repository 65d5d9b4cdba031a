"""Analyse a training run: decoding (per-basis error) and encoding (TD, clusters) over checkpoints.

`analyze("runs/quick")` writes tidy tables and figures into the run folder:
`loss_per_basis.csv` (step, basis, mse), `decodability.csv` (step, layer, concept, td),
`moments.json`, `umap.csv`, `patching.csv` (moment, source, target, loss_change),
`head_importance.csv`, `baselines.csv`, and the PNGs of `conceptlens.synthetic.figures`.
Moments (paper section 3): (a) all bases one cluster, (b) the first basis separated, (c) all
separated. DECISION: a basis is "separated" when its per-class TD at the analysis layer (the best
layer of the last checkpoint) reaches `separation_td`; (a) is the last checkpoint before (b).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from conceptlens.errors import ConceptLensError
from conceptlens.storage import write_json, write_table
from conceptlens.synthetic.baselines import baseline_errors, summary
from conceptlens.synthetic.probes import (head_importance, patching_matrix, per_concept_mean, representations,
                                          squared_errors)
from conceptlens.synthetic.train import (TEST_SEED, build_task, checkpoint_steps, curriculum_end,
                                         load_checkpoint, load_run_config)


def select_steps(steps: list[int], max_checkpoints: int | None) -> list[int]:
    """At most `max_checkpoints` steps, evenly spread over the list, always the first and last."""
    if not max_checkpoints or len(steps) <= max_checkpoints:
        return list(steps)
    index = np.unique(np.round(np.linspace(0, len(steps) - 1, max_checkpoints)).astype(int))
    return [steps[i] for i in index]


def find_moments(td: pd.DataFrame, layer: int, names: list[str], separation_td: float) -> dict:
    """Steps of moments (a), (b), (c) from per-class TD at one layer; None where not reached."""
    at_layer = td[td.layer == layer].pivot(index="step", columns="concept", values="td")[names].sort_index()
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
    return {"a": a, "b": b, "c": c, "layer": layer, "separation_td": separation_td,
            "separated_step": first, "separation_order": [n for _, n in order]}


def _drop_steps(loss: pd.DataFrame, level: float) -> dict:
    out = {}
    for basis, rows in loss.groupby("basis"):
        below = rows[rows.mse <= level].step
        out[basis] = int(below.min()) if len(below) else None
    return out


def analyze(run_dir: str | Path, max_checkpoints: int | None = 40, sequences_per_basis: int = 100,
            token: str = "x", layer: int | None = None, separation_td: float = 0.9, k: int = 10,
            patch_mode: str = "replace", baseline_sequences_per_basis: int = 25, figures: bool = True,
            umap: bool = True, progress=None) -> dict:
    """Run every analysis on a run folder; returns a summary dict (moments, TD, file names)."""
    from conceptlens.decodability import task_decodability

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    steps = select_steps(checkpoint_steps(run_dir), max_checkpoints)
    if len(steps) < 2:
        raise ConceptLensError(f"{run_dir} has fewer than two checkpoints.", "train longer, or check the folder.")
    task = build_task(config)
    names = task.concept_names
    batch = task.test_set(sequences_per_basis, seed=TEST_SEED + 1)
    labels = [names[c] for c in batch.concepts.tolist()]
    layers = list(range(config.model.n_layers))
    from_points = config.schedule.eval_from_points

    loss_rows, td_frames, acts_by_step, final_pred = [], [], {}, None
    for i, step in enumerate(steps):
        model = load_checkpoint(run_dir, step, config)
        predictions, acts = representations(model, batch, layers, token)
        errors = squared_errors(predictions, batch)[:, from_points:].mean(1)
        for c, mse in enumerate(per_concept_mean(errors, batch.concepts, len(names)).tolist()):
            loss_rows.append({"step": step, "basis": names[c], "mse": mse})
        result = task_decodability(acts, labels, k=k, layers=layers)
        frame = result.per_class
        frame.insert(0, "step", step)
        td_frames.append(frame)
        acts_by_step[step] = acts
        final_pred = predictions
        if progress is not None:
            progress(i + 1, len(steps), step)
    loss = pd.DataFrame(loss_rows)
    td = pd.concat(td_frames, ignore_index=True)
    final_td = td[td.step == steps[-1]].groupby("layer").td.mean()
    layer = int(final_td.idxmax()) if layer is None else layer
    moments = find_moments(td, layer, names, separation_td)

    pairwise = _pairwise_table(acts_by_step, moments, layer, labels, k)

    sub = task.test_set(baseline_sequences_per_basis, seed=TEST_SEED + 1)
    base = baseline_errors(task, sub)
    model_curve = squared_errors(final_pred, batch)
    for n in range(batch.ys.shape[1]):
        for c, mse in enumerate(per_concept_mean(model_curve[:, n], batch.concepts, len(names)).tolist()):
            base.loc[len(base)] = {"baseline": f"model step {steps[-1]}", "n_examples": n, "concept": names[c],
                                   "mse": mse}
    levels = summary(base[~base.baseline.str.startswith("model")], from_points)
    moments["baseline_levels"] = levels
    if "lasso" in levels:
        moments["beats_lasso_step"] = _drop_steps(loss, levels["lasso"])
    if "oracle" in levels:
        moments["near_oracle_step"] = _drop_steps(loss, 2.0 * levels["oracle"])
    moments["final_td_best_layer"] = float(final_td.max())
    moments["final_td_by_layer"] = {int(l): float(v) for l, v in final_td.items()}
    moments["steps_analysed"] = steps
    if (until := curriculum_end(config)) is not None:
        moments["curriculum_until"] = until
    moments["eval_from_points"] = from_points

    patch_at = {"b": moments["b"], "end": steps[-1]}
    patch_frames = []
    for moment, step in patch_at.items():
        if step is None:
            continue
        frame = patching_matrix(load_checkpoint(run_dir, step, config), batch, layer, names, token, patch_mode)
        frame.insert(0, "step", step)
        frame.insert(0, "moment", moment)
        patch_frames.append(frame)
    patching = pd.concat(patch_frames, ignore_index=True)
    heads = head_importance(load_checkpoint(run_dir, steps[-1], config), batch, names, from_points)
    heads.insert(0, "step", steps[-1])

    umap_frame = _umap_table(acts_by_step, moments, layer, labels) if umap else pd.DataFrame()
    outputs = {"loss_per_basis": loss, "decodability": td, "pairwise_td": pairwise, "patching": patching,
               "head_importance": heads, "baselines": base}
    if umap:
        outputs["umap"] = umap_frame
    for name, frame in outputs.items():
        write_table(run_dir / f"{name}.csv", frame)
    write_json(run_dir / "moments.json", moments)
    files = [f"{name}.csv" for name in outputs] + ["moments.json"]
    if figures:
        from conceptlens.synthetic.figures import draw_all

        files += draw_all(run_dir, loss, td, moments, base, patching, heads, umap_frame, config, pairwise)
    return {"run": str(run_dir), "moments": moments, "files": files}


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
