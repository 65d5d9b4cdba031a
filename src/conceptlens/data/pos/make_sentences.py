"""Generate the shipped part-of-speech corpus: seeded English sentences with a gold tag per token.

A tiny grammar (opener, clause, optional second clause) over curated word lists that are
unambiguous in context; every kept sentence holds all six tags and 7-16 words. Standard library
only. Run from the repo root: `python src/conceptlens/data/pos/make_sentences.py [--n 2400]`.
Conventions (see README.md): the/a/an and "and"/"but" are Other; no auxiliaries ("is", "will"),
no possessive determiners ("his"), no subordinating conjunctions, so PTB and UD tags agree.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from pathlib import Path

NOUN, ADJ, VERB, ADV, PREP, PRON, OTHER = "Noun", "Adjective", "Verb", "Adverb", "Preposition", "Pronoun", "Other"
TAGS = (NOUN, ADJ, VERB, ADV, PREP, PRON)
Tagged = list[tuple[str, str]]

PEOPLE = ("farmer teacher doctor nurse child girl boy woman man baker sailor student neighbor "
          "stranger gardener soldier musician artist visitor traveler fisherman librarian "
          "grandmother uncle waiter tourist poet carpenter").split()
PLURAL = {"child": "children", "woman": "women", "man": "men", "fisherman": "fishermen"}
NAMES = "Anna Peter Maria Thomas Lucy David Sarah Oliver Emma Daniel".split()
THINGS = ("basket lamp letter bottle blanket ladder bicycle violin suitcase umbrella kettle candle "
          "map key wallet parcel chair table coin mirror jacket apple sandwich newspaper notebook "
          "lantern vase ring bucket guitar camera teapot scarf hat").split()
PLACES = ("garden kitchen library museum station bridge river forest village market harbor castle "
          "church school hospital bakery meadow hill lake beach cottage hallway classroom barn "
          "valley office").split()
PERSON_ADJ = ("young old tired cheerful nervous kind clever tall patient friendly curious brave "
              "gentle proud lonely busy happy sleepy anxious polite famous angry").split()
THING_ADJ = ("heavy old small wooden red blue new shiny tiny large rusty fragile golden ancient "
             "beautiful strange dusty precious").split()
PLACE_ADJ = ("quiet old busy small ancient crowded narrow dark famous peaceful little huge "
             "beautiful lovely muddy sunny cozy noisy").split()
MOOD_ADJ = "tired happy nervous proud lonely anxious sleepy curious calm cheerful angry".split()
MANNER = ("quietly carefully slowly quickly gently happily patiently eagerly proudly nervously "
          "calmly politely softly cheerfully silently anxiously warmly").split()
FREQUENCY = "often always never sometimes usually rarely".split()
OPENER_ADV = ("Suddenly Finally Later Eventually Meanwhile Fortunately Luckily Sadly Afterwards "
              "Soon Then Quietly Slowly Carefully").split()
# (base, past) forms; the third person singular is derived by `third_person`.
THING_VERBS = [("carry", "carried"), ("repair", "repaired"), ("paint", "painted"), ("buy", "bought"),
               ("find", "found"), ("sell", "sold"), ("polish", "polished"), ("borrow", "borrowed"),
               ("deliver", "delivered"), ("hide", "hid"), ("lift", "lifted"), ("wrap", "wrapped"),
               ("examine", "examined"), ("fix", "fixed"), ("bring", "brought"), ("keep", "kept"),
               ("notice", "noticed"), ("admire", "admired"), ("choose", "chose"), ("steal", "stole")]
PERSON_VERBS = [("thank", "thanked"), ("help", "helped"), ("greet", "greeted"), ("meet", "met"),
                ("follow", "followed"), ("warn", "warned"), ("praise", "praised"), ("hug", "hugged"),
                ("invite", "invited"), ("ignore", "ignored"), ("recognize", "recognized"),
                ("encourage", "encouraged"), ("comfort", "comforted"), ("teach", "taught"),
                ("visit", "visited"), ("admire", "admired")]
PLACE_VERBS = [("visit", "visited"), ("explore", "explored"), ("cross", "crossed"), ("leave", "left"),
               ("reach", "reached"), ("enter", "entered"), ("decorate", "decorated"), ("paint", "painted")]
INTRANS_VERBS = [("smile", "smiled"), ("laugh", "laughed"), ("wait", "waited"), ("sleep", "slept"),
                 ("arrive", "arrived"), ("whisper", "whispered"), ("hurry", "hurried"), ("shout", "shouted"),
                 ("listen", "listened"), ("rest", "rested"), ("wander", "wandered"), ("sing", "sang"),
                 ("sigh", "sighed"), ("stumble", "stumbled"), ("pause", "paused"), ("wave", "waved")]
GIVE_VERBS = [("give", "gave"), ("hand", "handed"), ("send", "sent"), ("show", "showed"),
              ("offer", "offered"), ("sell", "sold"), ("lend", "lent"), ("bring", "brought")]
COPULAS = [("look", "looked"), ("seem", "seemed"), ("feel", "felt")]
LOC_PREPS = "near behind beside across through along toward into".split()
AT_PLACE = "in at near behind beside".split()
THING_PREPS = "under beside behind near on".split()
SURFACES = "table chair bench bed counter shelf tree window".split()
TIME_PPS = [("in", "morning"), ("in", "evening"), ("in", "afternoon"), ("during", "storm"),
            ("during", "festival"), ("during", "concert"), ("after", "dinner"), ("before", "breakfast"),
            ("after", "lunch"), ("during", "winter"), ("during", "summer")]
SUBJ_PRON = {"I": "me", "you": "you", "he": "him", "she": "her", "we": "us", "they": "them"}
OBJ_PRON = ["me", "you", "him", "us", "them"]


def third_person(base: str) -> str:
    if base.endswith(("s", "sh", "ch", "x")):
        return base + "es"
    if base.endswith("y") and base[-2] not in "aeiou":
        return base[:-1] + "ies"
    return base + "s"


def det_np(rng: random.Random, nouns: list[str], adjs: list[str], p_adj: float = 0.6,
           plural: bool = False) -> Tagged:
    """`the/a` + optional adjective(s) + noun."""
    noun = nouns[rng.randrange(len(nouns))]
    if plural:
        noun = PLURAL.get(noun, noun + "s")
    words: Tagged = [(a, ADJ) for a in rng.sample(adjs, 2 if rng.random() < 0.1 else 1)] \
        if rng.random() < p_adj else []
    words.append((noun, NOUN))
    det = "the" if plural or rng.random() < 0.6 else ("an" if words[0][0][0] in "aeiou" else "a")
    return [(det, OTHER)] + words


def subject(rng: random.Random) -> tuple[Tagged, bool]:
    """A subject and whether it is third person singular."""
    r = rng.random()
    if r < 0.4:
        pron = rng.choice(list(SUBJ_PRON))
        return [(pron, PRON)], pron in ("he", "she")
    if r < 0.5:
        return [(rng.choice(NAMES), NOUN)], True
    plural = r > 0.8
    return det_np(rng, PEOPLE, PERSON_ADJ, plural=plural), not plural


def person_object(rng: random.Random, subj: Tagged) -> Tagged:
    if rng.random() < 0.5:
        avoid = SUBJ_PRON.get(subj[0][0]) if len(subj) == 1 else None
        return [(rng.choice([p for p in OBJ_PRON if p != avoid]), PRON)]
    if rng.random() < 0.15:
        return [(rng.choice(NAMES), NOUN)]
    return det_np(rng, PEOPLE, PERSON_ADJ, plural=rng.random() < 0.3)


def time_pp(rng: random.Random) -> Tagged:
    prep, noun = rng.choice(TIME_PPS)
    return [(prep, PREP), ("the", OTHER), (noun, NOUN)]


def place_pp(rng: random.Random, preps: list[str] = AT_PLACE) -> Tagged:
    return [(rng.choice(preps), PREP)] + det_np(rng, PLACES, PLACE_ADJ)


def companion_pp(rng: random.Random, subj: Tagged) -> Tagged:
    """`with them`, `for us`, `beside the old farmer`..."""
    prep = rng.choice(["with", "for", "beside", "near"])
    return [(prep, PREP)] + person_object(rng, subj)


def verb(rng: random.Random, forms: tuple[str, str], tense: str, third: bool) -> Tagged:
    base, past = forms
    return [(past if tense == "past" else third_person(base) if third else base, VERB)]


def clause(rng: random.Random, tense: str) -> Tagged:
    """One independent clause: subject, verb phrase, optional adverbs and phrases."""
    subj, third = subject(rng)
    kind = rng.choice(["thing", "thing", "person", "place", "intrans", "give", "copula"])
    pre: Tagged = []
    if kind != "copula" and rng.random() < 0.35:
        pre = [(rng.choice(FREQUENCY if tense == "present" and rng.random() < 0.6 else MANNER), ADV)]
    tail: Tagged = []
    if kind == "thing":
        v = verb(rng, rng.choice(THING_VERBS), tense, third)
        obj = det_np(rng, THINGS, THING_ADJ, plural=rng.random() < 0.2)
        if rng.random() < 0.6:
            tail = [(rng.choice(THING_PREPS), PREP)] + det_np(rng, SURFACES, THING_ADJ, 0.4)
        elif rng.random() < 0.5:
            tail = companion_pp(rng, subj)
    elif kind == "person":
        v = verb(rng, rng.choice(PERSON_VERBS), tense, third)
        obj = person_object(rng, subj)
        tail = rng.choice([place_pp(rng), time_pp(rng), []])
    elif kind == "place":
        v = verb(rng, rng.choice(PLACE_VERBS), tense, third)
        obj = det_np(rng, PLACES, PLACE_ADJ)
        tail = rng.choice([time_pp(rng), companion_pp(rng, subj), []])
    elif kind == "intrans":
        v = verb(rng, rng.choice(INTRANS_VERBS), tense, third)
        obj = []
        tail = rng.choice([place_pp(rng, LOC_PREPS + AT_PLACE), time_pp(rng), companion_pp(rng, subj)])
    elif kind == "give":
        v = verb(rng, rng.choice(GIVE_VERBS), tense, third)
        obj = det_np(rng, THINGS, THING_ADJ) + [("to", PREP)] + person_object(rng, subj)
    else:
        v = verb(rng, rng.choice(COPULAS), tense, third)
        obj = [(rng.choice(MOOD_ADJ), ADJ)]
        tail = rng.choice([time_pp(rng), place_pp(rng)])
    words = subj + pre + v + obj + tail
    if not pre and kind != "copula" and rng.random() < 0.3:
        at = len(words) - (len(tail) if tail and rng.random() < 0.5 else 0)
        words.insert(at, (rng.choice(MANNER), ADV))
    return words


def sentence(rng: random.Random) -> Tagged:
    tense = "past" if rng.random() < 0.6 else "present"
    r = rng.random()
    opener: Tagged = []
    if r < 0.3:
        opener = [(rng.choice(OPENER_ADV), ADV), (",", OTHER)]
    elif r < 0.42:
        opener = time_pp(rng) + [(",", OTHER)]
    elif r < 0.52:
        opener = place_pp(rng) + [(",", OTHER)]
    words = opener + clause(rng, tense)
    if rng.random() < 0.3:
        words += [(",", OTHER), (rng.choice(["and", "but"]), OTHER)] + clause(rng, tense)
    words.append((".", OTHER))
    first, tag = words[0]
    return [(first[0].upper() + first[1:], tag)] + words[1:]


def detokenize(tokens: list[str]) -> str:
    return "".join(t if t in ",." or i == 0 else " " + t for i, t in enumerate(tokens))


def generate(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[dict] = []
    while len(out) < n:
        words = sentence(rng)
        tokens, tags = [w for w, _ in words], [t for _, t in words]
        n_words = sum(t not in ",." for t in tokens)
        text = detokenize(tokens)
        if not 7 <= n_words <= 16 or not set(TAGS) <= set(tags) or text in seen:
            continue
        seen.add(text)
        out.append({"sentence": text, "tokens": tokens, "tags": tags})
    return out


def write_jsonl(rows: list[dict], path: Path) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("sentences.jsonl"))
    args = parser.parse_args()
    rows = generate(args.n, args.seed)
    write_jsonl(rows, args.out)
    print(f"wrote {len(rows)} sentences to {args.out}")


if __name__ == "__main__":
    main()
