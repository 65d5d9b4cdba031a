"""Bitwise family: every answer is right (checked digit by digit against truth tables), the
concepts share their inputs, Null is random digits, and the split is by input pair."""

from __future__ import annotations

import pytest

from conceptlens.errors import ConceptLensError
from conceptlens.tasks.bitwise import OPERATORS, apply_operator, bitwise_family, parse_input
from conceptlens.tasks.family import NULL

TRUTH = {"AND": {(0, 0): 0, (0, 1): 0, (1, 0): 0, (1, 1): 1},
         "NAND": {(0, 0): 1, (0, 1): 1, (1, 0): 1, (1, 1): 0},
         "OR": {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 1},
         "NOR": {(0, 0): 1, (0, 1): 0, (1, 0): 0, (1, 1): 0},
         "XOR": {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 0},
         "XNOR": {(0, 0): 1, (0, 1): 0, (1, 0): 0, (1, 1): 1}}


@pytest.fixture(scope="module")
def family():
    return bitwise_family()


def test_every_answer_follows_the_truth_table(family):
    assert set(family.concepts) == set(TRUTH) | {NULL}
    for name, table in TRUTH.items():
        examples = family.concepts[name]
        assert len(examples) == 1024
        for example in examples:
            left, right = example.input.split(" ")
            expected = "".join(str(table[(int(a), int(b))]) for a, b in zip(left, right))
            assert example.output == expected, (name, example)


def test_known_values():
    assert apply_operator("AND", 0b10110, 0b01101) == "00100"
    assert apply_operator("NAND", 0b10110, 0b01101) == "11011"
    assert apply_operator("XNOR", 0, 0) == "11111"
    assert apply_operator("NOR", 0b11111, 0, n_bits=5) == "00000"
    assert parse_input("10110 01101") == (22, 13)
    with pytest.raises(ConceptLensError, match="unknown bitwise operator"):
        apply_operator("IMPLIES", 1, 1)


def test_concepts_share_inputs_and_every_pair_appears_once(family):
    inputs = [e.input for e in family.concepts["AND"]]
    assert len(set(inputs)) == 1024
    for name in family.concepts:
        assert [e.input for e in family.concepts[name]] == inputs
    assert inputs != sorted(inputs)  # shuffled by seed


def test_null_is_random_digits_and_seeded(family):
    outputs = [e.output for e in family.concepts[NULL]]
    assert all(len(o) == 5 and set(o) <= {"0", "1"} for o in outputs)
    assert len(set(outputs)) > 20
    for name in OPERATORS:  # Null is not secretly one of the operators
        agree = sum(n == e.output for n, e in zip(outputs, family.concepts[name]))
        assert agree < 100
    again = bitwise_family()
    assert again.concepts == family.concepts
    other = bitwise_family(seed=1)
    assert [e.input for e in other.concepts["AND"]] != [e.input for e in family.concepts["AND"]]
    assert NULL not in bitwise_family(null=False).concepts


def test_split_is_by_input_pair_with_500_test_pairs(family):
    train, test = family.split(seed=0)
    test_inputs = {e.input for e in test.concepts["AND"]}
    train_inputs = {e.input for e in train.concepts["AND"]}
    assert len(test_inputs) == 500 and len(train_inputs) == 524
    assert not test_inputs & train_inputs
    for name in family.concepts:
        assert {e.input for e in test.concepts[name]} == test_inputs
    assert type(train) is type(family)
    assert family.split(seed=0)[1].concepts == test.concepts


def test_more_examples_than_pairs_repeat_fresh_shuffles_and_errors():
    family = bitwise_family(n_examples=3000, null=False)
    assert len(family.concepts["XOR"]) == 3000
    assert all(e.output == apply_operator("XOR", *parse_input(e.input)) for e in family.concepts["XOR"])
    small = bitwise_family(n_examples=10, n_bits=3)
    assert all(len(e.output) == 3 for e in small.concepts["OR"])
    with pytest.raises(ConceptLensError, match="n_bits"):
        bitwise_family(n_bits=0)
    with pytest.raises(ConceptLensError, match="at least 2 examples"):
        bitwise_family(n_examples=1)
