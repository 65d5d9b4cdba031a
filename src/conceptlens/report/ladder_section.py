"""The report's "Model ladder" part: the scaling table, the figure, and what the numbers say about scale.

From ladder.csv (`conceptlens llm ladder`): per model, parameters, depth fraction of the TD peak, TD at
the peak beside its surface control, ICL accuracy, R² of accuracy vs TD with its interval and the
intervention effects; the paper's models on the same axes. DECISION (the statement): a quantity
"grows with scale" on a family when it rises from each model to the next larger one AND the largest
model's 95% interval lies above the smallest's; rising with overlapping intervals is "not established".
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from conceptlens.report.parts import Figure, Part, figure_uri
from conceptlens.report.tables import Cell, TableView

COLUMNS = ["source", "model", "family", "params (M)", "TD peak: depth (layer)", "TD peak [95%]", "surface control",
           "ICL acc", "R² [95%]", "+pos / −neg (pts)"]
REQUIRED = ["source", "model", "family", "parameters", "td_peak"]  # other columns of ladder.csv may be absent


def _num(value, digits: int = 2) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):.{digits}f}"


def _flag(value) -> bool | None:
    """ladder.csv's exceeds_surface_control (True / False / empty, read as bool, string or NaN)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return str(value).strip().lower() in ("true", "1", "yes")


def _params(value) -> str:
    if pd.isna(value):
        return "–"
    return f"{value / 1e6:.0f}M" if value < 1e9 else f"{value / 1e9:.1f}B"


def scaling_table(table: pd.DataFrame) -> TableView:
    """ladder.csv as the report's scaling table: ours first (in ladder order), then the paper's models."""
    rows = []
    for row in table.itertuples(index=False):
        depth = (f"{_num(row.depth_fraction)} ({int(row.td_peak_layer)} of {int(row.n_layers)})"
                 if pd.notna(row.td_peak_layer) and pd.notna(row.n_layers) else _num(row.depth_fraction))
        td = f"{_num(row.td_peak)} [{_num(row.td_peak_ci_low)}, {_num(row.td_peak_ci_high)}]" \
            if pd.notna(row.td_peak) else "–"
        exceeds = _flag(row.exceeds_surface_control)
        surface = _num(row.surface_control_td) + ("" if exceeds is None else (" (TD above)" if exceeds else
                                                                              " (TD not above)"))
        r2 = f"{_num(row.r2)} [{_num(row.r2_ci_low)}, {_num(row.r2_ci_high)}]" if pd.notna(row.r2_ci_low) \
            else _num(row.r2)
        effects = f"{_num(row.positive_effect, 1)} / {_num(row.negative_effect, 1)}" \
            if pd.notna(row.positive_effect) else "–"
        css = "ours" if row.source == "ours" else "paper"
        rows.append([Cell(str(row.source), css), Cell(str(row.model), "key"), Cell(str(row.family)),
                     Cell(f"{row.parameters / 1e6:.0f}" if pd.notna(row.parameters) else "–", "num"),
                     Cell(depth, "num"), Cell(td, "num"),
                     Cell(surface, "good" if exceeds else ("warn" if exceeds is False else "")),
                     Cell(_num(row.icl_accuracy), "num"), Cell(r2, "num"), Cell(effects, "num")])
    note = ("params: the converted model's tensors; TD peak: at the largest shots, bootstrap 95%; surface control: "
            "TD of the mean answer embedding")
    if table.positive_effect.isna().all():  # no rung ran the interventions: no column of dashes
        columns, rows = COLUMNS[:-1], [cells[:-1] for cells in rows]
    else:
        columns, note = COLUMNS, note + "; +pos / −neg: the interventions' change in accuracy (points)"
    return TableView("ladder.csv", columns, rows, index_columns=2, caption="The model ladder: our models (blue) beside "
                     "the paper's (brown, which publishes R² for each and the peak layer for Llama-3.1 8B only)",
                     note=note)


def trend(values: list[float], lows: list[float] | None = None, highs: list[float] | None = None) -> dict:
    """How a quantity moves from the smallest to the largest model: monotone?, and do the end intervals overlap?"""
    steps = list(zip(values, values[1:]))
    rises = bool(steps) and all(b >= a for a, b in steps) and values[-1] > values[0]
    falls = bool(steps) and all(b <= a for a, b in steps) and values[-1] < values[0]
    have = lows is not None and highs is not None and not any(pd.isna(v) for v in (lows[0], lows[-1], highs[0], highs[-1]))
    above = have and lows[-1] > highs[0]
    below = have and highs[-1] < lows[0]
    step = "at every step" if len(values) > 2 else "from the smaller to the larger model"
    if rises:
        words = (f"rises {step}, and the largest model's interval lies above the smallest's" if above else
                 f"rises {step}, but the smallest and largest models' intervals overlap" if have else
                 f"rises {step} (no interval to judge it by)")
    elif falls:
        words = f"falls {step}" + (", beyond the intervals" if below else ", within overlapping intervals"
                                         if have else "")
    else:
        ends = (" (the largest model's interval above the smallest's)" if above else
                " (the largest model's interval below the smallest's)" if below else
                " (the smallest and largest models' intervals overlap)" if have else "")
        words = "is not monotone in size" + ends
    return {"rises": rises, "falls": falls, "separated_above": above, "grows": rises and above, "words": words}


def _series(rows: pd.DataFrame, column: str) -> str:
    return " → ".join(_num(v) for v in rows[column])


def family_statements(family: str, ours: pd.DataFrame, paper: pd.DataFrame) -> list[str]:
    """What the ladder says on one family: TD at the peak, its control, R², ICL accuracy, the paper's Gemma-2."""
    sizes = " → ".join(_params(p) for p in ours.parameters)
    td = trend(list(ours.td_peak), list(ours.td_peak_ci_low), list(ours.td_peak_ci_high))
    flags = [_flag(v) for v in ours.exceeds_surface_control]
    known = [f for f in flags if f is not None]
    out = [f"{family}, {len(ours)} models ({sizes}): TD at the peak {_series(ours, 'td_peak')} {td['words']}; it "
           f"exceeds the answers' surface control on {sum(known)} of {len(known)} models with a control."]
    if known and not any(known):
        out.append(f"{family}: TD never exceeds the answers' surface control, so these TD values do not measure "
                   "concept encoding beyond the answers' vocabulary, whatever their trend.")
    fitted = ours[ours.r2_ci_low.notna()]
    if len(fitted) >= 2:
        r2 = trend(list(fitted.r2), list(fitted.r2_ci_low), list(fitted.r2_ci_high))
        undefined = len(ours) - len(fitted)
        out.append(f"{family}: R² of accuracy vs TD {_series(fitted, 'r2')} ({_params(fitted.parameters.iloc[0])} → "
                   f"{_params(fitted.parameters.iloc[-1])}) {r2['words']}"
                   + (f"; undefined on {undefined} model(s) (TD equal for every concept)" if undefined else "") + ".")
    else:
        r2 = {"grows": False}
        out.append(f"{family}: R² of accuracy vs TD is defined on {len(fitted)} model(s) only: no trend can be read.")
    effects = ours[ours.positive_effect.notna()]
    if len(effects):
        out.append(f"{family}: interventions at the TD peak, own concept's mean / Null's mean (accuracy points): "
                   + ", ".join(f"{_params(p)} {_num(a, 1)} / {_num(b, 1)}" for p, a, b in
                               zip(effects.parameters, effects.positive_effect, effects.negative_effect)) + ".")
    icl = trend(list(ours.icl_accuracy))
    out.append(f"{family}: ICL accuracy {_series(ours, 'icl_accuracy')} {icl['words']}.")
    gemma = paper[paper.model.str.startswith("Gemma-2")].sort_values("parameters")
    if len(gemma) >= 2:
        out.append(f"{family}, the paper's Gemma-2 {' → '.join(m.split()[-1] for m in gemma.model)}: R² "
                   f"{_series(gemma, 'r2')} {trend(list(gemma.r2))['words']}.")
    out.append(f"{family}, in short: encoding quality (TD at the peak) {'grows' if td['grows'] else 'does not grow'} "
               f"with scale on this ladder, and its link to accuracy (R²) {'grows' if r2['grows'] else 'does not grow'} "
               "(growth: a rise at every step with the largest model's interval above the smallest's).")
    return out


def scaling_statements(table: pd.DataFrame) -> list[str]:
    """The plain statement of the ladder, per family, from the numbers of ladder.csv."""
    out = []
    for family in dict.fromkeys(table.family):
        ours = table[(table.source == "ours") & (table.family == family) & table.td_peak.notna()
                     & table.parameters.notna()].sort_values("parameters")
        paper = table[(table.source == "paper") & (table.family == family)]
        if len(ours) < 2:
            out.append(f"{family}: {len(ours)} finished model(s) on the ladder: no trend across scale can be read.")
            continue
        out += family_statements(str(family), ours, paper)
    failed = table[(table.source == "ours") & table.td_peak.isna()]
    if len(failed):
        out.append("Without numbers (not finished or failed): " + ", ".join(
            f"{m} / {f} ({s})" for m, f, s in zip(failed.model, failed.family, failed.status)) + ".")
    return out


def ladder_part(folder: Path) -> Part:
    """The "Model ladder" part of a ladder folder."""
    from conceptlens.llm.ladder.figure import ladder_figure
    from conceptlens.llm.ladder.table import COLUMNS as LADDER_COLUMNS

    table = pd.read_csv(folder / "ladder.csv")
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise KeyError(f"ladder.csv lacks the columns {missing}")
    table = table.reindex(columns=list(dict.fromkeys([*LADDER_COLUMNS, *table.columns])))  # older/newer: NaN
    part = Part("Model ladder", scaling_statements(table), comparisons=[scaling_table(table)])
    part.figures.append(Figure("drawn from ladder.csv", "Concept encoding across scale: our ladder (filled, R² with "
                               "its interval, TD beside its surface control) and the paper's models (open) on the same "
                               "axes", figure_uri(ladder_figure(table)), wide=True))
    part.skip = {"ladder.csv": "shown as the scaling table above", "ladder.png": "the same figure as above",
                 "ladder.md": "the same table, with each rung's load and study time and memory (also in its rung.json)"}
    return part
