"""Interventions: a self-patch changes nothing (bit-exact, also through generation), a different
vector changes the output, edits land on the query-separator token of the recorded point, runs are
deterministic by seed, and bad input stops before anything is written."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from conceptlens.activations.capture import hidden_state_point, left_pad, padded_positions
from conceptlens.errors import ConceptLensError
from conceptlens.hooks import Trace
from conceptlens.llm.generation import greedy_answers
from conceptlens.llm.intervention_report import summarize
from conceptlens.llm.intervention_run import run_interventions
from conceptlens.llm.intervention_generation import answers_under_edits
from conceptlens.llm.interventions import (AddVector, Intervention, ReplaceWith, concept_means, edits_at, heldout_prompts,
                                           query_activations, query_positions)
from conceptlens.models.loader import LoadedModel, load_model
from conceptlens.tasks.family import NULL, Example, TaskFamily

WORDS = ("cat", "river", "on", "elephant", "blue", "sky", "mountain", "to", "quietly", "garden", "lamp", "go",
         "window", "apple", "sun", "butterfly", "red", "it", "table", "orange", "moon", "ink", "pencil", "fox")


def word_family(words=WORDS, null: bool = True) -> TaskFamily:
    """Three concepts over words of varied lengths (so left padding is exercised) plus Null."""
    concepts = {"upper": [Example(w, w.upper()) for w in words],
                "reverse": [Example(w, w[::-1]) for w in words],
                "first": [Example(w, w[0]) for w in words]}
    if null:
        rng = random.Random(0)
        concepts[NULL] = [Example(w, rng.choice(words)) for w in words]
    return TaskFamily("words", concepts)


@pytest.fixture(scope="module")
def lm(tiny_folder) -> LoadedModel:
    """The tiny Llama of `tiny_folder` (byte tokenizer), weights scaled up so layers differ."""
    loaded = load_model(str(tiny_folder))
    torch.manual_seed(0)
    with torch.no_grad():
        for param in loaded.model.parameters():
            if param.dim() >= 2:
                param.normal_(0, 0.3)
    return loaded


def encode(lm, prompts):
    encoded, positions = query_positions(lm, prompts)
    ids, mask, position_ids = left_pad(encoded, lm.tokenizer.pad_token_id)
    pos = padded_positions([len(r) for r in encoded], positions, ids.shape[1])
    return ids, mask, position_ids, pos


def forward(lm, ids, mask, position_ids, pos, points=(), edits=None):
    with torch.no_grad(), Trace(lm.layout, list(points), positions=pos, edits=edits) as trace:
        logits = lm.model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False).logits
    return logits, trace.captured


class TestMechanics:
    def test_replace_and_add_touch_only_the_given_positions(self):
        hidden = torch.randn(3, 5, 4)
        pos = torch.tensor([4, 2, 0])
        vector = torch.randn(4)
        replaced = ReplaceWith(vector)(hidden, pos)
        added = AddVector(vector, scale=2.0)(hidden, pos)
        for row, p in enumerate(pos.tolist()):
            assert torch.equal(replaced[row, p], vector)
            torch.testing.assert_close(added[row, p], hidden[row, p] + 2 * vector)
            keep = [i for i in range(5) if i != p]
            assert torch.equal(replaced[row, keep], hidden[row, keep])
            assert torch.equal(added[row, keep], hidden[row, keep])
        per_row = torch.randn(3, 4)
        assert torch.equal(ReplaceWith(per_row)(hidden, pos)[torch.arange(3), pos], per_row)
        assert torch.equal(AddVector(torch.zeros(4))(hidden, pos), hidden)

    def test_bad_vector_shape_and_missing_positions(self):
        with pytest.raises(ConceptLensError):
            ReplaceWith(torch.zeros(5))(torch.zeros(2, 3, 4), torch.tensor([0, 1]))
        with pytest.raises(ConceptLensError):
            ReplaceWith(torch.zeros(3, 4))(torch.zeros(2, 3, 4), torch.tensor([0, 1]))
        with pytest.raises(ConceptLensError):
            ReplaceWith(torch.zeros(4))(torch.zeros(2, 3, 4), None)

    def test_self_patch_is_bit_exact_in_a_padded_batch(self, lm):
        prompts, _ = heldout_prompts(word_family(), shots=2, n_per_concept=3, seed=1)
        ids, mask, position_ids, pos = encode(lm, prompts)
        assert len(set(mask.sum(1).tolist())) > 1  # rows really are padded differently
        layer = 2
        later = [hidden_state_point(layer + 1, lm.n_layers)]
        point = hidden_state_point(layer, lm.n_layers)
        logits, captured = forward(lm, ids, mask, position_ids, pos, points=[point] + later)
        patch = ReplaceWith(captured[point])  # per-row [batch, d]: each row's own activation
        patched_logits, patched = forward(lm, ids, mask, position_ids, pos, points=later, edits={point: patch})
        assert patch.calls == 1 and patch.rows == len(prompts)
        assert torch.equal(patched_logits, logits)
        assert torch.equal(patched[later[0]], captured[later[0]])

    def test_a_different_vector_changes_the_output(self, lm):
        prompts, _ = heldout_prompts(word_family(), shots=2, n_per_concept=2, seed=2)
        ids, mask, position_ids, pos = encode(lm, prompts)
        point = hidden_state_point(2, lm.n_layers)
        logits, captured = forward(lm, ids, mask, position_ids, pos, points=[point])
        other = captured[point].roll(1, dims=0)  # another prompt's activation
        edited, _ = forward(lm, ids, mask, position_ids, pos, edits={point: ReplaceWith(other)})
        rows = torch.arange(len(prompts))
        assert not torch.allclose(edited[rows, pos], logits[rows, pos])
        # tokens before the edited one cannot see it (causal attention)
        assert torch.equal(edited[rows, pos - 1], logits[rows, pos - 1])

    def test_edit_lands_on_the_query_separator(self, lm):
        prompts, _ = heldout_prompts(word_family(), shots=3, n_per_concept=2, seed=3)
        ids, mask, position_ids, pos = encode(lm, prompts)
        patch = ReplaceWith(torch.zeros(lm.layout.d_model))
        point = hidden_state_point(1, lm.n_layers)
        forward(lm, ids, mask, position_ids, pos, edits={point: patch})
        assert torch.equal(patch.touched, pos)
        for row, p in enumerate(patch.touched.tolist()):
            assert p == ids.shape[1] - 1  # the query separator is the last prompt token
            assert lm.tokenizer.decode(ids[row, p - 1:p + 1]) == "->"
        assert edits_at(lm, 1, patch) == {"blocks.0.resid_post": patch}


class TestThroughGeneration:
    def test_self_patch_changes_nothing(self, lm):
        prompts, _ = heldout_prompts(word_family(), shots=2, n_per_concept=2, seed=4)
        layer, later = 2, 3
        for prompt in prompts:
            first = greedy_answers(lm, [prompt], capture_layers=[layer, later], max_new_tokens=4)
            patch = ReplaceWith(first.activations[0, 0])
            again = greedy_answers(lm, [prompt], capture_layers=[layer, later], max_new_tokens=4,
                                   edits=edits_at(lm, layer, patch))
            assert patch.calls == 1  # the prefill only: decode steps never see the edit
            assert again.completions == first.completions
            assert torch.equal(again.activations, first.activations)

    def test_an_edit_changes_the_completion(self, lm):
        prompts, _ = heldout_prompts(word_family(), shots=2, n_per_concept=3, seed=5)
        base = greedy_answers(lm, prompts, capture_layers=[3], max_new_tokens=4)
        torch.manual_seed(0)
        patch = ReplaceWith(50 * torch.randn(lm.layout.d_model))
        edited = greedy_answers(lm, prompts, capture_layers=[3], max_new_tokens=4, edits=edits_at(lm, 2, patch))
        assert patch.rows == len(prompts)
        assert edited.completions != base.completions
        assert not torch.allclose(edited.activations, base.activations)


class Record(Intervention):
    """Test-only: leaves the activation unchanged and stores it under `key` (one entry per batch)."""

    kind = "record"

    def __init__(self, store: dict, key: str):
        super().__init__(torch.zeros(1))
        self.store, self.key = store, key

    def combine(self, current, vector):
        self.store.setdefault(self.key, []).append(current.clone())
        return current

    def _rows(self, hidden):
        return hidden[:, 0]


class FromRecord(ReplaceWith):
    """Test-only: replaces with what a `Record` stored for this batch in the condition before (a self-patch)."""

    def __init__(self, store: dict, key: str):
        super().__init__(torch.zeros(1))
        self.store, self.key = store, key

    def _rows(self, hidden):
        return self.store[self.key][-1]


class TestSharedPrefixGeneration:
    def test_baseline_equals_plain_greedy_decoding(self, lm):
        prompts, _ = heldout_prompts(word_family(), shots=2, n_per_concept=3, seed=6)
        shared = answers_under_edits(lm, prompts, {"baseline": None}, batch_size=4)["baseline"]
        plain = greedy_answers(lm, prompts, batch_size=4)
        assert shared.completions == plain.completions
        assert np.array_equal(shared.correct, plain.correct)

    def test_self_patch_is_bit_exact_and_an_edit_is_not(self, lm):
        prompts, _ = heldout_prompts(word_family(), shots=2, n_per_concept=3, seed=7)
        store: dict = {}
        point, later = hidden_state_point(1, lm.n_layers), hidden_state_point(3, lm.n_layers)
        torch.manual_seed(0)
        other = ReplaceWith(50 * torch.randn(lm.layout.d_model))
        conditions = {"record": {point: Record(store, "at"), later: Record(store, "later_base")},
                      "self": {point: FromRecord(store, "at"), later: Record(store, "later_self")},
                      "other": {point: other, later: Record(store, "later_other")}}
        results = answers_under_edits(lm, prompts, conditions, batch_size=4)
        assert results["self"].completions == results["record"].completions
        for base, patched, edited in zip(store["later_base"], store["later_self"], store["later_other"]):
            assert torch.equal(base, patched)
            assert not torch.allclose(base, edited)
        assert results["other"].completions != results["record"].completions
        assert other.rows == len(prompts) and other.calls == 3  # three batches of 4, each edited once

    def test_per_prompt_vectors_follow_the_prompts(self, lm):
        """A per-prompt vector [N, d] reaches its own prompt, whatever the batch order (longest first)."""
        prompts, _ = heldout_prompts(word_family(), shots=2, n_per_concept=3, seed=8)
        n, d = len(prompts), lm.layout.d_model
        vectors = torch.arange(n, dtype=torch.float32)[:, None].expand(n, d).contiguous()  # row i is all i
        store: dict = {}
        conditions = {"c": {"blocks.1.resid_post": ReplaceWith(vectors), "blocks.2.resid_pre": Record(store, "seen")}}
        answers_under_edits(lm, prompts, conditions, batch_size=4)
        seen = torch.cat(store["seen"])[:, 0]  # the value block 2 received, in batch order
        encoded, _ = query_positions(lm, prompts)
        order = sorted(range(n), key=lambda i: -len(encoded[i]))
        assert seen.tolist() == [float(i) for i in order]
        assert sorted(seen.tolist()) == list(map(float, range(n)))

    def test_the_edited_token_must_be_last(self, lm):
        prompts, _ = heldout_prompts(word_family(), shots=2, n_per_concept=1, seed=9)
        with pytest.raises(ConceptLensError):
            answers_under_edits(lm, prompts, {"b": None}, role="query_input")


class TestConceptMeans:
    def test_means_are_the_mean_query_activation_of_each_concept(self, lm):
        family = word_family()
        means = concept_means(lm, family, layers=[1, 3], shots=2, n_per_concept=4, seed=0)
        assert list(means) == family.concept_names
        prompts, labels = heldout_prompts(family, 2, 4, 0)
        acts = query_activations(lm, prompts, [1, 3])
        for concept, mean in means.items():
            assert mean.shape == (2, lm.layout.d_model)
            index = [i for i, label in enumerate(labels) if label == concept]
            torch.testing.assert_close(mean, acts[:, index].mean(1))
        with pytest.raises(ConceptLensError):
            concept_means(lm, family, layers=[9], shots=2, n_per_concept=2, seed=0)


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
        from conceptlens.llm import intervention_run

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
        from conceptlens.llm import intervention_run

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
        write_family_folder(family, word_family(WORDS * 1))
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
