"""Where part-of-speech sentences come from: two shipped corpora and three readers of user corpora.

Every source yields `TaggedSentence`s whose tags are our six (Noun, Adjective, Verb, Adverb,
Preposition, Pronoun) or Other: "web" (World English Bible, data/pos_web), "synthetic" (the generated
grammar, data/pos), "ptb" (NLTK's treebank sample), a CoNLL-U file, or a folder of Brown corpus files.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from conceptlens.errors import ConceptLensError

POS_CONCEPTS = ["Noun", "Adjective", "Verb", "Adverb", "Preposition", "Pronoun"]
OTHER = "Other"
CONTENT = ("Noun", "Adjective", "Verb", "Adverb")  # what a Null answer is drawn from
SHIPPED = {"web": "pos_web", "synthetic": "pos"}  # source name -> folder under conceptlens/data
SOURCES_HELP = ("use source='web' (the default), 'synthetic', 'ptb', the path of a CoNLL-U file, or a "
                "folder of Brown corpus files (NLTK's brown/ca01 ...).")
# Universal Dependencies UPOS -> our tags (AUX, DET, SCONJ, ... are Other).
UPOS_TAGS = {"NOUN": "Noun", "PROPN": "Noun", "ADJ": "Adjective", "VERB": "Verb", "ADV": "Adverb",
             "ADP": "Preposition", "PRON": "Pronoun"}


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

    def content_words(self) -> list[str]:
        """Nouns, adjectives, verbs and adverbs (never "the" or "and"), else every word."""
        found = [w for w, t in zip(self.tokens, self.tags) if t in CONTENT and any(c.isalpha() for c in w)]
        return found or self.words()


def detokenize(tokens: list[str] | tuple[str, ...]) -> str:
    """Join tokens with spaces, without a space before closing punctuation or after opening."""
    closing = {",", ".", ";", ":", "?", "!", "%", ")", "''", "'s", "n't", "'re", "'ve", "'ll", "'d", "'m"}
    out = ""
    for token in tokens:
        glue = not out or token in closing or out.endswith(("(", "$", "``"))
        out += token if glue else " " + token
    return out


# ---------------------------------------------------------------- shipped corpora
@lru_cache(maxsize=2)
def load_shipped(name: str) -> tuple[TaggedSentence, ...]:
    """A shipped corpus ("web" or "synthetic"): one JSON object a line with sentence, tokens, tags
    (and, for "web", the six answers, checked against the tags)."""
    path = resources.files("conceptlens") / "data" / SHIPPED[name] / "sentences.jsonl"
    fix = "reinstall conceptlens (the corpus ships with the package); its README says how it was built."
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
            ok = ok and all(sentence.first(tag) == word for tag, word in row.get("answers", {}).items())
        except (ValueError, KeyError, TypeError, AttributeError):
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


def load_ptb() -> list[TaggedSentence]:
    """NLTK's Penn Treebank sample (`python -m nltk.downloader treebank`), traces dropped."""
    fix = ("run `pip install nltk` and `python -m nltk.downloader treebank`, or use source='web' "
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


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConceptLensError(f"cannot read the {what} {path} ({err}).", f"give a UTF-8 {what}.")


def load_conllu(source: str | os.PathLike) -> list[TaggedSentence]:
    path = Path(source)
    if not path.is_file():
        raise ConceptLensError(f"part-of-speech source '{source}' is not a file or a folder.", SOURCES_HELP)
    return parse_conllu(_read_text(path, "CoNLL-U file"), str(path))


# ---------------------------------------------------------------- Brown corpus (NLTK format)
# Brown tags -> ours (suffixes -tl -hl -nc, negation "*" and a contraction's "+..." part dropped):
#   Noun nn nns nn$ nns$ np nps np$ nps$ nr (adverbial nouns: home, Friday); Adjective jj jjr jjs jjt od
#   (ordinals, JJ in PTB); Verb vb vbd vbg vbn vbz and have/do forms (hv*, do*) unless auxiliaries;
#   Adverb rb rbr rbt rn (here, then) ql (very, too); Preposition in (Brown writes infinitival "to" as
#   to); Pronoun pps ppss ppo ppl ppls. Other: be* forms, md, at, cc, cs (subordinators), cd, dt*, ab*,
#   ap (post-determiners: many, few, other, next), pp$ pp$$, pn (someone), wdt wp* wrb, ex, to, rp
#   (particles), uh, fw-*, "*" (not), punctuation. The choices of the World English Bible corpus
#   (data/pos_web/README.md) where Brown's tags allow; "other"/"next" (ap) are Other here only.
BROWN_FILE = re.compile(r"c[a-r]\d\d")  # ca01 ... cr09
BROWN_TAGS = {"Noun": ("nn", "nns", "nn$", "nns$", "np", "nps", "np$", "nps$", "nr", "nrs", "nr$"),
              "Adjective": ("jj", "jjr", "jjs", "jjt", "od"),
              "Verb": ("vb", "vbd", "vbg", "vbn", "vbz", "hv", "hvd", "hvg", "hvn", "hvz", "do", "dod", "doz"),
              "Adverb": ("rb", "rbr", "rbt", "rn", "ql"),
              "Preposition": ("in",),
              "Pronoun": ("pps", "ppss", "ppo", "ppl", "ppls")}
BROWN = {tag: concept for concept, tags in BROWN_TAGS.items() for tag in tags}


def brown_base(tag: str) -> str:
    """A Brown tag without its -tl/-hl/-nc suffixes, negation '*' and contraction '+...' part."""
    tag = tag.lower()
    if tag.startswith("fw-"):
        return "fw"  # foreign word
    return tag.split("+")[0].split("-")[0].rstrip("*")


def brown_tags(tags: list[str]) -> list[str]:
    """Brown tags as our six + Other. A have/do form before the participle (have) or base verb (do)
    that follows it, past adverbs, pronouns, articles and nouns, is an auxiliary: Other."""
    bases = [brown_base(t) for t in tags]
    out = []
    for i, base in enumerate(bases):
        concept = BROWN.get(base, OTHER)
        if base.startswith(("hv", "do")) and concept == "Verb":
            skip = ("rb", "pp", "at", "nn", "np", "ql", "jj", "ap", "dt", "cd")  # adverbs, "not", a subject
            nxt = next((b for b in bases[i + 1:] if b and not b.startswith(skip)), "")
            if nxt == ("vbn" if base.startswith("hv") else "vb"):
                concept = OTHER
        out.append(concept)
    return out


def parse_brown(text: str) -> list[TaggedSentence]:
    """Sentences of one Brown file: one sentence a line (blank lines between), `word/tag` tokens."""
    out = []
    for line in text.splitlines():
        pairs = [token.rpartition("/") for token in line.split()]
        pairs = [(word, tag) for word, sep, tag in pairs if sep and word]
        if pairs:
            tokens = tuple(w for w, _ in pairs)
            out.append(TaggedSentence(detokenize(tokens), tokens, tuple(brown_tags([t for _, t in pairs]))))
    return out


def load_brown(folder: str | os.PathLike) -> list[TaggedSentence]:
    """Every Brown file (ca01 ... cr09) in `folder`, in name order. Brown is not shipped (its
    license is unclear): NLTK's copy lives in nltk_data/corpora/brown."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and BROWN_FILE.fullmatch(p.name))
    if not files:
        raise ConceptLensError(f"part-of-speech source folder '{folder}' holds no Brown corpus file "
                               "(ca01, ..., cr09).", SOURCES_HELP)
    return [s for path in files for s in parse_brown(_read_text(path, "Brown corpus file"))]


def load_source(source: str | os.PathLike) -> list[TaggedSentence]:
    """The sentences of `source` (see the module docstring), in source order."""
    if isinstance(source, str) and source in SHIPPED:
        return list(load_shipped(source))
    if source == "ptb":
        return load_ptb()
    if Path(source).is_dir():
        return load_brown(source)
    return load_conllu(source)
