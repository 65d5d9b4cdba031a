"""The model ladder: rungs run as resumable cells, a failed rung is listed (not dropped), the paper's models beside."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import transformers as tf
from tiny_tokenizer import byte_tokenizer
from word_tasks import word_family

from conceptlens.llm.ladder.run import ladder_sweep, run_ladder
from conceptlens.llm.ladder.table import paper_rows
from conceptlens.specs import LadderSpec, build


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Two tiny random Llamas of different depth and width (a two-rung ladder)."""
    folders = []
    for layers, width in ((2, 16), (3, 32)):
        folder = tmp_path_factory.mktemp(f"tiny-{layers}")
        config = tf.LlamaConfig(vocab_size=257, hidden_size=width, intermediate_size=2 * width,
                                num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                max_position_embeddings=256, pad_token_id=256, bos_token_id=256, eos_token_id=256)
        tf.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
        byte_tokenizer().save_pretrained(folder)
        folders.append(str(folder))
    return folders


@pytest.fixture(scope="module")
def words_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("words")
    for concept, examples in word_family(null=False).concepts.items():
        (folder / f"{concept}.json").write_text(json.dumps([{"input": e.input, "output": e.output} for e in examples]))
    return str(folder)


def spec_of(models, family, **extra):
    return build(LadderSpec, models=models, families=[family], shots=[2], prompts_per_concept=8, k=3, **extra)


def test_two_rungs_give_one_row_each_beside_the_paper(two_models, words_folder, tmp_path):
    table = run_ladder(spec_of(two_models, words_folder), tmp_path / "ladder")
    ours = table[table.source == "ours"]
    assert list(ours.status) == ["done", "done"]
    assert ours.parameters.iloc[0] < ours.parameters.iloc[1]
    assert list(ours.n_layers) == [2, 3]
    assert ours.td_peak.between(0, 1).all() and ours.depth_fraction.between(0, 1).all()
    assert (ours.load_seconds >= 0).all() and (ours.peak_memory_gib > 0).all()
    for name in ("ladder.csv", "ladder.md", "ladder.png", "ladder.json"):
        assert (tmp_path / "ladder" / name).exists()
    rung = json.loads(next((tmp_path / "ladder").glob("*/rung.json")).read_text())
    assert rung["n_layers"] in (2, 3) and rung["parameters"] > 0
    assert pd.read_csv(tmp_path / "ladder" / "ladder.csv").shape[0] == len(table)


def test_a_rerun_skips_finished_rungs(two_models, words_folder, tmp_path, monkeypatch):
    spec = spec_of(two_models[:1], words_folder)
    run_ladder(spec, tmp_path / "ladder")

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished rung ran again")

    monkeypatch.setattr("conceptlens.sweep.runner.execute_cell", must_not_run)
    table = run_ladder(spec, tmp_path / "ladder")
    assert list(table[table.source == "ours"].status) == ["cached"]


def test_a_failing_rung_is_listed_and_the_others_run(two_models, words_folder, tmp_path):
    table = run_ladder(spec_of([two_models[0], str(tmp_path / "no-such-model")], words_folder), tmp_path / "ladder")
    ours = table[table.source == "ours"]
    assert list(ours.status) == ["done", "failed"]
    assert pd.isna(ours.td_peak.iloc[1]) and pd.notna(ours.td_peak.iloc[0])


def test_the_paper_models_stand_on_the_same_axes():
    rows = pd.DataFrame(paper_rows(["pos", "bitwise"]))
    assert len(rows) == 10
    llama = rows[(rows.model == "Llama-3.1 8B") & (rows.family == "pos")].iloc[0]
    assert llama.r2 == pytest.approx(0.781) and llama.depth_fraction == pytest.approx(15 / 32)
    assert rows[rows.model == "Gemma-2 2B"].depth_fraction.isna().all()


def test_every_rung_shares_the_spec():
    sweep = ladder_sweep(build(LadderSpec, models=["a", "b"], families=["pos"], prompts_per_concept=30))
    assert sweep.grid == {"model": ["a", "b"], "family": ["pos"]}
    assert sweep.fixed["prompts_per_concept"] == 30 and "models" not in sweep.fixed


def test_the_spec_refuses_repeated_models():
    from conceptlens.errors import ConceptLensError

    with pytest.raises(ConceptLensError):
        build(LadderSpec, models=["a", "a"])


SCIENCE = ["model", "family", "status", "parameters", "n_layers", "shots", "td_peak_layer", "depth_fraction", "td_peak",
           "td_peak_ci_low", "td_peak_ci_high", "surface_control_td", "exceeds_surface_control", "td_shuffled_labels",
           "icl_accuracy", "r2", "r2_ci_low", "r2_ci_high", "dtype", "threads"]  # not the times and memory


def test_the_ray_path_gives_the_local_table_one_thread_per_rung(two_models, words_folder, tmp_path, monkeypatch):
    import torch

    pytest.importorskip("ray")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # Ray itself must give each num_cpus=1 rung one thread
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the local path's rungs run in this process
    try:
        spec = spec_of(two_models, words_folder)
        local = run_ladder(spec, tmp_path / "local")
        remote = run_ladder(spec, tmp_path / "ray", ray=True)
    finally:
        torch.set_num_threads(threads)
    ours = remote[remote.source == "ours"]
    assert list(ours.status) == ["done", "done"] and list(ours.threads) == [1, 1]
    pd.testing.assert_frame_equal(local[SCIENCE], remote[SCIENCE])
    status = json.loads((tmp_path / "ray" / "sweep_status.json").read_text())
    assert status["counts"] == {"done": 2}  # the rungs ran as Ray tasks, not in this process
    pids = {json.loads(line)["pid"] for rung in (tmp_path / "ray").glob("*/attempts.jsonl")
            for line in rung.read_text().splitlines()}
    assert pids and os.getpid() not in pids


def test_the_cli_defaults_are_the_specs():
    import inspect

    from conceptlens.cli.llm_beyond import ladder_command

    options = inspect.signature(ladder_command).parameters
    for name in ("prompts_per_concept", "dtype", "seed", "k", "interventions", "intervention_prompts"):
        assert options[name].default.default == LadderSpec.model_fields[name].default, name
