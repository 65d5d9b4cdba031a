"""The finetuning comparison table, on hand-made run folders with known numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conceptlens.errors import ConceptLensError
from conceptlens.llm.compare import compare_runs, compare_table, identify, markdown_table

CONCEPTS = ["AND", "OR", "XOR", "Null"]
LAYERS = [0, 1, 2, 3]


def write_study(folder: Path, td: dict[str, list[float]], acc: dict[str, float], family: str = "bitwise",
                model: str = "m", shots: int = 4, state_concept: bool = False) -> Path:
    """A study folder as `llm run` writes it: `td[concept]` per layer, `acc[concept]` in [0, 1]."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"model": model, "family": family, "shots": shots, "layer": layer, "concept": c, "td": td[c][layer],
                   "seed": 0} for c in CONCEPTS for layer in LAYERS]).to_csv(folder / "decodability.csv", index=False)
    pd.DataFrame([{"model": model, "family": family, "shots": shots, "concept": c, "accuracy": acc[c], "n": 30,
                   "seed": 0} for c in CONCEPTS]).to_csv(folder / "accuracy.csv", index=False)
    (folder / "summary.json").write_text(json.dumps({"model": model, "family": family, "best_layer": 2,
                                                     "settings": {"state_concept": state_concept}}))
    return folder


def flat(values: list[float]) -> dict[str, list[float]]:
    """TD per concept, identical across layers except a peak at layer 2 (the best layer)."""
    return {c: [0.1, 0.2, v, 0.3] for c, v in zip(CONCEPTS, values)}


PRE_TD = flat([0.4, 0.6, 0.2, 0.9])  # Null's high TD must not enter the mean
PRE_ACC = {"AND": 0.2, "OR": 0.3, "XOR": 0.1, "Null": 0.9}


def write_finetune(folder: Path, spec: str, layers: list[int], after_td, after_acc, family="bitwise") -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"kind": "finetune", "family": family, "model": "m",
                                                    "layers_spec": spec, "layers": layers, "n_layers": 3,
                                                    "method": "lora"}))
    write_study(folder / "before", PRE_TD, PRE_ACC, family)
    write_study(folder / "after", after_td, after_acc, family, model="m+lora")
    return folder


@pytest.fixture
def runs(tmp_path):
    pre = write_study(tmp_path / "pre", PRE_TD, PRE_ACC)
    # after first-layer finetuning the peak moves to layer 1: TD is still read at the pretrained layer 2
    first_td = {c: [0.1, 0.99, v, 0.3] for c, v in zip(CONCEPTS, [0.8, 0.9, 0.7, 0.5])}
    first = write_finetune(tmp_path / "first", "first:1", [0], first_td, {"AND": 0.9, "OR": 0.8, "XOR": 0.7, "Null": 0})
    last = write_finetune(tmp_path / "last", "last:1", [2], PRE_TD, {"AND": 0.5, "OR": 0.4, "XOR": 0.3, "Null": 0})
    stated = write_study(tmp_path / "stated", flat([0.9, 0.95, 0.85, 0.2]),
                         {"AND": 0.6, "OR": 0.5, "XOR": 0.4, "Null": 0}, state_concept=True)
    return [stated, last, first, pre]


def test_table_rows_values_and_paper(runs):
    table, per_concept = compare_table(runs, shots=4)
    assert list(table["variant"]) == ["pretrained", "first", "last", "stated"]
    assert (table["layer"] == 2).all()
    row = table.set_index("variant")
    assert row.loc["pretrained", "td_mean"] == pytest.approx(0.4)  # mean of 0.4, 0.6, 0.2 (Null left out)
    assert row.loc["pretrained", "td_std"] == pytest.approx(0.2)  # ddof 1
    assert row.loc["pretrained", "acc_mean"] == pytest.approx(20.0)
    assert row.loc["first", "td_mean"] == pytest.approx(0.8)
    assert row.loc["first", "own_best_layer"] == 1 and row.loc["first", "td_own_best_mean"] == pytest.approx(0.99)
    assert row.loc["first", "acc_mean"] == pytest.approx(80.0)
    assert row.loc["last", "td_mean"] == pytest.approx(0.4) and row.loc["last", "acc_mean"] == pytest.approx(40.0)
    assert row.loc["stated", "td_mean"] == pytest.approx(0.9)
    assert row.loc["first", "paper_td_mean"] == 0.85 and row.loc["stated", "paper_acc_mean"] == 57.2
    assert row.loc["pretrained", "source"].endswith("pre")  # the llm run folder, not a finetune run's before/
    assert set(per_concept["concept"]) == set(CONCEPTS) and len(per_concept) == 4 * len(CONCEPTS)


def test_outputs_written(runs, tmp_path):
    out = tmp_path / "cmp"
    compare_runs(runs, out)
    for name in ("comparison.md", "comparison.csv", "comparison.parquet", "comparison.png", "comparison_concepts.csv"):
        assert (out / name).exists(), name
    text = (out / "comparison.md").read_text()
    assert "LoRA first 1 layers" in text and "0.85 ± 0.11" in text and "0.80 ± 0.10" in text


def test_pretrained_from_finetune_folder_alone(runs):
    table, _ = compare_table([runs[2]])
    assert list(table["label"]) == ["pretrained", "LoRA first 1 layers"]


def test_range_and_unknown_family_have_no_paper_numbers(tmp_path):
    run = write_finetune(tmp_path / "mid", "1-1", [1], PRE_TD, PRE_ACC, family="mine")
    table, _ = compare_table([run])
    assert list(table["variant"]) == ["pretrained", "range"]
    assert table["paper_td_mean"].isna().all()
    assert "–" in markdown_table(table)


def test_identify(runs):
    stated, last, first, pre = runs
    assert [r.variant for r in identify(stated)] == ["stated"]
    assert [r.variant for r in identify(first)] == ["pretrained", "first"]
    assert [r.variant for r in identify(last)] == ["pretrained", "last"]


def test_bad_folders(tmp_path, runs):
    with pytest.raises(ConceptLensError, match="neither"):
        compare_table([tmp_path / "nothing"])
    with pytest.raises(ConceptLensError, match="no 10-shot"):
        compare_table(runs, shots=10)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text(json.dumps({"kind": "finetune", "family": "bitwise", "model": "m"}))
    with pytest.raises(ConceptLensError, match="unfinished"):
        compare_table([unfinished])
    with pytest.raises(ConceptLensError, match="no pretrained"):
        compare_table([runs[0]])
    with pytest.raises(ConceptLensError):
        compare_table([])
