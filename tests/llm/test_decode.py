"""The one decoder: a batch decodes as its prompts alone (left padding), sharing the prompt prefix
changes nothing, early stopping keeps every verdict, a self-patch is bit-exact, edits land on the
role token of every row once per batch, and a recurrent model is refused a shared prefix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlens.activations.capture import hidden_state_point
from conceptlens.errors import ConceptLensError
from conceptlens.llm.decode import decode, edited_answers, first_line, greedy_answers, stop_token_ids
from conceptlens.llm.decode.edits import Touch, record
from conceptlens.llm.interventions.definitions import AddVector, ReplaceWith, heldout_prompts, query_positions
from conceptlens.prompts import Prompt
from word_tasks import scaled_tiny_lm, word_family


@pytest.fixture(scope="module")
def lm(tiny_folder):
    return scaled_tiny_lm(tiny_folder)


@pytest.fixture(scope="module")
def prompts():
    prompts, _ = heldout_prompts(word_family(), shots=2, n_per_concept=3, seed=11)
    return prompts


def kicks(lm, n: int, scale: float = 40.0) -> torch.Tensor:
    """One seeded vector per prompt `[n, d]`, large enough to change what the tiny model writes."""
    generator = torch.Generator().manual_seed(3)
    return scale * torch.randn(n, lm.layout.d_model, generator=generator)


def conditions(lm, prompts) -> dict:
    point = hidden_state_point(1, lm.n_layers)
    return {"none": None, "kick": {point: ReplaceWith(kicks(lm, len(prompts)))},
            "nudge": {hidden_state_point(2, lm.n_layers): AddVector(kicks(lm, 1, 5.0)[0])}}


def test_a_batch_decodes_as_its_prompts_alone(lm, prompts):
    encoded, _ = query_positions(lm, prompts)
    assert len({len(row) for row in encoded}) > 1  # the batch really is left-padded
    batched = greedy_answers(lm, prompts, batch_size=len(prompts), capture_layers=[1, 3], max_new_tokens=5)
    for i, prompt in enumerate(prompts):
        alone = greedy_answers(lm, [prompt], capture_layers=[1, 3], max_new_tokens=5)
        assert alone.completions[0] == batched.completions[i]
        torch.testing.assert_close(alone.activations[:, 0], batched.activations[:, i], rtol=1e-5, atol=1e-5)


def test_decoding_with_the_cache_writes_what_recomputing_every_step_writes(lm, prompts):
    """An independent reference: each prompt alone, the whole sequence through the model at every step."""
    result = greedy_answers(lm, prompts, batch_size=4, max_new_tokens=4)
    encoded, _ = query_positions(lm, prompts)
    stops = set(stop_token_ids(lm.tokenizer))
    with torch.no_grad():
        for ids, got in zip(encoded, result.completions):
            sequence, new = list(ids), []
            while len(new) < 4 and not (new and new[-1] in stops):
                new.append(int(lm.model(input_ids=torch.tensor([sequence])).logits[0, -1].argmax()))
                sequence.append(new[-1])
            assert got == first_line(lm.tokenizer.decode(new, skip_special_tokens=True))
    assert len(set(result.completions)) > 1


def test_sharing_the_prefix_and_recomputing_give_the_same_answers(lm, prompts):
    shared = decode(lm, prompts, conditions(lm, prompts), batch_size=4, max_new_tokens=5, share_prefix=True)
    again = decode(lm, prompts, conditions(lm, prompts), batch_size=4, max_new_tokens=5, share_prefix=False)
    for key in shared:
        assert shared[key].completions == again[key].completions, key
    assert shared["kick"].completions != shared["none"].completions  # the edit does change the answers


def test_a_per_prompt_vector_follows_its_prompt_in_every_batch(lm, prompts):
    vectors = kicks(lm, len(prompts))
    point = hidden_state_point(1, lm.n_layers)
    batched = greedy_answers(lm, prompts, batch_size=4, max_new_tokens=5, edits={point: ReplaceWith(vectors)})
    alone = [greedy_answers(lm, [p], max_new_tokens=5, edits={point: ReplaceWith(vectors[i])}).completions[0]
             for i, p in enumerate(prompts)]
    assert batched.completions == alone


def test_early_stopping_gives_the_verdicts_of_full_decoding(lm, prompts):
    written = edited_answers(lm, prompts, {"x": None}, max_new_tokens=4)["x"].completions
    answered = [Prompt(p.text, answer, p.spans, p.format) for p, answer in zip(prompts, written)]
    full = edited_answers(lm, answered, conditions(lm, answered), batch_size=4, max_new_tokens=4)
    early = edited_answers(lm, answered, conditions(lm, answered), batch_size=4, max_new_tokens=4, early_stop=True)
    assert full["none"].correct.all() and not full["kick"].correct.all()
    for key in full:
        np.testing.assert_array_equal(early[key].correct, full[key].correct, err_msg=key)
        assert all(whole.startswith(part) for part, whole in zip(early[key].completions, full[key].completions))
    assert any(len(part) < len(whole) for part, whole in zip(early["kick"].completions, full["kick"].completions))


@pytest.mark.parametrize("share_prefix", [True, False])
def test_a_self_patch_changes_nothing_bit_for_bit(lm, prompts, share_prefix):
    layer, later = 1, 3
    base = decode(lm, prompts, {"base": None}, batch_size=4, max_new_tokens=5, capture_layers=[layer, later],
                  share_prefix=share_prefix)["base"]
    patch = {hidden_state_point(layer, lm.n_layers): ReplaceWith(base.activations[0])}  # each prompt's own state
    same = decode(lm, prompts, {"self": patch}, batch_size=4, max_new_tokens=5, capture_layers=[layer, later],
                  share_prefix=share_prefix)["self"]
    assert same.completions == base.completions
    assert torch.equal(same.activations, base.activations)


def test_edits_touch_the_role_token_of_every_row_once_per_batch(lm, prompts):
    seen = []

    def spy(hidden, positions):  # a plain edit function: adds 1 at the given positions only
        edited = hidden.clone()
        rows = torch.arange(hidden.shape[0])
        edited[rows, positions] += 1.0
        seen.append((hidden.shape[1], positions.clone(), (edited != hidden).any(-1)))
        return edited

    point = hidden_state_point(2, lm.n_layers)
    kick = ReplaceWith(kicks(lm, len(prompts)))
    greedy_answers(lm, prompts, batch_size=4, max_new_tokens=3, edits={point: spy})
    encoded, _ = query_positions(lm, prompts)
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))  # batches hold the longest prompts first
    widths = [len(encoded[order[start]]) for start in range(0, len(order), 4)]
    assert [width for width, _, _ in seen] == widths  # one prefill per batch, never a decode step
    for width, positions, changed in seen:
        assert (positions == width - 1).all()  # the query separator is the last prompt token
        assert changed.sum().item() == len(positions) and changed[torch.arange(len(positions)), positions].all()
    touched = edited_answers(lm, prompts, {"kick": {point: kick}}, batch_size=4, max_new_tokens=3)["kick"].touched
    assert touched[point].calls == len(widths) and touched[point].rows == len(prompts)
    assert touched[point].positions.eq(0).all()  # with a shared prefix the edited token runs alone: position 0


def test_a_skipped_row_is_refused():
    touch, ledger = Touch(lambda hidden, positions: hidden), {}
    with pytest.raises(RuntimeError, match="touched"):
        record("c", {"blocks.0.resid_post": touch}, 4, ledger)  # never called
    touch(torch.zeros(3, 5, 2), torch.tensor([4, 4, 4]))
    with pytest.raises(RuntimeError, match="batch of 4"):
        record("c", {"blocks.0.resid_post": touch}, 4, ledger)
    record("c", {"blocks.0.resid_post": touch}, 3, ledger)
    assert (ledger["blocks.0.resid_post"].calls, ledger["blocks.0.resid_post"].rows) == (1, 3)


def test_budgets_and_bad_settings(lm, prompts):
    one = greedy_answers(lm, prompts, batch_size=4, max_new_tokens=1)
    encoded, _ = query_positions(lm, prompts)
    with torch.no_grad():  # the budget of one token: each prompt's own next-token argmax, nothing more
        first = [int(lm.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()) for ids in encoded]
    assert one.completions == [first_line(lm.tokenizer.decode([t], skip_special_tokens=True)) for t in first]
    with pytest.raises(ConceptLensError, match="role"):
        decode(lm, prompts, {"x": None}, role="query_input", share_prefix=True)
    with pytest.raises(ConceptLensError, match="batch_size"):
        edited_answers(lm, prompts, {"x": None}, batch_size=0)


def test_a_recurrent_model_is_refused_a_shared_prefix(tmp_path, prompts):
    import transformers as tf
    from tiny_tokenizer import byte_tokenizer

    torch.manual_seed(0)
    config = tf.MambaConfig(vocab_size=257, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2,
                            conv_kernel=4, pad_token_id=256, bos_token_id=256, eos_token_id=256)
    tf.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    byte_tokenizer().save_pretrained(tmp_path)
    mamba = scaled_tiny_lm(tmp_path)
    with pytest.raises(ConceptLensError, match="share_prefix"):
        decode(mamba, prompts[:2], {"x": None}, share_prefix=True)
    both = edited_answers(mamba, prompts, {"x": None}, batch_size=4, max_new_tokens=3, early_stop=True)["x"]
    assert both.completions == greedy_answers(mamba, prompts, batch_size=1, max_new_tokens=3).completions


def test_a_peft_wrapped_model_decodes_bit_for_bit_as_its_base(tiny_folder, prompts):
    """Finetuning evaluates through a peft wrapper, whose forward hides the model's own arguments
    (`position_ids`, `cache`): they are read from the base model, so a zero LoRA changes no bit."""
    peft = pytest.importorskip("peft")
    from conceptlens.models.loader import LoadedModel

    fresh = scaled_tiny_lm(tiny_folder)  # get_peft_model edits the model in place: not the shared fixture
    base = greedy_answers(fresh, prompts, batch_size=8, max_new_tokens=5, capture_layers=[1, 3])
    wrapper = peft.get_peft_model(fresh.model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    wrapped = greedy_answers(LoadedModel(fresh.name, wrapper, fresh.tokenizer, fresh.layout), prompts, batch_size=8,
                             max_new_tokens=5, capture_layers=[1, 3])
    assert wrapped.completions == base.completions
    assert torch.equal(wrapped.activations, base.activations)
