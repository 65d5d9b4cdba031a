"""Training throughput of conceptlens's regression GPT vs a plain HuggingFace GPT2Model loop.

Same shape (layers, heads, width, sequence 2K), batch, data and optimiser (Adam) in the same run,
alternating rounds so that machine load hits both alike; tokens/s is the median over rounds. Also
the fraction of this machine's measured float32 matmul peak that our training step reaches
(FLOPs = 6 x non-embedding parameters x tokens + attention). Writes benchmarks/results/training.md.

    .venv/bin/python benchmarks/bench_training.py [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from conceptlens.storage import write_text
from conceptlens.synthetic.config import load_config
from conceptlens.synthetic.train import build_model, build_task

RESULTS = Path(__file__).parent / "results" / "training.md"


class HFRegression(nn.Module):
    """The same read-in / read-out around transformers' GPT2Model (dropout off, exact GELU)."""

    def __init__(self, n_dims: int, n_points: int, n_layers: int, n_heads: int, d_model: int):
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        config = GPT2Config(n_positions=2 * n_points, n_embd=d_model, n_layer=n_layers, n_head=n_heads,
                            vocab_size=1, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                            activation_function="gelu", use_cache=False,
                            bos_token_id=None, eos_token_id=None)
        self.read_in = nn.Linear(n_dims, d_model)
        self.backbone = GPT2Model(config)
        self.read_out = nn.Linear(d_model, 1)

    def forward(self, xs, ys):
        batch, points, dims = xs.shape
        y_tokens = torch.zeros_like(xs)
        y_tokens[..., 0] = ys
        tokens = torch.stack((xs, y_tokens), dim=2).reshape(batch, 2 * points, dims)
        hidden = self.backbone(inputs_embeds=self.read_in(tokens)).last_hidden_state
        return self.read_out(hidden)[:, ::2, 0]


def step_time(model, batches, steps: int) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    def one(batch):
        loss = F.mse_loss(model(batch.xs, batch.ys), batch.ys)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    one(batches[0])  # warm-up
    start = time.perf_counter()
    for i in range(steps):
        one(batches[i % len(batches)])
    return (time.perf_counter() - start) / steps


def matmul_peak(size: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size ** 3 * repeats / (time.perf_counter() - start)


def training_flops(config, model) -> float:
    """FLOPs of one training step: 6 N T for the weights + 6 L T^2 d for attention scores."""
    tokens = config.train.batch_size * 2 * config.task.n_points
    weights = sum(p.numel() for n, p in model.named_parameters() if "position" not in n)
    seq = 2 * config.task.n_points
    return 6 * weights * tokens + 6 * config.model.n_layers * tokens * seq * config.model.d_model


def bench(name: str, steps: int, rounds: int) -> dict:
    config = load_config(name)
    task = build_task(config)
    gen = torch.Generator().manual_seed(0)
    batches = [task.sample(config.train.batch_size, gen) for _ in range(4)]
    m = config.model
    torch.manual_seed(0)
    ours = build_model(config)
    hf = HFRegression(config.task.n_dims, config.task.n_points, m.n_layers, m.n_heads, m.d_model)
    ours_t, hf_t = [], []
    for _ in range(rounds):
        ours_t.append(step_time(ours, batches, steps))
        hf_t.append(step_time(hf, batches, steps))
    tokens = config.train.batch_size * 2 * config.task.n_points
    ours_s, hf_s = statistics.median(ours_t), statistics.median(hf_t)
    return {"config": name, "shape": f"{m.n_layers}L {m.n_heads}H d{m.d_model}, batch {config.train.batch_size}, "
            f"seq {2 * config.task.n_points}", "ours": tokens / ours_s, "hf": tokens / hf_s,
            "flops_per_s": training_flops(config, ours) / ours_s}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = matmul_peak()
    rows = [bench("quick", 30, args.rounds), bench("paper", 3, args.rounds)]
    peak = max(peak, matmul_peak())
    lines = ["## Synthetic training throughput", "",
             f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}; "
             f"measured float32 matmul peak {peak / 1e9:.1f} GFLOP/s (1024² matmul). Median of {args.rounds} "
             "alternating rounds; same batch, data and Adam for both.", "",
             "| config | shape | conceptlens tokens/s | HF GPT2Model tokens/s | ratio | % of matmul peak |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['shape']} | {r['ours']:,.0f} | {r['hf']:,.0f} | "
                     f"{r['ours'] / r['hf']:.2f}x | {100 * r['flops_per_s'] / peak:.0f}% |")
    write_text(RESULTS, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
