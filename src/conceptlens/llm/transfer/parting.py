"""Where decodability and use part, decided by the run's own intervals, not by fixed thresholds.

Per layer, TD and transfer accuracy get Wilson 95% intervals from their counts; a layer is decodable
when TD's interval lies above chance, usable when transfer's interval lies above the zero-shot one.
DECISION (the rule): TD at a layer is the mean over concepts of the leave-one-out kNN accuracy of
the task vectors, pooled into successes / prompts (every concept has the same n); transfer and the
zero-shot and ICL baselines are pooled the same way from `transfer.csv`. *Decodable* = the lower end
of TD's interval > chance (1 / concepts); *usable* = the lower end of transfer's interval > the upper
end of the zero-shot interval. *Decodable, not usable*: decodable, and transfer's interval reaches the
zero-shot interval (near zero-shot, or below it). *Usable, not decodable*: usable, and TD's interval
reaches chance. The intervals treat prompts as independent (kNN votes share neighbours, so TD's is
somewhat narrow) and transfer and zero-shot as independent samples (they share inputs: conservative).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

Z95 = 1.959964
RULE = ("decodable: TD's 95% interval lies above chance (1 / concepts); usable: transfer's 95% interval lies "
        "above the zero-shot interval; decodable, not usable: decodable while transfer's interval reaches the "
        "zero-shot interval (near zero-shot, or below it); usable, not decodable: usable while TD's interval "
        "reaches chance (Wilson intervals of the pooled counts, 95%)")


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion successes / n (n = 0: the whole [0, 1])."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def pooled(rows: pd.DataFrame) -> dict:
    """Accuracy pooled over the rows' concepts (sum of accuracy × n over sum of n) with its interval."""
    n = float(rows.n.sum())
    successes = float((rows.accuracy * rows.n).sum())
    low, high = wilson(successes, n)
    return {"accuracy": successes / n if n else float("nan"), "low": low, "high": high, "n": int(n)}


def layer_intervals(frame: pd.DataFrame, td: pd.DataFrame, variant: str = "per_query") -> pd.DataFrame:
    """Per layer: TD and transfer (one variant), each with its Wilson 95% interval.

    `frame` is transfer.csv (accuracy and n per layer, concept, variant, condition), `td` is td.csv;
    TD's n per concept is the number of task vectors, the same as the patched prompts of that concept.
    """
    patched = frame[(frame.condition == "task_vector") & (frame.variant == variant)]
    n_by_concept = patched.groupby("concept").n.max()
    rows = []
    for layer, mine in patched.groupby("layer", sort=True):
        transfer = pooled(mine)
        here = td[td.layer == layer]
        counts = here.concept.map(n_by_concept).fillna(0).to_numpy(dtype=float)
        successes, n = float((here.td.to_numpy(dtype=float) * counts).sum()), float(counts.sum())
        td_low, td_high = wilson(successes, n)
        rows.append({"layer": int(layer), "td": float(here.td.mean()), "td_low": td_low, "td_high": td_high,
                     "transfer": transfer["accuracy"], "transfer_low": transfer["low"],
                     "transfer_high": transfer["high"]})
    return pd.DataFrame(rows)


def parting(frame: pd.DataFrame, td: pd.DataFrame, variant: str = "per_query") -> dict:
    """The layers where decodability and use part under `RULE`, with every interval it used."""
    layers = layer_intervals(frame, td, variant)
    chance = 1.0 / td.concept.nunique()
    zero = pooled(frame[frame.condition == "zero_shot"])
    icl = pooled(frame[frame.condition == "icl"])
    decodable = layers.td_low > chance
    usable = layers.transfer_low > zero["high"]
    layers = layers.assign(decodable=decodable, usable=usable,
                           part=np.select([decodable & ~usable, usable & ~decodable, decodable & usable],
                                          ["decodable, not usable", "usable, not decodable", "both"], "neither"))
    return {"variant": variant, "chance": chance, "zero_shot": zero, "icl": icl,
            "icl_above_zero_shot": bool(icl["low"] > zero["high"]),
            "decodable_not_usable": [int(l) for l in layers.layer[decodable & ~usable]],
            "usable_not_decodable": [int(l) for l in layers.layer[usable & ~decodable]],
            "decodable_and_usable": [int(l) for l in layers.layer[decodable & usable]],
            "layers": layers, "rule": RULE}


def recovery_interval(frame: pd.DataFrame, layer: int, variant: str = "per_query", n_boot: int = 1000,
                      seed: int = 0) -> dict | None:
    """Pooled recovery (transfer − zero-shot) / (ICL − zero-shot) at `layer`, parametric bootstrap 95% interval.

    Each concept's three accuracies are redrawn as binomial counts of their own n; draws where ICL does not
    exceed zero-shot are dropped. None when ICL equals zero-shot on the data itself (nothing to recover).
    """
    parts = {"transfer": frame[(frame.condition == "task_vector") & (frame.variant == variant)
                               & (frame.layer == layer)],
             "zero": frame[frame.condition == "zero_shot"], "icl": frame[frame.condition == "icl"]}
    concepts = sorted(set(parts["transfer"].concept))
    if not concepts:
        return None
    n, p = {}, {}
    for key, rows in parts.items():
        rows = rows.set_index("concept").loc[concepts]
        n[key], p[key] = rows.n.to_numpy(dtype=int), rows.accuracy.to_numpy(dtype=float)

    def value(hits: dict) -> float | None:
        rates = {key: hits[key].sum() / n[key].sum() for key in hits}
        gap = rates["icl"] - rates["zero"]
        return None if gap <= 1e-12 else float((rates["transfer"] - rates["zero"]) / gap)

    point = value({key: p[key] * n[key] for key in n})
    if point is None:
        return None
    rng = np.random.default_rng(seed)
    draws = [v for v in (value({key: rng.binomial(n[key], np.clip(p[key], 0, 1)) for key in n})
                         for _ in range(n_boot)) if v is not None]
    low, high = np.percentile(draws, [2.5, 97.5]) if draws else (float("nan"), float("nan"))
    return {"layer": int(layer), "recovery": point, "low": float(low), "high": float(high), "draws": len(draws)}


def layer_ranges(layers: list[int]) -> str:
    """[1, 2, 3, 5, 7, 8] -> "1-3, 5, 7-8"; [] -> "none"."""
    if not layers:
        return "none"
    layers = sorted(set(int(l) for l in layers))
    spans, start = [], layers[0]
    for previous, current in zip(layers, layers[1:] + [None]):
        if current is None or current != previous + 1:
            spans.append(str(start) if start == previous else f"{start}-{previous}")
            start = current
    return ", ".join(spans)
