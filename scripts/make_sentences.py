"""Generate the shipped part-of-speech corpus: seeded English sentences with a gold tag per token.

A tiny grammar (opener, clause, optional second clause) over curated word lists, each verb with
the phrases that sound natural after it; every kept sentence has all six tags and 7-16 words.
Standard library only; run `python src/conceptlens/data/pos/make_sentences.py` (see README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from pathlib import Path

NOUN, ADJ, VERB, ADV, PREP, PRON, OTHER = ("Noun", "Adjective", "Verb", "Adverb", "Preposition",
                                           "Pronoun", "Other")
TAGS = (NOUN, ADJ, VERB, ADV, PREP, PRON)
Tagged = list[tuple[str, str]]

PEOPLE = ("farmer teacher doctor nurse child girl boy woman man baker sailor student neighbor "
          "pilot gardener soldier musician artist visitor traveler librarian "
          "grandmother uncle waiter tourist poet carpenter").split()
PLURAL = {"child": "children", "woman": "women", "man": "men"}
NAMES = "Anna Peter Maria Thomas Lucy David Sarah Oliver Emma Daniel".split()
THINGS = ("basket lamp letter bottle blanket ladder bicycle violin suitcase umbrella kettle candle "
          "map key wallet parcel chair coin mirror jacket apple sandwich newspaper notebook "
          "lantern vase ring bucket guitar camera teapot scarf hat").split()
SURFACES = "table bench bed shelf counter windowsill sofa".split()
# place: prepositions for being there / prepositions for moving there
PLACES_SPEC = """
garden: in near / into through
kitchen: in / into
library: in at near / into toward
museum: in at near / into toward
station: at near / toward
bridge: on near under / across toward
river: near beside / across along toward
forest: in near / into through toward
village: in near / into through toward
market: at in / through toward
harbor: at near / toward
castle: in near behind / into toward
church: in near behind / into toward
school: at near behind / toward
bakery: in at near / into toward
meadow: in / across through
hill: on / toward
lake: near beside / along toward
beach: on at / along toward
cottage: in near behind / into toward
hallway: in / through
classroom: in / into
barn: in near behind / into toward
valley: in / across through
office: in at / into
"""
PERSON_ADJ = ("young old tired cheerful nervous clever tall friendly curious brave "
              "gentle proud lonely busy happy sleepy anxious polite famous").split()
THING_ADJ = ("heavy old small blue green new shiny tiny large ancient beautiful strange dusty "
             "precious").split()
PLACE_ADJ = ("quiet old busy small ancient crowded narrow famous peaceful little huge "
             "beautiful lovely noisy").split()
NO_VERY = {"huge", "tiny", "ancient", "blue", "green", "little", "new"}
MOOD_ADJ = "tired happy nervous proud lonely anxious sleepy curious calm cheerful angry".split()
MANNER = ("quietly carefully slowly quickly gently happily patiently eagerly proudly nervously "
          "calmly politely cheerfully silently anxiously").split()
FREQUENCY = "often always never sometimes usually rarely".split()
OPENERS = {"past": "Suddenly Finally Later Eventually Meanwhile Fortunately Luckily Sadly "
                   "Afterwards Soon Then Quietly Slowly Carefully".split(),
           "present": "Usually Sometimes Often Normally Occasionally Generally Quietly Carefully".split()}
HABITUAL = set(FREQUENCY) | {"normally", "occasionally", "generally"}
TIMES = [("in the morning",), ("in the evening",), ("in the afternoon",), ("at night",),
         ("after lunch",), ("before breakfast",), ("after dinner",), ("during the storm",),
         ("during the festival",), ("during the concert",), ("in the winter",), ("after the storm",),
         ("before the concert",), ("in the summer",)]
SUBJ_PRON = {"I": "me", "you": "you", "he": "him", "she": "her", "we": "us", "they": "them"}
OBJ_PRON = ["me", "you", "him", "us", "them"]
# Verbs: "base past codes"; codes name the phrases that may follow the verb (and its object):
# s: on/under a surface  b: for + person  f: from + person  m: moving to a place  p: at a place
# t: a time  a: at + person  w: with + person  o: to + person  r: for + person (waited for)
THING_VERBS = """find found s p t|hide hid s|notice noticed s p|leave left s p|put put s|keep kept s
buy bought b p t|repair repaired b t|paint painted b t|fix fixed b t|wrap wrapped b t|polish polished b t
choose chose b p|borrow borrowed f t|steal stole f t|take took f m|carry carried m b|bring brought b m
deliver delivered m t|examine examined p t|admire admired p t|sell sold p t"""
PERSON_VERBS = """thank thanked t|help helped p t|greet greeted p t|meet met p t|follow followed m
warn warned t|praise praised p t|ignore ignored p t
teach taught p t|visit visited p t|comfort comforted p t|invite invited t"""
INTRANS_VERBS = """smile smiled a t|laugh laughed w a t|wait waited r p t|sleep slept p t|arrive arrived p t
whisper whispered o p|hurry hurried m|shout shouted a p|listen listened p t|rest rested p t
wander wandered m p|sing sang b w p t|stumble stumbled m p"""
GIVE_VERBS = """give gave|hand handed|send sent|show showed|offer offered|sell sold|lend lent|bring brought
throw threw|pass passed"""
# place verb -> the places it takes as object
PLACE_VERBS = {
    ("visit", "visited"): "museum village castle library market church bakery",
    ("explore", "explored"): "forest village castle museum valley meadow",
    ("cross", "crossed"): "river bridge meadow valley",
    ("leave", "left"): "village station library office school",
    ("reach", "reached"): "village station harbor castle hill",
    ("enter", "entered"): "library kitchen museum church classroom office",
    ("decorate", "decorated"): "kitchen classroom hallway church",
    ("clean", "cleaned"): "kitchen classroom hallway barn",
}
PAST_ONLY = {"thank", "whisper"}
COPULAS = [("look", "looked"), ("seem", "seemed"), ("feel", "felt")]


def parse_places(spec: str) -> dict[str, tuple[str, str]]:
    places = {}
    for line in spec.strip().splitlines():
        name, preps = line.split(":")
        at, to = preps.split("/")
        places[name.strip()] = (at.strip(), to.strip())
    return places


PLACES = parse_places(PLACES_SPEC)


def parse_verbs(spec: str) -> list[tuple[str, str, str]]:
    return [(v.split()[0], v.split()[1], "".join(v.split()[2:])) for v in spec.replace("\n", "|").split("|")]


def third_person(base: str) -> str:
    if base.endswith(("s", "sh", "ch", "x")):
        return base + "es"
    if base.endswith("y") and base[-2] not in "aeiou":
        return base[:-1] + "ies"
    return base + "s"


def words(text: str, tag: str = OTHER) -> Tagged:
    return [(w, tag) for w in text.split()]


def det_np(rng: random.Random, nouns: list[str], adjs: list[str], p_adj: float = 0.6,
           plural: bool = False, bare: bool = False) -> Tagged:
    """`the/a` (none if `bare`) + optional `very` + optional adjective + noun."""
    noun = rng.choice(nouns)
    if plural:
        noun = PLURAL.get(noun, noun + ("es" if noun.endswith(("s", "sh", "ch", "x")) else "s"))
    np: Tagged = []
    if rng.random() < p_adj:
        adj = rng.choice(adjs)
        np = ([("very", ADV)] if rng.random() < 0.06 and adj not in NO_VERY else []) + [(adj, ADJ)]
    np.append((noun, NOUN))
    if bare and plural:
        return np
    det = "the" if plural or rng.random() < 0.6 else ("an" if np[0][0][0] in "aeiou" else "a")
    return [(det, OTHER)] + np


def subject(rng: random.Random) -> tuple[Tagged, bool]:
    """A subject and whether it is third person singular."""
    r = rng.random()
    if r < 0.4:
        pron = rng.choice(list(SUBJ_PRON))
        return [(pron, PRON)], pron in ("he", "she")
    if r < 0.5:
        return [(rng.choice(NAMES), NOUN)], True
    plural = r > 0.8
    return det_np(rng, PEOPLE, PERSON_ADJ, plural=plural, bare=rng.random() < 0.3), not plural


def person(rng: random.Random, subj: Tagged) -> Tagged:
    """An object person: a pronoun (never the subject's own), a name or a noun phrase."""
    if rng.random() < 0.5:
        avoid = SUBJ_PRON.get(subj[0][0]) if len(subj) == 1 else None
        return [(rng.choice([p for p in OBJ_PRON if p != avoid]), PRON)]
    if rng.random() < 0.15:
        return [(rng.choice(NAMES), NOUN)]
    return det_np(rng, PEOPLE, PERSON_ADJ, p_adj=0.4, plural=rng.random() < 0.3)


def place_pp(rng: random.Random, moving: bool = False) -> Tagged:
    place = rng.choice(list(PLACES))
    prep = rng.choice(PLACES[place][1 if moving else 0].split())
    return [(prep, PREP), ("the", OTHER)] + det_np(rng, [place], PLACE_ADJ, p_adj=0.5)[1:]


def time_pp(rng: random.Random) -> Tagged:
    prep, *rest = rng.choice(TIMES)[0].split()
    return [(prep, PREP)] + [(w, OTHER if w == "the" else NOUN) for w in rest]


def tail(rng: random.Random, codes: str, subj: Tagged, avoid: str = "") -> Tagged:
    """One phrase after the verb phrase, chosen among the verb's codes minus `avoid` (or nothing)."""
    codes = "".join(c for c in codes if c not in avoid)
    code = rng.choice(codes + "-") if codes else "-"
    simple = {"b": "for", "f": "from", "a": "at", "w": "with", "o": "to", "r": "for"}
    if code in simple:
        return [(simple[code], PREP)] + person(rng, subj)
    if code == "s":
        return [(rng.choice(["on", "under", "beside", "near"]), PREP)] + det_np(rng, SURFACES, THING_ADJ, 0.3)
    if code in "mp":
        return place_pp(rng, moving=code == "m")
    return time_pp(rng) if code == "t" else []


def verb(forms: tuple[str, str], tense: str, third: bool) -> Tagged:
    base, past = forms[:2]
    if base in PAST_ONLY:  # its present tense form doubles as a plural noun ("thanks")
        return [(past, VERB)]
    return [(past if tense == "past" else third_person(base) if third else base, VERB)]


def clause(rng: random.Random, tense: str, banned: frozenset[str] = frozenset(), avoid: str = "") -> Tagged:
    """One independent clause: subject, adverb, verb, object, one trailing phrase."""
    subj, third = subject(rng)
    kind = rng.choice(["thing", "thing", "thing", "person", "person", "place", "intrans", "intrans",
                       "give", "copula"])
    obj: Tagged = []
    after: Tagged = []
    if kind == "thing":
        base, past, codes = rng.choice(parse_verbs(THING_VERBS))
        plural = rng.random() < 0.25
        obj = det_np(rng, THINGS, THING_ADJ, plural=plural, bare=tense == "present")
        after = tail(rng, codes, subj, avoid)
    elif kind == "person":
        base, past, codes = rng.choice(parse_verbs(PERSON_VERBS))
        obj, after = person(rng, subj), tail(rng, codes, subj, avoid)
    elif kind == "place":
        (base, past), places = rng.choice(list(PLACE_VERBS.items()))
        obj = det_np(rng, places.split(), PLACE_ADJ)[1:]
        obj, after = [("the", OTHER)] + obj, tail(rng, "tw", subj, avoid)
    elif kind == "intrans":
        base, past, codes = rng.choice(parse_verbs(INTRANS_VERBS))
        after = tail(rng, codes, subj, avoid)
    elif kind == "give":
        base, past, _ = rng.choice(parse_verbs(GIVE_VERBS))
        obj = det_np(rng, THINGS, THING_ADJ) + [("to", PREP)] + person(rng, subj)
    else:
        base, past = rng.choice(COPULAS)
        obj = [(rng.choice(MOOD_ADJ), ADJ)]
        after = place_pp(rng) if "t" in avoid else time_pp(rng)
    v = verb((base, past), tense, third)
    r = rng.random()
    habitual = tense == "present" and rng.random() < 0.6
    adverb = rng.choice(FREQUENCY if habitual else MANNER)
    if kind == "copula" or r < 0.3 or adverb in banned:
        return subj + v + obj + after
    if r < 0.7 or habitual:  # adverb before the verb
        return subj + [(adverb, ADV)] + v + obj + after
    return subj + v + obj + [(adverb, ADV)] + after


def sentence(rng: random.Random) -> Tagged:
    tense = "past" if rng.random() < 0.6 else "present"
    r = rng.random()
    opener: Tagged = []
    avoid = ""  # no second time (or place) phrase after a time (or place) opener
    if r < 0.3:
        opener = [(rng.choice(OPENERS[tense]), ADV), (",", OTHER)]
    elif r < 0.42:
        opener, avoid = time_pp(rng) + [(",", OTHER)], "t"
    elif r < 0.5:
        opener, avoid = place_pp(rng) + [(",", OTHER)], "pm"
    first = opener[0][0].lower() if opener else ""
    banned = frozenset(MANNER if first in MANNER else FREQUENCY if first in HABITUAL else ())
    out = opener + clause(rng, tense, banned, avoid)
    if rng.random() < 0.3:
        joiner = "and" if rng.random() < 0.75 else "but"
        out += [(",", OTHER), (joiner, OTHER)] + clause(rng, tense, banned, avoid)
    out.append((".", OTHER))
    first, tag = out[0]
    return [(first[0].upper() + first[1:], tag)] + out[1:]


def detokenize(tokens: list[str]) -> str:
    return "".join(t if t in ",." or i == 0 else " " + t for i, t in enumerate(tokens))


def generate(n: int, seed: int) -> list[dict]:
    """`n` distinct sentences (dicts with sentence, tokens, tags), deterministic in `seed`."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[dict] = []
    while len(out) < n:
        tagged = sentence(rng)
        tokens, tags = [w for w, _ in tagged], [t for _, t in tagged]
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
        f.writelines(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "src" / "conceptlens" / "data" / "pos" / "sentences.jsonl")
    args = parser.parse_args()
    rows = generate(args.n, args.seed)
    write_jsonl(rows, args.out)
    print(f"wrote {len(rows)} sentences to {args.out}")


if __name__ == "__main__":
    main()
