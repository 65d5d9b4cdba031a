"""The capture benchmark's page: time, FLOP rate and fraction of the measured peak, memory, exactness,
and the ratios to plain HF and the peers (`bench_capture.py` runs the methods, this writes the table)."""

from __future__ import annotations

import os
import platform

from bench_capture import LABELS
from limits import forward_flops, matmul_peak, peak_line


def write_report(args, python: str, results: dict, vers: dict) -> None:
    """The table (time, FLOP rate and fraction of the measured peak, memory, exactness), then the ratios."""
    from transformers import AutoConfig

    from conceptlens.models.embedded import embedded_folder
    from conceptlens.storage import write_text

    base = results.get("baseline", {}).get("resident_mb")
    config = AutoConfig.from_pretrained(str(embedded_folder("smollm2-135m")))
    peak = matmul_peak(args.threads, "float32")
    clock = "cpu_s" if args.threads == 1 else "capture_s"  # one thread on a shared box: CPU time is the fair clock
    ok = {k: r for k, r in results.items() if "capture_s" in r}
    for result in ok.values():
        result["per_s"] = result["n"] / result[clock]
        result["flops"] = forward_flops(config, result["lengths"])  # 30 blocks at every real token, no LM head
    ours = ok.get("conceptlens")
    lines = [f"## Activation capture: SmolLM2-135M, all 31 layers at the last token, batches of {args.batch_size}", "",
             f"Bitwise few-shot prompts (2-4 shots, {ours['min_len'] if ours else '?'}-"
             f"{ours['max_len'] if ours else '?'} tokens). CPU, float32, {args.threads} torch thread(s), "
             f"every method in its own process (`{python}`). Capture time excludes model loading (shown apart); "
             f"{'ratios and rates by CPU time (one thread on a shared box, load average ' + format(os.getloadavg()[0], '.1f') + ')' if clock == 'cpu_s' else 'ratios and rates by wall time'}. "
             f"FLOPs needed: `forward_flops` (30 blocks at every real token, no LM head); {peak_line(args.threads)}. "
             f"Peak RSS is the process's maximum; the weights are memory-mapped, so the fair floor is "
             f"'libraries + every weight paged in' = {base or float('nan'):.0f} MB, and 'working MB' is peak RSS "
             "minus that floor. The difference column compares with plain HF run on the same batches.", "",
             "| method | prompts | load s | capture s (wall) | CPU s | prompts/s | conceptlens is x faster | "
             "GFLOP/s | fraction of peak | peak RSS MB | working MB | max abs diff (vs) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, result in results.items():
        if key == "baseline":
            continue
        label = LABELS.get(key, key) if key != "conceptlens_full" else LABELS["conceptlens"]
        if "error" in result:
            lines.append(f"| {label} | - | - | - | - | - | - | - | - | - | - | not run: {result['error']} |")
            continue
        ratio = f"{ours['per_s'] / result['per_s']:.2f}" if ours and key != "conceptlens_full" else "-"
        diff = f"{result['max_abs_diff']:.1e} ({result['diff_ref']})" if "max_abs_diff" in result else "-"
        working = f"{result['peak_rss_mb'] - base:.0f}" if base else "-"
        rate = result["flops"] / result[clock]
        lines.append(f"| {label} | {result['n']} | {result['load_s']:.1f} | {result['capture_s']:.1f} | "
                     f"{result['cpu_s']:.1f} | {result['per_s']:.2f} | {ratio} | {rate / 1e9:.0f} | {rate / peak:.2f} | "
                     f"{result['peak_rss_mb']:.0f} | {working} | {diff} |")
    lines += ratio_lines(ok, base)
    lines += ["", f"Versions: {', '.join(f'{k} {v}' for k, v in vers.items())}; Python {platform.python_version()}.",
              ""]
    write_text(args.out, "\n".join(lines))
    print("\n".join(lines))


def ratio_lines(ok: dict, base: float | None) -> list[str]:
    """Throughput against the fastest peer and plain HF, memory against plain HF, the 700-prompt run."""
    ours, lines = ok.get("conceptlens"), []
    if not ours:
        return lines
    peers = {k: r for k, r in ok.items() if k not in ("conceptlens", "conceptlens_full", "hf_sorted")}
    if peers:
        fastest = max(peers, key=lambda k: peers[k]["per_s"])
        lines += ["", f"- Throughput vs the fastest peer that ran ({LABELS[fastest]}): "
                      f"**{ours['per_s'] / peers[fastest]['per_s']:.2f}x** (target >= 1.5x)."]
    if not any(k.startswith(("nnsight", "transformer_lens")) for k in peers):
        lines.append("- TransformerLens and nnsight did not run (no venv with them: `--peer-python`); the last "
                     "measured peer ratios are in the note below, with their date.")
    if "hf_sorted" in ok:
        lines.append(f"- vs plain HF on exactly our batches: {ours['per_s'] / ok['hf_sorted']['per_s']:.2f}x (what is "
                     "left once sorting is given to HF too: skipping the LM head and the hidden states HF returns).")
    if "hf" in ok:
        hf = ok["hf"]
        lines.append(f"- Peak RSS vs plain HF: "
                     f"**{ours['peak_rss_mb'] / hf['peak_rss_mb']:.2f}** (target <= 0.5)"
                     + (f"; working memory above the resident model: {ours['peak_rss_mb'] - base:.0f} MB vs "
                        f"{hf['peak_rss_mb'] - base:.0f} MB = **{(ours['peak_rss_mb'] - base) / (hf['peak_rss_mb'] - base):.2f}**."
                        if base else "."))
    if "max_abs_diff" in ours:
        lines.append(f"- Largest difference from plain HF on the same batches: {ours['max_abs_diff']:.1e} "
                     f"(activations reach {ours['ref_scale']:.0f} in absolute value).")
    if "conceptlens_full" in ok:
        full = ok["conceptlens_full"]
        lines.append(f"- conceptlens on all {full['n']} prompts: {full['per_s']:.2f} prompts/s, peak RSS "
                     f"{full['peak_rss_mb']:.0f} MB vs {ours['peak_rss_mb']:.0f} MB on {ours['n']} prompts; the result "
                     f"([31, {full['n']}, 576] float32) is {31 * full['n'] * 576 * 4 / 2**20:.0f} MB, and the benchmark "
                     "process holds a second copy to save it. With `out=` the result streams to disk in shards instead.")
    return lines
