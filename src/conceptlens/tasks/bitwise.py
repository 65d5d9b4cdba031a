"""Bitwise family: two n-digit binary numbers in, their bitwise AND/NAND/OR/NOR/XOR/XNOR out.

Every concept maps the same pool of input pairs (e.g. `"10110 01101"` -> `"00100"` under AND),
so only the demonstrations tell the operator apart; Null answers random digits. The pool is the
seeded shuffle of all 4**n_bits distinct pairs (1,024 for 5 bits), repeated in fresh shuffles if
more examples are asked for. DECISION: the paper's 10K train / 500 test samples cannot all be
distinct with 5 bits; we split by input pair, 500 test pairs by default, the rest for training.
"""

from __future__ import annotations

import random
from typing import Callable

from conceptlens.errors import ConceptLensError
from conceptlens.tasks.family import NULL, Example, TaskFamily, split_inputs

OPERATORS: dict[str, Callable[[int, int], int]] = {
    "AND": lambda a, b: a & b,
    "NAND": lambda a, b: ~(a & b),
    "OR": lambda a, b: a | b,
    "NOR": lambda a, b: ~(a | b),
    "XOR": lambda a, b: a ^ b,
    "XNOR": lambda a, b: ~(a ^ b),
}
INSTRUCTIONS = {name: f"Apply bitwise {name}." for name in OPERATORS}
INSTRUCTIONS[NULL] = "Answer with random binary digits."
DEFAULT_TEST_PAIRS = 500


def apply_operator(name: str, a: int, b: int, n_bits: int = 5) -> str:
    """`apply_operator("AND", 0b10110, 0b01101)` -> `"00100"` (n_bits digits, leading zeros kept)."""
    if name not in OPERATORS:
        raise ConceptLensError(f"unknown bitwise operator '{name}'.", f"use one of {', '.join(OPERATORS)}.")
    return format(OPERATORS[name](a, b) & ((1 << n_bits) - 1), f"0{n_bits}b")


def parse_input(text: str) -> tuple[int, int]:
    """`"10110 01101"` -> `(22, 13)`."""
    left, right = text.split()
    return int(left, 2), int(right, 2)


class BitwiseFamily(TaskFamily):
    """Bitwise concepts share their inputs: split by input pair, `DEFAULT_TEST_PAIRS` of them for test."""

    def split(self, seed: int = 0, test_fraction: float | None = None) -> tuple["BitwiseFamily", "BitwiseFamily"]:
        inputs = sorted({e.input for examples in self.concepts.values() for e in examples})
        if test_fraction is None:
            test_fraction = min(DEFAULT_TEST_PAIRS, len(inputs) // 2) / len(inputs)
        train_inputs, test_inputs = split_inputs(inputs, seed, test_fraction)
        return tuple(  # type: ignore[return-value]
            BitwiseFamily(self.name, {c: [e for e in ex if e.input in keep] for c, ex in self.concepts.items()},
                          dict(self.instructions))
            for keep in (train_inputs, test_inputs))


def input_pool(n_examples: int | None, seed: int, n_bits: int) -> list[tuple[int, int]]:
    """`n_examples` input pairs: seeded shuffles of all distinct pairs, concatenated as needed."""
    pairs = [(a, b) for a in range(1 << n_bits) for b in range(1 << n_bits)]
    n_examples = len(pairs) if n_examples is None else n_examples
    rng = random.Random(f"bitwise:{seed}:{n_bits}")
    pool: list[tuple[int, int]] = []
    while len(pool) < n_examples:
        batch = list(pairs)
        rng.shuffle(batch)
        pool += batch[: n_examples - len(pool)]
    return pool


def bitwise_family(n_examples: int | None = None, seed: int = 0, null: bool = True, n_bits: int = 5) -> BitwiseFamily:
    """The six operators (+ Null) on the same `n_examples` input pairs (default: all 4**n_bits).

    Null pairs each input with random digits, seeded by `seed` and the input (so it does not
    depend on the split or on `n_examples`).
    """
    if not 1 <= n_bits <= 16:
        raise ConceptLensError(f"n_bits must be between 1 and 16, got {n_bits}.", "use n_bits=5 (the paper).")
    if n_examples is not None and n_examples < 2:
        raise ConceptLensError(f"a bitwise family needs at least 2 examples, got {n_examples}.",
                               "ask for more examples (default: every distinct input pair).")
    pool = input_pool(n_examples, seed, n_bits)
    inputs = [f"{a:0{n_bits}b} {b:0{n_bits}b}" for a, b in pool]
    concepts = {name: [Example(text, apply_operator(name, a, b, n_bits)) for text, (a, b) in zip(inputs, pool)]
                for name in OPERATORS}
    instructions = {name: INSTRUCTIONS[name] for name in OPERATORS}
    if null:
        concepts[NULL] = [Example(text, format(random.Random(f"{seed}:{text}").getrandbits(n_bits), f"0{n_bits}b"))
                          for text in inputs]
        instructions[NULL] = INSTRUCTIONS[NULL]
    return BitwiseFamily("bitwise", concepts, instructions).validate()
