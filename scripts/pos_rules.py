"""Readings of a tagged sentence as our six part-of-speech tags, with one set of convention rules.

A reading turns one tagger's tags (spaCy UD, spaCy PTB or Lingua PTB) into a set of possible tags per
token; fixed word rules are applied identically to every reading before its tags are looked at, so
the readings can only disagree where the taggers do. A token with more than one possible tag is
"ambiguous": a sentence keeps an answer only if the answer's word comes before every ambiguous token
that could also carry that tag. The DECISION lines in scripts/build_pos_bible.py list the rules.
"""
from __future__ import annotations

TAGS = ("Noun", "Adjective", "Verb", "Adverb", "Preposition", "Pronoun")
OTHER = "Other"
PREP, ADV = "Preposition", "Adverb"
BE = {"be", "am", "is", "are", "was", "were", "been", "being", "'s", "'re", "'m", "art"}
HAVE = {"have", "has", "had", "having"}
DO = {"do", "does", "did", "doing"}
MODALS = {"will", "shall", "would", "should", "can", "could", "may", "might", "must"}
SUBORDINATORS = {"that", "if", "because", "though", "although", "unless", "whether", "lest", "whereas"}
WH = {"when", "where", "why", "how", "whenever", "wherever", "whence", "whither", "which", "who", "whom",
      "whose", "what", "whoever", "whatever", "whichever"}
QUANTIFIERS = {"much", "many", "more", "most", "few", "fewer", "less", "least", "all", "both", "each",
               "every", "some", "any", "no", "none", "enough", "several", "such"}
INTERJECTIONS = {"behold", "yes", "amen", "alas", "oh", "o", "lo"}
PRO_FORMS = {"one", "ones", "mine", "yours", "hers", "ours", "theirs"}
FIXED_OTHER = BE | SUBORDINATORS | WH | QUANTIFIERS | INTERJECTIONS | PRO_FORMS | {"not", "n't"}
IDIOMS = {("at", "last"), ("at", "first"), ("at", "least"), ("in", "vain"), ("of", "old"), ("on", "high")}
PERSONAL = {"i", "me", "you", "he", "him", "she", "it", "we", "us", "they", "them", "myself", "yourself",
            "himself", "herself", "itself", "ourselves", "yourselves", "themselves"}  # not "her": possessive too
AMBIGUOUS = {"as": {PREP, ADV, OTHER}, "than": {PREP, OTHER}}
NEVER_PREPOSITION = {"so", "while"}  # read as IN / SCONJ / ADP / CCONJ they are conjunctions: Other
CLAUSE_PUNCT = {",", ";", ":", "\u201c"}  # and an opening quotation mark
NOMINATIVE, OBJECTIVE = {"i", "he", "she", "we", "they"}, {"me", "him", "us", "them"}
SUBJECT_TAGS = {"RB", "PRP", "PRP$", "PRPS", "EX", "DT", "DET", "CD", "POS"}  # Lingua writes PRPS, DET
UPOS = {"NOUN": "Noun", "PROPN": "Noun", "ADJ": "Adjective", "VERB": "Verb", "ADV": "Adverb", "ADP": PREP}


def fixed(words: list[str], i: int) -> set[str] | None:
    """The reading-independent possible tags of token i, or None when the tagger decides."""
    w = words[i].lower()
    prev = words[i - 1].lower() if i else ""
    nxt = words[i + 1].lower() if i + 1 < len(words) else ""
    if w in FIXED_OTHER or (prev, w) in IDIOMS:
        return {OTHER}
    if w in PERSONAL:
        return {"Pronoun"}  # a closed class (taggers read "yourselves" as NNS)
    if w == "now":
        return {ADV}  # UD and PTB guidelines: ADV / RB, also as a discourse word (spaCy: INTJ)
    if w in ("for", "as", "than") and nxt in NOMINATIVE:
        return {OTHER}  # a clause follows ("for he is good"): a conjunction; prepositions take "him"
    if w in AMBIGUOUS:
        return set(AMBIGUOUS[w])
    if w == "for" and (i == 0 or prev in CLAUSE_PUNCT):
        return {PREP} if nxt in OBJECTIVE else {PREP, OTHER}  # clause-linking "for" may be a conjunction
    if w == "there":
        if nxt in BE | MODALS | HAVE:
            return {OTHER}  # existential
        return {ADV} if not nxt or not nxt[0].isalnum() else {ADV, OTHER}
    return None


def context_rules(words: list[str], reading: list[set[str]]) -> list[set[str]]:
    """Rules that read the reading's own tags, applied alike to every reading: "so"/"while" read as
    a preposition are conjunctions (Other); "so"/"as" right before a word read as Adjective or Adverb
    (or a quantifier) is a degree Adverb ("so great", "as white as snow")."""
    out = list(reading)
    for i, w in enumerate(words):
        w, nxt = w.lower(), words[i + 1].lower() if i + 1 < len(words) else ""
        if w in NEVER_PREPOSITION and reading[i] == {PREP}:
            out[i] = {OTHER}
        if w in ("so", "as") and nxt and (reading[i + 1] in ({"Adjective"}, {ADV}) or nxt in QUANTIFIERS):
            if w == "so" or "as" in [x.lower() for x in words[i + 2:i + 5]]:
                out[i] = {ADV}
    return out


def ud_reading(words: list[str], pos: list[str], prontype: list[str], poss: list[str]) -> list[set[str]]:
    """spaCy's UD tags: AUX, DET, SCONJ, ... are Other; Pronoun is a personal, non-possessive PRON."""
    out = []
    for i, p in enumerate(pos):
        rule = fixed(words, i)
        if rule is not None:
            out.append(rule)
        elif p == "PRON":
            out.append({"Pronoun" if "Prs" in prontype[i] and "Yes" not in poss[i] else OTHER})
        else:
            out.append({UPOS.get(p, OTHER)})
    return context_rules(words, out)


def ptb_auxiliary(words: list[str], tags: list[str], i: int) -> bool:
    """A have/do form is an auxiliary when the next verb tag (past adverbs, "not" and, in questions,
    the subject: pronouns, determiners, adjectives, nouns) is a participle VBN (or VBD: the same form,
    often confused) after have, a base form VB (or VBP) after do."""
    w = words[i].lower()
    if w not in HAVE | DO:
        return False
    for word, tag in zip(words[i + 1:], tags[i + 1:]):
        if tag.startswith("VB"):
            return tag in (("VBN", "VBD") if w in HAVE else ("VB", "VBP"))
        if not (tag in SUBJECT_TAGS or tag.startswith(("NN", "JJ")) or word.lower() in ("not", "n't")):
            return False
    return False


def ptb_reading(words: list[str], tags: list[str]) -> list[set[str]]:
    """A PTB tag sequence: NN* JJ* VB* RB* IN PRP; TO is Preposition unless a base verb follows."""
    out = []
    for i, t in enumerate(tags):
        rule = fixed(words, i)
        nxt = tags[i + 1] if i + 1 < len(tags) else ""
        if rule is not None:
            out.append(rule)
        elif t.startswith("VB"):
            out.append({OTHER if ptb_auxiliary(words, tags, i) else "Verb"})
        elif t.startswith("NN"):
            out.append({"Noun"})
        elif t.startswith("JJ"):
            out.append({"Adjective"})
        elif t in ("RB", "RBR", "RBS"):
            out.append({ADV})
        elif t == "IN" or (t == "TO" and nxt != "VB"):
            out.append({PREP})
        else:
            out.append({"Pronoun" if t == "PRP" else OTHER})
    return context_rules(words, out)


def answers(words: list[str], reading: list[set[str]]) -> dict[str, str | None]:
    """First word of each tag; None where the tag is missing or an ambiguous token comes first."""
    out: dict[str, str | None] = {}
    for tag in TAGS:
        out[tag] = None
        for word, possible in zip(words, reading):
            if tag in possible:
                out[tag] = word if possible == {tag} else None
                break
    return out


def single_tags(reading: list[set[str]]) -> list[str]:
    """One tag per token for the shipped file: the tag where it is certain, Other where ambiguous."""
    return [next(iter(p)) if len(p) == 1 else OTHER for p in reading]
