"""User families (function-vectors format) and the family registry: parsing, Null, and a clear
ConceptLensError for every way a folder can be wrong."""

from __future__ import annotations

import json

import pytest

from conceptlens.errors import ConceptLensError
from conceptlens.tasks.family import NULL
from conceptlens.tasks.registry import load_family
from conceptlens.tasks.user_family import read_concept_file, user_family

PAIRS = {"antonym": [("hot", "cold"), ("big", "small"), ("up", "down"), ("fast", "slow")],
         "capital": [("France", "Paris"), ("Japan", "Tokyo"), ("Peru", "Lima"), ("Kenya", "Nairobi")]}


def write_family(folder, jsonl: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    for concept, pairs in PAIRS.items():
        items = [{"input": a, "output": b} for a, b in pairs]
        if jsonl:
            (folder / f"{concept}.jsonl").write_text("\n".join(json.dumps(i) for i in items) + "\n", encoding="utf-8")
        else:
            (folder / f"{concept}.json").write_text(json.dumps(items, indent=1), encoding="utf-8")
    return folder


@pytest.mark.parametrize("jsonl", [False, True])
def test_reads_json_and_jsonl(tmp_path, jsonl):
    folder = write_family(tmp_path / "myfamily", jsonl)
    (folder / "README.md").write_text("not a concept")
    family = user_family(folder, null=False)
    assert family.name == "myfamily"
    assert family.concept_names == ["antonym", "capital"]
    assert [(e.input, e.output) for e in family.concepts["capital"]] == PAIRS["capital"]


def test_null_pairs_every_input_with_an_output_of_the_family(tmp_path):
    family = user_family(write_family(tmp_path / "f"), seed=3)
    outputs = {b for pairs in PAIRS.values() for _, b in pairs}
    inputs = {a for pairs in PAIRS.values() for a, _ in pairs}
    assert {e.input for e in family.concepts[NULL]} == inputs
    assert all(e.output in outputs for e in family.concepts[NULL])
    assert user_family(tmp_path / "f", seed=3).concepts[NULL] == family.concepts[NULL]


def test_extra_keys_are_ignored_and_a_bom_is_fine(tmp_path):
    path = tmp_path / "c.json"
    path.write_bytes("\ufeff".encode() + json.dumps([{"input": "a", "output": "b", "note": 1}]).encode())
    assert read_concept_file(path)[0].output == "b"


def expect_error(folder, match, **kwargs):
    with pytest.raises(ConceptLensError, match=match) as info:
        user_family(folder, **kwargs)
    assert info.value.fix  # every message says how to fix it
    return info.value


def test_missing_and_empty_folders(tmp_path):
    expect_error(tmp_path / "nope", "does not exist")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    expect_error(tmp_path / "empty", "no .json or .jsonl files")
    (tmp_path / "file.json").write_text("[]")
    expect_error(tmp_path / "file.json", "is a file")


def test_malformed_json_names_the_line(tmp_path):
    folder = write_family(tmp_path / "f")
    (folder / "broken.json").write_text('[\n {"input": "a", "output": "b"},\n {"input": "c" "output": "d"}\n]')
    error = expect_error(folder, "line 3")
    assert "broken.json" in error.problem
    folder = write_family(tmp_path / "g", jsonl=True)
    (folder / "broken.jsonl").write_text('{"input": "a", "output": "b"}\n\n{"input": "c", "output": \n')
    expect_error(folder, r"broken.jsonl line 3 is not valid JSON")


@pytest.mark.parametrize("content, match", [
    ('{"input": "a", "output": "b"}', "not a list"),
    ('[["a", "b"]]', "not an object"),
    ('[{"question": "a", "answer": "b"}]', "no 'input' or 'output' key"),
    ('[{"input": "a"}]', "no 'output' key"),
    ('[{"input": "a", "output": 3}]', "'output' is int 3, not a string"),
    ('[{"input": ["a"], "output": "b"}]', "'input' is list"),
    ('[{"input": "a", "output": "  "}]', "'output' is empty"),
    ('[{"input": "a", "output": "b\\nc"}]', "line break"),
])
def test_wrong_shapes_keys_and_types(tmp_path, content, match):
    folder = write_family(tmp_path / "f")
    (folder / "bad.json").write_text(content)
    expect_error(folder, match)


def test_too_few_pairs_non_utf8_and_name_clashes(tmp_path):
    folder = write_family(tmp_path / "f")
    (folder / "tiny.json").write_text('[{"input": "a", "output": "b"}]')
    expect_error(folder, "'tiny' .* has 1 pair")
    expect_error(folder, "at least 5", min_pairs=5)
    (folder / "tiny.json").unlink()
    (folder / "latin.json").write_bytes('[{"input": "café", "output": "x"}]'.encode("latin-1"))
    expect_error(folder, "not UTF-8")
    (folder / "latin.json").unlink()
    (folder / "antonym.jsonl").write_text('{"input": "a", "output": "b"}\n')
    expect_error(folder, "both a .json and a .jsonl")
    (folder / "antonym.jsonl").unlink()
    (folder / "Null.json").write_text(json.dumps([{"input": "a", "output": "b"}] * 3))
    expect_error(folder, "named 'Null'")
    assert NULL in user_family(folder, null=False).concepts


def test_one_concept_without_null_is_refused(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "only.json").write_text(json.dumps([{"input": "a", "output": "b"}] * 3))
    expect_error(folder, "one concept", null=False)
    assert set(user_family(folder).concepts) == {"only", NULL}


class TestRegistry:
    def test_unknown_name_lists_the_choices(self):
        with pytest.raises(ConceptLensError, match="unknown task family 'nope'") as info:
            load_family("nope")
        assert "pos" in info.value.fix and "bitwise" in info.value.fix and "folder" in info.value.fix

    def test_bitwise_splits(self):
        test = load_family("bitwise")
        train = load_family("bitwise", split="train")
        assert len(test.concepts["AND"]) == 500 and len(train.concepts["AND"]) == 524
        assert len(load_family("bitwise", split="all").concepts["AND"]) == 1024
        assert NULL not in load_family("bitwise", null=False).concepts
        with pytest.raises(ConceptLensError, match="unknown split"):
            load_family("bitwise", split="dev")

    def test_folder_splits_per_concept(self, tmp_path):
        folder = tmp_path / "fam"
        folder.mkdir()
        for concept in ("upper", "lower"):
            items = [{"input": f"w{i}", "output": f"{concept}{i}"} for i in range(20)]
            (folder / f"{concept}.json").write_text(json.dumps(items))
        everything = load_family(str(folder), split="all")
        test, train = load_family(str(folder)), load_family(str(folder), split="train")
        assert len(everything.concepts["upper"]) == 20
        assert len(test.concepts["upper"]) == 4 and len(train.concepts["upper"]) == 16
        assert not {e.input for e in test.concepts["upper"]} & {e.input for e in train.concepts["upper"]}
        with pytest.raises(ConceptLensError, match="does not exist"):
            load_family(str(tmp_path / "missing"))

    def test_pos(self):
        pytest.importorskip("conceptlens.tasks.pos")
        family = load_family("pos")
        assert set(family.concepts) >= {"Noun", "Verb", NULL}
