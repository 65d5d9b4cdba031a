"""The intervention experiment and its command: tidy rows, the edit record, determinism by seed,
held-out means, the random and cross conditions (only the query token, scored against the target),
the layer sweep, bad input stopping before anything is written, and one run on the embedded model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conceptlens.errors import ConceptLensError
from conceptlens.llm.interventions.report import summarize
from conceptlens.llm.interventions.run import run_interventions
from conceptlens.models.loader import LoadedModel
from conceptlens.tasks.family import NULL, TaskFamily
from word_tasks import WORDS, scaled_tiny_lm, word_family


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
        plain = frame[frame.condition != "cross"]
        assert len(plain) == 2 * 2 * 4 * len(concepts)  # replicates x layers x conditions x concepts
        assert set(frame.condition) == {"baseline", "positive", "negative", "random", "cross"}
        assert NULL not in set(frame.concept) and (plain.n == 3).all() and (plain.target == "").all()
        cross = frame[frame.condition == "cross"]
        assert len(cross) == 2 * 1 * len(concepts) * (len(concepts) - 1)  # every source x other target, at the peak
        assert (cross.concept != cross.target).all() and NULL not in set(cross.target)
        for name in ("interventions.csv", "interventions.parquet", "interventions_summary.csv", "interventions.png",
                     "interventions_cross.csv", "interventions.json"):
            assert (out / name).stat().st_size > 0, name
        record = json.loads((out / "interventions.json").read_text())
        assert [e["point"] for e in record["edits"]] == ["blocks.0.resid_post", "blocks.1.resid_post"]
        assert {e["component"] for e in record["edits"]} == {"resid_post"}
        assert record["edits"][0]["position_role"] == "query_separator"
        assert record["edits"][0]["example_token"] == ">"  # byte tokenizer: the last byte of " ->"
        # every evaluated prompt was edited once per edited condition and replicate: positive, negative, random,
        # and at the TD peak the 2 cross shifts
        peak = record["td_peak_layer"]
        assert peak in (1, 2) and set(cross.layer) == {peak} and record["cross_layers"] == [peak]
        edits = {f"blocks.{layer - 1}.resid_post": 2 * (3 + 2 * (layer == peak)) * 3 * 3 for layer in (1, 2)}
        assert record["rows_edited"] == edits  # replicates x conditions x concepts x prompts
        summary = summarize(frame)
        assert set(summary.columns) >= {"concept", "layer", "condition", "mean_change", "std_change", "edited_std"}
        assert len(summary) == 2 * 3 * (3 + 1)  # layers x conditions x (concepts + the mean row)
        assert set(summary.condition) == {"positive", "negative", "random"}

    def test_replicates_are_deterministic_by_seed(self, lm):
        from conceptlens.llm.interventions import run as intervention_run

        calls = []
        real = intervention_run.edited_answers

        def spy(lm_, prompts, conditions, **kwargs):
            calls.append([p.text for p in prompts])
            return real(lm_, prompts, conditions, **kwargs)

        intervention_run.edited_answers = spy
        try:
            first = small_run(lm, layers=[2], seed=7)
            first_calls, calls[:] = list(calls), []
            second = small_run(lm, layers=[2], seed=7)
            second_calls, calls[:] = list(calls), []
            small_run(lm, layers=[2], seed=8)
        finally:
            intervention_run.edited_answers = real
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

    @pytest.mark.parametrize("mode", ["add", "add_centered"])
    def test_add_modes_run(self, lm, mode):
        frame = small_run(lm, layers=[2], mode=mode, replicates=1)
        assert set(frame["mode"]) == {mode}

    def test_cross_at_every_layer(self, lm):
        frame = small_run(lm, layers=[1, 2], replicates=1, cross_at="all")
        assert set(frame[frame.condition == "cross"].layer) == {1, 2}

    def test_the_default_is_the_papers_add_over_the_td_rise(self, lm, tmp_path):
        import inspect

        from conceptlens.specs import InterventionSpec

        assert inspect.signature(run_interventions).parameters["mode"].default == "add"
        spec = InterventionSpec(family="bitwise")
        assert spec.mode == "add" and spec.layers == "sweep"
        out = tmp_path / "run"
        frame = run_interventions(lm, "words", word_family(), "sweep", shots=2, prompts_per_concept=4, replicates=1,
                                  out=out)
        record = json.loads((out / "interventions.json").read_text())
        assert record["mode"] == "add" and record["layer_source"] == "td_rise_over_control"
        assert 1 <= len(record["layers"]) <= 6 and set(frame.layer) == set(record["layers"])
        assert record["layers"][-1] == record["td_peak_layer"]  # the sweep ends at the TD peak
        layers = pd.read_csv(out / "interventions_layers.csv")
        assert {"layer", "td", "control_td", "exceeds", "intervened"} <= set(layers.columns)
        assert len(layers) == lm.n_layers + 1 and layers.intervened.sum() == len(record["layers"])

    @pytest.mark.parametrize("bad", [dict(layers=[99]), dict(layers=[2], shots=30), dict(layers=[2], mode="swap"),
                                     dict(layers="sweep", prompts_per_concept=1), dict(layers=[2], cross_at="some"),
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
        real_means, real_gen = intervention_run.heldout_prompts, intervention_run.edited_answers

        def means_spy(family, *args, **kwargs):
            seen["means"] += [(e.input, e.output) for c, ex in family.concepts.items() if c != NULL for e in ex]
            return real_means(family, *args, **kwargs)

        def gen_spy(lm_, prompts, conditions, **kwargs):
            for p in prompts:
                *demos, query = p.text.split("\n")
                seen["eval"] += [tuple(line.split(" -> ")) for line in demos]
                seen["eval"].append((query[:-len(" ->")], p.answer))
            return real_gen(lm_, prompts, conditions, **kwargs)

        intervention_run.heldout_prompts, intervention_run.edited_answers = means_spy, gen_spy
        try:
            small_run(lm, layers=[2], replicates=1)
        finally:
            intervention_run.heldout_prompts, intervention_run.edited_answers = real_means, real_gen
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
    plain = frame[frame.condition != "cross"]
    assert len(plain) == 6 * 4 and set(frame.point) == {"blocks.13.resid_post"}
    assert plain.accuracy.between(0, 1).all()
    cross = frame[frame.condition == "cross"]
    assert len(cross) == 6 * 5 and cross.accuracy.dropna().between(0, 1).all()
    record = json.loads((tmp_path / "run" / "interventions.json").read_text())
    assert record["edits"][0]["example_token"].strip() == "->"
    assert record["rows_edited"] == {"blocks.13.resid_post": (3 + 5) * 6 * 3}  # positive, Null, random, 5 cross


class TestLayerSweep:
    @staticmethod
    def curve(td, exceeds=None):
        table = pd.DataFrame({"layer": range(len(td)), "td": td})
        if exceeds is not None:
            table["exceeds"] = exceeds
        return table

    def test_from_where_td_leaves_the_control_to_the_peak(self):
        from conceptlens.llm.interventions.sweep import sweep_layers

        td = [0.2, 0.2, 0.3, 0.5, 0.7, 0.9, 0.8, 0.6]
        layers, note = sweep_layers(self.curve(td, [False, False, False, True, True, True, True, True]))
        assert layers == [3, 4, 5] and "layer 3" in note and "peaks at layer 5" in note
        # the first exceeding layer counts even when a later one dips back under the control
        layers, _ = sweep_layers(self.curve(td, [False, True, False, True, True, True, False, False]))
        assert layers == [1, 2, 3, 4, 5]

    def test_long_rises_are_capped_at_six_evenly_spaced_layers(self):
        from conceptlens.llm.interventions.sweep import MAX_SWEEP_LAYERS, sweep_layers

        td = [0.1] * 2 + [0.1 + 0.04 * i for i in range(19)] + [0.5, 0.4]  # peak at layer 20
        exceeds = [False, False] + [True] * 21
        layers, _ = sweep_layers(self.curve(td, exceeds))
        assert MAX_SWEEP_LAYERS == 6 and layers == [2, 6, 9, 13, 16, 20]
        assert sweep_layers(self.curve(td, exceeds), max_layers=2)[0] == [2, 20]

    def test_td_that_never_leaves_the_control_sweeps_the_whole_rise(self):
        from conceptlens.llm.interventions.sweep import sweep_layers

        td = [0.2, 0.3, 0.5, 0.9, 0.7]
        layers, note = sweep_layers(self.curve(td, [False, False, False, False, True]))  # only after the peak
        assert layers == [1, 2, 3] and "never exceeds" in note
        layers, note = sweep_layers(self.curve(td))  # no control (zero-shot)
        assert layers == [1, 2, 3] and "no surface control" in note
        assert sweep_layers(self.curve([0.9, 0.3]))[0] == [0]  # the peak at the embeddings


class TestCrossAndRandom:
    def fake_generation(self, family, seen):
        """A stand-in for the model: the baseline answers the source, cross shift s answers its target."""
        from conceptlens.llm.decode import GenerationResult
        from conceptlens.llm.decode.edits import Touched
        from conceptlens.llm.interventions.conditions import cross_target, target_answers

        def run(lm_, prompts, conditions, **kwargs):
            seen.append(conditions)
            out = {}
            for key in conditions:
                if key[0] == "cross":
                    concepts = [c for c in family.concept_names if c != NULL]
                    answers = [target_answers(family, [p], cross_target(concepts, label, key[2]))[0]
                               for p, label in zip(prompts, self.labels)]
                    done = [a if a is not None else "?" for a in answers]
                else:
                    done = [p.answer for p in prompts]
                touched = {point: Touched(1, len(prompts)) for point in conditions[key] or {}}
                out[key] = GenerationResult(done, np.array([d == p.answer for d, p in zip(done, prompts)]), [], None,
                                            touched)
            return out
        return run

    def test_cross_cells_score_against_the_target_answer(self, lm, tmp_path, monkeypatch):
        from conceptlens.llm.interventions import run as intervention_run

        evaluated, held_out = word_family(WORDS[:12]), word_family(WORDS[12:])
        concepts = ["upper", "reverse", "first"]
        self.labels = [c for c in concepts for _ in range(4)]
        seen: list = []
        monkeypatch.setattr(intervention_run, "edited_answers", self.fake_generation(evaluated, seen))
        out = tmp_path / "run"
        frame = run_interventions(lm, "words", evaluated, [2], shots=2, prompts_per_concept=4, replicates=2,
                                  means_family=held_out, out=out)
        cross = pd.read_csv(out / "interventions_cross.csv")
        assert len(cross) == len(concepts) * (len(concepts) - 1)
        assert {"source", "target", "layer", "accuracy_vs_target", "baseline_vs_target", "n"} <= set(cross.columns)
        assert (cross.accuracy_vs_target == 1.0).all() and (cross.baseline_vs_target == 0.0).all()
        assert (cross.accuracy_vs_source == 0.0).all()
        assert (cross.n + cross.n_same_answer == 2 * 4).all() and (cross.n_unknown_target == 0).all()
        assert (out / "interventions_cross.png").stat().st_size > 0
        rows = frame[frame.condition == "cross"]
        assert set(zip(rows.concept, rows.target)) == set(zip(cross.source, cross.target))

    def test_unknown_target_answers_are_not_scored(self, lm, tmp_path):
        """Split per concept, the evaluated half lacks some targets' examples of a query: those are counted, not scored."""
        out = tmp_path / "run"
        small_run(lm, out, layers=[2], replicates=1, prompts_per_concept=4)
        cross = pd.read_csv(out / "interventions_cross.csv")
        assert (cross.n + cross.n_unknown_target + cross.n_same_answer == 4).all()
        assert cross.n_unknown_target.sum() > 0
        assert cross.loc[cross.n == 0, "accuracy_vs_target"].isna().all()

    def test_random_condition_is_its_own_row_with_the_positive_norm(self, lm, monkeypatch):
        from conceptlens.llm.interventions import run as intervention_run

        seen: list = []
        results: list = []
        real = intervention_run.edited_answers

        def spy(lm_, prompts, conditions, **kwargs):
            seen.append(conditions)
            results.append(real(lm_, prompts, conditions, **kwargs))
            return results[-1]

        monkeypatch.setattr(intervention_run, "edited_answers", spy)
        frame = small_run(lm, layers=[1, 2], replicates=1, mode="add")
        assert (frame.condition == "random").sum() == 2 * 3
        for layer in (1, 2):
            point = f"blocks.{layer - 1}.resid_post"
            positive = seen[0][("positive", layer, 0)][point].vector
            random = seen[0][("random", layer, 0)][point].vector
            torch.testing.assert_close(random.norm(dim=-1), positive.norm(dim=-1))
            assert not torch.allclose(random, positive)
            assert len(results[0][("random", layer, 0)].touched[point].positions) > 0
            assert results[0][("random", layer, 0)].touched[point].rows == len(positive)  # every prompt edited once

    def test_add_writes_the_held_out_mean(self, lm, monkeypatch):
        from conceptlens.llm.interventions import run as intervention_run
        from conceptlens.llm.interventions.definitions import concept_means

        seen: list = []
        real = intervention_run.edited_answers
        monkeypatch.setattr(intervention_run, "edited_answers",
                            lambda lm_, prompts, conditions, **kw: seen.append(conditions) or real(lm_, prompts, conditions, **kw))
        evaluated, held_out = word_family(WORDS[:12]), word_family(WORDS[12:])
        run_interventions(lm, "words", evaluated, [2], shots=2, prompts_per_concept=2, replicates=1, seed=5,
                          means_family=held_out, means_per_concept=3)
        means = concept_means(lm, held_out, [2], shots=2, n_per_concept=3, seed=5)
        positive = seen[0][("positive", 2, 0)]["blocks.1.resid_post"]
        assert type(positive).__name__ == "AddVector"
        labels = ["upper"] * 2 + ["reverse"] * 2 + ["first"] * 2
        for i, label in enumerate(labels):
            torch.testing.assert_close(positive.vector[i], means[label][0])
        torch.testing.assert_close(seen[0][("negative", 2, 0)]["blocks.1.resid_post"].vector, means[NULL][0])
