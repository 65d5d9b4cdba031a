"""The notebook API: `import conceptlens` stays light, every `python` block of docs/api.md runs (on a
tiny random Llama, with the page's size constants replaced), `lm.capture` equals HF hidden states
under left padding and reads tokens by role, results round-trip through their folders, and the
calls refuse bad input before any folder exists."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import conceptlens as cl

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "api.md"
TINY_SYNTHETIC = ["task.n_dims=4", "task.basis_dim=1", "task.n_points=6", "model.n_layers=2", "model.n_heads=2",
                  "model.d_model=16", "train.steps=12", "train.batch_size=8", "train.warmup=2",
                  "train.curriculum.enabled=false", "schedule.eval_every=3", "schedule.eval_per_concept=4",
                  "schedule.eval_from_points=1", "schedule.dense_every=2", "schedule.dense_until=6",
                  "schedule.sparse_every=4"]


def pca_2d(points, seed):
    """Stands in for UMAP (numba compiles UMAP for ~40 s in every fresh process)."""
    centred = points - points.mean(axis=0)
    return centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T


@pytest.fixture
def fast_umap(monkeypatch):
    from conceptlens.llm.encoding import study

    monkeypatch.setattr(study, "umap_embedding", pca_2d)


def doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.S)


def with_sizes(code: str, sizes: dict) -> str:
    """The block with each `NAME = ...` line of `sizes` replaced (the documented test hook)."""
    for name, value in sizes.items():
        code, count = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", code, flags=re.M)
    return code


def test_import_is_light_and_names_load_on_use():
    code = ("import sys, conceptlens as cl; assert 'torch' not in sys.modules, 'torch'; "
            "assert 'pandas' not in sys.modules, 'pandas'; assert 'load_model' in dir(cl); "
            "cl.load_model; assert 'torch' in sys.modules; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "ok", done.stderr
    with pytest.raises(AttributeError):
        cl.no_such_name


def test_docs_examples_run(tiny_folder, tmp_path, monkeypatch, fast_umap):
    blocks = doc_blocks()
    assert len(blocks) >= 15 and "MODEL = " in blocks[0]
    sizes = {"MODEL": str(tiny_folder), "SHOTS": [1, 2], "PROMPTS": 8, "K": 3, "REPLICATES": 2, "TRAIN_SAMPLES": 8,
             "FIRST_LAYERS": "first:1", "SYNTHETIC": TINY_SYNTHETIC, "SEQUENCES": 12}
    setup = with_sizes(blocks[0], sizes)
    for name in sizes:  # every constant is replaced, none is left at the paper's size
        assert f"{name} = {sizes[name]!r}" in setup, name
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for number, block in enumerate([setup, *blocks[1:]]):
        try:
            exec(compile(block, f"docs/api.md python block {number}", "exec"), namespace)  # noqa: S102 (our own docs)
        except Exception as exc:
            raise AssertionError(f"docs/api.md python block {number} failed:\n{block}") from exc
    ns = namespace
    lm, family = ns["lm"], ns["family"]
    assert ns["acts"].shape == (lm.n_layers + 1, 8 * len(family.concepts), 32)
    result = ns["result"]
    assert list(result.td.columns[:6]) == ["model", "family", "shots", "layer", "concept", "td"]
    assert len(result.td) == 2 * (lm.n_layers + 1) * len(family.concepts)
    assert set(result.accuracy.shots) == {1, 2} and result.folder.is_dir()
    assert (tmp_path / "runs" / "bitwise-study" / "summary.json").is_file()
    assert ns["effect"].summary["layers"] == [result.best_layer]  # from_run: the study's best layer
    assert {"positive", "negative"} <= set(ns["effect"].changes.condition)
    tuned = ns["tuned"]
    assert tuned.before.td.shape == tuned.after.td.shape and len(tuned.train_log) > 0
    for _ in range(2):  # saving twice into one folder overwrites it
        saved = cl.FinetuneResult.load(tuned.save(tmp_path / "tuned-copy"))
    assert saved.summary == tuned.summary and saved.after.td.equals(tuned.after.td)
    assert set(ns["analysis"].decodability.block) == {0, 1}


def test_readme_python_section_runs(tiny_folder, tmp_path, monkeypatch, fast_umap):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    for old, new in (('"smollm2-135m"', repr(str(tiny_folder))), ("prompts_per_concept=50", "prompts_per_concept=8"),
                     ("prompts_per_concept=100)", "prompts_per_concept=8, k=3)"), ("k=10", "k=3"),
                     ("shots=[1, 4, 10]", "shots=[1, 2]")):
        assert old in code, old  # the README still shows the paper's sizes this test shrinks
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md Python section", "exec"), namespace)  # noqa: S102 (our own README)
    assert namespace["td"].layers == list(range(namespace["lm"].n_layers + 1))
    assert set(namespace["result"].td.shots) == {1, 2}


def test_capture_equals_hidden_states_under_left_padding(tiny_folder):
    from transformers import AutoModelForCausalLM

    lm = cl.load_model(str(tiny_folder))
    texts = ["a", "hello there", "the quick brown fox"]
    acts = lm.capture(texts, layers="all", batch_size=3)
    assert acts.shape == (lm.n_layers + 1, 3, 32)
    reference = AutoModelForCausalLM.from_pretrained(tiny_folder).eval()
    for i, text in enumerate(texts):
        ids = torch.tensor([lm.tokenizer(text)["input_ids"]])
        with torch.no_grad():
            states = reference(ids, output_hidden_states=True).hidden_states
        expected = torch.stack([state[0, -1] for state in states])
        assert torch.allclose(acts[:, i], expected, atol=1e-5), i
    picked = lm.capture(texts, layers=[3, 0], position=0)
    assert torch.allclose(picked[1], lm.capture(texts, layers=0, position=0)[0])
    assert lm.layers([3, 0]) == [3, 0] and lm.layers() == list(range(lm.n_layers + 1))


def test_capture_reads_prompt_objects_by_role(tiny_folder):
    lm = cl.load_model(str(tiny_folder))
    family = cl.load_family("bitwise")
    prompts, labels = cl.few_shot_prompts(family, shots=2, prompts_per_concept=2)
    assert len(prompts) == len(labels) == 2 * len(family.concepts)
    by_role = lm.capture(prompts, layers=[1, 2], position="query_input")
    by_hand = []
    for prompt in prompts:  # the last query-input token, found in the prompt text by hand (byte tokenizer)
        span = next(s for s in prompt.spans if s[2] == "query_input")
        by_hand.append(lm.capture([prompt.text[:span[1]]], layers=[1, 2])[:, 0])
    assert torch.allclose(by_role, torch.stack(by_hand, dim=1), atol=1e-5)
    last = lm.capture(prompts, layers=1, position="last")
    assert torch.allclose(last, lm.capture(prompts, layers=1, position="query_separator"))
    with pytest.raises(cl.ConceptLensError, match="token role"):
        lm.capture(["plain text"], position="query_separator")
    for bad in ("some", [], "everything"):
        with pytest.raises(cl.ConceptLensError, match="layers"):
            lm.capture(["x"], layers=bad)
    with pytest.raises(cl.ConceptLensError, match="unknown position"):
        lm.capture(["x"], position="middle")


def test_task_decodability_names_the_captured_layers():
    acts = torch.zeros(2, 6, 3)
    acts[0, :, 0] = torch.tensor([0.0, 10, 20, 1, 11, 21])  # each point's nearest neighbour is of the other concept
    acts[1, :3] += 5
    result = cl.task_decodability(acts, ["a"] * 3 + ["b"] * 3, k=2, layers=[4, 7])
    assert result.layers == [4, 7] and result.best_layer == 7 and result.mean[1] == 1.0


def test_bad_settings_fail_before_any_folder(tiny_folder, tmp_path):
    lm = cl.load_model(str(tiny_folder))
    out = tmp_path / "run"
    with pytest.raises(cl.ConceptLensError, match="prompts per concept"):
        cl.encoding_study(lm, "bitwise", shots=[1], prompts_per_concept=5, k=10, out=out)
    with pytest.raises(cl.ConceptLensError, match="seed"):
        cl.encoding_study(lm, cl.load_family("bitwise", seed=1), shots=[1], seed=2, out=out)
    with pytest.raises(cl.ConceptLensError, match="split"):
        cl.interventions(lm, cl.load_family("bitwise", split="train"), out=out)
    with pytest.raises(cl.ConceptLensError, match="family"):
        cl.encoding_study(lm, 42, out=out)
    with pytest.raises(cl.ConceptLensError, match="not_a_setting"):  # keywords are the spec's fields, strictly
        cl.finetune(lm, "bitwise", not_a_setting=1, out=out)
    assert not out.exists()


def test_results_round_trip_and_refuse_other_settings(tiny_folder, tmp_path, fast_umap):
    lm = cl.load_model(str(tiny_folder))
    out = tmp_path / "study"
    result = cl.encoding_study(lm, "bitwise", shots=[1], prompts_per_concept=8, k=3, out=out, progress=False)
    record = json.loads((out / ".conceptlens-run.json").read_text())
    assert record["kind"] == "encoding-study" and record["spec"]["study"]["prompts_per_concept"] == 8
    assert record["spec"]["model"]["name"] == str(tiny_folder)  # the CLI's record: `llm run --out` resumes it
    again = cl.encoding_study(lm, "bitwise", shots=[1], prompts_per_concept=8, k=3, out=out, progress=False)
    assert again.summary["per_shots"]["1"]["resumed"] and again.td.equals(result.td)
    with pytest.raises(cl.ConceptLensError, match="other settings"):
        cl.encoding_study(lm, "bitwise", shots=[1], prompts_per_concept=9, k=3, out=out, progress=False)
    edited = cl.EncodingResult.load(out)
    edited.summary["note"] = "edited"
    copy = edited.save(tmp_path / "copy")
    loaded = cl.EncodingResult.load(copy)
    assert loaded.summary["note"] == "edited" and loaded.td.equals(result.td)
    assert (copy / "td_by_layer.png").is_file() and (copy / "activations_shots1.safetensors").is_file()
    acts, layers, labels = loaded.activations(1)
    assert acts.shape[:2] == (lm.n_layers + 1, len(labels)) and layers == list(range(lm.n_layers + 1))
    frame = result.td.drop(columns=[c for c in result.td.columns if c.startswith("surface_")])
    bare = cl.EncodingResult(result.summary, frame, result.accuracy).plot()
    assert not any("surface" in line.get_label() for line in bare.axes[0].lines)
    frame = frame.assign(surface_answers_td=0.5, surface_query_td=float("nan"))
    figure = cl.EncodingResult(result.summary, frame, result.accuracy).plot()
    dashed = [line for line in figure.axes[0].lines if "surface" in line.get_label()]
    assert [(line.get_linestyle(), line.get_label()) for line in dashed] == [("--", "1 shots: surface (answers)")]
    assert list(dashed[0].get_ydata()) == [0.5] * (lm.n_layers + 1)
    with pytest.raises(cl.ConceptLensError, match="summary.json"):
        cl.EncodingResult.load(tmp_path / "nothing")


def test_a_notebook_folder_resumes_from_the_command_line(tiny_folder, tmp_path, monkeypatch, fast_umap):
    from conceptlens.cli.main import main

    lm = cl.load_model(str(tiny_folder))
    out = tmp_path / "study"
    first = cl.encoding_study(lm, "bitwise", shots=[1, 2], prompts_per_concept=8, k=3, out=out, progress=False)
    assert not first.summary["per_shots"]["1"]["resumed"]
    monkeypatch.setattr(sys, "argv", ["conceptlens", "llm", "run", "--model", str(tiny_folder), "--family", "bitwise",
                                      "--shots", "1,2", "--prompts-per-concept", "8", "--k", "3", "--out", str(out)])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code in (0, None)
    again = cl.EncodingResult.load(out)
    assert again.summary["per_shots"]["1"]["resumed"] and again.summary["per_shots"]["2"]["resumed"]
    assert again.td.equals(first.td)


@pytest.mark.real_model
def test_smollm2_capture_equals_output_hidden_states_left_padded():
    """Three prompts of different lengths in one left-padded batch equal HF `output_hidden_states` of each
    prompt alone, and of the same padded batch with position ids from the attention mask, at the last token."""
    lm = cl.load_model("smollm2-135m")
    texts = ["2 + 2 =", "The capital of France is", "In the beginning God created the heaven and the earth. And"]
    acts = lm.capture(texts, layers="all", position="last", batch_size=3)
    assert acts.shape == (31, 3, 576)
    batch = lm.tokenizer(texts, return_tensors="pt", padding=True)
    assert lm.tokenizer.padding_side == "left" and (batch["attention_mask"] == 0).any()
    positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        padded = lm.model(**batch, position_ids=positions, output_hidden_states=True).hidden_states
    for i, text in enumerate(texts):
        ids = torch.tensor([lm.tokenizer(text)["input_ids"]])
        with torch.no_grad():
            alone = lm.model(ids, output_hidden_states=True).hidden_states
        assert torch.allclose(acts[:, i], torch.stack([s[0, -1] for s in alone]), atol=1e-4, rtol=1e-4), text
        assert torch.allclose(acts[:, i], torch.stack([s[i, -1] for s in padded]), atol=1e-4, rtol=1e-4), text


def _words_folder(tmp_path: Path) -> str:
    from word_tasks import word_family

    folder = tmp_path / "words"
    folder.mkdir()
    for concept, examples in word_family(null=False).concepts.items():
        (folder / f"{concept}.json").write_text(json.dumps([{"input": e.input, "output": e.output} for e in examples]))
    return str(folder)


def test_transfer_and_ladder_from_python(tiny_folder, tmp_path, fast_umap):
    words = _words_folder(tmp_path)
    lm = cl.load_model(str(tiny_folder))
    result = cl.transfer(lm, words, shots=2, prompts_per_concept=4, k=2, out=tmp_path / "transfer", progress=False)
    assert (tmp_path / "transfer" / "transfer.csv").exists() and result["folder"] == tmp_path / "transfer"
    assert set(result["summary"]) >= {"best_transfer_layer", "best_td_layer"}
    table = cl.ladder([str(tiny_folder)], [words], tmp_path / "ladder", shots=[2], prompts_per_concept=8, k=3)
    ours = table[table.source == "ours"]
    assert list(ours.status) == ["done"] and ours.n_layers.iloc[0] == 3
