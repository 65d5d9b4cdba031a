"""Prompts: the default format, token roles that survive BPE merges, seeded sampling, and the
whitespace rule that fits the format to a tokenizer (byte tokenizer and the real SmolLM2 tokenizer)."""

from __future__ import annotations

import pytest

from conceptlens.errors import ConceptLensError
from conceptlens.prompts import (PromptFormat, answer_boundary, fit_format_to_tokenizer, role_position, sample_prompts,
                                 token_roles)
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


BITS = [Example("10110 01100", "00100"), Example("11111 00001", "00001"), Example("01010 11000", "01000")]
WORDS = [Example("She ran to the old storm shelter.", "storm"), Example("He sang very loudly.", "loudly"),
         Example("They left early.", "They")]


def test_answer_boundary_with_a_byte_tokenizer(byte_tok):
    before = answer_boundary(PromptFormat(), byte_tok, BITS[0], BITS[1:])
    assert (before.last_prompt_token, before.first_answer_token, before.first_content_token) == (">", " ", "0")
    assert before.answer_starts_with_whitespace and before.prompt_is_prefix
    assert before.describe() == "the prompt ends on '>'; the answer starts with ' ', then '0'"
    after = answer_boundary(PromptFormat(separator=" -> ", answer_prefix=""), byte_tok, BITS[0])
    assert (after.last_prompt_token, after.first_answer_token, after.first_content_token) == (" ", "0", "0")
    assert not after.answer_starts_with_whitespace
    assert after.describe() == "the prompt ends on ' '; the answer starts with '0'"


def test_whitespace_moves_on_a_byte_tokenizer(byte_tok):
    """One token per byte: every answer's space is its own token, digits and words alike."""
    for examples in (BITS, WORDS):
        fitted, note = fit_format_to_tokenizer(PromptFormat(), byte_tok, examples)
        assert (fitted.separator, fitted.answer_prefix) == (" -> ", "")
        assert note["changed"] and note["moved_whitespace"] == " " and note["answers_checked"] == 3
        assert (note["separator_before"], note["answer_prefix_before"]) == (" ->", " ")
        prompt = fitted.build(examples[1:], examples[0])
        original = PromptFormat().build(examples[1:], examples[0])
        assert prompt.text + prompt.completion == original.text + original.completion  # same text, cut later
        ids, roles = token_roles(byte_tok, prompt)
        assert roles[-1] == "query_separator" and byte_tok.decode(ids[-1:]) == " "


def test_whitespace_rule_keeps_formats_with_nothing_to_move(byte_tok):
    already = PromptFormat(separator=" -> ", answer_prefix="")
    fitted, note = fit_format_to_tokenizer(already, byte_tok, BITS)
    assert fitted == already and not note["changed"] and "no answer" in note["reason"]
    spaced = [Example(e.input, " " + e.output) for e in BITS]  # the space belongs to the answer itself
    fitted, note = fit_format_to_tokenizer(PromptFormat(separator=" ->", answer_prefix=""), byte_tok, spaced)
    assert fitted.separator == " ->" and not note["changed"] and "not inside the answer prefix" in note["reason"]
    with pytest.raises(ConceptLensError, match="no examples"):
        fit_format_to_tokenizer(PromptFormat(), byte_tok, [])


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    """Only the tokenizer of the embedded SmolLM2-135M (no weights are loaded)."""
    from transformers import AutoTokenizer

    from conceptlens.models.embedded import embedded_folder

    return AutoTokenizer.from_pretrained(embedded_folder("smollm2-135m"))


def _all_examples(name: str) -> list[Example]:
    from conceptlens.tasks.registry import load_family

    return [example for examples in load_family(name).concepts.values() for example in examples]


@pytest.mark.real_model
def test_smollm2_bitwise_answers_move_the_space(smollm2_tokenizer):
    tokenizer, examples = smollm2_tokenizer, _all_examples("bitwise")
    assert answer_boundary(PromptFormat(), tokenizer, examples[0]).describe().startswith(
        "the prompt ends on ' ->'; the answer starts with ' ', then '")
    fitted, note = fit_format_to_tokenizer(PromptFormat(), tokenizer, examples)
    assert (fitted.separator, fitted.answer_prefix) == (" -> ", "") and note["changed"]
    assert note["answers_checked"] == note["answers_starting_with_whitespace_token"] == 32  # 5-bit answers
    boundary = answer_boundary(fitted, tokenizer, examples[0], examples[1:4])
    assert boundary.last_prompt_token == " " and boundary.first_answer_token in "01" and boundary.prompt_is_prefix
    old, new = PromptFormat().build(examples[1:4], examples[0]), fitted.build(examples[1:4], examples[0])
    full = tokenizer(old.text + old.completion)["input_ids"]
    assert tokenizer(new.text + new.completion)["input_ids"] == full  # the same tokens, cut one token later
    assert tokenizer(new.text)["input_ids"] == full[:len(tokenizer(old.text)["input_ids"]) + 1]


@pytest.mark.real_model
def test_smollm2_word_answers_keep_the_format(smollm2_tokenizer):
    fitted, note = fit_format_to_tokenizer(PromptFormat(), smollm2_tokenizer, _all_examples("pos"))
    assert fitted == PromptFormat() and not note["changed"]
    assert note["answers_starting_with_whitespace_token"] == 0 and note["answers_checked"] > 100
    assert answer_boundary(fitted, smollm2_tokenizer, WORDS[0]).first_answer_token == " storm"


@pytest.mark.real_model
def test_smollm2_mixed_answers_keep_the_format(smollm2_tokenizer):
    """DECISION: one format per family; a family where only some answers split is left as it is."""
    fitted, note = fit_format_to_tokenizer(PromptFormat(), smollm2_tokenizer, BITS[:2] + WORDS[:1])
    assert fitted == PromptFormat() and not note["changed"]
    assert note["answers_starting_with_whitespace_token"] == 2 and note["reason"].startswith("2 of 3 distinct")


@pytest.mark.real_model
def test_smollm2_study_and_finetune_prompts_end_on_the_space_before_the_first_digit(smollm2_tokenizer):
    """The format the encoding study and finetuning use (`study_format`): TD is read at the last prompt
    token, which is the answer's leading space, and training's first labelled token is the first digit."""
    from conceptlens.llm.encoding.study import study_format
    from conceptlens.llm.finetune.data import encode_example
    from conceptlens.prompts import sample_prompts, token_roles
    from conceptlens.tasks.registry import load_family

    tokenizer, family = smollm2_tokenizer, load_family("bitwise", split="test")
    fmt, record = study_format(tokenizer, family)
    assert (record["separator"], record["answer_prefix"]) == (" -> ", "") and record["fitted_to_tokenizer"]["changed"]
    for concept in family.concept_names:
        for prompt in sample_prompts(family, concept, 3, 4, seed=0, fmt=fmt):
            ids, roles = token_roles(tokenizer, prompt)
            assert tokenizer.decode(ids[-1:]) == " " and roles[-1] == "query_separator"
            example = encode_example(tokenizer, prompt, concept)
            first_label = next(label for label in example.labels if label != -100)
            assert tokenizer.decode([first_label]) == prompt.answer[0] and prompt.answer[0] in "01"
    kept, record = study_format(tokenizer, family, fit=False)
    assert kept == PromptFormat() and not record["fitted_to_tokenizer"]["changed"]
