"""Intervention mechanics: a self-patch changes nothing (bit-exact, also through generation), a
different vector changes the output, edits land on the query-separator token, per-prompt vectors
follow their prompts through the shared-prefix decoding, concept means are the right means, the modes
write what they say, the random vector keeps the positive norm, and random and cross conditions edit
the query token only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlens.activations.capture import hidden_state_point, left_pad, padded_positions
from conceptlens.errors import ConceptLensError
from conceptlens.hooks import Trace
from conceptlens.llm.decode import edited_answers, greedy_answers
from conceptlens.llm.decode.edits import Touch
from conceptlens.llm.interventions.conditions import (answer_lookup, cross_shifts, cross_target, edit_vectors,
                                                      layer_conditions, make_edit, query_input, random_vectors,
                                                      target_answers)
from conceptlens.llm.interventions.definitions import (AddVector, Intervention, ReplaceWith, concept_means, edits_at, heldout_prompts,
                                           query_activations, query_positions)
from conceptlens.models.loader import LoadedModel
from conceptlens.tasks.family import Example, TaskFamily
from word_tasks import scaled_tiny_lm, word_family


@pytest.fixture(scope="module")
def lm(tiny_folder) -> LoadedModel:
    return scaled_tiny_lm(tiny_folder)


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
        patch = Touch(ReplaceWith(captured[point]))  # per-row [batch, d]: each row's own activation
        patched_logits, patched = forward(lm, ids, mask, position_ids, pos, points=later, edits={point: patch})
        assert len(patch.touched) == 1 and len(patch.touched[0]) == len(prompts)
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
        touch = Touch(patch)
        forward(lm, ids, mask, position_ids, pos, edits={point: touch})
        (touched,) = touch.touched
        assert torch.equal(touched, pos)
        for row, p in enumerate(touched.tolist()):
            assert p == ids.shape[1] - 1  # the query separator is the last prompt token
            assert lm.tokenizer.decode(ids[row, p - 1:p + 1]) == "->"
        assert edits_at(lm, 1, patch) == {"blocks.0.resid_post": patch}
        assert not hasattr(patch, "touched") and not hasattr(patch, "calls")  # the edit itself keeps no state


class TestThroughGeneration:
    def test_self_patch_changes_nothing(self, lm):
        prompts, _ = heldout_prompts(word_family(), shots=2, n_per_concept=2, seed=4)
        layer, later = 2, 3
        for prompt in prompts:
            first = greedy_answers(lm, [prompt], capture_layers=[layer, later], max_new_tokens=4)
            patch = ReplaceWith(first.activations[0, 0])
            again = greedy_answers(lm, [prompt], capture_layers=[layer, later], max_new_tokens=4,
                                   edits=edits_at(lm, layer, patch))
            assert again.touched[hidden_state_point(layer, lm.n_layers)].calls == 1  # the prefill only
            assert again.completions == first.completions
            assert torch.equal(again.activations, first.activations)

    def test_an_edit_changes_the_completion(self, lm):
        prompts, _ = heldout_prompts(word_family(), shots=2, n_per_concept=3, seed=5)
        base = greedy_answers(lm, prompts, capture_layers=[3], max_new_tokens=4)
        torch.manual_seed(0)
        patch = ReplaceWith(50 * torch.randn(lm.layout.d_model))
        edited = greedy_answers(lm, prompts, capture_layers=[3], max_new_tokens=4, edits=edits_at(lm, 2, patch))
        assert edited.touched[hidden_state_point(2, lm.n_layers)].rows == len(prompts)
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
        shared = edited_answers(lm, prompts, {"baseline": None}, batch_size=4)["baseline"]
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
        results = edited_answers(lm, prompts, conditions, batch_size=4)
        assert results["self"].completions == results["record"].completions
        for base, patched, edited in zip(store["later_base"], store["later_self"], store["later_other"]):
            assert torch.equal(base, patched)
            assert not torch.allclose(base, edited)
        assert results["other"].completions != results["record"].completions
        touched = results["other"].touched[point]
        assert touched.rows == len(prompts) and touched.calls == 3  # three batches of 4, each edited once
        assert not results["record"].touched[point] is touched  # one ledger per condition

    def test_per_prompt_vectors_follow_the_prompts(self, lm):
        """A per-prompt vector [N, d] reaches its own prompt, whatever the batch order (longest first)."""
        prompts, _ = heldout_prompts(word_family(), shots=2, n_per_concept=3, seed=8)
        n, d = len(prompts), lm.layout.d_model
        vectors = torch.arange(n, dtype=torch.float32)[:, None].expand(n, d).contiguous()  # row i is all i
        store: dict = {}
        conditions = {"c": {"blocks.1.resid_post": ReplaceWith(vectors), "blocks.2.resid_pre": Record(store, "seen")}}
        edited_answers(lm, prompts, conditions, batch_size=4)
        seen = torch.cat(store["seen"])[:, 0]  # the value block 2 received, in batch order
        encoded, _ = query_positions(lm, prompts)
        order = sorted(range(n), key=lambda i: -len(encoded[i]))
        assert seen.tolist() == [float(i) for i in order]
        assert sorted(seen.tolist()) == list(map(float, range(n)))

    def test_the_edited_token_must_be_last(self, lm):
        prompts, _ = heldout_prompts(word_family(), shots=2, n_per_concept=1, seed=9)
        with pytest.raises(ConceptLensError):
            edited_answers(lm, prompts, {"b": None}, role="query_input")


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


class Spy:
    """Test-only edit: runs `inner` and keeps the activation before and after, and the positions."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def __call__(self, hidden, positions):
        out = self.inner(hidden, positions)
        self.seen.append((hidden.clone(), out.clone(), positions.clone()))
        return out


def fake_means(concepts, layers=2, d=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {c: torch.randn(layers, d, generator=generator) for c in concepts}


class TestModesAndConditions:
    def test_add_is_the_raw_mean_added_to_h(self):
        means = fake_means(["a", "b", "Null"])
        vectors = edit_vectors(means, 1, "add")
        hidden, pos = torch.randn(2, 5, 8), torch.tensor([4, 3])
        edited = make_edit("add", vectors["a"])(hidden, pos)
        assert isinstance(make_edit("add", vectors["a"]), AddVector)
        for row, p in enumerate(pos.tolist()):
            torch.testing.assert_close(edited[row, p], hidden[row, p] + means["a"][1])  # h + h_task
        assert isinstance(make_edit("replace", vectors["a"]), ReplaceWith)
        assert torch.equal(edit_vectors(means, 0, "replace")["b"], means["b"][0])

    def test_add_centered_is_the_old_add(self):
        means = fake_means(["a", "b", "c", "Null"])

        def old(means, layer_index):  # the edit `add` made before the paper's variant became the default
            at_layer = {concept: mean[layer_index] for concept, mean in means.items()}
            grand = torch.stack(list(at_layer.values())).mean(dim=0)
            return {concept: vector - grand for concept, vector in at_layer.items()}

        for layer_index in (0, 1):
            new, before = edit_vectors(means, layer_index, "add_centered"), old(means, layer_index)
            assert list(new) == list(before)
            for concept in new:
                torch.testing.assert_close(new[concept], before[concept])
        assert not torch.allclose(edit_vectors(means, 0, "add")["a"], edit_vectors(means, 0, "add_centered")["a"])
        with pytest.raises(ConceptLensError):
            edit_vectors(means, 0, "swap")

    @pytest.mark.parametrize("mode", ["add", "add_centered", "replace"])
    def test_random_vector_has_the_positive_norm_and_is_seeded(self, mode):
        means = fake_means(["a", "b", "Null"], d=64)
        vectors = edit_vectors(means, 1, mode)
        randoms = random_vectors(vectors, ["a", "b"], seed=3, layer=7)
        for concept in ("a", "b"):
            torch.testing.assert_close(randoms[concept].norm(), vectors[concept].norm())
            cosine = torch.nn.functional.cosine_similarity(randoms[concept], vectors[concept], dim=0)
            assert abs(float(cosine)) < 0.5  # a random direction, not the concept's
        assert torch.equal(randoms["a"], random_vectors(vectors, ["a", "b"], seed=3, layer=7)["a"])
        assert not torch.allclose(randoms["a"], random_vectors(vectors, ["a", "b"], seed=4, layer=7)["a"])
        assert not torch.allclose(randoms["a"], randoms["b"] * randoms["a"].norm() / randoms["b"].norm())

    def test_conditions_write_the_right_vector_to_each_prompt(self):
        concepts = ["a", "b", "c"]
        means = fake_means(concepts + ["Null"])
        vectors = edit_vectors(means, 0, "add")
        randoms = random_vectors(vectors, concepts, seed=0, layer=1)
        labels = ["a", "a", "b", "c"]
        conditions = layer_conditions(vectors, randoms, labels, concepts, "blocks.0.resid_post", 1, "add")
        assert set(conditions) == {("positive", 1, 0), ("negative", 1, 0), ("random", 1, 0), ("cross", 1, 1),
                                   ("cross", 1, 2)}
        get = lambda key: conditions[key]["blocks.0.resid_post"].vector  # noqa: E731
        for i, label in enumerate(labels):
            assert torch.equal(get(("positive", 1, 0))[i], vectors[label])
            assert torch.equal(get(("random", 1, 0))[i], randoms[label])
            for shift in (1, 2):
                target = cross_target(concepts, label, shift)
                assert target != label and torch.equal(get(("cross", 1, shift))[i], vectors[target])
        assert torch.equal(get(("negative", 1, 0)), vectors["Null"])
        # over the shifts, every source meets every other target once
        pairs = {(c, cross_target(concepts, c, s)) for c in concepts for s in cross_shifts(concepts)}
        assert pairs == {(s, t) for s in concepts for t in concepts if s != t}

    def test_target_answers_come_from_the_family_or_are_unknown(self):
        family = word_family()
        prompts, _ = heldout_prompts(family, shots=2, n_per_concept=2, seed=0)
        for prompt, answer in zip(prompts, target_answers(family, prompts, "reverse")):
            assert answer == query_input(prompt)[::-1]
        partial = TaskFamily("words", {**family.concepts, "reverse": family.concepts["reverse"][:3]})
        assert None in target_answers(partial, prompts, "reverse")
        ambiguous = TaskFamily("w", {"x": [Example("a", "1"), Example("a", "2"), Example("b", "3")]})
        assert answer_lookup(ambiguous, "x") == {"a": None, "b": "3"}


class TestOnlyTheQueryToken:
    @pytest.mark.parametrize("condition", ["random", "cross"])
    def test_random_and_cross_edit_only_the_query_token(self, lm, condition):
        family = word_family()
        concepts = ["upper", "reverse", "first"]
        prompts, labels = heldout_prompts(family, shots=2, n_per_concept=3, seed=11)
        keep = [i for i, label in enumerate(labels) if label != "Null"]
        prompts, labels = [prompts[i] for i in keep], [labels[i] for i in keep]
        means = concept_means(lm, family, layers=[2], shots=2, n_per_concept=3, seed=12)
        point = hidden_state_point(2, lm.n_layers)
        vectors = edit_vectors(means, 0, "add")
        conditions = layer_conditions(vectors, random_vectors(vectors, concepts, 0, 2), labels, concepts, point, 2, "add")
        ids, mask, position_ids, pos = encode(lm, prompts)
        assert len(set(mask.sum(1).tolist())) > 1  # padded rows: the query token sits at another index per row
        for key, edit in conditions.items():
            if key[0] != condition:
                continue
            spy = Spy(edit[point])
            forward(lm, ids, mask, position_ids, pos, edits={point: spy})
            (before, after, positions), = spy.seen
            assert torch.equal(positions, pos)
            changed = (after != before).any(dim=-1)  # [batch, seq]
            expected = torch.zeros_like(changed)
            expected[torch.arange(len(prompts)), pos] = True
            assert torch.equal(changed, expected)  # the query token of every row, and nothing else
            rows = torch.arange(len(prompts))
            torch.testing.assert_close(after[rows, pos] - before[rows, pos], edit[point].vector)
            assert len(positions) == len(prompts)  # one call, every row
            assert all(ids[r, p] == ids[0, -1] for r, p in zip(rows.tolist(), pos.tolist()))  # the same '>' token
