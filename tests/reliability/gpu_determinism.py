"""What differs on a GPU, measured: run on a CUDA machine, writes `$OUT/gpu_determinism.json`.

Not a test (CI has no GPU): RELIABILITY.md quotes its output. Each probe runs the package's own
code twice, or under two settings, and records whether the results are bitwise equal and, if
not, how far apart: capture (same batches; other batch sizes; TF32; SDPA vs eager; bfloat16; CPU),
TD computed from those activations, a synthetic training run (with and without
`torch.use_deterministic_algorithms`), and the atomics of `index_add_`/`scatter_add_`.
`python tests/reliability/gpu_determinism.py` (with `PYTHONPATH=src`).
"""

from __future__ import annotations

import os

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts: needed for deterministic mode

import json
import sys
import time
from pathlib import Path

import torch

RESULTS: dict = {}


def compare(a: torch.Tensor, b: torch.Tensor) -> dict:
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    diff = (a - b).abs()
    return {"bitwise_equal": bool(torch.equal(a, b)), "max_abs_diff": float(diff.max()),
            "max_rel_diff": float((diff / a.abs().clamp(min=1e-6)).max()), "fraction_differing": float((diff > 0).float().mean())}


def tiny_llama(attn: str, dtype=torch.float32, device="cuda"):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=1024, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=256)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.1)
    model.config._attn_implementation = attn
    return model.to(device=device, dtype=dtype).eval()


def prompts(n: int = 512):
    """Four 'concepts': prompts drawn from four disjoint token ranges (so TD is far above chance)."""
    gen = torch.Generator().manual_seed(0)
    encoded, labels = [], []
    for i in range(n):
        concept = i % 4
        length = int(torch.randint(5, 60, (1,), generator=gen))
        encoded.append((torch.randint(0, 200, (length,), generator=gen) + 200 * concept + 1).tolist())
        labels.append(f"c{concept}")
    return encoded, labels


def capture(model, encoded, batch_size):
    from conceptlens.activations.capture import capture_activations
    from conceptlens.hooks import layout_for

    _, acts = capture_activations(model, layout_for(model), encoded, batch_size=batch_size, pad_id=0)
    return acts


def td(acts, labels):
    from conceptlens.decodability import task_decodability

    return task_decodability(acts.float(), labels, k=10).mean.tolist()


def probe_capture() -> None:
    encoded, labels = prompts()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = tiny_llama("sdpa")
    base = capture(model, encoded, 32)
    runs = {"same_settings_again": capture(model, encoded, 32), "batch_size_8": capture(model, encoded, 8),
            "batch_size_1": capture(model, encoded[:64], 1)}
    torch.backends.cuda.matmul.allow_tf32 = True
    runs["tf32_matmul"] = capture(model, encoded, 32)
    torch.backends.cuda.matmul.allow_tf32 = False
    runs["eager_attention"] = capture(tiny_llama("eager"), encoded, 32)
    runs["bfloat16_model"] = capture(tiny_llama("sdpa", torch.bfloat16), encoded, 32)
    runs["cpu_float32"] = capture(tiny_llama("sdpa", device="cpu"), encoded, 32)
    base_td = td(base, labels)
    RESULTS["capture"] = {"prompts": len(encoded), "base_td_per_layer": base_td}
    for name, acts in runs.items():
        ref = base[:, :acts.shape[1]]
        entry = compare(ref, acts)
        if acts.shape[1] == base.shape[1]:
            entry["td_per_layer"] = td(acts, labels)
            entry["td_equal"] = entry["td_per_layer"] == base_td
        RESULTS["capture"][name] = entry


def synthetic_run(steps: int, deterministic: bool, device: str = "cuda") -> torch.Tensor:
    import torch.nn.functional as F

    from conceptlens.synthetic.config import load_config
    from conceptlens.synthetic.schedule import batch_generator, learning_rate
    from conceptlens.synthetic.train import build_model, build_task, evaluate

    torch.use_deterministic_algorithms(deterministic, warn_only=False)
    config = load_config("quick", ["model.n_layers=4", "model.d_model=128", "train.batch_size=64"])
    task = build_task(config)
    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr, betas=tuple(config.train.betas))
    for step in range(steps):
        batch = task.sample(config.train.batch_size, batch_generator(config.seed, step))
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        loss = F.mse_loss(model(batch.xs.to(device), batch.ys.to(device)), batch.ys.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    torch.use_deterministic_algorithms(False)
    return torch.cat([p.detach().flatten().cpu() for p in model.parameters()])


def probe_training() -> None:
    steps = 300
    out = {"steps": steps}
    a, b = synthetic_run(steps, False), synthetic_run(steps, False)
    out["default_twice"] = compare(a, b)
    try:
        c, d = synthetic_run(steps, True), synthetic_run(steps, True)
        out["deterministic_algorithms_twice"] = compare(c, d)
        out["deterministic_vs_default"] = compare(a, c)
    except RuntimeError as exc:
        out["deterministic_algorithms_error"] = str(exc)[:500]
    out["gpu_vs_cpu"] = compare(a, synthetic_run(steps, False, device="cpu"))
    RESULTS["synthetic_training"] = out


def probe_atomics() -> None:
    gen = torch.Generator(device="cuda").manual_seed(0)
    values = torch.randn(2_000_000, device="cuda", generator=gen)
    index = torch.randint(0, 64, (2_000_000,), device="cuda", generator=gen)
    out = {}
    for name, op in (("index_add_", lambda: torch.zeros(64, device="cuda").index_add_(0, index, values)),
                     ("scatter_add_", lambda: torch.zeros(64, device="cuda").scatter_add_(0, index, values))):
        runs = [op() for _ in range(5)]
        out[name] = {"five_runs_all_equal": all(torch.equal(runs[0], r) for r in runs[1:]),
                     "max_abs_diff": max(float((runs[0] - r).abs().max()) for r in runs[1:])}
        torch.use_deterministic_algorithms(True)
        try:
            det = [op() for _ in range(3)]
            out[name]["deterministic_mode_equal"] = all(torch.equal(det[0], r) for r in det[1:])
        except RuntimeError as exc:
            out[name]["deterministic_mode_error"] = str(exc)[:300]
        torch.use_deterministic_algorithms(False)
    RESULTS["atomics"] = out


def main() -> None:
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    RESULTS["device"] = torch.cuda.get_device_name()
    RESULTS["torch"] = torch.__version__
    import transformers

    RESULTS["transformers"] = transformers.__version__
    for probe in (probe_atomics, probe_capture, probe_training):
        start = time.time()
        try:
            probe()
        except Exception as exc:  # record and go on: one failed probe must not cost the others
            RESULTS[probe.__name__ + "_error"] = f"{type(exc).__name__}: {exc}"[:2000]
        RESULTS[probe.__name__ + "_seconds"] = round(time.time() - start, 1)
        print(json.dumps(RESULTS, indent=1)[-3000:], flush=True)
    out = Path(os.environ.get("OUT", ".")) / "gpu_determinism.json"
    out.write_text(json.dumps(RESULTS, indent=2))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
