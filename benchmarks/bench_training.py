"""Training throughput of conceptlens's regression GPT vs a plain HuggingFace GPT2Model loop.

Same shape (layers, heads, width, sequence 2K), batch, data and optimiser (Adam) in the same run,
alternating rounds so that machine load hits both alike; tokens/s is the median over rounds. Also
the fraction of this machine's measured float32 matmul peak that our training step reaches
(FLOPs = 6 x non-embedding parameters x tokens + attention). Writes benchmarks/results/training.md.
Also seeds trained together: the wall time of `train_seeds` with 3 seeds vs `train` with one, the
same steps, evaluation and checkpoints (first and last step only) in both; benchmarks/results/training_seeds.md.

    .venv/bin/python benchmarks/bench_training.py [--rounds 3] [--threads 2] [--only peers|seeds]
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
from limits import matmul_peak, peak_line
from conceptlens.synthetic.config import load_config
from conceptlens.synthetic.train import build_model, build_task

RESULTS = Path(__file__).parent / "results" / "training.md"
SEEDS_RESULTS = Path(__file__).parent / "results" / "training_seeds.md"


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
    """Seconds per training step: CPU time at one thread (the box is shared), wall time otherwise."""
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    def one(batch):
        loss = F.mse_loss(model(batch.xs, batch.ys), batch.ys)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    one(batches[0])  # warm-up
    start = clock()
    for i in range(steps):
        one(batches[i % len(batches)])
    return (clock() - start) / steps


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
            "flops_per_s": training_flops(config, ours) / ours_s, "flops_per_step": training_flops(config, ours)}


def seeds_together(name: str, n_seeds: int, steps: int, rounds: int, threads: int) -> dict:
    """Wall time of `n_seeds` seeds trained together vs one seed alone: the real `train_seeds` and
    `train` into temporary folders, alternating; evaluation and checkpoints at the first and last step."""
    import tempfile

    from conceptlens.synthetic.train import train
    from conceptlens.synthetic.train_seeds import train_seeds

    config = load_config(name, [f"train.steps={steps}", f"train.threads={threads}", f"schedule.eval_every={steps}",
                                "schedule.dense_until=0", f"schedule.sparse_every={steps}"])
    warm = load_config(name, ["train.steps=2", f"train.threads={threads}"])
    with tempfile.TemporaryDirectory() as tmp:  # first calls pay one-off set-up costs: not timed
        train(warm, Path(tmp) / "alone")
        train_seeds(warm, list(range(n_seeds)), Path(tmp) / "together")
    alone, together = [], []
    clock = time.process_time if threads == 1 else time.perf_counter  # one thread, shared box: CPU time
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            start = clock()
            train(config, Path(tmp) / "alone")
            alone.append(clock() - start)
            start = clock()
            train_seeds(config, list(range(n_seeds)), Path(tmp) / "together")
            together.append(clock() - start)
    torch.manual_seed(0)
    flops = training_flops(config, build_model(config)) * steps
    alone_s, together_s = statistics.median(alone), statistics.median(together)
    return {"config": name, "seeds": n_seeds, "steps": steps, "alone_s": alone_s, "together_s": together_s,
            "alone_flops_per_s": flops / alone_s, "together_flops_per_s": n_seeds * flops / together_s,
            "all_alone": alone, "all_together": together}


def seeds_section(row: dict, peak: float, rounds: int) -> list[str]:
    ratio = row["together_s"] / row["alone_s"]
    return ["## Seeds trained together (`synthetic train --seeds`)", "",
            f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) ({'CPU' if torch.get_num_threads() == 1 else 'wall'} "
            f"time); `{row['config']}` shape, "
            f"{row['steps']} steps, evaluation and checkpoints at the first and last step only, in both. "
            f"Median of {rounds} alternating rounds (every round: alone "
            f"{', '.join(f'{t:.1f}' for t in row['all_alone'])} s; together "
            f"{', '.join(f'{t:.1f}' for t in row['all_together'])} s). FLOPs counted as in the section above; "
            f"{peak_line(torch.get_num_threads())}. Target: {row['seeds']} seeds in at most "
            "1.6x the time of one.", "",
            "| case | wall time | per step | GFLOP/s | % of matmul peak |", "|---|---|---|---|---|",
            f"| 1 seed alone (`train`) | {row['alone_s']:.1f} s | {1e3 * row['alone_s'] / row['steps']:.0f} ms | "
            f"{row['alone_flops_per_s'] / 1e9:.1f} | {100 * row['alone_flops_per_s'] / peak:.0f}% |",
            f"| {row['seeds']} seeds together (`train_seeds`) | {row['together_s']:.1f} s | "
            f"{1e3 * row['together_s'] / row['steps']:.0f} ms | {row['together_flops_per_s'] / 1e9:.1f} | "
            f"{100 * row['together_flops_per_s'] / peak:.0f}% |", "",
            f"{row['seeds']} seeds together take **{ratio:.2f}x** the time of one alone "
            f"({row['seeds'] / ratio:.2f}x the throughput of separate runs one after another)."]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--only", choices=["peers", "seeds"], help="run one case (default: both)")
    parser.add_argument("--seed-steps", type=int, default=300, help="steps of the seeds-together case")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    peak = matmul_peak(threads, "float32")
    if args.only != "seeds":
        rows = [bench("quick", 30, args.rounds), bench("paper", 3, args.rounds)]
        clock = "CPU" if threads == 1 else "wall"
        lines = ["## Synthetic training throughput", "",
                 f"torch {torch.__version__}, {threads} thread(s), {platform.processor() or platform.machine()}; "
                 f"{peak_line(threads)}. Median of {args.rounds} alternating rounds, {clock} time; same batch, data "
                 "and Adam for both. FLOPs per step: 6 x weights x tokens + causal attention (`training_flops`).", "",
                 "| config | shape | GFLOP per step | conceptlens tokens/s | HF GPT2Model tokens/s | ratio | "
                 "% of float32 matmul peak |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['config']} | {r['shape']} | {r['flops_per_step'] / 1e9:.1f} | {r['ours']:,.0f} | "
                         f"{r['hf']:,.0f} | {r['ours'] / r['hf']:.2f}x | {100 * r['flops_per_s'] / peak:.0f}% |")
        write_text(RESULTS, "\n".join(lines) + "\n")
        print("\n".join(lines))
    if args.only != "peers":
        row = seeds_together("quick", 3, args.seed_steps, min(args.rounds, 2), threads)
        torch.set_num_threads(threads)
        lines = seeds_section(row, peak, min(args.rounds, 2))
        write_text(SEEDS_RESULTS, "\n".join(lines) + "\n")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
