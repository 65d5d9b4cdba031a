"""A cell that takes seconds: TD of Gaussian clusters, to check a Ray cluster before real work.

`conceptlens sweep` with `command: python` and `function: conceptlens.sweep.toy.toy_decodability`
runs the whole machinery (workers import conceptlens, write run folders, tables get merged)
without a model. Clusters of `concepts` classes in `d` dimensions whose centres lie `separation`
apart; TD rises with the separation and is at chance (1 / concepts) at 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conceptlens.storage import write_json, write_table


def toy_decodability(out: Path, seed: int = 0, n_per_concept: int = 30, concepts: int = 3, d: int = 8,
                     separation: float = 2.0, layers: int = 3, k: int = 10) -> dict:
    """Write `decodability.csv` (layer, concept, td) and `summary.json` for clusters that separate with depth.

    Layer l scales the separation by l / (layers - 1), so TD rises from chance to its maximum.
    """
    from conceptlens.decodability import task_decodability

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(concepts, d))
    centres *= separation / np.linalg.norm(centres, axis=1, keepdims=True)
    labels = [f"C{c}" for c in range(concepts) for _ in range(n_per_concept)]
    noise = rng.normal(size=(layers, concepts * n_per_concept, d))
    scale = np.linspace(0.0, 1.0, layers)[:, None, None]
    acts = noise + scale * np.repeat(centres, n_per_concept, axis=0)[None]
    result = task_decodability(acts, labels, k=k)
    table = result.per_class.assign(seed=seed)
    write_table(Path(out) / "decodability.csv", table)
    summary = {"best_layer": result.best_layer, "n_layers": layers - 1, "chance": result.chance,
               "td_best": float(np.max(result.mean)), "seed": seed}
    write_json(Path(out) / "summary.json", summary)
    return summary
