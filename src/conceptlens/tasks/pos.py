"""Part-of-speech family: given a sentence, answer the first word with the hidden tag.

Six concepts (Noun, Adjective, Verb, Adverb, Preposition, Pronoun) plus Null, a random word of
the sentence. Sentences come from the shipped generated corpus, NLTK's Penn Treebank sample or
any CoNLL-U file; only sentences with all six tags are kept, and the split is by sentence.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from conceptlens.errors import ConceptLensError
from conceptlens.tasks.family import NULL, Example, TaskFamily, split_inputs

POS_CONCEPTS = ["Noun", "Adjective", "Verb", "Adverb", "Preposition", "Pronoun"]
OTHER = "Other"
INSTRUCTIONS = {
    "Noun": "Find the first noun in the sentence.",
    "Adjective": "Find the first adjective in the sentence.",
    "Verb": "Find the first verb in the sentence.",
    "Adverb": "Find the first adverb in the sentence.",
    "Preposition": "Find the first preposition in the sentence.",
    "Pronoun": "Find the first pronoun in the sentence.",
    NULL: "Answer with a random word from the sentence.",
}
# Universal Dependencies UPOS -> our tags (AUX, DET, SCONJ, ... are Other).
UPOS_TAGS = {"NOUN": "Noun", "PROPN": "Noun", "ADJ": "Adjective", "VERB": "Verb", "ADV": "Adverb",
             "ADP": "Preposition", "PRON": "Pronoun"}
SOURCES_HELP = "use source='shipped', source='ptb' or the path of a CoNLL-U file."


@dataclass(frozen=True)
class TaggedSentence:
    """A sentence, its tokens and one tag per token (a POS concept or "Other")."""

    sentence: str
    tokens: tuple[str, ...]
    tags: tuple[str, ...]

    def first(self, tag: str) -> str | None:
        """The first token with `tag`, or None."""
        return next((w for w, t in zip(self.tokens, self.tags) if t == tag), None)

    def has_all_tags(self) -> bool:
        return set(POS_CONCEPTS) <= set(self.tags)

    def words(self) -> list[str]:
        """Tokens that are words (hold a letter or digit), not punctuation."""
        return [t for t in self.tokens if any(c.isalnum() for c in t)] or list(self.tokens)


def detokenize(tokens: list[str] | tuple[str, ...]) -> str:
    """Join tokens with spaces, without a space before closing punctuation or after opening."""
    closing = {",", ".", ";", ":", "?", "!", "%", ")", "''", "'s", "n't", "'re", "'ve", "'ll", "'d", "'m"}
    out = ""
    for token in tokens:
        glue = not out or token in closing or out.endswith(("(", "$", "``"))
        out += token if glue else " " + token
    return out


# ---------------------------------------------------------------- shipped corpus
def _shipped_path():
    return resources.files("conceptlens") / "data" / "pos" / "sentences.jsonl"


@lru_cache(maxsize=1)
def _load_shipped() -> tuple[TaggedSentence, ...]:
    path = _shipped_path()
    fix = ("reinstall conceptlens, or regenerate it with scripts/make_sentences.py "
           "and check_with_spacy.py --filter.")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConceptLensError(f"the shipped part-of-speech corpus {path} cannot be read ({err}).", fix)
    valid = set(POS_CONCEPTS) | {OTHER}
    out = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            sentence = TaggedSentence(row["sentence"], tuple(row["tokens"]), tuple(row["tags"]))
            ok = len(sentence.tokens) == len(sentence.tags) and set(sentence.tags) <= valid
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise ConceptLensError(f"line {number} of the shipped corpus {path} is malformed.", fix)
        out.append(sentence)
    return tuple(out)


# ---------------------------------------------------------------- Penn Treebank (NLTK)
def ptb_tag(tag: str, next_tag: str | None = None) -> str:
    """Map a Penn Treebank tag: NN* JJ* VB* RB* IN PRP, and TO when not before a base verb."""
    for prefix, concept in (("NN", "Noun"), ("JJ", "Adjective"), ("VB", "Verb"), ("RB", "Adverb")):
        if tag.startswith(prefix):
            return concept
    if tag == "IN" or (tag == "TO" and next_tag != "VB"):
        return "Preposition"
    return "Pronoun" if tag == "PRP" else OTHER


def _load_ptb() -> list[TaggedSentence]:
    fix = ("run `pip install nltk` and `python -m nltk.downloader treebank`, or use source='shipped' "
           "or the path of a CoNLL-U file.")
    try:
        from nltk.corpus import treebank
        tagged = list(treebank.tagged_sents())
    except ImportError:
        problem = "source 'ptb' needs the nltk package, which is not installed."
        raise ConceptLensError(problem, fix) from None
    except LookupError:
        problem = "source 'ptb' needs NLTK's 'treebank' corpus, which is not downloaded."
        raise ConceptLensError(problem, fix) from None
    out = []
    for sent in tagged:
        pairs = [(w, t) for w, t in sent if t != "-NONE-"]  # drop traces
        tokens = tuple(w for w, _ in pairs)
        tags = tuple(ptb_tag(t, pairs[i + 1][1] if i + 1 < len(pairs) else None)
                     for i, (_, t) in enumerate(pairs))
        out.append(TaggedSentence(detokenize(tokens), tokens, tags))
    return out


# ---------------------------------------------------------------- CoNLL-U
def parse_conllu(text: str, name: str = "<text>") -> list[TaggedSentence]:
    """Every sentence of a CoNLL-U document (columns ID FORM LEMMA UPOS ...; at least 4 needed).

    Multiword-token ranges (1-2) and empty nodes (1.1) are skipped; `# text =` gives the sentence,
    else the forms are joined. Raises ConceptLensError on a malformed line.
    """
    out: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    sentence_text: str | None = None

    def flush() -> None:
        nonlocal tokens, tags, sentence_text
        if tokens:
            out.append(TaggedSentence(sentence_text or detokenize(tokens), tuple(tokens), tuple(tags)))
        tokens, tags, sentence_text = [], [], None

    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        if not line.strip():
            flush()
        elif line.startswith("#"):
            key, sep, value = line[1:].partition("=")
            if sep and key.strip() == "text":
                sentence_text = value.strip()
        else:
            cols = line.split("\t")
            token_id = cols[0].strip()
            if len(cols) < 4 or not token_id:
                raise ConceptLensError(
                    f"line {number} of {name} is not a CoNLL-U token line (it needs tab-separated "
                    f"columns ID FORM LEMMA UPOS ...; found {len(cols)} column(s)).",
                    "give a CoNLL-U file (10 tab-separated columns, blank line between sentences).")
            if "-" in token_id or "." in token_id:
                continue  # multiword token range or empty node
            if not token_id.isdecimal():
                raise ConceptLensError(f"line {number} of {name} has token ID {token_id!r}, not a number.",
                                       "give a CoNLL-U file: the first column is the token index 1, 2, ...")
            tokens.append(cols[1])
            tags.append(UPOS_TAGS.get(cols[3].strip(), OTHER))
    flush()
    return out


def _load_conllu(source: str | os.PathLike) -> list[TaggedSentence]:
    path = Path(source)
    if not path.is_file():
        raise ConceptLensError(f"part-of-speech source '{source}' is not a file.", SOURCES_HELP)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConceptLensError(f"cannot read the CoNLL-U file {path} ({err}).", "give a UTF-8 CoNLL-U file.")
    return parse_conllu(text, str(path))


# ---------------------------------------------------------------- the family
def load_tagged_sentences(source: str | os.PathLike = "shipped") -> list[TaggedSentence]:
    """The distinct sentences of `source` that contain all six tags, in source order."""
    if source == "shipped":
        sentences = list(_load_shipped())
    elif source == "ptb":
        sentences = _load_ptb()
    else:
        sentences = _load_conllu(source)
    seen: set[str] = set()
    kept = []
    for s in sentences:
        if s.has_all_tags() and s.sentence not in seen:
            seen.add(s.sentence)
            kept.append(s)
    if not kept:
        raise ConceptLensError(f"no sentence of part-of-speech source '{source}' contains all six tags "
                               f"({', '.join(POS_CONCEPTS)}).", "give a corpus with longer sentences, or "
                               "use the shipped corpus (source='shipped').")
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


def pos_family(split: str = "test", seed: int = 0, source: str | os.PathLike = "shipped",
               null: bool = True, test_fraction: float = 0.2) -> PosTaskFamily:
    """The part-of-speech family on the `split` ("train", "test" or "all") sentences of `source`.

    Each concept pairs every sentence with its first word of that tag; Null pairs it with a word
    drawn at random (seeded by `seed` and the sentence, so it does not depend on the split).
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
        concepts[NULL] = [Example(s.sentence, random.Random(f"{seed}:{s.sentence}").choice(s.words()))
                          for s in sentences]
        instructions[NULL] = INSTRUCTIONS[NULL]
    family = PosTaskFamily("pos", concepts, instructions)
    family.validate()
    return family
