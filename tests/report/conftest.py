"""A fake study run folder: matplotlib PNGs, tidy CSVs, JSON and YAML, as the commands write them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

POS = ["Noun", "Adjective", "Verb", "Adverb", "Preposition", "Pronoun", "Null"]


def plot(path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=60)
    ax.plot(np.arange(10), np.sqrt(np.arange(10)))
    ax.set_title(title)
    fig.savefig(path)
    plt.close(fig)


def make_run(root: Path) -> Path:
    rng = np.random.default_rng(0)
    pos = root / "llm" / "pos"
    pos.mkdir(parents=True)
    rows = [{"model": "smollm2-135m", "family": "pos", "shots": s, "layer": l, "concept": c,
             "td": float(np.clip(0.2 + 0.05 * s ** 0.5 - abs(l - 14) / 40 + rng.normal(0, 0.02), 0, 1))}
            for s in (1, 4, 10) for l in range(31) for c in POS]
    pd.DataFrame(rows).to_csv(pos / "decodability.csv", index=False)
    pd.DataFrame([{"model": "smollm2-135m", "family": "pos", "shots": s, "concept": c, "accuracy": rng.uniform(),
                   "n": 30} for s in (1, 4, 10) for c in POS]).to_csv(pos / "accuracy.csv", index=False)
    (pos / "summary.json").write_text(json.dumps({"family": "pos", "best_layer": 14, "best_layer_heldout": 13,
                                                  "n_layers": 30, "r2": 0.61, "r2_ci95": [0.2, 0.9]}))
    plot(pos / "td_by_layer.png", "TD by layer")
    plot(pos / "accuracy_vs_td.png", "accuracy vs TD")
    (pos / "DONE").write_text("2025-01-01T00:00:00\n")

    inter = root / "interventions" / "pos"
    inter.mkdir(parents=True)
    base = {c: rng.uniform(0.2, 0.6) for c in POS}
    shift = {"baseline": 0.0, "positive": 0.1, "negative": -0.1}
    pd.DataFrame([{"model": "smollm2-135m", "family": "pos", "layer": 14, "concept": c, "replicate": r,
                   "condition": cond, "accuracy": base[c] + shift[cond], "n": 20}
                  for c in POS for r in range(3) for cond in shift]).to_csv(inter / "interventions.csv", index=False)
    synth = root / "synthetic"
    synth.mkdir()
    (synth / "metrics.jsonl").write_text('{"step": 100, "loss": 0.9}\n{"step": 200, "loss": 0.4217}\n{"step": 3')
    (synth / "config.yaml").write_text("n_layers: 4\nd_model: 64\nsteps: 3000\n")
    pd.DataFrame([{"step": st, "concept": f"B{b}", "mse": 1.0 / (1 + st / 500 * b)} for st in range(0, 3000, 50)
                  for b in range(1, 5)]).to_csv(synth / "loss_per_basis.csv", index=False)
    (synth / "moments.json").write_text(json.dumps({"a": 100, "b": 900, "c": None, "layer": 3,
                                                    "separation_order": ["B1", "B2"]}))
    plot(synth / "loss_per_basis.png", "loss per basis")
    finetune = root / "finetune" / "pos_first10"
    finetune.mkdir(parents=True)
    (finetune / "summary.json").write_text(json.dumps({
        "kind": "finetune", "family": "pos", "layers_spec": "first:10",
        "before": {"td_mean": 0.61, "td_std": 0.1, "acc_mean": 20.0, "acc_std": 4.0},
        "after": {"td_mean": 0.83, "td_std": 0.05, "acc_mean": 55.5, "acc_std": 9.0}}))
    (finetune / "config.json").write_text(json.dumps({"rank": 16, "layers_spec": "first:10"}))
    plot(finetune / "td_before_after.png", "before/after")
    comparison = root / "comparison"
    comparison.mkdir()
    (comparison / "comparison.md").write_text("| condition | pos TD | pos acc % |\n|---|---|---|\n"
                                              "| pretrained | 0.51 ± 0.10 | 20.0 ± 5.0 |\n")
    (root / "stages.json").write_text(json.dumps({
        "synthetic_train": {"status": "done", "seconds": 312.4, "folder": "synthetic", "cached": False},
        "llm_pos": {"status": "done", "seconds": 201.0, "folder": "llm/pos"},
        "interventions_pos": {"status": "failed", "seconds": 3.2, "folder": "interventions/pos",
                              "error": "RuntimeError: out of memory"}}))
    (root / "settings.json").write_text(json.dumps({"model": "smollm2-135m", "seed": 0, "shots": [1, 4, 10]}))
    return root


@pytest.fixture
def run_folder(tmp_path) -> Path:
    return make_run(tmp_path / "run")
