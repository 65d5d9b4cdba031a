"""Capture and interventions on a model split over devices by a device map (accelerate hooks).

Why there is no split across several CPU "devices": PyTorch has one CPU device. `cpu:1` parses,
but a tensor placed there lands on `cpu` (its index is dropped), and accelerate's device maps
name GPUs by index, `"mps"`, `"cpu"` and `"disk"` only. So on a CPU-only machine the real split
is RAM versus disk: layers mapped to `"disk"` stay on the `meta` device and accelerate's
`AlignDevicesHook` materialises their weights around each forward call, and moves the hidden
states to each module's execution device -- the same hook path a multi-GPU split takes. These
tests split a tiny random Llama between `"cpu"` and `"disk"`, through `load_model(device_map=...)`
(transformers) and through accelerate's `infer_auto_device_map` (a `max_memory` budget) +
`dispatch_model`, and check that captures and `Trace` edits equal those of the unsplit model.
With a GPU present, one more test splits the model between `cuda:0` and `cpu`.
"""

from __future__ import annotations

import pytest
import torch

from conceptlens.activations.capture import capture_activations
from conceptlens.hooks import Trace
from conceptlens.models import load_model

N_LAYERS = 4
PROMPTS = [[2, 5, 9, 11, 3], [7, 8, 2], [4, 4, 6, 12, 13, 14, 2], [10, 3]]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A random Llama (hidden 32, 4 blocks) and a word-level tokenizer saved as an HF folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_llama")
    vocab = {"<pad>": 0, "<eos>": 1, **{f"w{i}": i + 2 for i in range(62)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>").save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=N_LAYERS,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def reference(tiny_folder):
    return load_model(str(tiny_folder))


def _capture(lm) -> tuple[list[int], torch.Tensor]:
    return capture_activations(lm.model, lm.layout, PROMPTS, layers=None, batch_size=3, pad_id=0)


def _logits_with_edit(lm, point: str, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits `[batch, vocab]` at the last token with `point` at `positions` set to a fixed vector."""
    from conceptlens.activations.capture import left_pad

    ids, mask, position_ids = left_pad(PROMPTS, 0)
    vector = torch.linspace(-2.0, 2.0, lm.layout.d_model)

    def replace(hidden: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        edited = hidden.clone()
        edited[torch.arange(hidden.shape[0], device=hidden.device), pos.to(hidden.device)] = vector.to(hidden)
        return edited

    device = lm.model.get_input_embeddings().weight.device
    device = torch.device("cpu") if device.type == "meta" else device
    inputs = dict(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=position_ids.to(device))
    with torch.no_grad():
        plain = lm.model(**inputs).logits[:, -1].float().cpu()
        with Trace(lm.layout, [point], positions=positions, edits={point: replace}) as trace:
            edited = lm.model(**inputs).logits[:, -1].float().cpu()
    assert trace.captured[point].shape == (len(PROMPTS), lm.layout.d_model)
    return plain, edited


def _hooked(module: torch.nn.Module) -> bool:
    from accelerate.hooks import AlignDevicesHook, SequentialHook

    hook = getattr(module, "_hf_hook", None)
    hooks = hook.hooks if isinstance(hook, SequentialHook) else [hook]
    return any(isinstance(h, AlignDevicesHook) for h in hooks)


def _disk_map(offloaded: set[str]) -> dict[str, str]:
    names = ["model.embed_tokens", *(f"model.layers.{i}" for i in range(N_LAYERS)), "model.norm",
             "model.rotary_emb", "lm_head"]
    return {name: "disk" if name in offloaded else "cpu" for name in names}


def _assert_same_as_reference(lm, reference) -> None:
    layers, acts = _capture(lm)
    ref_layers, ref_acts = _capture(reference)
    assert layers == ref_layers == list(range(N_LAYERS + 1))
    torch.testing.assert_close(acts, ref_acts, rtol=1e-5, atol=1e-5)
    positions = torch.tensor([6, 6, 6, 6])  # last token of every left-padded row
    for point in ("blocks.1.resid_post", "blocks.2.resid_pre", "blocks.2.mlp_out"):
        plain, edited = _logits_with_edit(lm, point, positions)
        ref_plain, ref_edited = _logits_with_edit(reference, point, positions)
        torch.testing.assert_close(plain, ref_plain, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(edited, ref_edited, rtol=1e-5, atol=1e-5)
        assert (edited - plain).abs().max() > 1e-3, f"the edit at {point} changed nothing"


def test_load_model_with_disk_offloaded_layers_matches_unsplit(tiny_folder, reference):
    lm = load_model(str(tiny_folder), device_map=_disk_map({"model.layers.1", "model.layers.2"}))
    block = lm.layout.blocks[2]
    assert _hooked(block), "accelerate did not attach an AlignDevicesHook to the offloaded block"
    assert block.mlp.down_proj.weight.device.type == "meta", "the offloaded block should hold no weights"
    _assert_same_as_reference(lm, reference)
    # a capture that stops inside an offloaded block must leave the model usable and exact
    capture_activations(lm.model, lm.layout, PROMPTS, layers=[2], component="mlp_out", batch_size=4)
    _assert_same_as_reference(lm, reference)


def test_dispatch_model_from_max_memory_map_matches_unsplit(tiny_folder, reference, tmp_path):
    from accelerate import dispatch_model, infer_auto_device_map
    from accelerate.utils import compute_module_sizes

    lm = load_model(str(tiny_folder))
    sizes = compute_module_sizes(lm.model)
    # room in "RAM" for the embeddings, the LM head and about two blocks: the rest goes to disk
    budget = sizes["model.embed_tokens"] + sizes["lm_head"] + 2.5 * sizes["model.layers.0"]
    device_map = infer_auto_device_map(lm.model, max_memory={"cpu": int(budget)},
                                       no_split_module_classes=["LlamaDecoderLayer"])
    assert set(device_map.values()) == {"cpu", "disk"}, device_map
    dispatch_model(lm.model, device_map=device_map, offload_dir=str(tmp_path / "offload"))
    offloaded = [name for name, where in device_map.items() if where == "disk" and name.startswith("model.layers.")]
    assert offloaded and all(_hooked(lm.model.get_submodule(name)) for name in offloaded)
    _assert_same_as_reference(lm, reference)


def test_generation_with_an_edit_on_an_offloaded_block(tiny_folder, reference):
    """Edits apply in the prefill of generate() and are skipped in cached decode steps, split or not."""
    from conceptlens.activations.capture import left_pad

    lm = load_model(str(tiny_folder), device_map=_disk_map({"model.layers.3"}))
    ids, mask, _ = left_pad(PROMPTS, 0)
    vector = torch.full((lm.layout.d_model,), 3.0)
    outputs = []
    for model in (lm, reference):
        calls = []

        def add(hidden: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
            calls.append(hidden.shape[1])
            edited = hidden.clone()
            edited[torch.arange(hidden.shape[0]), pos] += vector.to(hidden)
            return edited

        with Trace(model.layout, [], positions=torch.tensor([6, 6, 6, 6]), edits={"blocks.3.resid_post": add}):
            out = model.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False,
                                       pad_token_id=0)
        assert calls and calls[0] == ids.shape[1]
        outputs.append(out)
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU to split between cuda:0 and cpu")
def test_split_between_gpu_and_cpu_matches_unsplit(tiny_folder, reference):
    device_map = {name: ("cpu" if where == "disk" else 0) for name, where in
                  _disk_map({"model.layers.2", "model.layers.3", "model.norm", "lm_head"}).items()}
    lm = load_model(str(tiny_folder), device_map=device_map)
    assert lm.layout.blocks[0].mlp.down_proj.weight.device.type == "cuda"
    assert lm.layout.blocks[3].mlp.down_proj.weight.device.type == "cpu"
    layers, acts = _capture(lm)
    _, ref_acts = _capture(reference)
    torch.testing.assert_close(acts, ref_acts, rtol=1e-4, atol=1e-4)
    positions = torch.tensor([6, 6, 6, 6])
    plain, edited = _logits_with_edit(lm, "blocks.2.resid_post", positions)
    ref_plain, ref_edited = _logits_with_edit(reference, "blocks.2.resid_post", positions)
    torch.testing.assert_close(edited, ref_edited, rtol=1e-4, atol=1e-4)


def test_capture_with_offloaded_embeddings(tiny_folder, reference):
    lm = load_model(str(tiny_folder), device_map=_disk_map({"model.embed_tokens", "model.layers.1"}))
    _, acts = _capture(lm)
    torch.testing.assert_close(acts, _capture(reference)[1], rtol=1e-5, atol=1e-5)
