"""Print the markdown tables of an intervention run folder (and redraw its figures with the current code)."""
import json, sys
from pathlib import Path
import pandas as pd
from conceptlens.llm.interventions.report import summarize, plot, plot_cross, cross_summary, _save
from conceptlens.report.paper_values import WELL_SEPARATED, OVERLAPPING

out = Path(sys.argv[1]); family = sys.argv[2]
record = json.loads((out / "interventions.json").read_text())
frame = pd.read_parquet(out / "interventions.parquet")
layers = pd.read_csv(out / "interventions_layers.csv")
peak = record["td_peak_layer"]
summary = summarize(frame, None, peak)
cross = pd.read_csv(out / "interventions_cross.csv")
setting = f"{record['model']} · {record['family']} · {record['shots']}-shot · {record['mode']} at the query token"
_save(plot(summary, f"{setting} ({record['replicates']} replicates)"), out / "interventions.png")
if len(cross):
    _save(plot_cross(cross, f"cross-concept interventions: {setting}"), out / "interventions_cross.png")
pct = lambda x: f"{100 * x:.1f}"
pp = lambda m, s: f"{100 * m:+.1f} ± {100 * s:.1f}" if pd.notna(s) else f"{100 * m:+.1f}"
print(f"layers {record['layers']}; note: {record['layer_note']}; peak {peak}\n")
print("| layer | TD (held-out) | surface control | TD > control | baseline acc % | positive | negative (Null) | random |")
print("|---|---|---|---|---|---|---|---|")
m = summary[summary.concept == "mean"]
for layer in record["layers"]:
    row = layers[layers.layer == layer].iloc[0]
    cells = []
    for cond in ("positive", "negative", "random"):
        r = m[(m.layer == layer) & (m.condition == cond)].iloc[0]
        cells.append(f"{pct(r.edited_accuracy)} ({pp(r.mean_change, r.std_change)})")
    base = m[(m.layer == layer)].iloc[0].baseline_accuracy
    print(f"| {layer}{' (peak)' if layer == peak else ''} | {row.td:.3f} | {row.control_td:.3f} | {'yes' if row.exceeds else 'no'} | {pct(base)} | " + " | ".join(cells) + " |")
print("\naccuracy % (change in points, mean ± std over replicates), mean over concepts\n")
print(f"Per concept at layer {peak} (TD peak): accuracy change in points, mean ± std over {record['replicates']} replicates\n")
print("| concept | TD at peak | baseline acc % | positive | negative (Null) | random |")
print("|---|---|---|---|---|---|")
td = pd.read_parquet(out / "interventions_summary.parquet") if (out / "interventions_summary.parquet").exists() else None
for concept in record["concepts"] + ["mean"]:
    part = summary[(summary.layer == peak) & (summary.concept == concept)].set_index("condition")
    tdv = td[(td.layer == peak) & (td.concept == concept)]["td"] if td is not None else []
    tdtext = f"{float(tdv.iloc[0]):.2f}" if len(tdv) and pd.notna(tdv.iloc[0]) else "–"
    print(f"| {concept} | {tdtext} | {pct(part.loc['positive'].baseline_accuracy)} | " + " | ".join(pp(part.loc[c].mean_change, part.loc[c].std_change) for c in ("positive", "negative", "random")) + " |")
print("\nPaper groups at the peak (points): positive / negative / random\n")
for group, members in (("well separated", WELL_SEPARATED[family]), ("overlapping", OVERLAPPING[family])):
    part = summary[(summary.layer == peak) & summary.concept.isin(members)]
    vals = [part[part.condition == c].mean_change.mean() for c in ("positive", "negative", "random")]
    print(f"- {group} ({', '.join(members)}): " + " / ".join(f"{100*v:+.1f}" for v in vals))
c = cross[cross.layer == peak]
names = record["concepts"]
print(f"\nCross matrix at layer {peak}: % of a source's prompts answering as the target, edited (baseline); n scored\n")
print("| source \\ target | " + " | ".join(names) + " |")
print("|---|" + "---|" * len(names))
for s in names:
    cells = []
    for t in names:
        r = c[(c.source == s) & (c.target == t)]
        if s == t or r.empty:
            cells.append("–")
        elif r.iloc[0].n == 0:
            cells.append("not scored")
        else:
            r = r.iloc[0]
            cells.append(f"{pct(r.accuracy_vs_target)} ({pct(r.baseline_vs_target)}); n {int(r.n)}")
    print(f"| {s} | " + " | ".join(cells) + " |")
w = (c.accuracy_vs_target * c.n).sum() / c.n.sum(); b = (c.baseline_vs_target * c.n).sum() / c.n.sum()
print(f"\npooled over cells (weighted by n): {pct(w)}% follow the target vs {pct(b)}% at baseline; n {int(c.n.sum())}; not scored (same answer) {int(c.n_same_answer.sum())}, unknown {int(c.n_unknown_target.sum())}")
print(f"accuracy vs the source under cross: {pct(c.accuracy_vs_source.mean())}%")
