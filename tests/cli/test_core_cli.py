"""`conceptlens capture` and `conceptlens decodability` through the real entry point (`main()`, which
turns a ConceptLensError into one message and exit code 2): every bad input gives one clear message,
code 2 and no output file; the two commands work end to end on the embedded model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def assert_user_error(code: int, text: str, *fragments: str) -> None:
    assert code == 2, text
    assert text.count("error:") == 1 and "Traceback" not in text, text
    for fragment in fragments:
        assert fragment in text, text


def only(folder: Path, *names: str) -> None:
    """The folder holds exactly these files (nothing written, nothing half-written)."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


@pytest.fixture
def toy(tmp_path):
    """Activations [2 layers, 12, 3] of 3 concepts x 4 points, well separated in layer 1, and labels."""
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(3), 4)
    acts = np.stack([rng.normal(size=(12, 3)), np.eye(3)[codes] * 20 + rng.normal(size=(12, 3))]).astype(np.float32)
    np.save(tmp_path / "acts.npy", acts)
    (tmp_path / "labels.txt").write_text("\n".join(["AND", "OR", "XOR"][c] for c in codes) + "\n")
    return tmp_path


def test_decodability_npy_writes_documented_json(cli, toy):
    code, text = cli("decodability", toy / "acts.npy", toy / "labels.txt", "--k", "3", "--out", toy / "td.json",
                     "--n-boot", "50")
    assert code == 0, text
    result = json.loads((toy / "td.json").read_text())
    assert {"k", "chance", "layers", "best_layer", "pairwise"} <= set(result)
    assert result["k"] == 3 and result["chance"] == pytest.approx(1 / 3) and result["best_layer"] == 1
    assert [layer["layer"] for layer in result["layers"]] == [0, 1]
    assert set(result["layers"][1]["per_class"]) == {"AND", "OR", "XOR"}
    assert result["layers"][1]["mean"] == 1.0
    lo, hi = result["layers"][0]["ci95"]
    assert lo <= result["layers"][0]["mean"] <= hi


@pytest.mark.parametrize("case", ["missing", "ragged", "garbage", "truncated", "strings", "one_dim",
                                  "short_labels", "small_concept", "nan", "inf", "negative_k", "zero_k",
                                  "bad_labels_npy", "labels_2d", "missing_labels", "bad_pairwise_layer"])
def test_decodability_bad_inputs(cli, toy, case):
    acts, labels, extra = toy / "acts.npy", toy / "labels.txt", []
    good = np.load(acts)
    expect = {
        "missing": "does not exist", "ragged": "not a numeric .npy", "garbage": "not a numeric .npy",
        "truncated": "not a numeric .npy", "strings": "not numbers", "one_dim": "shape",
        "short_labels": "11 labels for 12 activation rows", "small_concept": "fewer than k + 1",
        "nan": "NaN or Inf", "inf": "NaN or Inf", "negative_k": "positive integer", "zero_k": "positive integer",
        "bad_labels_npy": "labels", "labels_2d": "labels", "missing_labels": "does not exist",
        "bad_pairwise_layer": "--pairwise-layer 7",
    }[case]
    if case == "missing":
        acts = toy / "nothing.npy"
    elif case == "ragged":
        np.save(toy / "ragged.npy", np.array([[1.0, 2.0], [3.0]], dtype=object), allow_pickle=True)
        acts = toy / "ragged.npy"
    elif case == "garbage":
        (toy / "garbage.npy").write_bytes(os.urandom(300))
        acts = toy / "garbage.npy"
    elif case == "truncated":
        (toy / "truncated.npy").write_bytes(acts.read_bytes()[:100])
        acts = toy / "truncated.npy"
    elif case == "strings":
        np.save(toy / "strings.npy", np.array(["a", "b"]))
        acts = toy / "strings.npy"
    elif case == "one_dim":
        np.save(toy / "flat.npy", good.reshape(-1))
        acts = toy / "flat.npy"
    elif case == "short_labels":
        labels.write_text("\n".join(labels.read_text().split()[:11]))
    elif case == "small_concept":
        extra = ["--k", "4"]
    elif case in ("nan", "inf"):
        good[1, 3, 0] = np.nan if case == "nan" else np.inf
        np.save(acts, good)
    elif case in ("negative_k", "zero_k"):
        extra = ["--k", "-2" if case == "negative_k" else "0"]
    elif case == "bad_labels_npy":
        (toy / "labels.npy").write_bytes(b"\x93NUMPY garbage" + os.urandom(50))
        labels = toy / "labels.npy"
    elif case == "labels_2d":
        np.save(toy / "labels.npy", np.zeros((12, 2)))
        labels = toy / "labels.npy"
    elif case == "missing_labels":
        labels = toy / "no-labels.txt"
    elif case == "bad_pairwise_layer":
        extra = ["--k", "3", "--pairwise-layer", "7"]
    before = sorted(p.name for p in toy.iterdir())
    code, text = cli("decodability", acts, labels, "--out", toy / "td.json", "--n-boot", "20",
                     *(extra or ["--k", "3"]))
    assert_user_error(code, text, expect)
    only(toy, *before)


def test_decodability_imbalanced_concepts_still_work(cli, tmp_path):
    """A concept with just over k + 1 members is valid input, even when the held-out halves are too
    small for kNN: then the held-out choice is left out, not turned into an error."""
    rng = np.random.default_rng(1)
    np.save(tmp_path / "acts.npy", rng.normal(size=(2, 60, 4)))
    (tmp_path / "labels.txt").write_text("\n".join(["a"] * 5 + ["b"] * 55))
    code, text = cli("decodability", tmp_path / "acts.npy", tmp_path / "labels.txt", "--k", "3",
                     "--out", tmp_path / "td.json", "--n-boot", "20")
    assert code == 0, text
    assert json.loads((tmp_path / "td.json").read_text())["heldout"] is None


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("10110 01100 -> 00100\n01010 11000 ->\n11100 00111 ->\n")
    return path


@pytest.mark.parametrize("case, args, expect", [
    ("unknown_layer", ["--layers", "0,9"], "layer 9 does not exist"),
    ("negative_layer", ["--layers=-1"], "layer -1 does not exist"),
    ("layer_not_int", ["--layers", "one"], "not a comma-separated list"),
    ("unknown_component", ["--component", "mlp"], "unknown component 'mlp'"),
    ("component_layer", ["--component", "attn_out", "--layers", "3"], "layer 3 does not exist"),
    ("bad_position", ["--position", "first"], "position 'first'"),
    ("position_outside", ["--position", "40"], "outside a prompt"),
    ("bad_suffix", ["--out-name", "acts.npy"], "must end in .safetensors"),
])
def test_capture_bad_inputs(cli, tiny_folder, prompts_file, tmp_path, case, args, expect):
    out = tmp_path / "acts.safetensors"
    if args[:1] == ["--out-name"]:
        out, args = tmp_path / args[1], []
    code, text = cli("capture", "--model", tiny_folder, "--prompts", prompts_file, "--out", out, *args)
    assert_user_error(code, text, expect)
    only(tmp_path, "prompts.txt")


@pytest.mark.parametrize("case", ["not_utf8", "empty", "blank_lines", "missing", "bad_jsonl", "jsonl_no_prompt"])
def test_capture_bad_prompt_files(cli, tiny_folder, tmp_path, case):
    name = "prompts.jsonl" if case.startswith(("bad_jsonl", "jsonl")) else "prompts.txt"
    path = tmp_path / name
    content = {"not_utf8": "caf\xe9 ->\n".encode("latin-1"), "empty": b"", "blank_lines": b"\n  \n\n",
               "bad_jsonl": b'{"prompt": "a ->"}\n{oops\n', "jsonl_no_prompt": b'{"text": "a ->"}\n'}
    if case != "missing":
        path.write_bytes(content[case])
    expect = {"not_utf8": "not UTF-8", "empty": "holds no prompts", "blank_lines": "holds no prompts",
              "missing": "does not exist", "bad_jsonl": "line 2 is not valid JSON",
              "jsonl_no_prompt": "no string field 'prompt'"}[case]
    code, text = cli("capture", "--model", tiny_folder, "--prompts", path, "--out", tmp_path / "acts.safetensors")
    assert_user_error(code, text, expect)
    only(tmp_path, *([] if case == "missing" else [name]))


def test_capture_unknown_model_path(cli, prompts_file, tmp_path):
    code, text = cli("capture", "--model", tmp_path / "no-model", "--prompts", prompts_file,
                     "--out", tmp_path / "acts.safetensors")
    assert_user_error(code, text, "does not exist", "smollm2-135m")
    only(tmp_path, "prompts.txt")


def test_capture_unknown_hub_id_offline(prompts_file, tmp_path):
    """The installed console script, in its own process, with the hub offline."""
    exe = Path(sys.executable).with_name("conceptlens")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "COLUMNS": "300",
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(exe), "capture", "--model", "someorg/not-a-model", "--prompts", str(prompts_file),
                           "--out", str(tmp_path / "acts.safetensors")], capture_output=True, text=True, env=env,
                          timeout=120)
    text = done.stdout + done.stderr
    assert_user_error(done.returncode, text, "from the HuggingFace hub", "--model /path/to/folder")
    assert not (tmp_path / "acts.safetensors").exists()


def test_capture_tiny_folder_end_to_end(cli, tiny_folder, prompts_file, tmp_path):
    from conceptlens.activations.capture import load_activations

    out = tmp_path / "acts.safetensors"
    code, text = cli("capture", "--model", tiny_folder, "--prompts", prompts_file, "--out", out,
                     "--layers", "0,3", "--batch-size", "2")
    assert code == 0, text
    acts, layers = load_activations(out)
    assert layers == [0, 3] and acts.shape == (2, 3, 32)
    only(tmp_path, "prompts.txt", "acts.safetensors", "acts.safetensors.sha256")


@pytest.mark.real_model
def test_capture_then_decodability_on_the_embedded_model(cli, tmp_path):
    """20 bitwise prompts of two concepts through both commands, on SmolLM2-135M."""
    import random

    rng = random.Random(0)
    lines, labels = [], []
    for concept, op in (("AND", lambda a, b: a & b), ("OR", lambda a, b: a | b)):
        for _ in range(10):
            pairs = [(rng.getrandbits(4), rng.getrandbits(4)) for _ in range(3)]
            demos = [f"{a:04b} {b:04b} -> {op(a, b):04b}" for a, b in pairs[:2]]
            a, b = pairs[2]
            lines.append(json.dumps({"prompt": "\n".join(demos + [f"{a:04b} {b:04b} ->"])}))
            labels.append(concept)
    (tmp_path / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n")
    acts = tmp_path / "acts.safetensors"
    code, text = cli("capture", "--prompts", tmp_path / "prompts.jsonl", "--out", acts, "--layers", "0,10,20,30")
    assert code == 0, text
    code, text = cli("decodability", acts, tmp_path / "labels.txt", "--k", "3", "--out", tmp_path / "td.json",
                     "--n-boot", "100")
    assert code == 0, text
    result = json.loads((tmp_path / "td.json").read_text())
    assert {"k", "chance", "layers", "best_layer", "pairwise"} <= set(result)
    assert [layer["layer"] for layer in result["layers"]] == [0, 10, 20, 30]
    for layer in result["layers"]:
        assert {"layer", "mean", "per_class", "ci95"} <= set(layer)
        assert set(layer["per_class"]) == {"AND", "OR"} and 0 <= layer["mean"] <= 1
    assert result["best_layer"] in (0, 10, 20, 30) and result["chance"] == 0.5
    assert result["pairwise"]["concepts"] == ["AND", "OR"]
    assert result["heldout"] is not None
    only(tmp_path, "prompts.jsonl", "labels.txt", "acts.safetensors", "acts.safetensors.sha256", "td.json")
