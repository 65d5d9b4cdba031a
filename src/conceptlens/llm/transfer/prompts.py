"""The three prompts of one task-vector trial (Hendel et al. 2023): source, ICL and zero-shot.

For a test input x and a fresh set S of k demonstrations from the train split: the *source* prompt
is S followed by a dummy train query x' (its query-token state is the task vector), the *ICL* prompt
is S followed by x (the k-shot baseline), the *zero-shot* prompt is the query line of x alone (the
patch target and the no-patch baseline), all in one `PromptFormat`. DECISION: when a concept has
fewer test inputs than trials, the test inputs are cycled in a seeded order, each repeat with fresh
demonstrations, and the number of distinct inputs is recorded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from conceptlens.errors import ConceptLensError
from conceptlens.prompts import Prompt, PromptFormat
from conceptlens.tasks.family import TaskFamily


@dataclass
class TransferPrompts:
    """Aligned lists, one entry per trial (concept-major order)."""

    labels: list[str] = field(default_factory=list)  # the trial's concept
    source: list[Prompt] = field(default_factory=list)  # demos + dummy train query: the task vector's prompt
    icl: list[Prompt] = field(default_factory=list)  # the same demos + the test query
    zero_shot: list[Prompt] = field(default_factory=list)  # the test query line alone
    distinct_queries: dict[str, int] = field(default_factory=dict)

    @property
    def concepts(self) -> list[str]:
        return list(dict.fromkeys(self.labels))


def zero_shot_prompt(fmt: PromptFormat, query) -> Prompt:
    """The query line alone (`input -> `), in the same format as the k-shot prompts: no demonstrations."""
    return fmt.build([], query)


def _queries(test: list, n: int, rng: random.Random) -> list:
    """`n` test inputs: a seeded sample without repeats, cycled (reshuffled) when `n` exceeds the pool."""
    out: list = []
    while len(out) < n:
        pool = list(test)
        rng.shuffle(pool)
        out += pool[:n - len(out)]
    return out


def transfer_prompts(train: TaskFamily, test: TaskFamily, concepts: list[str], n: int, shots: int, seed: int,
                     fmt: PromptFormat = PromptFormat()) -> TransferPrompts:
    """`n` trials per concept: demonstrations and the dummy query from `train`, the test input from `test`."""
    if shots < 1:
        raise ConceptLensError(f"shots must be at least 1 for a task vector, got {shots}.", "use shots=4 (Hendel's setup uses 5).")
    built = TransferPrompts()
    for concept in concepts:
        pool, tests = train.concepts.get(concept), test.concepts.get(concept)
        if pool is None or tests is None:
            raise ConceptLensError(f"concept '{concept}' is missing from the train or the test split.",
                                   "use a family whose splits hold the same concepts.")
        if len(pool) < shots + 1:
            raise ConceptLensError(f"concept '{concept}' has {len(pool)} train examples; {shots} shots and a dummy query "
                                   f"need at least {shots + 1}.", "use fewer shots, or add examples.")
        if not tests:
            raise ConceptLensError(f"concept '{concept}' has no test example.", "add examples to the family.")
        rng = random.Random(f"{seed}:{train.name}:{concept}:{shots}:transfer")
        queries = _queries(tests, n, rng)
        for query in queries:
            picked = [pool[i] for i in rng.sample(range(len(pool)), shots + 1)]
            demos, dummy = picked[:shots], picked[shots]
            built.labels.append(concept)
            built.source.append(fmt.build(demos, dummy))
            built.icl.append(fmt.build(demos, query))
            built.zero_shot.append(zero_shot_prompt(fmt, query))
        built.distinct_queries[concept] = len({(q.input, q.output) for q in queries})
    return built
