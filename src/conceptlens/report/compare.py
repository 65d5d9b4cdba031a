"""Our numbers beside the paper's, for the sections where the paper reports a value.

Read from the files a section holds: `summary.json` (best layer, R²), `decodability.csv` (TD at
the best layer against shots), `interventions.csv` (positive and Null effects), `moments.json`
(synthetic staging), and the finetuning table for `comparison.*`. DECISION: the peak layer is
compared as a fraction of depth (our models have other depths than Llama-3.1 8B's 32 blocks);
intervention effects given as fractions (|x| <= 1) are shown in percentage points.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from conceptlens.report import paper_values as paper
from conceptlens.report.tables import Cell, TableView, fmt

FAMILIES = ("pos", "bitwise")


def family_of(relative: str, summary: dict) -> str | None:
    """`pos` or `bitwise` from summary.json's `family`, else from the folder names."""
    named = str(summary.get("family", "")).lower()
    if named in FAMILIES:
        return named
    for part in reversed(relative.lower().replace("\\", "/").split("/")):
        for family in FAMILIES:
            if part == family or part.startswith(family + "_") or part.endswith("=" + family):
                return family
    return None


def _row(quantity: str, ours: str, theirs: str, note: str = "") -> list[Cell]:
    return [Cell(quantity, "key"), Cell(ours, "ours"), Cell(theirs, "paper"), Cell(note)]


def _table(rows: list[list[Cell]], family: str | None) -> TableView | None:
    if not rows:
        return None
    title = f"beside the paper ({paper.MAIN_MODEL}" + (f", {paper.FAMILY_NAMES[family]})" if family else ")")
    return TableView(title, ["quantity", "this run", "paper", "note"], rows, note=f"paper: {paper.PAPER}",
                     index_columns=1)


def format_rows(summary: dict) -> list[list[Cell]]:
    """The prompt format a study used (summary.json `format`), and whether it was fitted to the tokenizer."""
    used = summary.get("format")
    if not isinstance(used, dict) or "separator" not in used:
        return []
    fitted = used.get("fitted_to_tokenizer") or {}
    return [_row("prompt format: separator, answer prefix", f"{used['separator']!r}, {used.get('answer_prefix')!r}",
                 "not stated", str(fitted.get("reason", "")))]


def llm_rows(family: str, summary: dict, decodability: pd.DataFrame | None) -> list[list[Cell]]:
    rows = []
    best, depth = summary.get("best_layer"), summary.get("n_layers")
    layer, paper_depth = paper.PEAK_LAYER[family]
    if isinstance(best, (int, float)) and isinstance(depth, (int, float)) and depth:
        rows.append(_row("TD peak layer (fraction of depth)", f"{int(best)}/{int(depth)} = {best / depth:.2f}",
                         f"{layer}/{paper_depth} = {layer / paper_depth:.2f}", "middle layers in the paper"))
        heldout = summary.get("best_layer_heldout")
        if isinstance(heldout, (int, float)):
            rows.append(_row("peak layer, chosen on held-out prompts", f"{int(heldout)}/{int(depth)}", "not reported",
                             "the paper picks the layer on the data it reports"))
        elif (summary.get("heldout_layer_choice") or {}).get("skipped"):
            rows.append(_row("peak layer, chosen on held-out prompts", "skipped", "not reported",
                             str(summary["heldout_layer_choice"].get("note") or "")))
    rows += format_rows(summary)
    r2 = summary.get("r2")
    if isinstance(r2, (int, float)) and r2 == r2:  # not NaN (constant accuracy leaves R² undefined)
        ci = summary.get("r2_ci95")
        ours = fmt(float(r2)) + (f" [{fmt(float(ci[0]))}, {fmt(float(ci[1]))}]" if isinstance(ci, list) and len(ci) == 2
                                 and all(isinstance(v, (int, float)) for v in ci) else "")
        low, high = paper.R2_OTHER_MODELS[family]
        rows.append(_row("R² of accuracy against TD across concepts", ours, f"{paper.R2[family]:.2f}",
                         f"{low:.2f}–{high:.2f} on the paper's other models"))
    trend = shots_trend(decodability, best)
    if trend:
        rows.append(_row("TD at the peak layer by shots", trend, "rises with shots (1, 4, 10)"))
    return rows


def shots_trend(decodability: pd.DataFrame | None, best) -> str:
    """"1: 0.41, 4: 0.55, 10: 0.60" (mean TD over concepts at the best layer), or ""."""
    if decodability is None or not {"shots", "layer", "td"} <= set(decodability.columns):
        return ""
    frame = decodability
    if isinstance(best, (int, float)) and (frame["layer"] == best).any():
        frame = frame[frame["layer"] == best]
    else:
        frame = frame.groupby(["shots", "layer"])["td"].mean().groupby("shots").max().rename("td").reset_index()
    by_shots = frame.groupby("shots")["td"].mean()
    if len(by_shots) < 2:
        return ""
    return ", ".join(f"{int(s)}: {v:.2f}" for s, v in by_shots.items())


def intervention_effects(frame: pd.DataFrame) -> pd.DataFrame | None:
    """(concept, condition, change) from `interventions_summary.csv` (mean_change) or the raw
    `interventions.csv` (accuracy per condition, change = condition - baseline); None if neither."""
    if "concept" not in frame.columns or "condition" not in frame.columns:
        return None
    if "at_td_peak" in frame.columns and frame["at_td_peak"].astype(bool).any():
        frame = frame[frame["at_td_peak"].astype(bool)]  # a layer sweep: the paper reports the TD peak
    if "mean_change" in frame.columns:
        out = frame[["concept", "condition", "mean_change"]].rename(columns={"mean_change": "change"})
        return out.groupby(["concept", "condition"], as_index=False)["change"].mean()
    if "accuracy" in frame.columns and (frame["condition"] == "baseline").any():
        frame = frame[frame["condition"] != "cross"]  # cross rows score against another concept's answer
        means = frame.groupby(["concept", "condition"])["accuracy"].mean().unstack("condition")
        changes = means.drop(columns="baseline").sub(means["baseline"], axis=0)
        return changes.stack().rename("change").reset_index()
    return None


def intervention_rows(family: str, frame: pd.DataFrame) -> list[list[Cell]]:
    """Mean positive and Null effects on the concepts the paper calls well separated / overlapping."""
    effects = intervention_effects(frame)
    if effects is None or effects.empty:
        return []
    scale = 100.0 if effects["change"].abs().max() <= 1.0 else 1.0
    rows = []
    for group, members in (("well separated", paper.WELL_SEPARATED[family]), ("overlapping", paper.OVERLAPPING[family])):
        chosen = effects[effects["concept"].astype(str).isin(members)]
        ours_pos = chosen.loc[chosen["condition"] == "positive", "change"].mean() * scale
        ours_neg = chosen.loc[chosen["condition"] == "negative", "change"].mean() * scale
        ours_random = chosen.loc[chosen["condition"] == "random", "change"].mean() * scale
        if pd.isna(ours_pos) and pd.isna(ours_neg):
            continue
        theirs_pos, theirs_neg = paper.INTERVENTION_EFFECT[group]
        control = "" if pd.isna(ours_random) else f"; random vector of the same norm {_pp(ours_random)}"
        rows.append(_row(f"intervention effect, {group} ({', '.join(members)})",
                         f"{_pp(ours_pos)} / {_pp(ours_neg)}", f"{_pp(theirs_pos)} / {_pp(theirs_neg)}",
                         f"positive (correct mean) / negative (Null mean), accuracy points{control}"))
    return rows


def finetune_rows(family: str, summary: dict) -> list[list[Cell]]:
    """TD and accuracy before/after layer-selective finetuning (`llm finetune`'s summary.json)."""
    before, after = summary.get("before"), summary.get("after")
    if not isinstance(before, dict) or not isinstance(after, dict):
        return []
    spec = str(summary.get("layers_spec", ""))
    # before-peak / after-peak (the blocks right before / from the TD peak) stand beside the paper's first / last 10
    condition = ("LoRA first 10 layers" if spec.startswith(("first", "before-peak")) else
                 "LoRA last 10 layers" if spec.startswith(("last", "after-peak")) else None)
    rows = []
    for label, ours, theirs in (("pretrained", before, paper.FINETUNING["pretrained"][family]),
                                (f"after finetuning {spec or '?'}" + _blocks(summary.get("layers")), after,
                                 paper.FINETUNING[condition][family] if condition else None)):
        td = _mean_sd(ours.get("td_mean"), ours.get("td_std"), 2)
        acc = _mean_sd(ours.get("acc_mean"), ours.get("acc_std"), 1)
        paper_td = f"{theirs[0]:.2f} ± {theirs[1]:.2f}" if theirs else "–"
        paper_acc = f"{theirs[2]:.1f} ± {theirs[3]:.1f}" if theirs else "–"
        note = condition if theirs and label != "pretrained" else ""
        rows.append(_row(f"TD, {label}", td, paper_td, note))
        rows.append(_row(f"accuracy %, {label}", acc, paper_acc, note))
    return rows


def _blocks(layers) -> str:
    if isinstance(layers, list) and layers and all(isinstance(b, int) for b in layers):
        return f" (blocks {layers[0]}-{layers[-1]})"
    return ""


def _mean_sd(mean, sd, digits: int) -> str:
    if not isinstance(mean, (int, float)) or mean != mean:
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if isinstance(sd, (int, float)) and sd == sd else "")


def _pp(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:+.1f}"


def finetuning_table(families: list[str]) -> TableView:
    """The paper's finetuning table (Llama-3.1 8B, 4-shot) for the families given."""
    columns = ["condition"]
    for family in families:
        columns += [f"{family} TD", f"{family} acc %"]
    rows = []
    for condition, by_family in paper.FINETUNING.items():
        cells = [Cell(condition, "key")]
        for family in families:
            td, td_sd, acc, acc_sd = by_family[family]
            cells += [Cell(f"{td:.2f} ± {td_sd:.2f}", "paper"), Cell(f"{acc:.1f} ± {acc_sd:.1f}", "paper")]
        rows.append(cells)
    return TableView(f"the paper's finetuning table ({paper.MAIN_MODEL}, 4-shot)", columns, rows,
                     note=f"LoRA rank {paper.LORA['rank']}, alpha {paper.LORA['alpha']}, mean ± std across concepts; "
                          f"{paper.PAPER}", index_columns=1)


def synthetic_rows(moments: dict) -> list[list[Cell]]:
    rows = []
    layer, depth = moments.get("block", moments.get("layer")), moments.get("n_blocks", moments.get("n_layers"))
    if isinstance(layer, int):
        rows.append(_row("analysis layer", f"{layer}" + (f" of {depth}" if depth else ""),
                         f"separation from layer {paper.SYNTHETIC['separation_from_layer']} of {paper.SYNTHETIC['n_layers']}"))
    steps = {m: moments.get(m) for m in ("a", "b", "c")}
    if any(v is not None for v in steps.values()):
        ours = ", ".join(f"({m}) step {v}" if v is not None else f"({m}) –" for m, v in steps.items())
        rows.append(_row("moments: one cluster (a), first basis split (b), all split (c)", ours,
                         paper.SYNTHETIC["staging"]))
    order = moments.get("separation_order")
    if isinstance(order, list) and order:
        rows.append(_row("order in which the bases separate", " → ".join(str(o) for o in order), "B1 first",
                         "B1 shares the read-in column of y: a possible artifact"))
    return rows


def comparisons(relative: str, files: dict[str, Path], summary: dict, moments: dict) -> list[TableView]:
    """Every 'beside the paper' table for one section (maybe none)."""
    family = family_of(relative, summary)
    tables = []
    rows: list[list[Cell]] = []
    if family and ("summary.json" in files or "decodability.csv" in files):
        decodability = _read(files.get("decodability.csv"))
        rows += llm_rows(family, summary, decodability)
    if family and "summary.json" in files:
        rows += finetune_rows(family, summary)
    effects_file = files.get("interventions_summary.csv") or files.get("interventions.csv")
    if family and effects_file is not None:
        frame = _read(effects_file)
        if frame is not None:
            rows += intervention_rows(family, frame)
    table = _table(rows, family)
    if table:
        tables.append(table)
    if "comparison.md" in files or "comparison.csv" in files:
        present = [f for f in FAMILIES if f in _text(files.get("comparison.md")) + _text(files.get("comparison.csv"))]
        tables.append(finetuning_table(present or list(FAMILIES)))
    if moments:
        synthetic = _table(synthetic_rows(moments), None)
        if synthetic:
            synthetic.title = f"beside the paper ({paper.SYNTHETIC['model']})"
            tables.append(synthetic)
    return tables


def _read(path: Path | None) -> pd.DataFrame | None:
    if path is None:
        return None
    try:
        return pd.read_csv(path)
    except Exception:
        return None


def _text(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:200_000].lower()
    except OSError:
        return ""
