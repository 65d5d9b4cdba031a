"""`reproduce` end to end on a tiny model: every stage runs (synthetic, study, prompting variant,
interventions, finetuning, comparison), a rerun skips them all, and the report covers the run."""

from __future__ import annotations

import json

import pytest

from conceptlens.study import reproduce
from conceptlens.study.reproduce import ReproduceSettings, build_stages


def tiny_settings(model: str) -> ReproduceSettings:
    from conceptlens.study.reproduce import FinetuneStage, InterventionStage, StudyStage, SyntheticStage, TransferStage

    return ReproduceSettings(model={"name": model}, families=["bitwise"], batch_size=32,
                             synthetic=SyntheticStage(shipped="quick-seed0",
                                                      analyze={"max_checkpoints": 3, "sequences_per_basis": 12,
                                                               "umap": False, "baseline_sequences_per_basis": 4}),
                             study=StudyStage(shots=[1, 2], prompts_per_concept=24),
                             intervention=InterventionStage(shots=2, prompts_per_concept=12, replicates=2),
                             finetune=FinetuneStage(layers=["first:1", "last:1"], train_samples=8, shots=2,
                                                    prompts_per_concept=24),
                             transfer=TransferStage(shots=2, prompts_per_concept=4, layers=[1, 3]))


@pytest.fixture(scope="module")
def study_run(tiny_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    status = reproduce(tiny_settings(str(tiny_folder)), out)
    return out, status


def test_every_stage_finishes(study_run, tiny_folder):
    out, status = study_run
    names = [stage.name for stage in build_stages(tiny_settings(str(tiny_folder)), out)]
    assert list(status) == names
    failed = {name: record.get("error") for name, record in status.items() if record["status"] != "done"}
    assert not failed, failed
    for name in names:
        assert (out / status[name]["folder"] / "DONE").is_file(), name
    for path in ("llm/bitwise/decodability.csv", "llm/bitwise_stated/accuracy.csv",
                 "interventions/bitwise/interventions.csv", "finetune/bitwise_first1/summary.json",
                 "finetune/bitwise_last1/summary.json", "comparison/comparison.csv", "synthetic/analysis",
                 "transfer/bitwise/transfer.csv"):
        assert (out / path).exists(), path
    record = json.loads((out / "interventions/bitwise/interventions.json").read_text())
    assert record  # the edit record (layer, component, token) is written


def test_rerun_skips_finished_stages_and_report_covers_them(study_run, tiny_folder):
    from conceptlens.report import write_report

    out, first = study_run
    again = reproduce(tiny_settings(str(tiny_folder)), out)
    assert all(record.get("cached") for record in again.values())
    assert {n: r["seconds"] for n, r in again.items()} == {n: r["seconds"] for n, r in first.items()}
    html = write_report(out).read_text()
    for section in ("interventions", "finetun", "synthetic"):
        assert section in html.lower()
    assert html.index("Findings beside the paper") < html.index('id="stages"')  # findings first, stage times last


def test_the_findings_table_judges_every_finding_beside_its_control(study_run):
    from conceptlens.report.findings import findings_table

    out, _ = study_run
    table = findings_table(out)
    findings = {row[0].text: row for row in table.rows}
    verdicts = {"holds", "holds at the best block only", "does not hold", "not distinguishable from the control",
                "not measured"}
    assert {row[5].text for row in table.rows} <= verdicts
    assert "TD exceeds the answers' surface" in findings and "mean answer embedding" in findings[
        "TD exceeds the answers' surface"][4].text
    assert "random vector" in findings["own concept's mean helps, Null's hurts"][4].text
    assert "the encoding emerges in training, bases separating in stages" in findings
    assert findings_table(out / "llm" / "bitwise") is None  # only a reproduce folder has findings


def test_presets_finetune_the_peak_groups_and_carry_the_prompt_format(tmp_path):
    from conceptlens.errors import ConceptLensError
    from conceptlens.study.reproduce import QUICK_TRAIN_SAMPLES, intervention_spec, preset

    quick, full = preset("quick"), preset("full")
    assert quick.finetune.layers == full.finetune.layers == ["before-peak", "after-peak"]
    assert quick.finetune.train_samples == QUICK_TRAIN_SAMPLES and full.finetune.train_samples == 10000
    names = [stage.name for stage in build_stages(quick, tmp_path)]
    assert {"finetune_pos_before_peak", "finetune_pos_after_peak", "finetune_bitwise_before_peak"} <= set(names)
    spaced = preset("quick", prompt={"separator": " => ", "answer_prefix": "", "fit_format": False})
    assert spaced.study.spec("pos", 0, fmt=spaced.prompt.model_dump()).separator == " => "
    tuned = spaced.finetune.spec("pos", "before-peak", 0, fmt=spaced.prompt.model_dump())
    assert (tuned.separator, tuned.answer_prefix, tuned.fit_format) == (" => ", "", False)
    assert intervention_spec(spaced, "pos").separator == " => "
    with pytest.raises(ConceptLensError, match="visible character"):
        preset("quick", prompt={"separator": "  "})
