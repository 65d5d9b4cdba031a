"""Capture equals HF's hidden states on five architectures; padding, batching, sharding and resume
change nothing; the forward pass stops after the last layer requested."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlens.activations import capture as capture_module
from conceptlens.activations.capture import (capture_activations, component_points, hidden_state_point, left_pad,
                                             load_activations, padded_positions)
from conceptlens.errors import ConceptLensError
from conceptlens.safetensors_io import load_tensors


def hf_hidden_states(model, prompt: list[int]) -> torch.Tensor:
    """`[layers + 1, seq, d]` of one unpadded prompt, straight from `output_hidden_states`."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt]), output_hidden_states=True)
    return torch.stack([h[0] for h in out.hidden_states])


def test_hidden_state_point_names():
    assert hidden_state_point(0, 3) == "blocks.0.resid_pre"
    assert hidden_state_point(1, 3) == "blocks.0.resid_post"
    assert hidden_state_point(3, 3) == "final_norm"
    with pytest.raises(ConceptLensError):
        hidden_state_point(4, 3)
    with pytest.raises(ConceptLensError):
        hidden_state_point(-1, 3)


def test_equals_output_hidden_states_every_layer(tiny, make_prompts):
    """Every layer, including the last one after the final norm, at the last and at a middle token."""
    model, layout = tiny
    prompts = make_prompts(5, 6, 6, seed=1)  # equal lengths: no padding on either side
    for position in (-1, 2):
        layers, acts = capture_activations(model, layout, prompts, positions=[position] * 5, batch_size=5)
        assert layers == list(range(layout.n_layers + 1))
        expected = torch.stack([hf_hidden_states(model, p)[:, position] for p in prompts], dim=1)
        assert acts.shape == expected.shape == (layout.n_layers + 1, 5, layout.d_model)
        torch.testing.assert_close(acts, expected, rtol=1e-5, atol=1e-5)
    # the layers really differ, so an off-by-one in the layer mapping could not pass
    assert (acts[1:] - acts[:-1]).abs().amax(dim=(1, 2)).min() > 1e-2


def test_batched_left_padded_equals_one_at_a_time(tiny, make_prompts):
    model, layout = tiny
    prompts = make_prompts(9, 3, 14, seed=2)
    assert len({len(p) for p in prompts}) > 3
    positions = [-1 if i % 2 else 1 for i in range(len(prompts))]
    _, batched = capture_activations(model, layout, prompts, positions=positions, batch_size=4)
    singles = torch.cat([capture_activations(model, layout, [p], positions=[pos], batch_size=1)[1]
                         for p, pos in zip(prompts, positions)], dim=1)
    torch.testing.assert_close(batched, singles, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("component", ["resid_pre", "attn_out", "mlp_out", "head_out"])
def test_components_batched_equal_single(tiny_llama, component, make_prompts):
    model, layout = tiny_llama
    prompts = make_prompts(6, 3, 10, seed=3)
    layers, batched = capture_activations(model, layout, prompts, component=component, batch_size=6)
    assert layers == [0, 1, 2]
    singles = torch.cat([capture_activations(model, layout, [p], component=component)[1] for p in prompts], dim=1)
    torch.testing.assert_close(batched, singles, rtol=1e-4, atol=1e-4)
    if component == "head_out":
        assert batched.shape == (3, 6, layout.n_heads, layout.d_model // layout.n_heads)


def test_selected_layers_and_order(tiny_llama, make_prompts):
    model, layout = tiny_llama
    prompts = make_prompts(4, seed=4)
    _, everything = capture_activations(model, layout, prompts)
    layers, some = capture_activations(model, layout, prompts, layers=[3, 0, 2])
    assert layers == [3, 0, 2]
    torch.testing.assert_close(some, everything[[3, 0, 2]])


def test_left_pad_and_positions():
    ids, mask, position_ids = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert position_ids.tolist() == [[0, 1, 2], [0, 0, 0]]
    assert padded_positions([3, 1], [-1, 0], 3).tolist() == [2, 2]
    assert padded_positions([3, 2], [0, 1], 3).tolist() == [0, 2]
    with pytest.raises(ConceptLensError):
        padded_positions([3], [3], 3)
    with pytest.raises(ConceptLensError):
        padded_positions([3], [-4], 3)


def test_bad_arguments(tiny_llama):
    model, layout = tiny_llama
    with pytest.raises(ConceptLensError, match="no prompts"):
        capture_activations(model, layout, [])
    with pytest.raises(ConceptLensError, match="one token position"):
        capture_activations(model, layout, [[1, 2]], positions=[0, 1])
    with pytest.raises(ConceptLensError, match="layer 4 does not exist"):
        capture_activations(model, layout, [[1, 2]], layers=[4])
    with pytest.raises(ConceptLensError, match="layer 3 does not exist"):
        component_points(layout, "mlp_out", [3])
    with pytest.raises(ConceptLensError, match="unknown component"):
        capture_activations(model, layout, [[1, 2]], component="mlp")


def test_position_outside_a_prompt_fails_before_writing(tiny_llama, tmp_path):
    model, layout = tiny_llama
    out = tmp_path / "acts.safetensors"
    with pytest.raises(ConceptLensError, match="outside a prompt"):
        capture_activations(model, layout, [[1, 2, 3], [4]], positions=[2, 2], out=out)
    assert list(tmp_path.iterdir()) == []


def test_numpy_positions_are_accepted(tiny_llama, tmp_path, make_prompts):
    model, layout = tiny_llama
    prompts = make_prompts(4, seed=5)
    _, expected = capture_activations(model, layout, prompts, positions=[0, 1, -1, -2])
    _, path = capture_activations(model, layout, prompts, positions=np.array([0, 1, -1, -2]),
                                  out=tmp_path / "a.safetensors")
    torch.testing.assert_close(load_activations(path)[0], expected)


class CountingForward:
    """Wraps `forward_batch`; raises on call number `fail_on` (1-based) to simulate a kill."""

    def __init__(self, fail_on: int | None = None):
        self.calls = 0
        self.fail_on = fail_on
        self.original = capture_module.forward_batch

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.fail_on is not None and self.calls == self.fail_on:
            raise KeyboardInterrupt("simulated kill")
        return self.original(*args, **kwargs)


def test_sharded_equals_in_memory(tiny_llama, tmp_path, make_prompts):
    model, layout = tiny_llama
    prompts = make_prompts(23, seed=6)
    _, expected = capture_activations(model, layout, prompts, batch_size=3)
    out = tmp_path / "acts.safetensors"
    layers, path = capture_activations(model, layout, prompts, batch_size=3, shard_size=5, out=out)
    assert path == out
    acts, stored_layers = load_activations(out)
    assert stored_layers == layers == [0, 1, 2, 3]
    torch.testing.assert_close(acts, expected)
    assert not (tmp_path / "acts.safetensors.parts").exists()
    assert set(load_tensors(out)) == {"activations", "layers"}


def test_killed_capture_resumes_without_recomputing(tiny_llama, tmp_path, monkeypatch, make_prompts):
    model, layout = tiny_llama
    prompts = make_prompts(24, seed=7)
    _, expected = capture_activations(model, layout, prompts, batch_size=2)
    out = tmp_path / "acts.safetensors"
    killed = CountingForward(fail_on=5)  # shards of 4 prompts = 2 batches: dies inside the third shard
    monkeypatch.setattr(capture_module, "forward_batch", killed)
    with pytest.raises(KeyboardInterrupt):
        capture_activations(model, layout, prompts, batch_size=2, shard_size=4, out=out)
    assert not out.exists()
    parts = tmp_path / "acts.safetensors.parts"
    assert sorted(p.name for p in parts.glob("shard_*.safetensors")) == ["shard_00000.safetensors",
                                                                          "shard_00001.safetensors"]
    rerun = CountingForward()
    monkeypatch.setattr(capture_module, "forward_batch", rerun)
    capture_activations(model, layout, prompts, batch_size=2, shard_size=4, out=out)
    assert rerun.calls == 12 - 4  # 6 shards x 2 batches, the 2 finished shards skipped
    torch.testing.assert_close(load_activations(out)[0], expected)


def test_corrupted_shard_is_recomputed(tiny_llama, tmp_path, monkeypatch, make_prompts):
    model, layout = tiny_llama
    prompts = make_prompts(16, seed=8)
    _, expected = capture_activations(model, layout, prompts, batch_size=4)
    out = tmp_path / "acts.safetensors"
    monkeypatch.setattr(capture_module, "forward_batch", CountingForward(fail_on=4))
    with pytest.raises(KeyboardInterrupt):
        capture_activations(model, layout, prompts, batch_size=4, shard_size=4, out=out)
    shard = tmp_path / "acts.safetensors.parts" / "shard_00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-8:] = bytes(b ^ 0xFF for b in data[-8:])  # flip bytes inside the activations
    shard.write_bytes(bytes(data))
    rerun = CountingForward()
    monkeypatch.setattr(capture_module, "forward_batch", rerun)
    capture_activations(model, layout, prompts, batch_size=4, shard_size=4, out=out)
    assert rerun.calls == 4 - 2  # shard 1 (corrupt) and shard 3 (never written)
    torch.testing.assert_close(load_activations(out)[0], expected)


def test_resume_with_another_shard_size_is_refused_until_the_parts_are_deleted(tiny_llama, tmp_path, monkeypatch,
                                                                               make_prompts):
    """Shards written with another shard size cover other prompts: reusing them would leave holes."""
    import shutil

    model, layout = tiny_llama
    prompts = make_prompts(16, seed=9)
    _, expected = capture_activations(model, layout, prompts, batch_size=2)
    out = tmp_path / "acts.safetensors"
    monkeypatch.setattr(capture_module, "forward_batch", CountingForward(fail_on=3))
    with pytest.raises(KeyboardInterrupt):
        capture_activations(model, layout, prompts, batch_size=2, shard_size=2, out=out)
    monkeypatch.setattr(capture_module, "forward_batch", CountingForward())
    with pytest.raises(ConceptLensError, match="shard_size"):
        capture_activations(model, layout, prompts, batch_size=2, shard_size=8, out=out)
    shutil.rmtree(str(out) + ".parts")  # what the fix says
    capture_activations(model, layout, prompts, batch_size=2, shard_size=8, out=out)
    torch.testing.assert_close(load_activations(out)[0], expected)


def test_other_job_in_the_parts_folder_is_refused_never_mixed(tiny_llama, tmp_path, monkeypatch, make_prompts):
    model, layout = tiny_llama
    out = tmp_path / "acts.safetensors"
    monkeypatch.setattr(capture_module, "forward_batch", CountingForward(fail_on=2))
    with pytest.raises(KeyboardInterrupt):
        capture_activations(model, layout, make_prompts(8, seed=10), batch_size=2, shard_size=2, out=out)
    other = make_prompts(8, seed=11)
    _, expected = capture_activations(model, layout, other, batch_size=2)
    monkeypatch.setattr(capture_module, "forward_batch", CountingForward())
    with pytest.raises(ConceptLensError, match=r"differs in \['prompts'\]"):
        capture_activations(model, layout, other, batch_size=2, shard_size=2, out=out)
    assert not out.exists()
    import shutil

    shutil.rmtree(str(out) + ".parts")
    capture_activations(model, layout, other, batch_size=2, shard_size=2, out=out)
    torch.testing.assert_close(load_activations(out)[0], expected)


class CallCounter:
    def __init__(self, modules):
        self.calls = {name: 0 for name in modules}
        self.handles = [module.register_forward_hook(self._hook(name)) for name, module in modules.items()]

    def _hook(self, name):
        def hook(*_):
            self.calls[name] += 1
        return hook

    def remove(self):
        for handle in self.handles:
            handle.remove()


@pytest.mark.parametrize("layers, blocks_run", [([1], 1), ([0], 0), ([2, 1], 2), ([3], 3)])
def test_capture_stops_after_last_layer(tiny_llama, layers, blocks_run, make_prompts):
    model, layout = tiny_llama
    modules = {f"block{i}": block for i, block in enumerate(layout.blocks)}
    modules["lm_head"] = model.lm_head
    counter = CallCounter(modules)
    try:
        capture_activations(model, layout, make_prompts(4, seed=12), layers=layers, batch_size=2)
    finally:
        counter.remove()
    assert [counter.calls[f"block{i}"] for i in range(3)] == [2] * blocks_run + [0] * (3 - blocks_run)
    assert counter.calls["lm_head"] == 0


def test_nan_activations_are_reported(tiny_llama, make_prompts):
    model, layout = tiny_llama

    def poison(module, args, output):
        return torch.full_like(output[0] if isinstance(output, tuple) else output, float("nan"))

    handle = layout.blocks[0].register_forward_hook(poison)
    try:
        with pytest.raises(ConceptLensError, match="NaN"):
            capture_activations(model, layout, make_prompts(2, seed=13))
    finally:
        handle.remove()


def test_load_activations_formats(tmp_path):
    array = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    np.save(tmp_path / "a.npy", array)
    acts, layers = load_activations(tmp_path / "a.npy")
    assert layers is None and torch.equal(acts, torch.from_numpy(array))
    with pytest.raises(ConceptLensError, match="does not exist"):
        load_activations(tmp_path / "missing.npy")
    np.save(tmp_path / "words.npy", np.array(["a", "b"]))
    with pytest.raises(ConceptLensError, match="not numbers"):
        load_activations(tmp_path / "words.npy")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00junk" * 10)
    with pytest.raises(ConceptLensError, match="not a readable safetensors"):
        load_activations(tmp_path / "junk.safetensors")


def test_result_is_an_ordinary_tensor(tiny_llama, make_prompts):
    """Callers centre activations in place and fit torch probes on them: no inference-mode tensors."""
    model, layout = tiny_llama
    _, acts = capture_activations(model, layout, make_prompts(3, seed=14))
    assert not acts.is_inference() and not acts.requires_grad
    acts -= acts.mean(dim=1, keepdim=True)
    weight = torch.zeros(acts.shape[-1], requires_grad=True)
    (acts @ weight).sum().backward()
    assert weight.grad is not None


def test_altered_result_file_is_refused(tiny_llama, tmp_path, make_prompts):
    model, layout = tiny_llama
    out = tmp_path / "acts.safetensors"
    capture_activations(model, layout, make_prompts(5, seed=15), out=out)
    data = bytearray(out.read_bytes())
    data[-3] ^= 0xFF
    out.write_bytes(bytes(data))
    with pytest.raises(ConceptLensError, match="corrupt"):
        load_activations(out)
