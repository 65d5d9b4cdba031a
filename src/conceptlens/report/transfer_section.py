"""The report's "Decodable vs usable" part: where TD is high but task vectors do not transfer, and the reverse.

Per family (one transfer folder), TD and transfer per layer on one set of axes with the parting layers
shaded, drawn again from transfer.csv and td.csv under `llm.transfer.parting.RULE` (Wilson intervals:
TD above chance = decodable, transfer above the zero-shot interval = usable); one sentence naming the
layer ranges; recovery (parametric bootstrap interval) and the TD-transfer correlations of summary.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from conceptlens.llm.transfer.parting import RULE, layer_ranges, parting, recovery_interval
from conceptlens.report.explain import PART_TITLES
from conceptlens.report.parts import Figure, Part, figure_uri
from conceptlens.report.tables import Cell, TableView

PART_CSS = {"decodable, not usable": "bad", "usable, not decodable": "good", "both": "", "neither": ""}


def read_transfer(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """transfer.csv, td.csv and summary.json (per-layer keys as integers) of a transfer folder."""
    from conceptlens.llm.transfer.report import load_summary

    return pd.read_csv(folder / "transfer.csv"), pd.read_csv(folder / "td.csv"), load_summary(folder)


def main_variant(summary: dict) -> str:
    """Hendel's per-query variant when the run has it, else its first variant."""
    return "per_query" if "per_query" in summary["variants"] else sorted(summary["variants"])[0]


def _interval(stats: dict) -> str:
    return f"{stats['accuracy']:.2f} [{stats['low']:.2f}, {stats['high']:.2f}]"


def _r(corr: dict | None) -> str:
    if not corr or corr.get("r") is None:
        return "undefined (a constant variable)"
    return f"r = {corr['r']:+.2f} [{corr['low']:+.2f}, {corr['high']:+.2f}]"


def _recovery(value: dict | None) -> str:
    if value is None:
        return "undefined (ICL equals zero-shot)"
    return f"{100 * value['recovery']:.0f}% [{100 * value['low']:.0f}%, {100 * value['high']:.0f}%]"


def family_name(summary: dict) -> str:
    """"part of speech" for pos; a user family's folder name for a path (data/function_vectors_small)."""
    family = str(summary.get("family", "")).rstrip("/")
    return PART_TITLES.get(family, Path(family).name or family)


def parting_sentence(parts: dict, summary: dict, n_layers: int) -> str:
    """The finding in words: the layer ranges where decodability and use part, and why (the intervals)."""
    family = family_name(summary)
    dnu, und = parts["decodable_not_usable"], parts["usable_not_decodable"]
    return (f"{family} ({summary.get('model', '?')}, {summary.get('shots', '?')}-shot task vectors, "
            f"{parts['variant'].replace('_', '-')} variant): decodable, not usable at layers {layer_ranges(dnu)} "
            f"({len(dnu)} of {n_layers}); usable, not decodable at layers {layer_ranges(und)} ({len(und)} of "
            f"{n_layers}); both at layers {layer_ranges(parts['decodable_and_usable'])}. Zero-shot accuracy "
            f"{_interval(parts['zero_shot'])}, ICL {_interval(parts['icl'])}, TD chance {parts['chance']:.2f}.")


def statements(frame: pd.DataFrame, summary: dict, parts: dict, surface: float | None) -> list[str]:
    """The part's sentences: the split, its caveat, the peaks, recovery and correlation, the rule."""
    layers = parts["layers"].set_index("layer")
    out = [parting_sentence(parts, summary, len(layers))]
    if not parts["icl_above_zero_shot"]:
        out.append("ICL is not above zero-shot by its interval: the model does not do this task in context, so "
                   "no layer can show use, and 'not usable' here says nothing against the encoding.")
    best_td, best = int(layers.td.idxmax()), int(layers.transfer.idxmax())
    at_td = layers.loc[best_td]
    flat = layers.transfer.max() == layers.transfer.min()
    out.append(f"TD peaks at layer {best_td} ({at_td.td:.2f}); there transfer is {at_td.transfer:.2f} "
               f"[{at_td.transfer_low:.2f}, {at_td.transfer_high:.2f}], {'above' if at_td.usable else 'not above'} "
               "zero-shot. " + (f"Transfer is {at_td.transfer:.2f} at every layer." if flat else
                                f"Transfer peaks at layer {best} ({layers.loc[best].transfer:.2f})."))
    variant = summary["variants"][parts["variant"]]
    corr = variant.get("correlation", {})
    recovery = f"{_recovery(recovery_interval(frame, best_td, parts['variant']))} at the TD peak"
    if best != best_td and not flat:
        recovery += (f", {_recovery(recovery_interval(frame, best, parts['variant']))} at the best transfer layer "
                     f"{best} (chosen on these data, so it flatters)")
    out.append(f"Recovery (transfer − zero-shot) / (ICL − zero-shot), pooled over concepts, parametric bootstrap "
               f"95%: {recovery}. TD-transfer correlation across layers {_r(corr.get('across_layers'))}, across "
               f"concepts at the TD peak {_r(corr.get('across_concepts_at_best_td_layer'))}, over layer × concept "
               f"cells {_r(corr.get('across_layer_concept_cells'))} (bootstrap 95%).")
    if surface is not None:
        out.append(f"Context: this run's encoding study decodes the answers' surface (mean answer embedding, Null "
                   f"included) at TD {surface:.2f}; TD below that may be carried by the answers' vocabulary.")
    out.append(f"Rule: {RULE}.")
    return out


def layer_table(parts: dict, other: dict | None) -> TableView:
    """One row per layer: TD and transfer with their intervals, and which side of the split the layer is on."""
    rows = []
    others = other["layers"].set_index("layer") if other else None
    for row in parts["layers"].itertuples(index=False):
        cells = [Cell(str(row.layer), "key"), Cell(f"{row.td:.2f} [{row.td_low:.2f}, {row.td_high:.2f}]", "num"),
                 Cell(f"{row.transfer:.2f} [{row.transfer_low:.2f}, {row.transfer_high:.2f}]", "num")]
        if others is not None:
            mine = others.loc[row.layer]
            cells.append(Cell(f"{mine.transfer:.2f} [{mine.transfer_low:.2f}, {mine.transfer_high:.2f}] ({mine.part})",
                              "num"))
        rows.append(cells + [Cell(row.part, PART_CSS.get(row.part, ""))])
    columns = ["layer", "TD [95%]", f"transfer, {parts['variant']} [95%]"]
    columns += [f"transfer, {other['variant']} [95%]"] if other else []
    return TableView("per layer", columns + ["where they part"], rows, index_columns=1,
                     caption="TD and transfer accuracy per layer, with the side of the split each layer is on",
                     note=f"zero-shot {_interval(parts['zero_shot'])}; chance {parts['chance']:.2f}")


def surface_control(run: Path | None, family: str, shots) -> float | None:
    """The answers' surface-control TD of the same run's encoding study (llm/FAMILY), at the same shots."""
    if run is None:
        return None
    try:
        study = json.loads((run / "llm" / family / "summary.json").read_text(encoding="utf-8"))
        answers = study["surface_control"][str(shots)]["answers"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None if answers.get("skipped") else float(answers["td"])


def transfer_part(run: Path, folder: Path) -> Part:
    """The "Decodable vs usable" part of one transfer folder."""
    from conceptlens.llm.transfer.report import plot, with_current_parting

    frame, td, summary = read_transfer(folder)
    name = main_variant(summary)
    parts = {v: parting(frame, td, v) for v in summary["variants"]}
    family = str(summary.get("family", ""))
    part = Part(f"Decodable vs usable: {family_name(summary)}",
                statements(frame, summary, parts[name], surface_control(run, family, summary.get("shots"))))
    current = with_current_parting(frame, td, summary)
    title = (f"{summary.get('model')} · {family} · {summary.get('shots')}-shot task vectors "
             f"({summary.get('prompts_per_concept')} test prompts per concept)")
    part.figures.append(Figure("drawn from transfer.csv and td.csv", "TD (black) and task-vector transfer per layer "
                               "on one set of axes; red: decodable, not usable; green: usable, not decodable "
                               f"({name.replace('_', '-')} variant, the rule below); dashed: zero-shot and ICL",
                               figure_uri(plot(frame, td, current, title)), wide=True))
    other = next((parts[v] for v in parts if v != name), None)
    part.tables.append(layer_table(parts[name], other))
    stored = summary["variants"][name]
    if (stored.get("decodable_not_usable"), stored.get("usable_not_decodable")) != (
            parts[name]["decodable_not_usable"], parts[name]["usable_not_decodable"]):
        part.notes.append(f"summary.json lists other parting layers (decodable, not usable: "
                          f"{layer_ranges(stored.get('decodable_not_usable') or [])}): it was written under the rule "
                          f"of its time ({str(summary.get('thresholds_meaning', '?'))[:300]}). This part uses the rule "
                          "stated above.")
    part.skip = {"transfer.png": "the run's own drawing of the figure above (drawn again here under the stated rule)",
                 "transfer.csv": "the per-layer table above is drawn from it",
                 "td.csv": "the per-layer table above is drawn from it"}
    return part


def transfer_finding(folder: Path) -> dict | None:
    """For the findings table: TD-peak layer, transfer there and whether it is usable, the split, baselines."""
    if not all((folder / name).exists() for name in ("transfer.csv", "td.csv", "summary.json")):
        return None
    frame, td, summary = read_transfer(folder)
    parts = parting(frame, td, main_variant(summary))
    layers = parts["layers"].set_index("layer")
    best_td = int(layers.td.idxmax())
    return {"parts": parts, "best_td": best_td, "at_td": layers.loc[best_td], "n_layers": len(layers)}
