"""Layer-selective finetuning: layer ranges, which weights move, answer-only loss, adapters, resume."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch

from conceptlens.errors import ConceptLensError, NotComputable
from conceptlens.hooks import layout_for
from conceptlens.llm.finetune.checkpoint import CHECKPOINT, checkpoint_step
from conceptlens.llm.finetune.data import IGNORE, batch_schedule, collate, encode_example, training_prompts
from conceptlens.llm.finetune.layers import changed_blocks, lora_target_modules, parse_layer_range
from conceptlens.llm.finetune.train import (TrainingConfig, answer_loss, load_finetuned, prepare_model, save_finetuned,
                                            train_model, trainable_state)
from conceptlens.models.loader import LoadedModel
from conceptlens.prompts import PromptFormat
from conceptlens.tasks.family import NULL, Example, TaskFamily

from tiny_tokenizer import byte_tokenizer  # tests/shared


# ---------------------------------------------------------------- fixtures

def toy_family(n: int = 40, seed: int = 0) -> TaskFamily:
    """Three-bit strings: copy them, flip them, or (Null) answer random bits."""
    rng = random.Random(seed)
    inputs = ["".join(rng.choice("01") for _ in range(3)) for _ in range(n)]
    flip = {"0": "1", "1": "0"}
    return TaskFamily("toy", {
        "copy": [Example(x, x) for x in inputs],
        "flip": [Example(x, "".join(flip[c] for c in x)) for x in inputs],
        NULL: [Example(x, "".join(rng.choice("01") for _ in range(3))) for x in inputs],
    }, {"copy": "Copy the bits.", "flip": "Flip the bits.", NULL: "Answer random bits."})


def tiny_lm(seed: int = 0) -> LoadedModel:
    """A 3-block random Llama over a byte tokenizer (vocabulary 257)."""
    import transformers as tf

    torch.manual_seed(seed)
    config = tf.LlamaConfig(vocab_size=257, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                            pad_token_id=256, bos_token_id=256, eos_token_id=256)
    model = tf.AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    tokenizer = byte_tokenizer()
    tokenizer.padding_side = "left"
    return LoadedModel("tiny-llama", model, tokenizer, layout_for(model))


def toy_examples(lm: LoadedModel, n: int = 24, shots: int = 2):
    prompts = training_prompts(toy_family(), n, shots, seed=0)
    return [encode_example(lm.tokenizer, p, c) for c, p in prompts]


def base_state(lm: LoadedModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in lm.model.state_dict().items()}


# ---------------------------------------------------------------- layer ranges

@pytest.mark.parametrize("spec, expected", [
    ("first:10", list(range(10))), ("last:10", list(range(20, 30))), ("5-12", list(range(5, 13))),
    ("7", [7]), (" First:3 ", [0, 1, 2]), ("last:30", list(range(30))), ("0-29", list(range(30))),
])
def test_layer_ranges(spec, expected):
    assert parse_layer_range(spec, 30) == expected


@pytest.mark.parametrize("spec", ["first:0", "last:31", "12-5", "5-30", "30", "abc", "first:", "first:-2", "1-2-3", ""])
def test_bad_layer_ranges(spec):
    with pytest.raises(ConceptLensError):
        parse_layer_range(spec, 30)


@pytest.mark.parametrize("n_layers, peak, before, after", [
    (32, 15, range(5, 15), range(15, 25)),  # Llama-3.1-8B (POS peak 15): 10 blocks each side
    (32, 13, range(3, 13), range(13, 23)),  # Llama-3.1-8B bitwise
    (30, 21, range(12, 21), range(21, 30)),  # SmolLM2-135M: 9 blocks; after-peak is exactly the rest
    (30, 5, range(0, 5), range(5, 14)),  # too few blocks before the peak: all of them
    (18, 9, range(4, 9), range(9, 14)),  # Gemma-3-270M: 5 blocks (10/32 of 18 = 5.6, rounded down)
    (18, 16, range(11, 16), range(16, 18)),  # too few after the peak: the rest
    (18, 1, [0], range(1, 6)),
])
def test_peak_groups(n_layers, peak, before, after):
    assert parse_layer_range("before-peak", n_layers, peak) == list(before)
    assert parse_layer_range(" After-Peak ", n_layers, peak) == list(after)
    # block b writes hidden-state layer b + 1: before-peak ends with the block that writes the peak,
    # after-peak starts with the block that reads it, so it cannot change TD there
    assert list(before)[-1] + 1 == peak and list(after)[0] == peak


@pytest.mark.parametrize("spec, peak, match", [("before-peak", 0, "layer 0"), ("after-peak", 30, "last layer"),
                                               ("before-peak", None, "TD peak"), ("after-peak", 31, "outside")])
def test_peak_groups_that_cannot_exist(spec, peak, match):
    with pytest.raises(ConceptLensError, match=match) as caught:
        parse_layer_range(spec, 30, peak)
    # a group that does not exist for this model is NotComputable (a reproduce stage skips it); a bad peak is not
    assert isinstance(caught.value, NotComputable) == (peak in (0, 30))


@pytest.mark.parametrize("spec, n_layers, expected", [
    ("first:33%", 30, range(0, 10)), ("last:33%", 30, range(20, 30)), ("first:33%", 18, range(0, 6)),
    ("last:31%", 32, range(22, 32)), ("first:100%", 18, range(18)),
])
def test_fraction_ranges(spec, n_layers, expected):
    assert parse_layer_range(spec, n_layers) == list(expected)


@pytest.mark.parametrize("spec", ["first:0%", "first:101%", "last:1%"])
def test_bad_fraction_ranges(spec):
    with pytest.raises(ConceptLensError):
        parse_layer_range(spec, 30)


def test_lora_targets_are_the_linear_maps_of_the_chosen_blocks():
    lm = tiny_lm()
    names = lora_target_modules(lm.model, lm.layout, [1])
    assert names and all(n.startswith("model.layers.1.") for n in names)
    assert {n.rsplit(".", 1)[1] for n in names} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                    "down_proj"}


# ---------------------------------------------------------------- which weights move

@pytest.mark.parametrize("method, layers", [("lora", [0]), ("lora", [2]), ("full", [1]), ("full", [0, 2])])
def test_only_selected_blocks_change(tmp_path, method, layers):
    lm = tiny_lm()
    before = base_state(lm)
    config = TrainingConfig(layers=layers, method=method, rank=4, alpha=8, dropout=0.0, lr=1e-2, batch_size=4)
    model = prepare_model(lm, config)
    train_model(model, toy_examples(lm, 12), config, tmp_path, lm.tokenizer.pad_token_id, checkpoint_every=100)
    if method == "lora":
        model = model.merge_and_unload()
    after = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert set(after) == set(before)
    assert changed_blocks(before, after, lm.layout) == set(layers)


# ---------------------------------------------------------------- answer-only loss

@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from transformers import AutoTokenizer

    from conceptlens.models.embedded import embedded_folder

    tokenizer = AutoTokenizer.from_pretrained(embedded_folder("smollm2-135m"))
    tokenizer.padding_side = "left"
    return tokenizer


def test_labels_cover_exactly_the_answer(smollm2_tokenizer):
    fmt = PromptFormat()
    family = TaskFamily("bits", {"AND": [Example("10110 01100", "00100"), Example("11111 00001", "00001"),
                                         Example("01010 11110", "01010"), Example("11001 10011", "10001")]})
    prompt = fmt.build(family.concepts["AND"][:3], family.concepts["AND"][3])
    example = encode_example(smollm2_tokenizer, prompt)
    answer = [t for t, l in zip(example.input_ids, example.labels) if l != IGNORE]
    context = [t for t, l in zip(example.input_ids, example.labels) if l == IGNORE]
    assert smollm2_tokenizer.decode(answer) == prompt.completion == " 10001\n"
    assert smollm2_tokenizer.decode(context, skip_special_tokens=True) == prompt.text
    labelled = [i for i, l in enumerate(example.labels) if l != IGNORE]
    assert labelled == list(range(len(example.labels) - len(answer), len(example.labels)))  # a suffix
    assert [example.labels[i] for i in labelled] == answer


def test_collate_pads_labels_and_loss_counts_only_answers():
    lm = tiny_lm()
    examples = toy_examples(lm, 6)
    batch = collate(examples[:3], lm.tokenizer.pad_token_id)
    assert (batch["labels"] != IGNORE).sum().item() == sum(sum(l != IGNORE for l in e.labels) for e in examples[:3])
    assert ((batch["labels"] != IGNORE) <= batch["attention_mask"].bool()).all()
    with torch.no_grad():
        out = lm.model(**batch)
        logits = out.logits[:, :-1]
        targets = batch["labels"][:, 1:]
        keep = targets != IGNORE
        manual = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
        # changing a prompt token's label to a real id must change the loss (the mask is what HF uses)
        unmasked = batch["labels"].clone()
        unmasked[batch["attention_mask"].bool()] = batch["input_ids"][batch["attention_mask"].bool()]
        out_all = lm.model(**{**batch, "labels": unmasked})
        fast = answer_loss(lm.model, batch)
    assert torch.allclose(out.loss, manual, atol=1e-6)
    assert torch.allclose(fast, manual, atol=1e-6)  # the loss training uses (answer-column logits only)
    assert not torch.allclose(out.loss, out_all.loss)


def test_training_prompts_leave_out_null_and_balance_concepts():
    pairs = training_prompts(toy_family(), 11, shots=2, seed=3)
    concepts = [c for c, _ in pairs]
    assert NULL not in concepts and len(pairs) == 11
    assert abs(concepts.count("copy") - concepts.count("flip")) <= 1
    with pytest.raises(ConceptLensError):
        training_prompts(toy_family(), 1, shots=2, seed=0)


def test_batch_schedule_covers_every_example_each_epoch():
    steps = batch_schedule(10, epochs=2, batch_size=4, seed=0)
    assert [len(s) for s in steps] == [4, 4, 2, 4, 4, 2]
    assert sorted(sum(steps[:3], [])) == list(range(10)) == sorted(sum(steps[3:], []))
    assert steps[:3] != steps[3:]  # reshuffled


# ---------------------------------------------------------------- adapter save / reload

@pytest.mark.parametrize("method", ["lora", "full"])
def test_saved_result_reloads_to_identical_logits(tmp_path, method):
    lm = tiny_lm()
    pristine = base_state(lm)
    config = TrainingConfig(layers=[1, 2], method=method, rank=4, alpha=8, dropout=0.1, lr=1e-2, batch_size=4)
    model = prepare_model(lm, config)
    examples = toy_examples(lm, 8)
    train_model(model, examples, config, tmp_path, lm.tokenizer.pad_token_id, checkpoint_every=100)
    batch = collate(examples, lm.tokenizer.pad_token_id)
    batch.pop("labels")
    with torch.no_grad():
        expected = model(**batch).logits
    saved = save_finetuned(model, tmp_path, config)
    assert saved.exists() and saved.suffix == ".safetensors"
    if method == "lora":
        assert saved.name == "adapter_model.safetensors"
    fresh = tiny_lm(seed=123)
    fresh.model.load_state_dict(pristine)
    reloaded = load_finetuned(fresh, tmp_path, method)
    with torch.no_grad():
        got = reloaded(**batch).logits
    assert torch.equal(got, expected) or torch.allclose(got, expected, atol=1e-6)
    with torch.no_grad():
        plain = tiny_lm().model(**batch).logits
    assert not torch.allclose(plain, expected, atol=1e-4)  # the finetuning did change the outputs


# ---------------------------------------------------------------- resume

class Killed(Exception):
    pass


@pytest.mark.parametrize("method", ["lora", "full"])
def test_resume_after_kill_matches_uninterrupted_run(tmp_path, method):
    config = TrainingConfig(layers=[0, 1], method=method, rank=4, alpha=8, dropout=0.2, lr=5e-3, batch_size=3,
                            epochs=2)
    lm = tiny_lm()
    pristine = base_state(lm)
    examples = toy_examples(lm, 9)  # 3 steps an epoch, 6 in all
    model = prepare_model(lm, config)
    full_log = train_model(model, examples, config, tmp_path / "a", lm.tokenizer.pad_token_id, checkpoint_every=2)
    expected = trainable_state(model)

    def kill_at_5(step, loss):
        if step == 5:
            raise Killed

    lm_b = tiny_lm()
    lm_b.model.load_state_dict(pristine)
    with pytest.raises(Killed):
        train_model(prepare_model(lm_b, config), examples, config, tmp_path / "b", lm_b.tokenizer.pad_token_id,
                    checkpoint_every=2, on_step=kill_at_5)
    assert checkpoint_step(tmp_path / "b") == 4
    lm_c = tiny_lm(seed=7)
    lm_c.model.load_state_dict(pristine)
    model_c = prepare_model(lm_c, config)
    log = train_model(model_c, examples, config, tmp_path / "b", lm_c.tokenizer.pad_token_id, checkpoint_every=2,
                      resume=True)
    got = trainable_state(model_c)
    assert set(got) == set(expected)
    for name in expected:
        assert torch.equal(got[name], expected[name]), name
    assert [r["step"] for r in log] == list(range(1, 7))
    assert [r["loss"] for r in log] == [r["loss"] for r in full_log]


def test_corrupt_checkpoint_is_refused(tmp_path):
    config = TrainingConfig(layers=[0], rank=2, alpha=4, dropout=0.0, batch_size=4)
    lm = tiny_lm()
    examples = toy_examples(lm, 8)
    train_model(prepare_model(lm, config), examples, config, tmp_path, lm.tokenizer.pad_token_id, checkpoint_every=1)
    path = tmp_path / CHECKPOINT
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    lm2 = tiny_lm()
    with pytest.raises(ConceptLensError, match="corrupt"):
        train_model(prepare_model(lm2, config), examples, config, tmp_path, lm2.tokenizer.pad_token_id, resume=True)


def test_resume_refuses_other_layers(tmp_path):
    lm = tiny_lm()
    examples = toy_examples(lm, 8)
    config = TrainingConfig(layers=[0], rank=2, alpha=4, dropout=0.0, batch_size=4)
    train_model(prepare_model(lm, config), examples, config, tmp_path, lm.tokenizer.pad_token_id, checkpoint_every=1)
    lm2 = tiny_lm()
    other = dataclasses.replace(config, layers=[2])
    with pytest.raises(ConceptLensError, match="other trainable parameters"):
        train_model(prepare_model(lm2, other), examples, other, tmp_path, lm2.tokenizer.pad_token_id, resume=True)


# ---------------------------------------------------------------- the whole command

def test_finetune_end_to_end_restores_model_and_resumes(tmp_path):
    from conceptlens.llm.compare import compare_table
    from conceptlens.llm.finetune.driver import finetune

    lm = tiny_lm()
    pristine = base_state(lm)
    train, test = toy_family(60).split(0)
    options = dict(train_samples=12, shots=2, prompts_per_concept=22, batch_size=4, lr=1e-2, rank=4, evaluations=1,
                   eval_prompts=2)
    run = tmp_path / "last"
    summary = finetune(lm, "toy", train, test, layers="last:1", out=run, **options)
    for name in ("config.json", "train_log.jsonl", "adapter/adapter_model.safetensors", "before/decodability.csv",
                 "after/accuracy.csv", "td_before_after.png", "summary.json"):
        assert (run / name).exists(), name
    assert not (run / CHECKPOINT).exists()  # superseded by the adapter
    assert summary["layers"] == [2] and summary["training"]["steps"] == 3
    assert {"td_mean", "acc_mean"} <= set(summary["after"])
    # the caller's model is pretrained again: same weights, no adapter modules, all trainable
    assert all(torch.equal(pristine[k], v) for k, v in lm.model.state_dict().items())
    assert set(lm.model.state_dict()) == set(pristine)
    assert all(p.requires_grad for p in lm.model.parameters())

    with pytest.raises(ConceptLensError, match="--resume"):
        finetune(lm, "toy", train, test, layers="last:1", out=run, **options)
    with pytest.raises(ConceptLensError, match="other settings"):
        finetune(lm, "toy", train, test, layers="first:1", out=run, resume=True, **options)
    log = (run / "train_log.jsonl").read_text()
    again = finetune(lm, "toy", train, test, layers="last:1", out=run, resume=True, **options)
    assert (run / "train_log.jsonl").read_text() == log and again["after"] == summary["after"]

    first = finetune(lm, "toy", train, test, layers="first:1", out=tmp_path / "first", before_run=run / "before",
                     **options)
    assert first["before_reused_from"] and first["before"] == summary["before"]
    table, _ = compare_table([run, tmp_path / "first"], shots=2)
    assert list(table["variant"]) == ["pretrained", "first", "last"]


@pytest.mark.parametrize("method", ["lora", "full"])
def test_adapted_puts_the_callers_model_back(tmp_path, method):
    from conceptlens.llm.finetune.driver import adapted

    lm = tiny_lm()
    pristine = base_state(lm)
    lm.model.model.embed_tokens.weight.requires_grad_(False)  # the caller's own flags survive too
    config = TrainingConfig(layers=[1], method=method, rank=4, alpha=8, dropout=0.0, lr=1e-2, batch_size=4)
    with adapted(lm, config) as model:
        train_model(model, toy_examples(lm, 8), config, tmp_path, lm.tokenizer.pad_token_id, checkpoint_every=100)
        save_finetuned(model, tmp_path, config)
    assert all(torch.equal(pristine[k], v) for k, v in lm.model.state_dict().items())
    batch = collate(toy_examples(lm, 4), lm.tokenizer.pad_token_id)
    batch.pop("labels")
    with torch.no_grad():
        plain = lm.model(**batch).logits
        with adapted(lm, config, run=tmp_path) as model:  # reloading the result changes the outputs again
            assert not torch.allclose(model(**batch).logits, plain, atol=1e-5)
        assert torch.equal(lm.model(**batch).logits, plain)
    assert set(lm.model.state_dict()) == set(pristine)
    assert all(torch.equal(pristine[k], v) for k, v in lm.model.state_dict().items())
    assert not lm.model.model.embed_tokens.weight.requires_grad
    assert all(p.requires_grad for n, p in lm.model.named_parameters() if "embed_tokens" not in n)


def test_peak_groups_end_to_end_hang_on_the_pretrained_peak(tmp_path):
    """before-peak / after-peak are resolved from the "before" study's TD peak (at the run's shots), recorded
    in config.json and summary.json, and labelled as such beside the paper's first-10 / last-10 rows."""
    from conceptlens.llm.compare import best_layer, compare_table, read_study
    from conceptlens.llm.finetune.driver import finetune

    lm = tiny_lm()
    train, test = toy_family(60).split(0)
    options = dict(train_samples=12, shots=2, prompts_per_concept=12, batch_size=4, lr=1e-2, rank=4, evaluations=0,
                   k=10)  # 12 prompts per concept: the held-out layer choice is skipped, TD is not
    runs, peak = [], None
    for spec in ("before-peak", "after-peak"):
        run = tmp_path / spec
        before = {"before_run": runs[0] / "before"} if runs else {}
        try:
            summary = finetune(lm, "toy", train, test, layers=spec, out=run, **options, **before)
        except ConceptLensError as exc:  # the tiny model's peak may sit at the embeddings or the last layer
            assert peak in (0, lm.n_layers) and "no block" in str(exc)
            continue
        peak = best_layer(read_study(run / "before", 2)[0])
        assert summary["peak_layer"] == peak and summary["layers"] == parse_layer_range(spec, lm.n_layers, peak)
        assert json.loads((run / "config.json").read_text())["layers"] == summary["layers"]
        assert summary["before"]["td_mean"] is not None and "format" in summary
        runs.append(run)
    assert runs, "neither group could be trained"
    table, _ = compare_table(runs, shots=2)
    variants = [v for v in table["variant"] if v != "pretrained"]
    assert variants == [spec for spec in ("before-peak", "after-peak") if (tmp_path / spec / "summary.json").exists()]
    paper_rows = dict(zip(table["variant"], table["paper_row"]))
    assert all(paper_rows[v] is None for v in variants)  # the toy family has no paper numbers


def _study_folder(folder, td: float, acc: float, model: str = "m") -> None:
    import pandas as pd

    folder.mkdir(parents=True)
    concepts = ["AND", "OR", NULL]
    pd.DataFrame([{"model": model, "family": "bitwise", "shots": 4, "layer": layer, "concept": c,
                   "td": td if layer == 2 else 0.1, "seed": 0} for c in concepts for layer in range(4)]
                 ).to_csv(folder / "decodability.csv", index=False)
    pd.DataFrame([{"model": model, "family": "bitwise", "shots": 4, "concept": c, "accuracy": acc, "n": 20, "seed": 0}
                  for c in concepts]).to_csv(folder / "accuracy.csv", index=False)
    (folder / "summary.json").write_text(json.dumps({"model": model, "family": "bitwise", "best_layer": 2}))


def test_compare_labels_peak_groups_beside_the_papers_first_and_last_rows(tmp_path):
    from conceptlens.llm.compare import compare_table, markdown_table

    runs = []
    for spec, layers, acc in (("before-peak", [0, 1], 0.6), ("after-peak", [2], 0.4)):
        run = tmp_path / spec
        _study_folder(run / "before", 0.5, 0.2)
        _study_folder(run / "after", 0.7, acc, model="m+lora")
        (run / "config.json").write_text(json.dumps({"kind": "finetune", "family": "bitwise", "model": "m",
                                                     "layers_spec": spec, "layers": layers, "n_layers": 3,
                                                     "method": "lora", "peak_layer": 2}))
        runs.append(run)
    table, _ = compare_table(runs, shots=4)
    row = table.set_index("variant")
    assert list(table["variant"]) == ["pretrained", "before-peak", "after-peak"]
    # after-peak ends at the last block, which once made it "last"; before-peak starts at block 0 ("first")
    assert row.loc["before-peak", "label"] == "LoRA before-peak: blocks 0-1 (2 of 3, TD peak layer 2)"
    assert row.loc["after-peak", "label"] == "LoRA after-peak: blocks 2-2 (1 of 3, TD peak layer 2)"
    assert row.loc["before-peak", "paper_row"] == "LoRA first 10 layers" and row.loc["before-peak", "paper_td_mean"] == 0.85
    assert row.loc["after-peak", "paper_row"] == "LoRA last 10 layers" and row.loc["after-peak", "paper_acc_mean"] == 66.3
    text = markdown_table(table)
    assert "| LoRA before-peak: blocks 0-1" in text and "| LoRA first 10 layers |" in text


def test_cli_finetune_after_peak_into_a_fresh_folder(tiny_folder, tmp_path, monkeypatch):
    """The command itself (its run record and lock are in the folder before the run starts)."""
    import sys

    from conceptlens.cli.main import main

    family = tmp_path / "toy"
    family.mkdir()
    for concept, examples in toy_family(60).concepts.items():
        if concept != NULL:
            (family / f"{concept}.json").write_text(json.dumps([{"input": e.input, "output": e.output}
                                                                for e in examples]))
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["conceptlens", "llm", "finetune", "--model", str(tiny_folder), "--family",
                                      str(family), "--layers", "after-peak", "--train-samples", "4", "--shots", "1",
                                      "--prompts-per-concept", "11", "--evaluations", "0", "--batch-size", "4",
                                      "--out", str(out)])
    with pytest.raises(SystemExit) as info:
        main()
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    if info.value.code == 0:
        assert summary["layers"] == parse_layer_range("after-peak", summary["n_layers"], summary["peak_layer"])
        assert summary["format"]["separator"] == " -> "  # the byte tokenizer: the answer's space moved
    else:  # a peak at the last layer leaves no block after it
        assert info.value.code == 2 and not summary
