"""The report's first table: each finding of the paper, its value, ours, the control, and a verdict.

Read from the folders of a `reproduce` run (llm/FAMILY, interventions/FAMILY, comparison/, synthetic/):
emergence of the encoding in training, the TD peak in the middle layers and its growth with shots, TD
against the answers' surface control, accuracy vs TD, the interventions against a random vector of the
same norm, before- vs after-peak finetuning, the concept stated in the prompt, and whether the TD peak is a layer
whose task vectors transfer (transfer/FAMILY, the interval rule of `llm.transfer.parting`). DECISION: a verdict
is "holds", "does not hold", "not distinguishable from the control" or "not measured", from fixed
rules written beside each row; a number is never judged without the control that could explain it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from conceptlens.report import paper_values as paper
from conceptlens.report.tables import Cell, TableView

COLUMNS = ["finding", "family", "paper", "ours", "control", "verdict"]
VERDICT_CSS = {"holds": "good", "holds at the best block only": "good", "does not hold": "bad",
               "not distinguishable from the control": "warn", "not measured": ""}


def _json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _csv(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError):
        return None


def _row(finding: str, family: str, theirs: str, ours: str, control: str, verdict: str) -> list[Cell]:
    return [Cell(finding), Cell(family), Cell(theirs, "paper"), Cell(ours, "ours"), Cell(control),
            Cell(verdict, VERDICT_CSS.get(verdict, ""))]


def encoding_rows(family: str, summary: dict | None) -> list[list[Cell]]:
    """TD peak depth, growth with shots, TD vs its surface control, accuracy vs TD."""
    if summary is None:
        return [_row("concept encoding (TD)", family, "", "", "", "not measured")]
    rows = []
    fraction, peak = summary.get("best_layer_fraction"), paper.peak_fraction(family)
    middle = fraction is not None and 0.25 <= fraction <= 0.75
    rows.append(_row("TD peaks in the middle layers", family, f"{peak:.2f} of depth" if peak else "-",
                     f"layer {summary.get('best_layer')}, {fraction:.2f} of depth" if fraction is not None else "-",
                     "middle: 0.25-0.75 of depth", "holds" if middle else "does not hold"))
    by_shots = {int(s): v for s, v in (summary.get("mean_td_best_layer") or {}).items()}
    if len(by_shots) > 1:
        values = [by_shots[s] for s in sorted(by_shots)]
        rises = all(b >= a for a, b in zip(values, values[1:])) and values[-1] > values[0]
        rows.append(_row("TD rises with more shots", family, "rises (1, 4, 10 shots)",
                         " / ".join(f"{v:.2f}" for v in values) + f" at {', '.join(map(str, sorted(by_shots)))} shots",
                         f"chance {summary.get('chance', float('nan')):.2f}", "holds" if rises else "does not hold"))
    shots = str(max(by_shots)) if by_shots else None
    control = ((summary.get("surface_control") or {}).get(shots) or {}).get("answers") if shots else None
    td = by_shots.get(int(shots)) if shots else None
    if control and not control.get("skipped"):
        rows.append(_row("TD exceeds the answers' surface", family, "not reported (no control)",
                         f"TD {td:.2f} at {shots} shots", f"mean answer embedding {control['td']:.2f}",
                         "holds" if control.get("exceeds") else "not distinguishable from the control"))
    r2, ci = summary.get("r2"), summary.get("r2_ci95") or [None, None]
    if r2 is None or ci[0] is None:
        rows.append(_row("accuracy is linear in TD across concepts", family, f"R² {paper.R2.get(family, '-')}",
                         "R² undefined (TD equal for every concept)" if r2 is None else f"R² {r2:.2f}",
                         f"shuffled labels TD {summary.get('td_shuffled_labels', float('nan')):.2f}", "not measured"))
    else:
        rows.append(_row("accuracy is linear in TD across concepts", family, f"R² {paper.R2.get(family, '-')}",
                         f"R² {r2:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]", "interval above 0",
                         "holds" if ci[0] > 0.05 else "does not hold"))
    return rows


def intervention_rows(family: str, summary: pd.DataFrame | None) -> list[list[Cell]]:
    """Positive and Null edits at the TD peak, against a random vector of the same norm."""
    if summary is None or "at_td_peak" not in summary:
        return [_row("editing the query state moves accuracy", family, "", "", "", "not measured")]
    mean = summary[(summary.concept == "mean") & summary.at_td_peak.astype(bool)].set_index("condition")
    if not {"positive", "negative", "random"} <= set(mean.index):
        return [_row("editing the query state moves accuracy", family, "", "", "", "not measured")]
    pos, neg, rnd = (100 * float(mean.loc[c, "mean_change"]) for c in ("positive", "negative", "random"))
    layer = int(mean.layer.iloc[0])
    well, overlapping = paper.INTERVENTION_EFFECT["well separated"], paper.INTERVENTION_EFFECT["overlapping"]
    holds = pos > max(rnd, 0) and neg < 0
    return [_row("own concept's mean helps, Null's hurts", family,
                 f"+{well[0]:.0f} / {well[1]:.0f} points (well separated), +{overlapping[0]:.0f} / {overlapping[1]:.0f}",
                 f"{pos:+.1f} / {neg:+.1f} points at layer {layer}", f"random vector {rnd:+.1f}",
                 "holds" if holds else ("not distinguishable from the control" if pos <= rnd else "does not hold"))]


def finetune_rows(family: str, comparison: pd.DataFrame | None) -> list[list[Cell]]:
    """Accuracy and TD after before-peak vs after-peak finetuning, beside the pretrained model."""
    if comparison is None:
        return [_row("finetuning before the TD peak helps more", family, "", "", "", "not measured")]
    mine = comparison[comparison.family == family].set_index("variant")
    if not {"pretrained", "before-peak", "after-peak"} <= set(mine.index):
        return [_row("finetuning before the TD peak helps more", family, "", "", "", "not measured")]
    base, before, after = (mine.loc[v] for v in ("pretrained", "before-peak", "after-peak"))
    gain_before, gain_after = before.acc_mean - base.acc_mean, after.acc_mean - base.acc_mean
    first, last = paper.FINETUNING["LoRA first 10 layers"].get(family), paper.FINETUNING["LoRA last 10 layers"].get(family)
    theirs = f"accuracy {first[2]:.0f}% vs {last[2]:.0f}%, TD {first[0]:.2f} vs {last[0]:.2f}" if first and last else "-"
    ours = (f"accuracy {before.acc_mean:.1f}% vs {after.acc_mean:.1f}%, TD {before.td_mean:.2f} vs "
            f"{after.td_mean:.2f}")
    control = f"pretrained {base.acc_mean:.1f}%, TD {base.td_mean:.2f} (same prompts)"
    verdict, margin = finetune_verdict(before, after, gain_before, gain_after)
    ours += f" (difference {gain_before - gain_after:+.1f} points, ±{margin:.1f} = 2 standard errors)" if margin == margin else ""
    return [_row("finetuning before the TD peak helps more", family, theirs, ours, control, verdict)]


def finetune_verdict(before, after, gain_before: float, gain_after: float) -> tuple[str, float]:
    """(verdict, margin): holds only when before-peak beats after-peak by more than `margin`, two standard
    errors of the difference of their mean accuracies across concepts (and gains at all); the reverse does
    not hold; else not distinguishable. Without a spread across concepts (margin NaN): the plain comparison."""
    variance = sum(float(row.acc_std) ** 2 / row.get("n_concepts", 1) for row in (before, after))
    margin = 2 * variance ** 0.5  # NaN when a spread is missing
    if margin != margin:  # no spread across concepts: the plain comparison
        return ("holds" if gain_before > gain_after and gain_before > 0 else "does not hold"), margin
    if gain_before - gain_after > margin and gain_before > 0:
        return "holds", margin
    if gain_after - gain_before > margin:
        return "does not hold", margin
    return "not distinguishable from the control", margin


def stated_rows(family: str, plain: dict | None, stated: dict | None) -> list[list[Cell]]:
    """TD with the concept stated in the prompt, beside the plain prompts."""
    if not plain or not stated:
        return []
    shots = str(max(int(s) for s in stated.get("mean_td_best_layer", {"0": 0})))
    td_plain, td_stated = plain.get("mean_td_best_layer", {}).get(shots), stated.get("mean_td_best_layer", {}).get(shots)
    if td_plain is None or td_stated is None:
        return []
    theirs = paper.FINETUNING["concept stated in prompt"].get(family)
    return [_row("stating the concept raises TD", family, f"TD {theirs[0]:.2f}" if theirs else "-",
                 f"TD {td_stated:.2f}", f"plain prompts {td_plain:.2f} ({shots} shots)",
                 "holds" if td_stated > td_plain else "does not hold")]


def transfer_rows(family: str, folder: Path) -> list[list[Cell]]:
    """Is the best-decoding layer one the model uses? Task vectors from the TD peak, patched into zero-shot prompts."""
    from conceptlens.llm.transfer.parting import layer_ranges
    from conceptlens.report.transfer_section import transfer_finding

    try:
        found = transfer_finding(folder)
    except (OSError, ValueError, KeyError, TypeError):
        found = None
    if found is None:
        return [_row("the TD peak is a layer the model uses (task vectors transfer)", family, "", "", "", "not measured")]
    parts, at_td = found["parts"], found["at_td"]
    zero, icl = parts["zero_shot"], parts["icl"]
    verdict = ("not measured" if not parts["icl_above_zero_shot"] else "holds" if at_td.usable else "does not hold")
    return [_row("the TD peak is a layer the model uses (task vectors transfer)", family,
                 "the TD peak is where the concept is used (interventions there move accuracy)",
                 f"layer {found['best_td']} (TD {at_td.td:.2f}): transfer {at_td.transfer:.2f} [{at_td.transfer_low:.2f}, "
                 f"{at_td.transfer_high:.2f}]; decodable, not usable at layers {layer_ranges(parts['decodable_not_usable'])}",
                 f"zero-shot {zero['accuracy']:.2f} [{zero['low']:.2f}, {zero['high']:.2f}], ICL {icl['accuracy']:.2f}",
                 verdict)]


def _moments_text(moments: dict) -> tuple[str, set[str]]:
    reached = {name for name in ("a", "b", "c") if isinstance(moments.get(name), int)}
    text = ", ".join(f"({n}) {moments[n]:,}" for n in ("a", "b", "c") if n in reached)
    return f"block {moments.get('block')}: {text or 'none reached'}", reached


def synthetic_rows(run: Path) -> list[list[Cell]]:
    """Emergence: the bases separate in training (moments (b) and (c) reached), at the paper's depth and at
    the best block."""
    moments = _json(run / "synthetic" / "moments.json") or _json(run / "synthetic" / "analysis" / "moments.json")
    if moments is None:
        return []
    paper_depth, reached = _moments_text(moments)
    best, reached_best = _moments_text(moments.get("at_best_block") or {})
    verdict = "holds" if {"b", "c"} <= reached else ("holds at the best block only" if {"b", "c"} <= reached_best
                                                      else "does not hold")
    return [_row("the encoding emerges in training, bases separating in stages", "synthetic",
                 paper.SYNTHETIC["staging"], f"steps of the moments, {paper_depth}; {best}",
                 "ridge / Lasso baselines", verdict)]


def findings_table(run: Path) -> TableView | None:
    """The paper's findings, ours beside them, for a `reproduce` run folder (None for other folders)."""
    run = Path(run)
    settings = _json(run / "settings.json")
    if settings is None or not (run / "llm").is_dir():
        return None
    comparison = _csv(run / "comparison" / "comparison.csv")
    rows = synthetic_rows(run)
    for family in settings.get("families", []):
        summary = _json(run / "llm" / family / "summary.json")
        rows += encoding_rows(family, summary)
        rows += intervention_rows(family, _csv(run / "interventions" / family / "interventions_summary.csv"))
        rows += finetune_rows(family, comparison)
        rows += stated_rows(family, summary, _json(run / "llm" / f"{family}_stated" / "summary.json"))
        rows += transfer_rows(family, run / "transfer" / family)
    return TableView("findings", COLUMNS, rows, caption="The paper's findings, ours beside them, each with the "
                     "control that could explain it away", note=f"paper: {paper.PAPER} (Llama-3.1 8B unless said)",
                     index_columns=1)
