"""A task family: a few latent concepts, each a list of input -> output examples, plus Null.

The concept is never stated in a prompt; it has to be inferred from the demonstrations. Null
pairs each input with an unrelated output, so a model that encodes nothing looks like Null.
Families split into train and test deterministically by seed (train only for finetuning).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from conceptlens.errors import ConceptLensError

NULL = "Null"


@dataclass(frozen=True)
class Example:
    input: str
    output: str


@dataclass
class TaskFamily:
    """`concepts[name]` lists that concept's examples; `instructions[name]` states it in words."""

    name: str
    concepts: dict[str, list[Example]]
    instructions: dict[str, str] = field(default_factory=dict)

    @property
    def concept_names(self) -> list[str]:
        return list(self.concepts)

    def validate(self, min_examples: int = 2) -> "TaskFamily":
        if not self.concepts:
            raise ConceptLensError(f"family '{self.name}' has no concepts.", "give at least two concepts.")
        for concept, examples in self.concepts.items():
            if concept == NULL and len(examples) < min_examples:  # Null is made, not written: name its cause
                raise ConceptLensError(
                    f"the concepts of family '{self.name}' hold only {len(examples)} different input(s) in this "
                    f"split, and the Null concept (each different input with a random output) needs {min_examples}.",
                    "add pairs with other inputs to the concept files (repeated pairs count once).")
            if len(examples) < min_examples:
                raise ConceptLensError(
                    f"concept '{concept}' of family '{self.name}' has {len(examples)} example(s); "
                    f"{min_examples} are needed (demonstrations + query).",
                    f"add examples to '{concept}', or ask for fewer shots.")
        return self

    def split(self, seed: int = 0, test_fraction: float = 0.2) -> tuple["TaskFamily", "TaskFamily"]:
        """Seeded per-concept train/test split (families whose inputs are shared across concepts,
        like part of speech, override this to split by input instead)."""
        train, test = {}, {}
        for concept, examples in self.concepts.items():
            order = list(examples)
            random.Random(f"{seed}:{concept}").shuffle(order)
            n_test = max(1, int(round(len(order) * test_fraction)))
            test[concept], train[concept] = order[:n_test], order[n_test:]
        return (TaskFamily(self.name, train, dict(self.instructions)),
                TaskFamily(self.name, test, dict(self.instructions)))


def split_inputs(inputs: list[str], seed: int, test_fraction: float = 0.2) -> tuple[set[str], set[str]]:
    """Seeded split of a list of distinct inputs into (train, test) sets."""
    order = sorted(set(inputs))
    random.Random(seed).shuffle(order)
    n_test = max(1, int(round(len(order) * test_fraction)))
    return set(order[n_test:]), set(order[:n_test])
