"""This machine's limit, for every benchmark: the measured matmul peak and the FLOPs a workload needs.

`matmul_peak(threads, dtype)` is the best of 5 square `torch.mm` at 2048 and 4096 (FLOP/s), on the
thread count the benchmark itself uses (by CPU time at one thread: the box is shared); `forward_flops(config, token_counts)` counts a decoder's
forward pass from its shape: 2 x (weights without embeddings) per token, plus causal attention
(a token at position p reads p + 1 keys: QK^T and AV cost 2 x 2 x d_attn x (p + 1) per layer), plus
the LM head where logits are asked for. Norms, rotary and biases are left out (under 1% here).

    python benchmarks/limits.py --threads 1,2        # -> benchmarks/results/limits.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

RESULTS = Path(__file__).resolve().parent / "results" / "limits.md"
UNGATED = {"gpt2", "gpt_neox", "gptj", "gpt_bigcode", "opt", "bloom", "phi", "falcon"}  # 2-matrix MLPs


@dataclass(frozen=True)
class DecoderShape:
    """What the FLOP count needs of a decoder: layers, widths, vocabulary, gated MLP or not."""

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    vocab: int
    gated_mlp: bool = True

    @classmethod
    def from_hf(cls, config) -> "DecoderShape":
        """Read a HuggingFace config (GPT-2 names too); a multimodal config gives its text part."""
        if isinstance(config, cls):
            return config
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        get = lambda *names, default=None: next((getattr(config, n) for n in names  # noqa: E731
                                                 if getattr(config, n, None) is not None), default)
        d_model = get("hidden_size", "n_embd")
        heads = get("num_attention_heads", "n_head")
        return cls(n_layers=get("num_hidden_layers", "n_layer"), d_model=d_model, n_heads=heads,
                   n_kv_heads=get("num_key_value_heads", default=heads), head_dim=get("head_dim", default=d_model // heads),
                   d_ff=get("intermediate_size", "n_inner", default=4 * d_model), vocab=get("vocab_size"),
                   gated_mlp=getattr(config, "model_type", "") not in UNGATED)

    def weights_per_layer(self) -> int:
        """Multiply-adds per token in one block: q, k, v, o projections and the MLP."""
        attention = self.d_model * self.head_dim * (2 * self.n_heads + 2 * self.n_kv_heads)
        return attention + (3 if self.gated_mlp else 2) * self.d_model * self.d_ff


def forward_flops(config, token_counts: Sequence[int], *, layers: int | None = None, logits: int | None = 0,
                  past: Sequence[int] | None = None) -> int:
    """FLOPs of one forward pass over sequences of `token_counts` tokens (causal, no padding).

    `layers`: blocks run (default all); `logits`: positions per sequence that go through the LM
    head (0: none, None: every token); `past`: tokens already in the KV cache per sequence (decoding).
    """
    shape = DecoderShape.from_hf(config)
    layers = shape.n_layers if layers is None else layers
    past = [0] * len(token_counts) if past is None else list(past)
    total = 0
    for n, before in zip(token_counts, past):
        keys = n * before + n * (n + 1) // 2  # sum over the new tokens of the keys each one reads
        total += 2 * n * shape.weights_per_layer() * layers + 4 * shape.n_heads * shape.head_dim * keys * layers
        total += 2 * shape.d_model * shape.vocab * (n if logits is None else min(logits, n))
    return total


def generation_flops(config, prompt_lengths: Sequence[int], new_tokens: Sequence[int], *,
                     prefill_logits: int | None = 1) -> int:
    """Greedy decoding: a prefill of each prompt (logits at its last token), then one cached step per
    further new token (one token, logits), the KV cache growing by one each step."""
    total = forward_flops(config, prompt_lengths, logits=prefill_logits)
    for length, new in zip(prompt_lengths, new_tokens):
        steps = max(new - 1, 0)
        total += sum(forward_flops(config, [1], logits=1, past=[length + s]) for s in range(steps))
    return total


def matmul_peak(threads: int, dtype: str = "float32", sizes: Sequence[int] = (2048, 4096), repeats: int = 5,
                clock: str | None = None) -> float:
    """Best float32 / bfloat16 `torch.mm` rate (FLOP/s) over `sizes` x `repeats` on `threads` threads.

    `clock`: "cpu" (the process's CPU time: on one thread, the rate of the core while it runs us, other
    jobs' turns excluded; the default at one thread) or "wall" (the default at more threads).
    """
    clock = clock or ("cpu" if threads == 1 else "wall")
    if clock not in ("cpu", "wall"):
        raise ValueError(f"clock must be 'cpu' or 'wall', got {clock!r}")
    return _peak(threads, dtype, tuple(sizes), repeats, clock)


@lru_cache(maxsize=None)
def _peak(threads: int, dtype: str, sizes: tuple[int, ...], repeats: int, clock: str) -> float:
    import torch

    now = time.process_time if clock == "cpu" else time.perf_counter
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        best = 0.0
        for size in sizes:
            a = torch.randn(size, size).to(getattr(torch, dtype))
            b = torch.randn(size, size).to(getattr(torch, dtype))
            torch.mm(a, b)  # warm-up: packing buffers, first-call dispatch
            for _ in range(repeats):
                start = now()
                torch.mm(a, b)
                best = max(best, 2 * size ** 3 / max(now() - start, 1e-9))
        return best
    finally:
        torch.set_num_threads(before)


def peak_line(threads: int) -> str:
    """One sentence every section can print: both peaks on these threads and the load beside them."""
    f32, bf16 = matmul_peak(threads, "float32"), matmul_peak(threads, "bfloat16")
    clock = "CPU time" if threads == 1 else "wall time"
    return (f"measured matmul peak on {threads} thread(s) (best of 5 `torch.mm` at 2048² and 4096² by {clock}, "
            f"`benchmarks/limits.py`): float32 **{f32 / 1e9:.0f}** GFLOP/s, bfloat16 **{bf16 / 1e9:.0f}** GFLOP/s "
            f"(load average {os.getloadavg()[0]:.1f} when measured)")


def main() -> None:
    from conceptlens.storage import write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    args = parser.parse_args()
    lines = ["## This machine's limit: measured matmul peak", "",
             f"Measured {datetime.datetime.now():%Y-%m-%d %H:%M} by `benchmarks/limits.py`: best of 5 square `torch.mm` "
             "at 2048 and 4096 per dtype and thread count. Every section below measures it again on its own "
             "threads, in its own run, and divides the FLOPs its workload needs (counted from the model shape "
             "and the token counts, `forward_flops`) by its time and that peak. The machine is shared: by wall "
             "time a loaded box runs us a fraction of the time, so one-thread benchmarks time themselves by "
             "CPU time and hold it against the peak by CPU time.", "",
             "| threads | clock | float32 GFLOP/s | bfloat16 GFLOP/s | bf16 / f32 | load average |",
             "|---|---|---|---|---|---|"]
    for threads in (int(t) for t in args.threads.split(",")):
        for clock in ("cpu", "wall") if threads == 1 else ("wall",):
            f32 = matmul_peak(threads, "float32", clock=clock)
            bf16 = matmul_peak(threads, "bfloat16", clock=clock)
            lines.append(f"| {threads} | {clock} | {f32 / 1e9:.0f} | {bf16 / 1e9:.0f} | {bf16 / f32:.2f} | "
                         f"{os.getloadavg()[0]:.1f} |")
    write_text(RESULTS, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
