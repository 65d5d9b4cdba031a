"""Prompts: the default format, token roles that survive BPE merges, and seeded sampling."""

from __future__ import annotations

import pytest

from conceptlens.errors import ConceptLensError
from conceptlens.prompts import PromptFormat, role_position, sample_prompts, token_roles
from conceptlens.tasks.family import Example, TaskFamily

DEMOS = [Example("10110 01100", "00100"), Example("11111 00001", "00001")]
QUERY = Example("01010 11000", "01000")


def test_default_format():
    prompt = PromptFormat().build(DEMOS, QUERY)
    assert prompt.text == "10110 01100 -> 00100\n11111 00001 -> 00001\n01010 11000 ->"
    assert prompt.completion == " 01000\n"
    for start, end, role in prompt.spans:
        if role == "query_separator":
            assert prompt.text[start:end] == " ->" and end == len(prompt.text)
    assert [r for *_, r in prompt.spans][:4] == ["demo_input", "demo_separator", "demo_answer", "demo_newline"]
    stated = PromptFormat(separator=":", answer_prefix=" ").build(DEMOS[:1], QUERY, instruction="AND")
    assert stated.text == "AND\n10110 01100: 00100\n01010 11000:"
    assert stated.spans[0] == (0, 4, "instruction")


def test_spans_tile_the_text():
    prompt = PromptFormat().build(DEMOS, QUERY, instruction="Compute")
    cursor = 0
    for start, end, _ in prompt.spans:
        assert start == cursor and end > start
        cursor = end
    assert cursor == len(prompt.text)


def test_token_roles_with_a_byte_tokenizer(byte_tok):
    tokenizer = byte_tok
    prompt = PromptFormat().build(DEMOS[:1], QUERY)
    ids, roles = token_roles(tokenizer, prompt)
    assert len(ids) == len(prompt.text)  # one byte per token
    for char_index, role in enumerate(roles):
        assert role == next(r for s, e, r in prompt.spans if s <= char_index < e)
    assert role_position(roles, "query_separator") == len(ids) - 1
    assert role_position(roles, "demo_answer", "first") == len("10110 01100 ->")


@pytest.mark.real_model
def test_token_roles_with_smollm2(smollm2):
    tokenizer = smollm2.tokenizer
    prompt = PromptFormat().build(DEMOS, QUERY)
    ids, roles = token_roles(tokenizer, prompt)
    assert ids == tokenizer(prompt.text)["input_ids"]
    assert roles[-1] == "query_separator"
    assert tokenizer.decode(ids[role_position(roles, "query_separator", "first"):]) .strip() == "->"
    first_answer = role_position(roles, "demo_answer", "first")
    assert tokenizer.decode(ids[first_answer]).strip() in "00100" and roles[first_answer - 1] == "demo_separator"
    assert set(roles) == {"demo_input", "demo_separator", "demo_answer", "demo_newline", "query_input",
                          "query_separator"}


def test_role_position_errors():
    with pytest.raises(ConceptLensError, match="unknown token role"):
        role_position(["demo_input"], "query")
    with pytest.raises(ConceptLensError, match="no 'answer' token"):
        role_position(["demo_input"], "answer")


def family() -> TaskFamily:
    concepts = {"AND": [Example(f"in{i}", f"and{i}") for i in range(6)],
                "OR": [Example(f"in{i}", f"or{i}") for i in range(3)]}
    return TaskFamily("toy", concepts, {"AND": "Bitwise AND", "OR": "Bitwise OR"})


def test_sample_prompts_seeded_and_distinct():
    first = sample_prompts(family(), "AND", n=5, shots=3, seed=0)
    assert first == sample_prompts(family(), "AND", n=5, shots=3, seed=0)
    assert first != sample_prompts(family(), "AND", n=5, shots=3, seed=1)
    for prompt in first:
        lines = prompt.text.split("\n")
        assert len(lines) == 4 and len(set(lines)) == 4
        assert prompt.answer.startswith("and") and lines[-1] == prompt.answer.replace("and", "in") + " ->"
    stated = sample_prompts(family(), "AND", n=1, shots=1, seed=0, state_concept=True)[0]
    assert stated.text.startswith("Bitwise AND\n")
    pool = [Example("q", "a")]
    assert sample_prompts(family(), "OR", n=2, shots=2, seed=0, query_pool=pool)[0].text.endswith("q ->")


def test_sample_prompts_errors():
    with pytest.raises(ConceptLensError, match="no concept 'XOR'"):
        sample_prompts(family(), "XOR", n=1, shots=1, seed=0)
    with pytest.raises(ConceptLensError, match="3 shots need at least 4"):
        sample_prompts(family(), "OR", n=1, shots=3, seed=0)
