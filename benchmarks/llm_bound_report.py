"""The page of `bench_llm_bound.py`: the study's FLOPs and bound per shots value, `llm run`'s time and
fraction of the peak, then each cut measured on one batch (logits, decode steps, bfloat16) or counted."""

from __future__ import annotations

import os

from limits import matmul_peak, peak_line


def report(args, flops, saved, batches, run, peak: float) -> list[str]:
    total = {key: sum(f[key] for f in flops.values()) for key in ("needed", "executed", "prefill", "decode", "logits_all")}
    lines = [f"## `llm run` against its FLOP bound: SmolLM2-135M, {args.family}, shots "
             f"{','.join(map(str, flops))} x {args.ppc} prompts per concept", "",
             f"{args.threads} torch thread(s), float32, batch {args.batch_size}; {peak_line(args.threads)}. FLOPs "
             "needed: `generation_flops` (prefill of every prompt, logits at its last token; then one cached step per "
             "further answer token, answer and newline, with logits); 'executed' counts what batched left-padded "
             "decoding runs (every row of a batch padded to its longest prompt, decoded to its longest budget, "
             "answer + 2). Bound = needed FLOPs / the float32 peak. Load average at the start "
             f"{args.load_start:.1f}, at the end {os.getloadavg()[0]:.1f}: the times are upper bounds.", "",
             "| shots | prompts | mean tokens | needed GFLOP (prefill + decode) | executed GFLOP | bound s | "
             f"`llm run` CPU s (from {run['ppc'] if run else '-'} per concept, scaled) | fraction of peak |",
             "|---|---|---|---|---|---|---|---|"]
    for shots, f in list(flops.items()) + [("all", total)]:
        seconds = (sum(run["generation"].values()) if shots == "all" else run["generation"][shots]) if run else None
        measured = f"{seconds * args.ppc / run['ppc']:.0f}" if run else "-"
        fraction = f"{f['needed'] / (seconds * args.ppc / run['ppc']) / peak:.2f}" if run else "-"
        prompts = sum(g["prompts"] for g in flops.values()) if shots == "all" else f["prompts"]
        tokens = sum(g["tokens"] for g in flops.values()) if shots == "all" else f["tokens"]
        lines.append(f"| {shots} | {prompts} | {tokens / prompts:.0f} | {f['needed'] / 1e9:,.0f} "
                     f"({f['prefill'] / 1e9:,.0f} + {f['decode'] / 1e9:,.0f}) | {f['executed'] / 1e9:,.0f} | "
                     f"{f['needed'] / peak:.0f} | {measured} | {fraction} |")
    if run:
        when = f"measured {run['date']}, load average {run['load']:.1f}" + (", reused (`--run-ppc 0`)" if run.get("reused") else "")
        lines += ["", f"`conceptlens llm run --family {args.family} --shots 1,4,10 --prompts-per-concept {run['ppc']}` "
                  f"({when}) took {run['wall']:.0f} s wall; its generation stages {sum(run['generation'].values()):.0f} s "
                  f"of CPU ({sum(run['generation_wall'].values()):.0f} s wall); the rest is model load, TD, UMAP and "
                  "figures. Scaled to the study linearly in the number of prompts."]
    lines += ["", *cut_lines(args, total, saved, batches, peak)]
    return lines


def cut_lines(args, total: dict, saved: float, batches: dict, peak: float) -> list[str]:
    """What is above the bound, each item measured on the batches or counted."""
    lines = ["Above the bound, measured on one batch of each shots value (the middle batch of the sorted prompts; "
             "HF `generate` and forward passes directly, no hooks):", "",
             "| shots | rows x width | prefill, every position's logits s | prefill, last logit s | generate s "
             "(steps) | decode s | prefill GFLOP/s | decode GFLOP/s | decode share of time / of FLOPs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for shots, b in batches.items():
        lines.append(f"| {shots} | {b['rows']} x {b['width']} | {b['all_logits_s']:.2f} | {b['last_logit_s']:.2f} | "
                     f"{b['generate_s']:.2f} ({b['steps']}) | {b['decode_s']:.2f} | {b['prefill_rate'] / 1e9:.0f} | "
                     f"{b['decode_rate'] / 1e9:.0f} | {b['decode_s'] / b['generate_s']:.2f} / "
                     f"{b['decode_flops'] / (b['decode_flops'] + b['prefill_flops']):.2f} |")
    rows = next(iter(batches.values()))["prefill_logit_rows"] if batches else None
    prefill = [b["prefill_rate"] / peak for b in batches.values()] or [float("nan")]
    lines += ["", f"- **Prefill** runs at {min(prefill):.2f}-{max(prefill):.2f} of the float32 peak on these batches: "
              "the same kernels as capture (see the capture profile: weight matmuls near the peak, the rest in "
              f"unfused elementwise work, attention and norms); it is {total['prefill'] / total['needed']:.0%} of the needed "
              "FLOPs.",
              f"- **Logits at every prompt position**: `generate` already asks for the last position only (the LM "
              f"head saw {rows} position(s) per row in the prefill; transformers passes `logits_to_keep=1`). Had it "
              f"not, the study would need {total['logits_all'] / 1e9:,.0f} GFLOP more "
              f"({total['logits_all'] / total['needed']:.0%} of the bound); the table's first two columns show the time. "
              "Nothing to cut here.",
              f"- **Padding and the batch's longest budget**: executed / needed = "
              f"{total['executed'] / total['needed']:.2f} ({(total['executed'] - total['needed']) / 1e9:,.0f} GFLOP: "
              "the rows of a batch are padded to its longest prompt and decoded to its longest budget).",
              f"- **Decode steps**: {total['decode'] / total['needed']:.0%} of the needed FLOPs but the share of time "
              "in the table's last column: a step multiplies each weight matrix by one token per row, so it streams "
              "the weights from memory instead of reusing them from cache. Cuts: decode more rows per step (below), "
              "or, for the exact-match verdict alone, one forward pass over prompt + answer + newline (greedy "
              "decoding writes the answer exactly when the argmax at every answer position is the next answer "
              "token), decoding only the rows that fail to get their completion text.",
              f"- **Re-prefill per shots setting**: with nested demonstrations (the 1- and 4-shot prompts of a query "
              f"taken as prefixes of its 10-shot prompt), their demonstrations would not be prefilled again: "
              f"{saved / 1e9:,.0f} GFLOP, {saved / total['needed']:.0%} of the bound. It changes the sampling: the "
              "shots settings would share queries and demonstrations (paired, not independent, samples)."]
    return lines


def decode_lines(decode: list[dict]) -> list[str]:
    if not decode:
        return []
    cells = ", ".join(f"{d['per_row_step_ms']:.1f} ms at {d['rows']} rows" for d in decode)
    return ["", f"Decode steps by batch size (the same 4-shot prompts, {decode[0]['steps']} steps after the prefill, "
            f"CPU time per row and step): {cells}: **{decode[0]['per_row_step_ms'] / decode[-1]['per_row_step_ms']:.1f}x** "
            "cheaper per row in the larger batch, as each step reads every weight once whatever the rows."]


def bf16_lines(batches: dict, bf16: dict) -> list[str]:
    """One batch in bfloat16 beside the same batch in float32: time, and the fraction of each dtype's peak."""
    f32, shots = batches[bf16["shots"]], bf16["shots"]
    peaks = {"float32": matmul_peak(1, "float32"), "bfloat16": matmul_peak(1, "bfloat16")}
    lines = ["", f"bfloat16 on the same {shots}-shot batch ({bf16['rows']} x {bf16['width']}; CPU s, one thread):", "",
             "| dtype | prefill s | prefill GFLOP/s | fraction of its dtype's peak | generate s (steps) | decode GFLOP/s |",
             "|---|---|---|---|---|---|"]
    for dtype, b in (("float32", f32), ("bfloat16", bf16)):
        lines.append(f"| {dtype} | {b['last_logit_s']:.2f} | {b['prefill_rate'] / 1e9:.0f} | "
                     f"{b['prefill_rate'] / peaks[dtype]:.2f} | {b['generate_s']:.2f} ({b['steps']}) | "
                     f"{b['decode_rate'] / 1e9:.0f} |")
    lines += ["", f"bfloat16 / float32 speed: prefill {f32['last_logit_s'] / bf16['last_logit_s']:.2f}x, whole generate "
              f"{f32['generate_s'] / bf16['generate_s']:.2f}x; matmul peaks {peaks['bfloat16'] / peaks['float32']:.2f}x."]
    return lines
