"""The report's study parts: "Decodable vs usable" (the interval rule names the right layers, in words and
shaded in the figure) and "Model ladder" (the table renders, and its statement follows the numbers)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conceptlens.llm.ladder.table import COLUMNS as LADDER_COLUMNS
from conceptlens.llm.ladder.table import paper_rows
from conceptlens.llm.transfer.parting import layer_ranges, parting, recovery_interval, wilson
from conceptlens.llm.transfer.report import plot, summarize
from conceptlens.report import render_report
from conceptlens.report.ladder_section import scaling_statements, trend
from conceptlens.report.transfer_section import parting_sentence

TRANSFER_COLUMNS = ["model", "family", "shots", "layer", "concept", "variant", "condition", "accuracy", "n"]
CONCEPTS = ["AND", "OR", "XOR"]  # chance 1/3
# layer: (TD, transfer); zero-shot 0.05, ICL 0.85. By the rule: 0 neither, 1-2 decodable not usable, 3 both,
# 4 decodable not usable (transfer below zero-shot), 5 usable not decodable (TD 0.40 reaches chance 0.33).
LAYERS = {0: (0.33, 0.05), 1: (0.95, 0.05), 2: (0.90, 0.075), 3: (0.95, 0.60), 4: (0.95, 0.0), 5: (0.40, 0.50)}


def transfer_tables(n: int = 40, layers: dict = LAYERS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """transfer.csv and td.csv of a hand-made run: every concept has the layer's accuracy, n prompts each."""
    rows = [{"layer": None, "concept": c, "variant": "none", "condition": cond, "accuracy": acc}
            for c in CONCEPTS for cond, acc in (("zero_shot", 0.05), ("icl", 0.85))]
    rows += [{"layer": l, "concept": c, "variant": v, "condition": "task_vector", "accuracy": acc}
             for l, (_, acc) in layers.items() for c in CONCEPTS for v in ("per_query", "mean")]
    frame = pd.DataFrame(rows).assign(model="tiny", family="bitwise", shots=4, n=n)[TRANSFER_COLUMNS]
    frame["layer"] = frame["layer"].astype("Int64")
    td = pd.DataFrame([{"layer": l, "concept": c, "td": t} for l, (t, _) in layers.items() for c in CONCEPTS])
    return frame, td


def test_wilson_interval_and_layer_ranges():
    low, high = wilson(0, 300)
    assert low == pytest.approx(0, abs=1e-12) and 0.005 < high < 0.02
    low, high = wilson(150, 300)
    assert low < 0.5 < high and high - low < 0.12
    assert layer_ranges([7, 1, 2, 3, 5, 8]) == "1-3, 5, 7-8" and layer_ranges([]) == "none"


def test_the_rule_names_the_layers_where_decodability_and_use_part():
    frame, td = transfer_tables()
    parts = parting(frame, td)
    assert parts["decodable_not_usable"] == [1, 2, 4]
    assert parts["usable_not_decodable"] == [5]
    assert parts["decodable_and_usable"] == [3] and parts["icl_above_zero_shot"]
    sentence = parting_sentence(parts, {"family": "bitwise", "model": "tiny", "shots": 4}, n_layers=6)
    assert "decodable, not usable at layers 1-2, 4 (3 of 6)" in sentence
    assert "usable, not decodable at layers 5 (1 of 6)" in sentence


def test_fewer_prompts_widen_the_intervals_and_move_layers_out_of_the_split():
    frame, td = transfer_tables(n=4)  # 12 prompts a layer: TD 0.40 and transfer 0.50 no longer clear their bounds
    parts = parting(frame, td)
    assert 5 not in parts["usable_not_decodable"]
    assert parts["layers"].set_index("layer").loc[5, "part"] == "neither"


def test_recovery_interval_holds_the_pooled_recovery():
    frame, _ = transfer_tables()
    recovery = recovery_interval(frame, 3)
    assert recovery["recovery"] == pytest.approx((0.60 - 0.05) / (0.85 - 0.05))
    assert recovery["low"] < recovery["recovery"] < recovery["high"]
    same = frame.copy()
    same.loc[same.condition == "icl", "accuracy"] = 0.05
    assert recovery_interval(same, 3) is None  # ICL equals zero-shot: nothing to recover


def test_the_figure_shades_both_kinds_of_layer_with_a_legend_entry_each():
    frame, td = transfer_tables()
    summary = summarize(frame, td)
    fig = plot(frame, td, summary, "hand-made")
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "decodable, not usable (3 layers)" in labels and "usable, not decodable (1 layer)" in labels
    import matplotlib.pyplot as plt

    plt.close(fig)


def write_transfer_folder(folder, n: int = 40):
    folder.mkdir(parents=True)
    frame, td = transfer_tables(n)
    frame.to_csv(folder / "transfer.csv", index=False)
    td.to_csv(folder / "td.csv", index=False)
    summary = {**summarize(frame, td), "model": "tiny", "family": "bitwise", "shots": 4, "prompts_per_concept": n}
    (folder / "summary.json").write_text(json.dumps(summary))


def test_a_reproduce_run_with_a_transfer_stage_gets_the_section_and_a_findings_row(tmp_path):
    run = tmp_path / "run"
    (run / "llm").mkdir(parents=True)
    (run / "settings.json").write_text(json.dumps({"families": ["bitwise"]}))
    write_transfer_folder(run / "transfer" / "bitwise")
    html = render_report(run)
    assert "Decodable vs usable: bitwise" in html
    assert "decodable, not usable at layers 1-2, 4 (3 of 6)" in html
    assert "Rule: decodable: TD&#39;s 95% interval lies above chance" in html
    assert "the TD peak is a layer the model uses" in html
    row = html.split("the TD peak is a layer the model uses")[1].split("</tr>")[0]
    assert "layer 1 (TD 0.95)" in row and ">does not hold<" in row  # TD peaks (first) at layer 1, transfer at zero-shot
    assert "transfer.png: the run" not in html  # no transfer.png in this folder: nothing said about it


def ladder_table(td_peaks, r2s, exceeds=(True, True, True), effects=(None, None, None)) -> pd.DataFrame:
    rows = []
    for i, (size, td, r2, above) in enumerate(zip((1.35e8, 5e8, 1.5e9), td_peaks, r2s, exceeds)):
        rows.append({"source": "ours", "model": f"m{i}", "family": "bitwise", "status": "done", "parameters": size,
                     "n_layers": 24, "shots": 4, "td_peak_layer": 12, "depth_fraction": 0.5, "td_peak": td,
                     "td_peak_ci_low": td - 0.03, "td_peak_ci_high": td + 0.03, "surface_control_td": 0.4,
                     "exceeds_surface_control": above, "icl_accuracy": 0.1 * (i + 1), "r2": r2,
                     "r2_ci_low": r2 - 0.1, "r2_ci_high": r2 + 0.1, "positive_effect": effects[i],
                     "negative_effect": -effects[i] if effects[i] is not None else None})
    frame = pd.DataFrame(rows + paper_rows(["bitwise"]))
    return frame.reindex(columns=LADDER_COLUMNS)


def test_trend_words_follow_monotony_and_the_intervals():
    assert trend([0.5, 0.6, 0.7], [0.45, 0.55, 0.65], [0.55, 0.65, 0.75])["grows"]
    overlapping = trend([0.5, 0.52, 0.54], [0.4, 0.42, 0.44], [0.6, 0.62, 0.64])
    assert overlapping["rises"] and not overlapping["grows"] and "overlap" in overlapping["words"]
    assert "not monotone" in trend([0.5, 0.7, 0.6])["words"]


def test_the_ladder_statement_changes_when_the_numbers_change():
    growing = " ".join(scaling_statements(ladder_table([0.5, 0.65, 0.8], [0.2, 0.5, 0.8])))
    assert "encoding quality (TD at the peak) grows with scale" in growing
    assert "its link to accuracy (R²) grows" in growing
    flat = " ".join(scaling_statements(ladder_table([0.6, 0.5, 0.62], [0.5, 0.3, 0.55], (False, False, False))))
    assert "does not grow with scale" in flat and "is not monotone in size" in flat
    assert "never exceeds the answers' surface control" in flat
    assert "Gemma-2 2B → 9B → 27B: R² 0.78 → 0.45 → 0.59 is not monotone" in flat  # the paper's, from paper_values


def test_a_ladder_folder_renders_its_section(tmp_path):
    folder = tmp_path / "ladder"
    folder.mkdir()
    ladder_table([0.5, 0.65, 0.8], [0.2, 0.5, 0.8]).to_csv(folder / "ladder.csv", index=False)
    html = render_report(folder)
    assert "<h2 class=\"depth-0\">Model ladder" in html
    assert "0.65 [0.62, 0.68]" in html and "Gemma-2 27B" in html
    assert "encoding quality (TD at the peak) grows with scale" in html
    assert html.count("data:image/png;base64,") == 1  # the scaling figure, drawn from ladder.csv
    assert "+pos / −neg" not in html  # no rung ran the interventions
    ladder_table([0.5, 0.65, 0.8], [0.2, 0.5, 0.8], effects=(None, 4.0, 9.5)).to_csv(folder / "ladder.csv", index=False)
    html = render_report(folder)
    assert "+pos / −neg (pts)" in html and "9.5 / -9.5" in html and "1.5B 9.5 / -9.5" in html
    broken = tmp_path / "broken"
    broken.mkdir()
    pd.DataFrame({"model": ["m"]}).to_csv(broken / "ladder.csv", index=False)
    assert "the model ladder part could not be built" in render_report(broken)


def test_the_finetuning_finding_needs_a_difference_beyond_the_spread_across_concepts():
    """Before-peak beating after-peak by less than two standard errors across concepts is 'not
    distinguishable', never 'holds' (the demo's 13.2% vs 11.1% with ±8 points over 6 concepts)."""
    import pandas as pd

    from conceptlens.report.findings import finetune_rows

    def frame(before, after, std):
        return pd.DataFrame([{"family": "pos", "variant": v, "acc_mean": a, "acc_std": std, "n_concepts": 6,
                              "td_mean": 0.9} for v, a in (("pretrained", 11.8), ("before-peak", before),
                                                            ("after-peak", after))])

    verdict = lambda rows: rows[0][-1].text
    row = finetune_rows("pos", frame(13.2, 11.1, 8.0))[0]
    assert verdict([row]) == "not distinguishable from the control"
    assert "difference +2.1 points, ±9.2 = 2 standard errors" in row[3].text
    assert verdict(finetune_rows("pos", frame(40.0, 12.0, 8.0))) == "holds"
    assert verdict(finetune_rows("pos", frame(12.0, 40.0, 8.0))) == "does not hold"
    assert verdict(finetune_rows("pos", frame(13.2, 11.1, float("nan")))) == "holds"  # no spread: plain comparison
