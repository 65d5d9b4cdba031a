"""The pretrained-LM study on SmolLM2-135M: wall time of `llm run`, and batched vs one-at-a-time decoding.

For each family, the whole `conceptlens llm run` (1/4/10 shots, 100 prompts per concept) runs as
a subprocess and its wall time is measured. Then the same 4-shot prompts are decoded one prompt
at a time, on a subset (`--single`, spread over concepts) timed and extrapolated to all 700,
and checked to give the same completions as the batched run. Writes benchmarks/results/llm.md
with the timings and the study's numbers beside the paper's Llama-3.1-8B values.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/bench_llm.py [--families bitwise,pos] [--threads 1] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from conceptlens.storage import write_text

RESULTS = Path(__file__).parent / "results" / "llm.md"
PAPER = {"pos": {"peak": "15 / 32 (0.47)", "r2": 0.78}, "bitwise": {"peak": "13 / 32 (0.41)", "r2": 0.53}}


def run_cli(model: str, family: str, out: Path, shots: str, ppc: int, seed: int, batch_size: int, threads: int,
            dtype: str) -> tuple[float, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cli = Path(sys.executable).with_name("conceptlens")
    cmd = [str(cli), "llm", "run", "--model", model, "--family", family, "--shots", shots,
           "--prompts-per-concept", str(ppc), "--seed", str(seed), "--out", str(out), "--batch-size", str(batch_size),
           "--dtype", dtype]
    start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, env=env, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - start, (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime)


def one_at_a_time(model: str, family: str, run: Path, shots: int, ppc: int, seed: int, n_single: int, dtype: str) -> dict:
    """Decode a subset of the run's `shots` prompts one at a time; time it, compare completions."""
    from conceptlens.llm.generation import greedy_answers
    from conceptlens.llm.encoding.study import plan_study
    from conceptlens.models import load_model
    from conceptlens.tasks.registry import load_family

    lm = load_model(model, dtype=dtype)
    task_family = load_family(family, split="test", seed=seed)
    stage = next(s for s in plan_study(lm, task_family, [shots], ppc, seed) if s.shots == shots)
    generations = pd.read_csv(run / "generations.csv", keep_default_na=False, dtype={"completion": str})
    batched = generations[generations.shots == shots].completion.tolist()
    per_concept = max(1, n_single // len(task_family.concepts))
    picks = [c * ppc + i for c in range(len(task_family.concepts)) for i in range(per_concept)]
    greedy_answers(lm, [stage.prompts[0]])  # warm-up (stop-token table, first-call overhead)
    start, cpu = time.perf_counter(), time.process_time()
    single = [greedy_answers(lm, [stage.prompts[i]], capture_layers=list(range(lm.n_layers + 1))).completions[0]
              for i in picks]
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    same = sum(a == batched[i] for a, i in zip(single, picks))
    return {"n": len(picks), "seconds": seconds, "cpu": cpu, "per_prompt": seconds / len(picks), "same": same,
            "extrapolated_700": seconds / len(picks) * len(stage.prompts), "n_prompts": len(stage.prompts)}


def family_section(family: str, run: Path, wall: float, cpu: float, single: dict | None) -> list[str]:
    summary = json.loads((run / "summary.json").read_text())
    accuracy = pd.read_csv(run / "accuracy.csv")
    timings = summary["timings"]
    lines = [f"### {family}", "",
             f"- `llm run` wall time (model load, {len(timings['generation_seconds'])} stages, analysis, UMAP, figures): "
             f"**{wall / 60:.1f} min** wall, {cpu / 60:.1f} min of CPU time; "
             f"generation per stage: " + ", ".join(f"{s} shots {t:.0f} s" for s, t in timings["generation_seconds"].items())
             + f"; analysis {timings['analysis_seconds']:.0f} s, UMAP {timings.get('umap_seconds', 0):.0f} s, "
             f"figures {timings['figures_seconds']:.0f} s.",
             f"- Best layer (paper's way) **{summary['best_layer']} of {summary['n_layers']}** "
             f"(fraction of depth {summary['best_layer_fraction']:.2f}; paper, Llama-3.1-8B: {PAPER[family]['peak']}); "
             f"held out: layer {summary['best_layer_heldout']}, TD {summary['td_heldout']:.2f} "
             f"(chance {summary['chance']:.2f}; shuffled labels {summary['td_shuffled_labels']:.2f}).", "",
             "| shots | mean TD at best layer [95% CI] | TD peak (layer) | accuracy (Null excluded) | R² acc vs TD [95% CI] |",
             "|---|---|---|---|---|"]
    for shots, stats in summary["per_shots"].items():
        fit = summary["fits"][shots]
        ci = stats["td_best_layer_ci95"]
        r2 = "n/a" if fit["r2"] is None else f"{fit['r2']:.2f}"
        r2ci = fit["r2_ci95"]
        r2ci = "" if r2ci[0] is None else f" [{r2ci[0]:.2f}, {r2ci[1]:.2f}]"
        lines.append(f"| {shots} | {stats['td_best_layer']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] | {stats['td_peak']:.2f} "
                     f"({stats['td_peak_layer']}) | {100 * stats['accuracy_mean']:.1f}% | {r2}{r2ci} |")
    lines += ["", f"Paper (Llama-3.1-8B): R² {PAPER[family]['r2']}.", "", "Accuracy (%) per concept:", ""]
    table = accuracy.pivot(index="concept", columns="shots", values="accuracy").loc[summary["concepts"]] * 100
    td = pd.read_csv(run / "decodability.csv")
    td = td[td.layer == summary["best_layer"]].pivot(index="concept", columns="shots", values="td").loc[summary["concepts"]]
    lines += ["| concept | " + " | ".join(f"acc {s}-shot | TD {s}-shot" for s in table.columns) + " |",
              "|---|" + "---|---|" * len(table.columns)]
    for concept in table.index:
        lines.append(f"| {concept} | " + " | ".join(f"{table.loc[concept, s]:.0f} | {td.loc[concept, s]:.2f}"
                                                     for s in table.columns) + " |")
    if single:
        batched_wall, batched_cpu = timings["generation_seconds"]["4"], timings["generation_cpu_seconds"]["4"]
        single_cpu = single["cpu"] / single["n"] * single["n_prompts"]
        lines += ["", f"Batched vs one prompt at a time, the same {single['n_prompts']} 4-shot prompts: batched "
                  f"{batched_wall:.0f} s wall ({batched_cpu:.0f} s CPU); one at a time {single['per_prompt']:.2f} s "
                  f"wall per prompt on {single['n']} of them, extrapolated to {single['extrapolated_700']:.0f} s wall "
                  f"({single_cpu:.0f} s CPU): **{single['extrapolated_700'] / batched_wall:.1f}x** slower by wall "
                  f"time, {single_cpu / max(batched_cpu, 1e-9):.1f}x by CPU time; {single['same']}/{single['n']} "
                  "completions identical to the batched ones."]
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--families", default="bitwise,pos")
    parser.add_argument("--shots", default="1,4,10")
    parser.add_argument("--prompts-per-concept", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--single", type=int, default=70, help="prompts decoded one at a time (0: skip)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/conceptlens_bench_llm"))
    parser.add_argument("--report-only", action="store_true", help="rebuild llm.md from the runs in --work")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    families = args.families.split(",")
    for family in families if not args.report_only else []:
        run = args.work / family
        shutil.rmtree(run, ignore_errors=True)  # a resumed run would skip its stages
        load_before = os.getloadavg()[0]
        wall, cpu = run_cli(args.model, family, run, args.shots, args.prompts_per_concept, args.seed,
                            args.batch_size, args.threads, args.dtype)
        single = None
        if args.single and "4" in args.shots.split(","):
            single = one_at_a_time(args.model, family, run, 4, args.prompts_per_concept, args.seed, args.single,
                                   args.dtype)
        write_text(run / "bench.json", json.dumps({"wall": wall, "cpu": cpu, "single": single, "load_before": load_before,
                                                   "load_after": os.getloadavg()[0], "args": vars(args)}, default=str))
        write_report(args, families)
    write_report(args, families)
    print(RESULTS.read_text())


def overview(args, families: list[str]) -> list[str]:
    """One line per family: peak depth, TD growth with shots, R², accuracy, beside the paper."""
    lines = [f"### Overview ({args.model} here; Llama-3.1-8B in the paper)", "",
             "| family | best layer / depth | TD at best layer by shots | grows with shots | R² (largest shots) "
             "| mean accuracy by shots | `llm run` wall / CPU |", "|---|---|---|---|---|---|---|"]
    for family in families:
        run = args.work / family
        if not (run / "bench.json").exists():
            continue
        summary, bench = json.loads((run / "summary.json").read_text()), json.loads((run / "bench.json").read_text())
        tds = [summary["per_shots"][s]["td_best_layer"] for s in summary["per_shots"]]
        accs = [summary["per_shots"][s]["accuracy_mean"] for s in summary["per_shots"]]
        grows = "yes" if all(b > a for a, b in zip(tds, tds[1:])) else "no"
        r2 = "n/a" if summary["r2"] is None else f"{summary['r2']:.2f}"
        lines.append(f"| {family} | {summary['best_layer']}/{summary['n_layers']} = {summary['best_layer_fraction']:.2f} "
                     f"(paper {PAPER[family]['peak']}) | " + " → ".join(f"{t:.2f}" for t in tds) + f" | {grows} | "
                     f"{r2} (paper {PAPER[family]['r2']}) | " + " → ".join(f"{100 * a:.0f}%" for a in accs)
                     + f" | {bench['wall'] / 60:.1f} / {bench['cpu'] / 60:.1f} min |")
    return lines + [""]


def write_report(args, families: list[str]) -> None:
    done = [f for f in families if (args.work / f / "bench.json").exists()]
    loads = [json.loads((args.work / f / "bench.json").read_text())["load_before"] for f in done]
    import datetime

    when = max(((args.work / f / "bench.json").stat().st_mtime for f in done), default=None)
    lines = [f"## Pretrained-LM study on {args.model} (`conceptlens llm run`)", "",
             (f"Measured {datetime.datetime.fromtimestamp(when):%Y-%m-%d}. " if when else "") +
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores shared with other "
             f"jobs (load average {', '.join(f'{x:.1f}' for x in loads)} at the start of each family); torch threads "
             f"{args.threads}, {args.dtype}, batch {args.batch_size}; shots {args.shots}, {args.prompts_per_concept} "
             f"prompts per concept, seed {args.seed}. Command: `conceptlens llm run --family F --shots {args.shots} "
             f"--prompts-per-concept {args.prompts_per_concept} --out RUN`; rebuild this page from the runs with "
             "`--report-only`.", ""]
    lines += overview(args, done)
    for family in done:
        bench = json.loads((args.work / family / "bench.json").read_text())
        lines += family_section(family, args.work / family, bench["wall"], bench["cpu"], bench["single"])
    write_text(RESULTS, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
