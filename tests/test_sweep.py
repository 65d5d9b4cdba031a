"""Sweeps: grid expansion and validation (no Ray), then a local Ray sweep with a failing cell.

The Ray test starts one local Ray for the module (about 10 s), runs 3 toy cells through the CLI
(one fails on purpose: too few points for k = 10), checks the others finished and were merged,
then reruns and checks that finished cells were skipped (their attempt logs hold one attempt).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conceptlens.errors import ConceptLensError
from conceptlens.sweep import expand, load_sweep, parse_sweep, run_sweep
from conceptlens.sweep.cells import check_kwargs, resolve_function, runner_for

TOY = "conceptlens.sweep.toy.toy_decodability"


def toy_spec(out: Path) -> dict:
    return {"command": "python", "function": TOY, "out": str(out),
            "grid": {"seed": [0, 1], "n_per_concept": [20]},
            "include": [{"seed": 2, "n_per_concept": 5}],  # 5 points per concept < k + 1: fails
            "fixed": {"d": 4, "layers": 2}, "resources": {"cpus_per_cell": 1}}


def test_grid_expands_into_cells_with_stable_readable_ids(tmp_path):
    spec = parse_sweep({"command": "llm run", "grid": {"model": ["smollm2-135m", "/models/Llama-3.1-8B/"],
                                                       "family": ["pos", "bitwise"], "shots": [[1, 4, 10]],
                                                       "seed": [0, 1, 2]}, "fixed": {"prompts_per_concept": 30}})
    cells = expand(spec)
    assert len(cells) == 12 and len({c["id"] for c in cells}) == 12
    assert cells[0]["id"].startswith("model-smollm2-135m_family-pos_shots-1-4-10_seed-0-")
    assert cells[-1]["id"].startswith("model-Llama-3.1-8B_family-bitwise_shots-1-4-10_seed-2-")
    assert cells[0]["kwargs"] == {"prompts_per_concept": 30, "model": "smollm2-135m", "family": "pos",
                                  "shots": [1, 4, 10], "seed": 0}
    assert [c["id"] for c in expand(spec)] == [c["id"] for c in cells]  # stable
    changed = parse_sweep({**spec.model_dump(), "fixed": {"prompts_per_concept": 100}})
    assert not {c["id"] for c in expand(changed)} & {c["id"] for c in cells}  # settings changed: new cells
    for cell in cells:
        check_kwargs(runner_for("llm run", None), cell["kwargs"], cell["id"])


@pytest.mark.parametrize("data, words", [
    ({"command": "llm dance", "grid": {"seed": [0]}}, "unknown command"),
    ({"command": "llm run", "grid": {"seed": []}}, "no values"),
    ({"command": "llm run"}, "no cells"),
    ({"command": "python", "grid": {"seed": [0]}}, "`function` is required"),
    ({"command": "llm run", "grid": {"seed": [0]}, "fixed": {"seed": 1}}, "both in `grid` and `fixed`"),
    ({"command": "llm run", "grid": {"seed": [0]}, "colour": "red"}, "colour"),
    ([1, 2], "YAML mapping"),
])
def test_bad_sweep_files_are_rejected(data, words):
    with pytest.raises(ConceptLensError, match=words.replace("`", ".").replace("(", ".")):
        parse_sweep(data)


@pytest.mark.parametrize("dotted", ["os.system", "conceptlens.storage.os.system", "conceptlens.sweep.toy.np",
                                    "conceptlens.storage._json_default", "conceptlens.sweep.toy.Path",
                                    "conceptlens.nope.f", "conceptlens"])
def test_python_cells_only_call_conceptlens_functions(dotted):
    with pytest.raises(ConceptLensError):
        resolve_function(dotted)


def test_unknown_and_missing_cell_settings_fail_before_any_work(tmp_path):
    spec = parse_sweep({"command": "llm run", "grid": {"seed": [0], "temperature": [0.7]}, "out": str(tmp_path / "s")})
    with pytest.raises(ConceptLensError, match="temperature"):
        run_sweep(spec)
    assert not (tmp_path / "s").exists()
    with pytest.raises(ConceptLensError, match="needs"):
        check_kwargs(resolve_function("conceptlens.decodability.knn.task_decodability"), {}, "cell")


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20,
             log_to_driver=False)
    yield ray
    ray.shutdown()


def _attempts(folder: Path) -> int:
    return len((folder / "attempts.jsonl").read_text().splitlines())


def test_local_ray_sweep_reports_a_failed_cell_and_a_rerun_skips_finished_ones(local_ray, tmp_path):
    from typer.testing import CliRunner

    from conceptlens.cli.main import app

    out = tmp_path / "sweep"
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(toy_spec(out)))
    cells = expand(load_sweep(path))
    result = CliRunner().invoke(app, ["sweep", str(path)])
    assert result.exit_code == 1, result.output  # a failed cell makes the command fail, after the others ran

    status = json.loads((out / "sweep_status.json").read_text())
    by_seed = {r["grid"]["seed"]: (cid, r) for cid, r in status["cells"].items()}
    assert status["counts"] == {"done": 2, "failed": 1}
    failed_id, failed = by_seed[2]
    assert failed["status"] == "failed" and "fewer than k + 1" in failed["error"]
    assert (out / failed_id / "error.txt").exists() and not (out / failed_id / "DONE").exists()
    for seed in (0, 1):
        cid, record = by_seed[seed]
        assert record["status"] == "done" and (out / cid / "DONE").exists() and record["seconds"] >= 0
        assert json.loads((out / cid / "cell.json").read_text())["grid"] == {"seed": seed, "n_per_concept": 20}

    merged = pd.read_csv(out / "merged" / "decodability.csv")
    assert set(merged["cell"]) == {by_seed[0][0], by_seed[1][0]}
    assert {"seed", "n_per_concept", "layer", "concept", "td"} <= set(merged.columns)
    assert sorted(merged["seed"].unique()) == [0, 1] and (merged["n_per_concept"] == 20).all()
    assert len(merged) == 2 * 2 * 3  # cells x layers x concepts
    assert (out / "merged" / "decodability.parquet").exists()

    done_marks = {seed: (out / by_seed[seed][0] / "DONE").stat().st_mtime_ns for seed in (0, 1)}
    again = run_sweep(load_sweep(path))  # the rerun: Ray is already up, so it is reused
    assert sorted(again["cached"]) == sorted([by_seed[0][0], by_seed[1][0]])
    assert again["failed"] == [failed_id] and again["done"] == []
    for seed in (0, 1):
        assert _attempts(out / by_seed[seed][0]) == 1
        assert (out / by_seed[seed][0] / "DONE").stat().st_mtime_ns == done_marks[seed]
    assert _attempts(out / failed_id) == 2  # the failed cell was retried
    assert {c["id"] for c in cells} == set(json.loads((out / "sweep_status.json").read_text())["cells"])
    assert len(pd.read_csv(out / "merged" / "decodability.csv")) == 12

    from conceptlens.report import render_report

    html = render_report(out)  # the report opens on a sweep folder too
    assert "Sweep cells" in html and "fewer than k + 1" in html and "Merged tables of all cells" in html


def test_the_sweep_examples_in_the_docs_are_valid():
    import re

    text = (Path(__file__).parents[1] / "docs" / "large_models.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) >= 3
    for block in blocks:
        spec = parse_sweep(yaml.safe_load(block))
        for cell in expand(spec):
            check_kwargs(runner_for(spec.command, spec.function), cell["kwargs"], cell["id"])


def test_prompt_format_and_peak_groups_are_cell_settings():
    """`separator`, `answer_prefix` (and `fit_format`) reach every LM command; finetuning takes the peak groups."""
    spec = parse_sweep({"command": "llm finetune", "grid": {"layers": ["before-peak", "after-peak"]},
                        "fixed": {"family": "bitwise", "separator": " -> ", "answer_prefix": "", "fit_format": False}})
    cells = expand(spec)
    assert [cell["kwargs"]["layers"] for cell in cells] == ["before-peak", "after-peak"]
    for cell in cells:
        check_kwargs(runner_for("llm finetune", None), cell["kwargs"], cell["id"])
    for command in ("llm run", "llm intervene"):
        check_kwargs(runner_for(command, None), {"separator": " -> ", "answer_prefix": ""}, command)
    check_kwargs(runner_for("llm run", None), {"fit_format": False}, "llm run")
