"""The shipped World English Bible POS corpus: every answer is the first word of its tag."""

from __future__ import annotations

import json
from importlib import resources

TAGS = ["Noun", "Adjective", "Verb", "Adverb", "Preposition", "Pronoun"]


def test_shipped_web_corpus_answers_are_first_words_of_their_tags():
    path = resources.files("conceptlens") / "data" / "pos_web" / "sentences.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    assert len(rows) >= 500
    assert len({r["sentence"] for r in rows}) == len(rows)
    for r in rows:
        assert len(r["tokens"]) == len(r["tags"])
        assert r["sentence"][0].isupper() and r["sentence"][-1] in ".?!"
        for tag in TAGS:
            answer = r["answers"][tag]
            assert answer == r["tokens"][r["tags"].index(tag)]
            assert answer in r["sentence"]


def test_pos_synthetic_is_a_family_name():
    from conceptlens.tasks.registry import BUILTIN, load_family

    assert "pos-synthetic" in BUILTIN
    assert load_family("pos-synthetic", "test").concepts == load_family("pos", "test").concepts
