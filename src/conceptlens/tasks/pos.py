"""Part-of-speech family: given a sentence, answer the first word with the hidden tag.

Six concepts (Noun, Adjective, Verb, Adverb, Preposition, Pronoun) plus Null, a random content word
(noun, adjective, verb or adverb) of the sentence. Family "pos" reads over 1,000 real English sentences
(World English Bible, public domain, data/pos_web: two taggers agree on all six answers under UD and
PTB readings). "pos-synthetic" reads the generated grammar corpus (data/pos): a control, not a
measurement, because each tag's answers there are a small word list of their own, so the answer
vocabulary alone (the mean input embedding of the answers) explains its TD. Other sources: NLTK's
Penn Treebank sample, a CoNLL-U file, a folder of Brown corpus files (pos_sources.py). Only sentences
with all six tags are kept, and the split is by sentence.
"""

from __future__ import annotations

import os
import random

from conceptlens.errors import ConceptLensError
from conceptlens.tasks.family import NULL, Example, TaskFamily, split_inputs
from conceptlens.tasks.pos_sources import (OTHER, POS_CONCEPTS, SOURCES_HELP, UPOS_TAGS, TaggedSentence,
                                           brown_tags, detokenize, load_source, parse_brown, parse_conllu,
                                           ptb_tag)

__all__ = ["INSTRUCTIONS", "OTHER", "POS_CONCEPTS", "SOURCES_HELP", "UPOS_TAGS", "PosTaskFamily", "TaggedSentence",
           "brown_tags", "detokenize", "load_tagged_sentences", "parse_brown", "parse_conllu", "pos_family", "ptb_tag"]

INSTRUCTIONS = {
    "Noun": "Find the first noun in the sentence.",
    "Adjective": "Find the first adjective in the sentence.",
    "Verb": "Find the first verb in the sentence.",
    "Adverb": "Find the first adverb in the sentence.",
    "Preposition": "Find the first preposition in the sentence.",
    "Pronoun": "Find the first pronoun in the sentence.",
    NULL: "Answer with a random noun, adjective, verb or adverb from the sentence.",
}
FAMILY_NAMES = {"web": "pos", "synthetic": "pos-synthetic"}  # the family a shipped source is


def load_tagged_sentences(source: str | os.PathLike = "web") -> list[TaggedSentence]:
    """The distinct sentences of `source` that contain all six tags, in source order."""
    seen: set[str] = set()
    kept = []
    for s in load_source(source):
        if s.has_all_tags() and s.sentence not in seen:
            seen.add(s.sentence)
            kept.append(s)
    if not kept:
        raise ConceptLensError(f"no sentence of part-of-speech source '{source}' contains all six tags "
                               f"({', '.join(POS_CONCEPTS)}).", "give a corpus with longer sentences, or "
                               "use the shipped corpus (source='web').")
    return kept


class PosTaskFamily(TaskFamily):
    """A family whose inputs are shared across concepts: it splits by sentence, not per concept."""

    def split(self, seed: int = 0, test_fraction: float = 0.2) -> tuple["PosTaskFamily", "PosTaskFamily"]:
        inputs = [e.input for examples in self.concepts.values() for e in examples]
        train_inputs, test_inputs = split_inputs(inputs, seed, test_fraction)

        def part(keep: set[str]) -> PosTaskFamily:
            concepts = {c: [e for e in ex if e.input in keep] for c, ex in self.concepts.items()}
            return PosTaskFamily(self.name, concepts, dict(self.instructions))

        return part(train_inputs), part(test_inputs)


def pos_family(split: str = "test", seed: int = 0, source: str | os.PathLike = "web",
               null: bool = True, test_fraction: float = 0.2) -> PosTaskFamily:
    """The part-of-speech family on the `split` ("train", "test" or "all") sentences of `source`.

    Each concept pairs every sentence with its first word of that tag. DECISION: Null pairs it with a
    content word (noun, adjective, verb or adverb) drawn at random, seeded by `seed` and the sentence
    (so it does not depend on the split): a Null answer such as "the" or "and", which no concept ever
    answers, would make Null separable by its answers alone.
    """
    if split not in ("train", "test", "all"):
        raise ConceptLensError(f"unknown split '{split}'.", "use split='train', 'test' or 'all'.")
    if not 0 < test_fraction < 1:
        raise ConceptLensError(f"test_fraction {test_fraction} is not between 0 and 1.",
                               "use a fraction such as 0.2.")
    sentences = load_tagged_sentences(source)
    if split != "all":
        train, test = split_inputs([s.sentence for s in sentences], seed, test_fraction)
        keep = train if split == "train" else test
        sentences = [s for s in sentences if s.sentence in keep]
    concepts: dict[str, list[Example]] = {
        concept: [Example(s.sentence, s.first(concept) or "") for s in sentences] for concept in POS_CONCEPTS}
    instructions = {c: INSTRUCTIONS[c] for c in POS_CONCEPTS}
    if null:
        concepts[NULL] = [Example(s.sentence, random.Random(f"{seed}:{s.sentence}").choice(s.content_words()))
                          for s in sentences]
        instructions[NULL] = INSTRUCTIONS[NULL]
    name = FAMILY_NAMES.get(source, "pos") if isinstance(source, str) else "pos"
    family = PosTaskFamily(name, concepts, instructions)
    family.validate()
    return family
