"""Tests for the part-of-speech family on the generated grammar corpus ("pos-synthetic", source
"synthetic"): split, Null, CoNLL-U and PTB parsing, errors. The real-sentence default: test_pos_web.py."""

from __future__ import annotations

import sys
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conceptlens.errors import ConceptLensError
from conceptlens.tasks.family import NULL
from conceptlens.tasks.pos import (INSTRUCTIONS, POS_CONCEPTS, PosTaskFamily, load_tagged_sentences,
                                   parse_conllu, pos_family, ptb_tag)

CONLLU = """# sent_id = 1
# text = She quickly painted the old fence near the river.
1\tShe\tshe\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2\tquickly\tquickly\tADV\tRB\t_\t3\tadvmod\t_\t_
3\tpainted\tpaint\tVERB\tVBD\t_\t0\troot\t_\t_
4\tthe\tthe\tDET\tDT\t_\t6\tdet\t_\t_
5\told\told\tADJ\tJJ\t_\t6\tamod\t_\t_
6\tfence\tfence\tNOUN\tNN\t_\t3\tobj\t_\t_
7\tnear\tnear\tADP\tIN\t_\t9\tcase\t_\t_
8\tthe\tthe\tDET\tDT\t_\t9\tdet\t_\t_
9\triver\triver\tNOUN\tNN\t_\t3\tobl\t_\tSpaceAfter=No
10\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

1\tDogs\tdog\tNOUN\tNNS\t_\t2\tnsubj\t_\t_
2\tbark\tbark\tVERB\tVBP\t_\t0\troot\t_\t_

1-2\tWe'll\t_\t_\t_\t_\t_\t_\t_\t_
1\tWe\twe\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2\t'll\twill\tAUX\tMD\t_\t3\taux\t_\t_
2.1\tgo\tgo\tVERB\tVB\t_\t_\t_\t_\t_
3\tsoon\tsoon\tADV\tRB\t_\t0\troot\t_\t_
4\tsing\tsing\tVERB\tVB\t_\t0\troot\t_\t_
5\tloud\tloud\tADJ\tJJ\t_\t0\troot\t_\t_
6\tsongs\tsong\tNOUN\tNNS\t_\t0\troot\t_\t_
7\tfor\tfor\tADP\tIN\t_\t0\troot\t_\t_
8\tus\twe\tPRON\tPRP\t_\t0\troot\t_\t_
"""


SYN = "synthetic"


@pytest.fixture(scope="module")
def shipped():
    return load_tagged_sentences(SYN)


def test_shipped_corpus_has_enough_sentences_with_all_six_tags(shipped):
    assert len(shipped) >= 2000
    assert len({s.sentence for s in shipped}) == len(shipped)
    for s in shipped:
        assert s.has_all_tags(), s.sentence
        assert len(s.tokens) == len(s.tags)
        assert 7 <= len([t for t in s.tokens if t not in ",."]) <= 16


def test_gold_answers_are_the_first_word_with_each_tag(shipped):
    family = pos_family(split="all", source=SYN)
    by_sentence = {s.sentence: s for s in shipped}
    for concept in POS_CONCEPTS:
        assert len(family.concepts[concept]) == len(shipped)
        for example in family.concepts[concept]:
            s = by_sentence[example.input]
            assert example.output == s.tokens[s.tags.index(concept)]
            assert example.output in s.sentence


def test_shipped_sentences_vary_in_opening_and_positions(shipped):
    assert len({s.tags[0] for s in shipped}) >= 4
    for concept in POS_CONCEPTS:
        assert len({s.tags.index(concept) for s in shipped}) >= 5


def test_split_is_deterministic_disjoint_and_80_20(shipped):
    train, test = pos_family("train", seed=3, source=SYN), pos_family("test", seed=3, source=SYN)
    assert pos_family("test", seed=3, source=SYN).concepts == test.concepts
    train_inputs = {e.input for e in train.concepts["Noun"]}
    test_inputs = {e.input for e in test.concepts["Noun"]}
    assert not train_inputs & test_inputs
    assert len(train_inputs) + len(test_inputs) == len(shipped)
    assert len(test_inputs) == round(0.2 * len(shipped))
    for concept in POS_CONCEPTS + [NULL]:  # every concept uses the same sentences
        assert {e.input for e in test.concepts[concept]} == test_inputs
    assert {e.input for e in pos_family("test", seed=4, source=SYN).concepts["Noun"]} != test_inputs


def test_family_split_matches_split_argument():
    family = pos_family("all", seed=1, source=SYN)
    assert isinstance(family, PosTaskFamily)
    train, test = family.split(seed=1)
    assert test.concepts == pos_family("test", seed=1, source=SYN).concepts
    assert train.concepts == pos_family("train", seed=1, source=SYN).concepts


def test_null_outputs_are_words_of_the_sentence_and_seeded():
    family = pos_family("test", seed=0, source=SYN)
    nulls = family.concepts[NULL]
    for example in nulls:
        assert example.output in example.input.replace(",", " ").replace(".", " ").split()
    assert nulls == pos_family("test", seed=0, source=SYN).concepts[NULL]
    outputs = [[e.output for e in pos_family("all", seed=k, source=SYN).concepts[NULL]] for k in (0, 1)]
    assert outputs[0] != outputs[1]
    assert len({e.output for e in nulls}) > 50


def test_instructions_and_null_switch():
    family = pos_family("test", source=SYN)
    assert family.concept_names == POS_CONCEPTS + [NULL]
    assert family.instructions["Noun"] == "Find the first noun in the sentence."
    assert family.instructions == INSTRUCTIONS
    assert NULL not in pos_family("test", null=False, source=SYN).concepts


@pytest.mark.parametrize("kwargs", [{"split": "dev"}, {"test_fraction": 1.5}])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ConceptLensError):
        pos_family(**kwargs)


def test_conllu_parsing(tmp_path):
    path = tmp_path / "tiny.conllu"
    path.write_text(CONLLU, encoding="utf-8")
    parsed = parse_conllu(CONLLU)
    assert len(parsed) == 3
    assert parsed[0].sentence == "She quickly painted the old fence near the river."
    assert parsed[1].sentence == "Dogs bark"  # no `# text`: forms joined
    assert parsed[2].tokens[:3] == ("We", "'ll", "soon")  # range and empty node skipped
    assert parsed[2].tags[:2] == ("Pronoun", "Other")  # AUX is not Verb
    kept = load_tagged_sentences(path)
    assert [s.sentence for s in kept] == [parsed[0].sentence, parsed[2].sentence]
    first = kept[0]
    assert [first.first(c) for c in POS_CONCEPTS] == ["fence", "old", "painted", "quickly", "near", "She"]


def test_conllu_malformed_and_missing(tmp_path):
    with pytest.raises(ConceptLensError, match="line 1"):
        parse_conllu("just some words\n")
    with pytest.raises(ConceptLensError, match="token ID"):
        parse_conllu("x\tShe\tshe\tPRON\n")
    with pytest.raises(ConceptLensError, match="not a file"):
        load_tagged_sentences(tmp_path / "missing.conllu")
    (tmp_path / "short.conllu").write_text("1\tDogs\tdog\tNOUN\n", encoding="utf-8")
    with pytest.raises(ConceptLensError, match="all six tags"):
        load_tagged_sentences(tmp_path / "short.conllu")
    (tmp_path / "latin1.conllu").write_bytes(b"1\t\xe9t\xe9\t_\tNOUN\n")
    with pytest.raises(ConceptLensError, match="UTF-8"):
        load_tagged_sentences(tmp_path / "latin1.conllu")


def test_ptb_tag_mapping():
    assert [ptb_tag(t) for t in ["NNS", "NNP", "JJR", "VBD", "RB", "IN", "PRP", "PRP$", "DT", "MD"]] == [
        "Noun", "Noun", "Adjective", "Verb", "Adverb", "Preposition", "Pronoun", "Other", "Other", "Other"]
    assert ptb_tag("TO", "DT") == "Preposition" and ptb_tag("TO", "VB") == "Other"


def test_ptb_source_without_nltk_data_is_a_clear_error():
    try:
        sentences = load_tagged_sentences("ptb")
    except ConceptLensError as err:
        assert "nltk" in str(err).lower()
    else:
        assert sentences and all(s.has_all_tags() for s in sentences)


def test_ptb_source_with_a_stub_nltk(monkeypatch):
    sentence = [("They", "PRP"), ("quietly", "RB"), ("gave", "VBD"), ("*T*-1", "-NONE-"), ("the", "DT"),
                ("old", "JJ"), ("maps", "NNS"), ("to", "TO"), ("us", "PRP"), ("to", "TO"), ("keep", "VB"),
                (".", ".")]
    corpus = types.ModuleType("nltk.corpus")
    corpus.treebank = types.SimpleNamespace(tagged_sents=lambda: [sentence, [("No", "DT"), ("verb", "NN")]])
    nltk = types.ModuleType("nltk")
    nltk.corpus = corpus
    monkeypatch.setitem(sys.modules, "nltk", nltk)
    monkeypatch.setitem(sys.modules, "nltk.corpus", corpus)
    [s] = load_tagged_sentences("ptb")
    assert s.sentence == "They quietly gave the old maps to us to keep."
    assert "*T*-1" not in s.tokens
    assert [s.first(c) for c in POS_CONCEPTS] == ["maps", "old", "gave", "quietly", "to", "They"]
    assert s.tags[s.tokens.index("keep") - 1] == "Other"  # infinitival "to"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("1-.#\t\n\r =abNOUPRVDJ _xé"), max_size=200) | st.text(max_size=200))
def test_conllu_parser_only_raises_conceptlens_errors(text):
    try:
        sentences = parse_conllu(text)
    except ConceptLensError:
        return
    for s in sentences:
        assert len(s.tokens) == len(s.tags)
        assert isinstance(s.sentence, str)
