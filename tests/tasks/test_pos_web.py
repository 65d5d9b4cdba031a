"""The default "pos" family (World English Bible sentences), its hand check, and the Brown reader."""

from __future__ import annotations

import csv
import json
import re
from importlib import resources

import pytest

from conceptlens.errors import ConceptLensError
from conceptlens.tasks.family import NULL
from conceptlens.tasks.pos import POS_CONCEPTS, load_tagged_sentences, parse_brown, pos_family
from conceptlens.tasks.registry import BUILTIN, load_family

WEB = resources.files("conceptlens") / "data" / "pos_web"


def _rows():
    return [json.loads(line) for line in (WEB / "sentences.jsonl").read_text(encoding="utf-8").splitlines()]


def test_shipped_web_corpus_answers_are_first_words_of_their_tags():
    rows = _rows()
    assert len(rows) >= 1000
    assert len({r["sentence"] for r in rows}) == len(rows)
    for r in rows:
        assert len(r["tokens"]) == len(r["tags"])
        assert 8 <= len(re.findall(r"[A-Za-z']+", r["sentence"])) <= 30  # words, as the build counts them
        assert r["sentence"].lstrip("\u201c")[0].isupper() and r["sentence"].rstrip("\u201d")[-1] in ".?!"
        for tag in POS_CONCEPTS:
            answer = r["answers"][tag]
            assert answer == r["tokens"][r["tags"].index(tag)]
            assert answer in r["sentence"]


def test_pos_is_the_web_corpus_and_every_answer_is_a_token_of_its_sentence():
    family = load_family("pos", split="all")
    sentences = {s.sentence: s for s in load_tagged_sentences("web")}
    assert family.name == "pos" and family.concept_names == POS_CONCEPTS + [NULL]
    assert {e.input for e in family.concepts["Noun"]} == {r["sentence"] for r in _rows()}
    for concept in POS_CONCEPTS:
        for example in family.concepts[concept]:
            s = sentences[example.input]
            assert example.output in s.tokens and example.output == s.first(concept)


def test_null_answers_are_content_words_of_their_sentence():
    family = pos_family("all", seed=0)
    sentences = {s.sentence: s for s in load_tagged_sentences("web")}
    nulls = family.concepts[NULL]
    for example in nulls:
        s = sentences[example.input]
        assert {t for w, t in zip(s.tokens, s.tags) if w == example.output} & {"Noun", "Adjective", "Verb",
                                                                                 "Adverb"}
    outputs = {e.output.lower() for e in nulls}
    assert not outputs & {"the", "and", "of", ",", "."}
    assert len(outputs) > 300  # drawn from the sentence, not from a short list
    assert [e.output for e in pos_family("all", seed=1).concepts[NULL]] != [e.output for e in nulls]


def test_web_split_is_deterministic_disjoint_and_80_20():
    everything = load_family("pos", split="all")
    test, train = load_family("pos", seed=3), load_family("pos", split="train", seed=3)
    assert load_family("pos", seed=3).concepts == test.concepts
    test_inputs, train_inputs = ({e.input for e in f.concepts["Noun"]} for f in (test, train))
    assert not test_inputs & train_inputs
    assert len(test_inputs) + len(train_inputs) == len(everything.concepts["Noun"])
    assert len(test_inputs) == round(0.2 * len(everything.concepts["Noun"]))
    for concept in POS_CONCEPTS + [NULL]:
        assert {e.input for e in test.concepts[concept]} == test_inputs
    assert {e.input for e in load_family("pos", seed=4).concepts["Noun"]} != test_inputs


def test_pos_synthetic_still_loads_and_differs_from_pos():
    assert "pos-synthetic" in BUILTIN
    synthetic = load_family("pos-synthetic", "test")
    assert synthetic.name == "pos-synthetic" and synthetic.concept_names == POS_CONCEPTS + [NULL]
    assert synthetic.concepts == pos_family("test", source="synthetic").concepts
    assert not {e.input for e in synthetic.concepts["Noun"]} & {e.input for e in load_family("pos").concepts["Noun"]}


def test_hand_check_covers_100_shipped_sentences_per_round_and_every_answer_is_judged():
    with (WEB / "hand_check.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["correct"] for r in rows} <= {"yes", "no"}
    last = max(r["round"] for r in rows)
    for round_ in {r["round"] for r in rows}:
        assert len({r["sentence"] for r in rows if r["round"] == round_}) >= 100
    corpus = {r["sentence"]: r["answers"] for r in _rows()}
    for r in rows:  # the last round checked the corpus as shipped
        if r["round"] == last:
            assert corpus[r["sentence"]][r["tag"]] == r["answer"]


BROWN = "\n\n".join("\t" + line for line in [  # NLTK's layout: one sentence a line, blank lines between
    "The/at Fulton/np-tl County/nn-tl jury/nn said/vbd Friday/nr it/pps had/hvd n't/* seen/vbn any/dti old/jj "
    "cases/nns ./.",
    "He/pps quickly/rb gave/vbd the/at old/jj maps/nns to/in them/ppo to/to keep/vb ./.",
    "Did/dod the/at tall/jj man/nn really/rb go/vb home/nr ?/.",
    "I'm/ppss+bem very/ql sure/jj ,/, he/pps said/vbd ,/, that/cs the/at coup/fw-nn d'etat/fw-nn failed/vbd ./.",
    "Suddenly/rb she/pps found/vbd a/at small/jj key/nn under/in the/at rug/nn ./."])


def test_brown_tags_map_to_the_six_and_other():
    first, second, third, fourth, _ = parse_brown(BROWN)
    assert first.sentence == "The Fulton County jury said Friday it hadn't seen any old cases."
    assert dict(zip(first.tokens, first.tags))["had"] == "Other"  # auxiliary before a participle
    assert [second.first(c) for c in POS_CONCEPTS] == ["maps", "old", "gave", "quickly", "to", "He"]
    assert second.tags[second.tokens.index("keep") - 1] == "Other"  # infinitival "to"
    assert dict(zip(third.tokens, third.tags))["Did"] == "Other" and third.first("Verb") == "go"
    tags = dict(zip(fourth.tokens, fourth.tags))
    assert (tags["I'm"], tags["very"], tags["that"], tags["coup"]) == ("Pronoun", "Adverb", "Other", "Other")


def test_brown_folder_is_a_source_and_a_folder_without_brown_files_is_refused(tmp_path):
    (tmp_path / "ca01").write_text(BROWN, encoding="utf-8")
    (tmp_path / "README").write_text("not a corpus file /nn", encoding="utf-8")
    kept = load_tagged_sentences(tmp_path)
    assert [s.first("Noun") for s in kept] == ["maps", "key"]  # the sentences with all six tags
    family = pos_family("all", source=tmp_path)
    assert [e.output for e in family.concepts["Preposition"]] == ["to", "under"]
    assert all(e.output in {"quickly", "gave", "old", "maps", "keep", "Suddenly", "found", "small", "key", "rug"}
               for e in family.concepts[NULL])  # content words only
    (tmp_path / "ca01").unlink()
    with pytest.raises(ConceptLensError, match="Brown") as info:
        load_tagged_sentences(tmp_path)
    assert "source=" in info.value.fix
