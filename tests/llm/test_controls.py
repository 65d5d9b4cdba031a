"""The encoding study's surface controls: the right tokens (demonstration answers, query inputs), the
same kNN as TD, a verdict per concept, and a 0-shot answer control skipped with a note."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from tiny_tokenizer import byte_tokenizer

from conceptlens.decodability import surface_decodability, task_decodability
from conceptlens.llm.encoding.controls import control_columns, role_token_ids, study_controls, surface_controls
from conceptlens.prompts import PromptFormat
from conceptlens.tasks.family import Example


def _lm(embedding: torch.Tensor):
    model = SimpleNamespace(get_input_embeddings=lambda: SimpleNamespace(weight=embedding))
    return SimpleNamespace(model=model, tokenizer=byte_tokenizer())


def test_the_answer_tokens_are_the_demonstration_answers_only():
    tokenizer = byte_tokenizer()
    prompt = PromptFormat().build([Example("cat", "CAT"), Example("sky", "SKY")], Example("fox", "FOX"))
    answers = role_token_ids(tokenizer, [prompt], "demo_answer")[0]
    query = role_token_ids(tokenizer, [prompt], "query_input")[0]
    assert tokenizer.decode(answers) == " CAT SKY"  # the answer prefix is part of the answer the model reads
    assert tokenizer.decode(query) == "fox"


def _prompts(n: int, upper: bool):
    words = ["ab", "cd", "ef", "gh", "ij", "kl", "mn", "op"]
    fmt = PromptFormat()
    out = []
    for i in range(n):
        demos = [Example(w, w.upper() if upper else w[::-1]) for w in (words[i % 8], words[(i + 1) % 8])]
        out.append(fmt.build(demos, Example(words[(i + 2) % 8], "?")))
    return out


def test_the_control_equals_a_hand_computation():
    """Upper-case answers embed far from lower-case ones: the answers' control decodes the concept
    perfectly, and equals the kNN of the hand-made mean embeddings."""
    torch.manual_seed(0)
    embedding = torch.randn(257, 8) * 0.01
    tokenizer = byte_tokenizer()
    for char in "ABCDEFGHIJKLMNOP":
        embedding[tokenizer.convert_tokens_to_ids(char)] += 5.0  # capitals sit together, far away
    prompts = _prompts(6, True) + _prompts(6, False)
    labels = ["upper"] * 6 + ["reverse"] * 6
    acts = torch.randn(2, 12, 4)  # a "model" whose layers decode nothing in particular
    td = task_decodability(acts, labels, k=3, seed=0)
    frame, summary = surface_controls(_lm(embedding), prompts, labels, td, layer=1, k=3, seed=0)
    hand = []
    for prompt in prompts:
        ids = [i for i, r in zip(*_ids_roles(tokenizer, prompt)) if r == "demo_answer"]
        hand.append(embedding[ids].double().mean(0).numpy())
    expected = task_decodability(np.stack(hand), labels, k=3, layers=[0], seed=0)
    assert summary["answers"]["td"] == float(expected.mean[0]) == 1.0
    answers = frame[frame.control == "answers"].set_index("concept")
    assert answers.loc["mean", "control_td"] == 1.0
    assert not summary["answers"]["exceeds"] and "not distinguishable" in summary["answers"]["verdict"]
    assert set(frame.concept) == {"upper", "reverse", "mean"}


def _ids_roles(tokenizer, prompt):
    from conceptlens.prompts import token_roles

    return token_roles(tokenizer, prompt)


def test_zero_shots_skip_the_answer_control_with_a_note():
    embedding = torch.randn(257, 8)
    fmt = PromptFormat()
    prompts = [fmt.build([], Example(w, w)) for w in ["ab", "cd", "ef", "gh", "ij", "kl"]]
    labels = ["x", "x", "x", "y", "y", "y"]
    td = task_decodability(torch.randn(1, 6, 4), labels, k=2, seed=0)
    stage = SimpleNamespace(shots=0, prompts=prompts, labels=labels)
    table, summary = study_controls(_lm(embedding), [stage], {0: td}, layer=0, k=2, seed=0)
    assert summary["0"]["answers"]["skipped"] and "cannot be computed" in summary["0"]["answers"]["note"]
    assert set(table.control) == {"query"} and set(table.shots) == {0}
    query = surface_decodability(embedding, role_token_ids(byte_tokenizer(), prompts, "query_input"), labels, k=2)
    assert summary["0"]["query"]["td"] == float(query.mean[0])


def test_control_columns_repeat_the_concept_value_at_every_layer():
    decodability = pd.DataFrame({"shots": [4, 4, 4, 4], "layer": [0, 0, 1, 1], "concept": ["a", "b", "a", "b"],
                                 "td": [0.1, 0.2, 0.3, 0.4]})
    controls = pd.DataFrame({"shots": [4, 4, 4], "control": ["answers"] * 3, "concept": ["a", "b", "mean"],
                             "control_td": [0.5, 0.7, 0.6]})
    out = control_columns(decodability, controls)
    assert list(out.surface_answers_td) == [0.5, 0.7, 0.5, 0.7]
    assert out.surface_query_td.isna().all()
