"""Task-vector transfer beside TD: the patch lands where it should and nowhere earlier, the zero-shot
prompt has no demonstrations, the summary's parting layers follow their thresholds, and
`llm transfer` (and `llm run`) work end to end on a tiny Llama and a tiny recurrent HF Mamba."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conceptlens.activations.capture import hidden_state_point
from conceptlens.hooks import Trace
from conceptlens.llm.interventions.definitions import ReplaceWith, edits_at, query_activations, query_positions
from conceptlens.llm.decode import can_still_match, edited_answers, greedy_answers, has_kv_cache
from conceptlens.llm.transfer.prompts import transfer_prompts
from conceptlens.llm.transfer.report import redraw, summarize
from conceptlens.llm.transfer.run import COLUMNS, conditions_for
from conceptlens.prompts import PromptFormat, token_roles
from tiny_tokenizer import byte_tokenizer
from word_tasks import WORDS, scaled_tiny_lm, word_family

CONCEPTS = ["upper", "reverse", "first"]


def _mamba_folder(folder):
    """A tiny random HF Mamba (byte tokenizer) saved as `save_pretrained` writes it."""
    import transformers as tf

    torch.manual_seed(0)
    config = tf.MambaConfig(vocab_size=257, hidden_size=32, state_size=8, num_hidden_layers=3, expand=2,
                            conv_kernel=4, pad_token_id=256, bos_token_id=256, eos_token_id=256)
    tf.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def mamba_folder(tmp_path_factory):
    return _mamba_folder(tmp_path_factory.mktemp("tiny-mamba"))


@pytest.fixture(scope="module", params=["llama", "mamba"])
def lm(request, tiny_folder, mamba_folder):
    return scaled_tiny_lm(tiny_folder if request.param == "llama" else mamba_folder)


@pytest.fixture(scope="module")
def built():
    train, test = word_family(null=False).split(0)
    return transfer_prompts(train, test, CONCEPTS, 4, shots=2, seed=0)


def test_the_recurrent_model_has_no_kv_cache(tiny_folder, mamba_folder):
    assert has_kv_cache(scaled_tiny_lm(tiny_folder)) and not has_kv_cache(scaled_tiny_lm(mamba_folder))


def test_batched_patched_answers_equal_one_prompt_at_a_time(lm, built):
    """Whichever path the model takes (shared prefix cache or recomputation), a batch of patched prompts
    decodes as each prompt alone (`greedy_answers`, no cache sharing); on HF Mamba the prefix-cache
    trick would fail this."""
    vectors = query_activations(lm, built.source, [1])[0] * 3  # [N, d]
    edit = edits_at(lm, 1, ReplaceWith(vectors))
    batched = edited_answers(lm, built.zero_shot, {"tv": edit, "zero": None}, batch_size=5, early_stop=True)
    alone = [greedy_answers(lm, [p], edits=edits_at(lm, 1, ReplaceWith(vectors[i]))).completions[0]
             for i, p in enumerate(built.zero_shot)]
    assert batched["tv"].touched[hidden_state_point(1, lm.n_layers)].rows == len(alone)
    # a hopeless row stops early (its text so far is a prefix of the full one); the verdicts are equal
    zero_alone = greedy_answers(lm, built.zero_shot, batch_size=1).completions
    for key, expected in (("tv", alone), ("zero", zero_alone)):
        got = batched[key].completions
        assert all(full.startswith(part) and (part or not full) for part, full in zip(got, expected)), key
        assert list(batched[key].correct) == [c == p.answer for c, p in zip(expected, built.zero_shot)]


@pytest.mark.parametrize("text, answer, alive", [("Par", "Paris", True), ("Pax", "Paris", False), ("  ", "Paris", True),
                                                  ("Paris ", "Paris", True), ("Buenos ", "Buenos Aires", True),
                                                  ("Paris\n", "Paris", False), ("Pa\ufffd", "Paris", True),
                                                  (" Parisx", "Paris", False)])
def test_a_row_stops_only_once_it_cannot_match(text, answer, alive):
    assert can_still_match(text, answer) is alive


def test_early_stopping_keeps_every_verdict_of_full_decoding(tiny_folder, built):
    """The layer sweep's decoder stops hopeless rows early; its verdicts must equal the full decoder's.
    The answers are what the model writes unpatched, so some verdicts are true."""
    from conceptlens.prompts import Prompt

    lm = scaled_tiny_lm(tiny_folder)
    written = edited_answers(lm, built.zero_shot, {"x": None}, max_new_tokens=3)["x"].completions
    prompts = [Prompt(p.text, answer, p.spans, p.format) for p, answer in zip(built.zero_shot, written)]
    vectors = query_activations(lm, built.source, [1, 2])
    old = edited_answers(lm, prompts, conditions_for(lm, [1, 2], vectors, built.labels), max_new_tokens=3,
                         batch_size=5)
    new = edited_answers(lm, prompts, conditions_for(lm, [1, 2], vectors, built.labels), max_new_tokens=3,
                         batch_size=5, early_stop=True)
    assert old[("zero_shot", "none", None)].correct.all()
    for key in old:
        np.testing.assert_array_equal(new[key].correct, old[key].correct, err_msg=str(key))
    assert any(0 < result.correct.mean() < 1 for result in new.values())


def test_last_layer_task_vector_reproduces_the_k_shot_first_answer_token(lm, built):
    """The zero-shot prompt patched at the last layer with its own k-shot prompt's query state must
    write that k-shot prompt's first answer token (through the run's own generation path)."""
    last = lm.n_layers
    own = query_activations(lm, built.icl, [last])[0]  # [N, d]
    icl = edited_answers(lm, built.icl, {"icl": None}, max_new_tokens=1, early_stop=True)["icl"].completions
    results = edited_answers(lm, built.zero_shot, {"patched": edits_at(lm, last, ReplaceWith(own)), "zero": None},
                             max_new_tokens=1, early_stop=True)
    assert results["patched"].completions == icl
    assert results["zero"].completions != icl  # the patch is what makes them agree
    # the same at the logits, prompt by prompt: the last-token logits are the k-shot prompt's own
    icl_ids, _ = query_positions(lm, built.icl)
    zero_ids, _ = query_positions(lm, built.zero_shot)
    with torch.no_grad():
        for i in range(len(built.icl)):
            expected = lm.model(input_ids=torch.tensor([icl_ids[i]])).logits[0, -1]
            with Trace(lm.layout, [], positions=torch.tensor([len(zero_ids[i]) - 1]),
                       edits=edits_at(lm, last, ReplaceWith(own[i]))):
                got = lm.model(input_ids=torch.tensor([zero_ids[i]])).logits[0, -1]
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layer", [1, 2])
def test_a_patch_changes_nothing_at_earlier_layers(lm, built, layer):
    ids, positions = query_positions(lm, built.zero_shot[:1])
    points = [hidden_state_point(l, lm.n_layers) for l in range(lm.n_layers + 1)]
    vector = torch.randn(lm.layout.d_model) * 5
    inputs = torch.tensor(ids)
    with torch.no_grad(), Trace(lm.layout, points) as clean:  # positions=None: every token
        lm.model(input_ids=inputs)
    with torch.no_grad(), Trace(lm.layout, points) as patched:
        with Trace(lm.layout, [], positions=torch.tensor(positions), edits=edits_at(lm, layer, ReplaceWith(vector))):
            lm.model(input_ids=inputs)
    for l, point in enumerate(points):
        if l < layer:
            torch.testing.assert_close(patched.captured[point], clean.captured[point], rtol=0, atol=0)
        elif l > layer:
            assert not torch.allclose(patched.captured[point][0, -1], clean.captured[point][0, -1])
    # earlier tokens see nothing at any layer (causal); only the last token moved
    for point in points:
        torch.testing.assert_close(patched.captured[point][0, :-1], clean.captured[point][0, :-1], rtol=0, atol=0)


def test_the_zero_shot_prompt_carries_no_demonstrations(built):
    tokenizer = byte_tokenizer()
    fmt = PromptFormat()
    train, test = word_family(null=False).split(0)
    for source, icl, zero, concept in zip(built.source, built.icl, built.zero_shot, built.labels):
        _, roles = token_roles(tokenizer, zero)
        assert set(roles) <= {"special", "query_input", "query_separator"} and "query_separator" in roles
        assert zero.text.count(fmt.newline) == 0 and zero.text.endswith(fmt.separator)
        assert icl.text.endswith(zero.text) and icl.text.count(fmt.newline) == 2  # 2 demonstrations
        assert source.text.rsplit(fmt.newline, 1)[0] == icl.text.rsplit(fmt.newline, 1)[0]  # the same demos
        query = zero.text[:-len(fmt.separator)]
        assert query in {e.input for e in test.concepts[concept]}
        dummy = source.text.rsplit(fmt.newline, 1)[1][:-len(fmt.separator)]
        assert dummy in {e.input for e in train.concepts[concept]}  # the task vector's query is a train input


def _frame(transfer: dict, zero: dict, icl: dict) -> pd.DataFrame:
    rows = [{"layer": None, "concept": c, "variant": "none", "condition": "zero_shot", "accuracy": a} for c, a in zero.items()]
    rows += [{"layer": None, "concept": c, "variant": "none", "condition": "icl", "accuracy": a} for c, a in icl.items()]
    rows += [{"layer": l, "concept": c, "variant": "per_query", "condition": "task_vector", "accuracy": a}
             for (l, c), a in transfer.items()]
    frame = pd.DataFrame(rows).assign(model="m", family="f", shots=4, n=10)[COLUMNS]
    frame["layer"] = frame["layer"].astype("Int64")
    return frame


def test_the_summary_finds_where_decodability_and_use_part():
    concepts = ["a", "b"]
    td = pd.DataFrame([{"layer": l, "concept": c, "td": v} for l, v in ((0, 0.5), (1, 0.55), (2, 1.0), (3, 0.9))
                       for c in concepts])
    transfer = {(0, "a"): 0.1, (0, "b"): 0.1, (1, "a"): 0.6, (1, "b"): 0.5, (2, "a"): 0.12, (2, "b"): 0.1,
                (3, "a"): 0.8, (3, "b"): 0.7}
    summary = summarize(_frame(transfer, {"a": 0.1, "b": 0.1}, {"a": 0.9, "b": 0.1}), td)
    main = summary["variants"]["per_query"]
    assert summary["best_td_layer"] == 2 and main["best_transfer_layer"] == 3
    assert main["decodable_not_usable"] == [2]  # TD 20/20 above chance, transfer 0.11 inside zero-shot's interval
    assert main["usable_not_decodable"] == [1]  # transfer 11/20 above zero-shot 2/20, TD 11/20 reaches 0.5
    assert main["recovery_at_best_transfer_layer"]["a"] == pytest.approx(0.875)
    assert main["recovery_at_best_transfer_layer"]["b"] is None and "b: ICL accuracy equals" in main["recovery_notes"][0]
    across = main["correlation"]["across_layers"]
    assert across["n"] == 4 and across["low"] <= across["r"] <= across["high"]


@pytest.fixture(scope="module")
def family_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("words")
    family = word_family(WORDS + ("dog", "tree", "cloud", "stone", "paper", "music"), null=False)
    for concept, examples in family.concepts.items():
        (folder / f"{concept}.json").write_text(json.dumps([{"input": e.input, "output": e.output} for e in examples]))
    return folder


def _check_transfer_run(out, n_layers: int, concepts: int = 3, per_concept: int = 4):
    for name in ("transfer.csv", "transfer.parquet", "td.csv", "td.parquet", "summary.json", "transfer.png"):
        assert (out / name).stat().st_size > 0, name
    frame = pd.read_csv(out / "transfer.csv")
    assert list(frame.columns) == COLUMNS
    assert len(frame) == concepts * (2 + 2 * (n_layers + 1))  # baselines + 2 variants x every layer
    assert set(frame.condition) == {"zero_shot", "icl", "task_vector"} and (frame.n == per_concept).all()
    assert set(frame[frame.condition == "task_vector"].variant) == {"per_query", "mean"}
    td = pd.read_csv(out / "td.csv")
    assert list(td.columns) == ["layer", "concept", "td"] and len(td) == concepts * (n_layers + 1)
    summary = json.loads((out / "summary.json").read_text())
    for key in ("best_transfer_layer", "best_td_layer", "transfer_at_best_td_layer", "variants", "thresholds"):
        assert key in summary
    assert set(summary["variants"]["per_query"]["correlation"]) == {
        "across_layers", "across_concepts_at_best_td_layer", "across_layer_concept_cells"}
    return summary


def test_llm_transfer_end_to_end(cli, tiny_folder, family_folder, tmp_path):
    out = tmp_path / "run"
    code, output = cli("llm", "transfer", "--model", tiny_folder, "--family", family_folder, "--shots", "2",
                       "--prompts-per-concept", "4", "--k", "2", "--out", out)
    assert code == 0, output
    assert "best transfer layer" in output
    summary = _check_transfer_run(out, n_layers=3)
    assert summary["generation"] == "shared KV-cache prefix"
    (out / "transfer.png").unlink()
    redraw(out)  # the figure again, from the tables and summary.json alone
    assert (out / "transfer.png").stat().st_size > 0
    assert json.loads((out / ".conceptlens-run.json").read_text())["kind"] == "transfer"
    code, output = cli("llm", "transfer", "--model", tiny_folder, "--family", family_folder, "--shots", "3",
                       "--prompts-per-concept", "4", "--k", "2", "--out", out)
    assert code == 2 and "differs in" in output  # another spec into the same folder is refused


def test_bad_layer_is_refused_before_the_model_runs(cli, tiny_folder, family_folder, tmp_path):
    code, output = cli("llm", "transfer", "--model", tiny_folder, "--family", family_folder, "--layers", "9",
                       "--out", tmp_path / "run")
    assert code == 2 and "layer 9 does not exist" in output and not (tmp_path / "run").exists()


def test_encoding_study_and_transfer_run_on_a_recurrent_mamba(cli, mamba_folder, family_folder, tmp_path):
    code, output = cli("llm", "run", "--model", mamba_folder, "--family", family_folder, "--shots", "1,2",
                       "--prompts-per-concept", "6", "--k", "2", "--out", tmp_path / "study")
    assert code == 0, output
    assert json.loads((tmp_path / "study" / "summary.json").read_text())["n_layers"] == 3
    code, output = cli("llm", "transfer", "--model", mamba_folder, "--family", family_folder, "--shots", "2",
                       "--prompts-per-concept", "4", "--k", "2", "--out", tmp_path / "transfer")
    assert code == 0, output
    summary = _check_transfer_run(tmp_path / "transfer", n_layers=3)
    assert summary["generation"] == "full recomputation (no KV cache)"
