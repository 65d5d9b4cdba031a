"""The intervention experiment and its command: tidy rows, the edit record, determinism by seed,
held-out means, bad input stopping before anything is written, and one run on the embedded model."""

from __future__ import annotations

import json

import pytest

from conceptlens.errors import ConceptLensError
from conceptlens.llm.interventions.report import summarize
from conceptlens.llm.interventions.run import run_interventions
from conceptlens.models.loader import LoadedModel
from conceptlens.tasks.family import NULL, TaskFamily
from word_tasks import scaled_tiny_lm, word_family


@pytest.fixture(scope="module")
def lm(tiny_folder) -> LoadedModel:
    return scaled_tiny_lm(tiny_folder)

def small_run(lm, out=None, seed=0, **kwargs):
    options = dict(shots=2, prompts_per_concept=3, replicates=2, mode="replace", seed=seed, out=out)
    options.update(kwargs)
    return run_interventions(lm, "words", word_family(), **options)


class TestRun:
    def test_writes_tables_figure_and_the_edit_record(self, lm, tmp_path):
        out = tmp_path / "run"
        frame = small_run(lm, out, layers=[1, 2])
        concepts = ["upper", "reverse", "first"]
        assert len(frame) == 2 * 2 * 3 * len(concepts)  # replicates x layers x conditions x concepts
        assert set(frame.condition) == {"baseline", "positive", "negative"} and NULL not in set(frame.concept)
        assert (frame.n == 3).all()
        for name in ("interventions.csv", "interventions.parquet", "interventions_summary.csv", "interventions.png",
                     "interventions.json"):
            assert (out / name).stat().st_size > 0, name
        record = json.loads((out / "interventions.json").read_text())
        assert [e["point"] for e in record["edits"]] == ["blocks.0.resid_post", "blocks.1.resid_post"]
        assert {e["component"] for e in record["edits"]} == {"resid_post"}
        assert record["edits"][0]["position_role"] == "query_separator"
        assert record["edits"][0]["example_token"] == ">"  # byte tokenizer: the last byte of " ->"
        # every evaluated prompt was edited once per condition and replicate
        assert record["rows_edited"] == {"blocks.0.resid_post": 2 * 2 * 3 * 3, "blocks.1.resid_post": 2 * 2 * 3 * 3}
        summary = summarize(frame)
        assert set(summary.columns) >= {"concept", "layer", "condition", "mean_change", "std_change"}
        assert len(summary) == 2 * 2 * 3

    def test_replicates_are_deterministic_by_seed(self, lm):
        from conceptlens.llm.interventions import run as intervention_run

        calls = []
        real = intervention_run.answers_under_edits

        def spy(lm_, prompts, conditions, **kwargs):
            calls.append([p.text for p in prompts])
            return real(lm_, prompts, conditions, **kwargs)

        intervention_run.answers_under_edits = spy
        try:
            first = small_run(lm, layers=[2], seed=7)
            first_calls, calls[:] = list(calls), []
            second = small_run(lm, layers=[2], seed=7)
            second_calls, calls[:] = list(calls), []
            small_run(lm, layers=[2], seed=8)
        finally:
            intervention_run.answers_under_edits = real
        assert first.equals(second) and first_calls == second_calls
        assert calls != first_calls  # another seed draws other demonstrations
        assert len(first_calls) == 2 and first_calls[0] != first_calls[1]  # replicates differ from each other

    def test_best_layer_by_td_and_from_run(self, lm, tmp_path):
        frame = small_run(lm, layers="best", prompts_per_concept=4, replicates=1)
        assert frame.layer.nunique() == 1 and 0 <= int(frame.layer.iloc[0]) <= lm.n_layers
        run = tmp_path / "llm_run"
        run.mkdir()
        (run / "summary.json").write_text(json.dumps({"best_layer": 2, "n_layers": lm.n_layers}))
        frame = small_run(lm, layers="best", from_run=run, replicates=1)
        assert set(frame.layer) == {2}
        (run / "summary.json").write_text(json.dumps({"best_layer": 2, "n_layers": lm.n_layers + 5}))
        with pytest.raises(ConceptLensError):
            small_run(lm, layers="best", from_run=run, replicates=1)

    def test_add_mode_runs(self, lm):
        frame = small_run(lm, layers=[2], mode="add", replicates=1)
        assert set(frame["mode"]) == {"add"}

    @pytest.mark.parametrize("bad", [dict(layers=[99]), dict(layers=[2], shots=30), dict(layers=[2], mode="swap"),
                                     dict(layers="best", from_run="nowhere"), dict(layers=[2], replicates=0),
                                     dict(layers="middle")])
    def test_bad_input_raises_before_writing(self, lm, tmp_path, bad):
        out = tmp_path / "run"
        with pytest.raises(ConceptLensError):
            small_run(lm, out, **bad)
        assert not out.exists()

    def test_a_family_without_null_is_refused(self, lm, tmp_path):
        with pytest.raises(ConceptLensError, match="Null"):
            run_interventions(lm, "words", word_family(null=False), [2], shots=2, prompts_per_concept=2,
                              out=tmp_path / "run")
        assert not (tmp_path / "run").exists()

    def test_means_come_from_examples_never_evaluated(self, lm):
        from conceptlens.llm.interventions import run as intervention_run

        seen = {"means": [], "eval": []}
        real_means, real_gen = intervention_run.heldout_prompts, intervention_run.answers_under_edits

        def means_spy(family, *args, **kwargs):
            seen["means"] += [(e.input, e.output) for c, ex in family.concepts.items() if c != NULL for e in ex]
            return real_means(family, *args, **kwargs)

        def gen_spy(lm_, prompts, conditions, **kwargs):
            for p in prompts:
                *demos, query = p.text.split("\n")
                seen["eval"] += [tuple(line.split(" -> ")) for line in demos]
                seen["eval"].append((query[:-len(" ->")], p.answer))
            return real_gen(lm_, prompts, conditions, **kwargs)

        intervention_run.heldout_prompts, intervention_run.answers_under_edits = means_spy, gen_spy
        try:
            small_run(lm, layers=[2], replicates=1)
        finally:
            intervention_run.heldout_prompts, intervention_run.answers_under_edits = real_means, real_gen
        assert seen["means"] and seen["eval"]
        assert not set(seen["means"]) & set(seen["eval"])


def write_family_folder(folder, family: TaskFamily) -> None:
    folder.mkdir()
    for concept, examples in family.concepts.items():
        if concept != NULL:
            (folder / f"{concept}.json").write_text(json.dumps([{"input": e.input, "output": e.output} for e in examples]))


def cli(monkeypatch, *args: str) -> int:
    import sys

    from conceptlens.cli.main import main

    monkeypatch.setattr(sys, "argv", ["conceptlens", "llm", "intervene", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code


class TestCommand:
    def test_intervene_writes_the_run_folder(self, tiny_folder, tmp_path, monkeypatch):
        family = tmp_path / "words"
        write_family_folder(family, word_family())
        out = tmp_path / "run"
        code = cli(monkeypatch, "--model", str(tiny_folder), "--family", str(family), "--layer", "1,2", "--shots", "2",
                   "--prompts-per-concept", "2", "--replicates", "1", "--out", str(out))
        assert code == 0
        record = json.loads((out / "interventions.json").read_text())
        assert [e["point"] for e in record["edits"]] == ["blocks.0.resid_post", "blocks.1.resid_post"]
        assert (out / "interventions_summary.csv").exists() and (out / "interventions.png").exists()

    def test_format_options_move_the_edit_to_the_answers_leading_space(self, tiny_folder, tmp_path, monkeypatch):
        family = tmp_path / "words"
        write_family_folder(family, word_family())
        out = tmp_path / "run"
        code = cli(monkeypatch, "--model", str(tiny_folder), "--family", str(family), "--layer", "2", "--shots", "2",
                   "--prompts-per-concept", "2", "--replicates", "1", "--separator", " -> ", "--answer-prefix", "",
                   "--out", str(out))
        assert code == 0
        record = json.loads((out / "interventions.json").read_text())
        assert record["format"]["separator"] == " -> " and record["format"]["answer_prefix"] == ""
        assert record["edits"][0]["example_token"] == " " and record["edits"][0]["example_prompt_tail"].endswith("-> ")

    @pytest.mark.parametrize("bad", [["--layer", "99"], ["--shots", "40"], ["--layer", "x"], ["--mode", "swap"],
                                     ["--separator", " "]])
    def test_bad_input_exits_2_and_writes_nothing(self, tiny_folder, tmp_path, monkeypatch, bad):
        family = tmp_path / "words"
        write_family_folder(family, word_family())
        out = tmp_path / "run"
        options = {"--layer": "2", "--shots": "2", "--mode": "replace", "--separator": " ->"}
        options.update(dict(zip(bad[::2], bad[1::2])))
        code = cli(monkeypatch, "--model", str(tiny_folder), "--family", str(family), "--prompts-per-concept", "2",
                   "--replicates", "1", "--out", str(out), *[x for kv in options.items() for x in kv])
        assert code == 2
        assert not out.exists()


@pytest.mark.real_model
def test_smollm2_bitwise_end_to_end(smollm2, tmp_path):
    """The whole pipeline on the embedded model: a handful of prompts, one replicate, one layer."""
    from conceptlens.tasks.registry import load_family

    frame = run_interventions(smollm2, "bitwise", load_family("bitwise", "test", seed=0), [14], shots=4,
                              prompts_per_concept=3, replicates=1, seed=0,
                              means_family=load_family("bitwise", "train", seed=0), out=tmp_path / "run")
    assert len(frame) == 6 * 3 and set(frame.point) == {"blocks.13.resid_post"}
    assert frame.accuracy.between(0, 1).all()
    record = json.loads((tmp_path / "run" / "interventions.json").read_text())
    assert record["edits"][0]["example_token"].strip() == "->"
    assert record["rows_edited"] == {"blocks.13.resid_post": 2 * 6 * 3}
