"""Files a user hands in, read one way: YAML without aliases, text without a BOM, lines cut only at `\\n`.

Issue 19 point 8: a 526-byte YAML file of nested aliases (a "billion laughs") cost a sweep 26 s and
1.7 GB; it must be refused before anything expands, by every reader of a user's YAML. Malformed,
non-UTF-8 or unbuildable YAML (a date `2001-13-45`) is one clean error naming the file. Point 4: a
BOM in a prompts or labels file must change nothing, and U+2028, form feed or NEL inside a prompt
must keep it one prompt.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.numpy import load_file

from conceptlens.cli.core import read_labels, read_prompts
from conceptlens.errors import ConceptLensError
from conceptlens.text_input import read_user_text, split_lines
from conceptlens.yaml_input import parse_yaml_text, read_yaml_file
from reliability_helpers import assert_clean_error

LEVELS = "abcdefghi"


def billion_laughs(levels: int = 9, indent: str = "") -> str:
    """`levels` levels of nine aliases each: 9**9 (387 million) strings once expanded, 342 bytes as text."""
    lines = [indent + 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in list(zip(LEVELS, LEVELS[1:]))[:levels - 1]:
        lines.append(f"{indent}{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.fixture
def bomb(tmp_path) -> Path:
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs())
    assert path.stat().st_size < 600
    return path


def test_the_alias_bomb_is_refused_by_the_reader(bomb):
    with pytest.raises(ConceptLensError, match=r"alias '\*a' \(line 2\)") as caught:
        read_yaml_file(bomb, "sweep file")
    assert str(bomb) in caught.value.problem and "&a" in caught.value.fix
    with pytest.raises(ConceptLensError, match="alias"):
        parse_yaml_text("[&x [1, 2], *x]", "the value of override 'x'")
    assert parse_yaml_text("base: &x 3\nother: 4\n", "t") == {"base": 3, "other": 4}  # an unused anchor is harmless


def test_the_alias_bomb_is_refused_by_every_yaml_loader(bomb, tmp_path):
    from conceptlens.sweep.spec import load_sweep
    from conceptlens.synthetic.config import apply_overrides, load_config
    from conceptlens.synthetic.train import load_run_config

    with pytest.raises(ConceptLensError, match="alias"):
        load_sweep(bomb)
    # inside a valid sweep the aliases expand when cells are made: each level costs ~9x time and memory
    # (measured on the old reader: 5 levels 0.01 s, 7 levels 0.45 s and 195 MB; 9 levels ~26 s and 1.7 GB)
    valid = tmp_path / "valid_sweep.yaml"
    valid.write_text("command: llm run\ngrid: {seed: [0]}\nfixed:\n" + billion_laughs(levels=5, indent="  "))
    with pytest.raises(ConceptLensError, match="alias"):
        load_sweep(valid)
    with pytest.raises(ConceptLensError, match="alias"):
        load_config(bomb)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(billion_laughs())
    with pytest.raises(ConceptLensError, match="alias"):
        load_run_config(run)
    nested = "[" + ",".join(["*a"] * 9) + "]"
    with pytest.raises(ConceptLensError, match="alias"):
        apply_overrides({}, [f"seed=[&a [1,1,1,1,1,1,1,1,1], {nested}, {nested}]"])


def test_the_alias_bomb_through_the_cli(cli, bomb, tmp_path):
    assert_clean_error(cli("sweep", bomb, "--out", tmp_path / "out"), "alias '*a'")
    assert_clean_error(cli("synthetic", "train", "--config", bomb, "--out", tmp_path / "syn"), "alias '*a'")
    assert not (tmp_path / "out").exists() and not (tmp_path / "syn").exists()


BROKEN = {"unclosed.yaml": ("train: {steps: [1\n".encode(), "not valid YAML (line 2"),
          "bad_date.yaml": (b"seed: 2001-13-45\n", "value YAML cannot read (month must be in 1..12)"),
          "latin1.yaml": ("name: caf\xe9\n".encode("latin-1"), "not UTF-8 text (byte 9"),
          "two_documents.yaml": (b"seed: 1\n---\nseed: 2\n", "not valid YAML (line 2, column 1: expected a single document in the stream; but found another"),
          "deep.yaml": (b"[" * 5000 + b"]" * 5000, "not valid YAML")}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_yaml_is_one_error_naming_the_file(tmp_path, name):
    from conceptlens.sweep.spec import load_sweep
    from conceptlens.synthetic.config import load_config
    from conceptlens.synthetic.train import load_run_config

    data, expect = BROKEN[name]
    path = tmp_path / name
    path.write_bytes(data)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_bytes(data)
    for load, target in ((load_sweep, path), (load_config, path), (load_run_config, run)):
        with pytest.raises(ConceptLensError) as caught:
            load(target)
        assert expect in caught.value.problem and str(path if target == path else run / "config.yaml") in str(caught.value)
        assert caught.value.fix


def test_broken_run_config_through_the_cli(cli, tmp_path):
    """A torn config.yaml of a run folder: `--resume` and `analyze` exit 2, no traceback."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_bytes(b"train: {steps: [1\n")
    assert_clean_error(cli("synthetic", "train", "--out", run, "--resume"), "config.yaml is not valid YAML")
    assert_clean_error(cli("synthetic", "analyze", run), "config.yaml is not valid YAML")


# ---- text files: prompts and labels ----------------------------------------------------------------

PROMPTS = ["The cat sat on the mat.", "a\u2028b stays one prompt", "form\x0cfeed", "next\x85line", "last one"]


def test_line_rule():
    assert split_lines("a\r\nb\nc\u2028d\x0ce\x85f\x1cg\n") == ["a", "b", "c\u2028d\x0ce\x85f\x1cg"]
    assert split_lines("") == [] and split_lines("\n") == [""] and split_lines("x") == ["x"]


@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
def test_a_bom_and_unusual_line_breaks_change_no_prompt(tmp_path, suffix):
    import json

    lines = PROMPTS if suffix == ".txt" else [json.dumps({"prompt": p}, ensure_ascii=False) for p in PROMPTS]
    plain, with_bom, crlf = (tmp_path / f"{name}{suffix}" for name in ("plain", "bom", "crlf"))
    plain.write_bytes("\n".join(lines).encode() + b"\n")
    with_bom.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    crlf.write_bytes("\r\n".join(lines).encode() + b"\r\n")
    assert read_prompts(plain) == read_prompts(with_bom) == read_prompts(crlf) == PROMPTS


def test_a_bom_changes_no_label(tmp_path):
    plain, with_bom = tmp_path / "plain.txt", tmp_path / "bom.txt"
    plain.write_text("AND\nOR\nAND\n", encoding="utf-8")
    with_bom.write_text("AND\r\nOR\r\nAND\r\n", encoding="utf-8-sig")
    assert read_labels(plain) == read_labels(with_bom) == ["AND", "OR", "AND"]


def test_a_line_break_inside_a_family_pair_keeps_it_one_pair(tmp_path):
    import json

    from conceptlens.tasks.user_family import read_concept_file

    pairs = [{"input": "one\u2028line", "output": "x\x85y"}, {"input": "two", "output": "z"}]
    path = tmp_path / "concept.jsonl"
    path.write_text("\n".join(json.dumps(p, ensure_ascii=False) for p in pairs) + "\n", encoding="utf-8")
    assert [(e.input, e.output) for e in read_concept_file(path)] == [("one\u2028line", "x\x85y"), ("two", "z")]


def test_unreadable_text_is_one_error_naming_the_file(tmp_path):
    latin = tmp_path / "prompts.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConceptLensError, match=r"prompts file .*prompts.txt is not UTF-8 text \(byte 3"):
        read_prompts(latin)
    with pytest.raises(ConceptLensError, match="is a folder"):
        read_user_text(tmp_path, "labels file")
    with pytest.raises(ConceptLensError, match="does not exist"):
        read_user_text(tmp_path / "nothing.txt")


def test_a_bom_prompts_file_captures_the_same_activations(cli, tiny_lm, tmp_path):
    """End to end: the BOM is not three extra tokens of the first prompt."""
    plain, with_bom = tmp_path / "plain.txt", tmp_path / "bom.txt"
    plain.write_bytes("\n".join(PROMPTS[:2]).encode())
    with_bom.write_bytes(b"\xef\xbb\xbf" + "\n".join(PROMPTS[:2]).encode())
    for source in (plain, with_bom):
        result = cli("capture", "--model", tiny_lm, "--prompts", source, "--out", tmp_path / f"{source.stem}.safetensors")
        assert result.code == 0, result.stdout + result.stderr
    first, second = (load_file(tmp_path / f"{stem}.safetensors") for stem in ("plain", "bom"))
    assert first["activations"].shape[1] == 2
    assert (first["activations"] == second["activations"]).all()
