"""Which layers to intervene at: the rise of TD, from where it leaves the surface control to its peak.

TD per layer on the held-out means prompts is set beside the surface control (TD of the mean input
embedding of the demonstrations' answer tokens, same prompts, k and tie rule); the sweep runs from the
first layer whose TD exceeds the control (paired bootstrap interval of the difference above 0) to the
TD peak. DECISION: at most `MAX_SWEEP_LAYERS` (6) layers, evenly spaced over that range with both ends
kept, to bound the CPU cost; when TD never exceeds the control up to the peak, the sweep covers the
whole rise from layer 1 to the peak and the note says so.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from conceptlens.decodability import exceeds_control, surface_decodability
from conceptlens.decodability.knn import DecodabilityResult
from conceptlens.models.loader import LoadedModel
from conceptlens.prompts import Prompt, token_roles

MAX_SWEEP_LAYERS = 6


def demo_answer_ids(lm: LoadedModel, prompts: Sequence[Prompt]) -> list[list[int]]:
    """Per prompt, the ids of its demonstrations' answer tokens (role `demo_answer`)."""
    out = []
    for prompt in prompts:
        ids, roles = token_roles(lm.tokenizer, prompt)
        out.append([i for i, role in zip(ids, roles) if role == "demo_answer"])
    return out


def control_by_layer(lm: LoadedModel, td: DecodabilityResult, prompts: Sequence[Prompt], labels: Sequence[str],
                     seed: int = 0, n_boot: int = 1000) -> pd.DataFrame | None:
    """Per layer of `td`: mean TD, the surface control's TD and whether TD exceeds it (None without demos)."""
    ids = demo_answer_ids(lm, prompts)
    if any(not row for row in ids):
        return None  # zero-shot prompts have no answer tokens to embed
    control = surface_decodability(lm.model.get_input_embeddings().weight, ids, labels, k=td.k, seed=seed)
    rows = []
    for layer in td.layers:
        verdict = exceeds_control(td, control, layer, n_boot=n_boot, seed=seed).set_index("concept").loc["mean"]
        rows.append({"layer": layer, "td": float(verdict.td), "control_td": float(verdict.control_td),
                     "difference_ci_low": float(verdict.difference_ci_low),
                     "difference_ci_high": float(verdict.difference_ci_high), "exceeds": bool(verdict.exceeds)})
    return pd.DataFrame(rows)


def evenly(start: int, stop: int, at_most: int) -> list[int]:
    """At most `at_most` integers from `start` to `stop` (both kept), evenly spaced."""
    count = min(at_most, stop - start + 1)
    if count <= 1:
        return [stop]
    return sorted({int(round(x)) for x in np.linspace(start, stop, count)})


def sweep_layers(table: pd.DataFrame, max_layers: int = MAX_SWEEP_LAYERS) -> tuple[list[int], str]:
    """Layers from where TD first exceeds the control to the TD peak, and a note saying how they were chosen.

    `table` has one row per layer: `layer`, `td` and, when a control was computed, `exceeds`.
    """
    ordered = table.sort_values("layer").reset_index(drop=True)
    peak = int(ordered.loc[int(np.argmax(ordered["td"].to_numpy())), "layer"])
    before = ordered[ordered["layer"] <= peak]
    if "exceeds" in before and before["exceeds"].any():
        start = int(before.loc[before["exceeds"].astype(bool), "layer"].iloc[0])
        note = f"TD exceeds the surface control from layer {start}; TD peaks at layer {peak}"
    else:
        why = "no surface control (zero-shot)" if "exceeds" not in before else "TD never exceeds the surface control"
        start = min(1, peak)
        note = f"{why} up to its peak at layer {peak}: sweeping the whole rise from layer {start}"
    layers = evenly(start, peak, max_layers)
    return layers, f"{note}; {len(layers)} layer(s), at most {max_layers}, evenly spaced"
