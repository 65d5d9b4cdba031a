"""The model ladder's rungs in float32 and bfloat16 on this machine: load time, peak memory, study time, TD change.

Each (model, dtype, family) rung runs `ladder_cell` (the ladder's own cell: `llm run`'s encoding study) in a
fresh child process at one thread, one rung at a time, so its peak resident memory is that rung's alone.
Both dtypes see the same prompts (same seed, shots and prompts per concept). Then per model: the largest
change bf16 makes to mean TD at any layer, to ICL accuracy and to the peak layer, and the share of identical
completions; and a projection of the whole ladder's wall time per prompts-per-concept value, from the
measured load, fixed (analysis, UMAP, figures) and per-prompt generation seconds. Writes
benchmarks/results/ladder_dtype.md (and .csv); a rerun skips rungs already measured.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ladder_dtype.py \
        [--models a,b] [--dtypes float32,bfloat16] [--prompts-per-concept 12] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from conceptlens.storage import write_json, write_text

RESULTS = Path(__file__).parent / "results" / "ladder_dtype.md"
MODELS = "smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b"
CANDIDATES = (12, 15, 20, 25, 30, 40, 50, 60, 75, 100)  # prompts per concept a default may take (k = 10 needs at least 11)
CHILD = ("import json, sys, torch; torch.set_num_threads(int(sys.argv[1])); "
         "from conceptlens.llm.ladder.cell import ladder_cell; "
         "ladder_cell(sys.argv[2], sys.argv[3], sys.argv[4], shots=json.loads(sys.argv[5]), "
         "prompts_per_concept=int(sys.argv[6]), dtype=sys.argv[7], seed=0, k=10)")


def run_rung(folder: Path, model: str, family: str, dtype: str, shots: list[int], ppc: int, threads: int) -> dict:
    """One rung in a fresh process (skipped when measured already); its rung.json plus wall time and load."""
    if (folder / "measured.json").exists():
        return json.loads((folder / "measured.json").read_text())
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    load_before, start, cpu = os.getloadavg(), time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", CHILD, str(threads), str(folder), model, family, json.dumps(shots),
                    str(ppc), dtype], env=env, check=True)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    rung = json.loads((folder / "rung.json").read_text())
    summary = json.loads((folder / "study" / "summary.json").read_text())
    timings = summary["timings"]
    n_prompts = len(summary["concepts"]) * ppc * len(shots)
    record = {**rung, "prompts_per_concept": ppc, "n_prompts": n_prompts, "process_seconds": round(wall, 1),
              "process_cpu_seconds": round(after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime, 1),
              "generation_seconds": round(sum(timings["generation_seconds"].values()), 2),
              "fixed_seconds": round(rung["study_seconds"] - sum(timings["generation_seconds"].values()), 2),
              "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
              "accuracy": summary["per_shots"][str(max(shots))]["accuracy_mean"],
              "td_peak": summary["per_shots"][str(max(shots))]["td_best_layer"]}
    write_json(folder / "measured.json", record)
    return record


def mean_td(folder: Path) -> pd.Series:
    """Mean TD over concepts (Null included, as in the study's figures) per layer, at the largest shots."""
    td = pd.read_csv(folder / "study" / "decodability.csv")
    return td[td.shots == td.shots.max()].groupby("layer").td.mean()


def same_completions(a: Path, b: Path) -> float:
    """Share of prompts whose greedy completion is identical in both runs (the same prompts, in order)."""
    left = pd.read_csv(a / "study" / "generations.csv", keep_default_na=False, dtype={"completion": str})
    right = pd.read_csv(b / "study" / "generations.csv", keep_default_na=False, dtype={"completion": str})
    same_prompts = ["concept", "answer"]  # generations.csv keeps no prompt text: its targets, in order
    assert left[same_prompts].equals(right[same_prompts]), "the two dtypes did not see the same prompts"
    return float((left.completion.values == right.completion.values).mean())


def compare(work: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Per (model, family): what bf16 changes against float32."""
    out = []
    for (model, family), group in rows.groupby(["model", "family"], sort=False):
        by = group.set_index("dtype")
        if not {"float32", "bfloat16"} <= set(by.index):
            continue
        f32, b16 = work / model / "float32" / family, work / model / "bfloat16" / family
        change = (mean_td(b16) - mean_td(f32)).abs()
        out.append({"model": model, "family": family, "max_abs_mean_td_change": round(float(change.max()), 4),
                    "at_layer": int(change.idxmax()), "peak_layer_f32": int(by.loc["float32", "best_layer"]),
                    "peak_layer_bf16": int(by.loc["bfloat16", "best_layer"]),
                    "td_peak_f32": by.loc["float32", "td_peak"], "td_peak_bf16": by.loc["bfloat16", "td_peak"],
                    "accuracy_f32": by.loc["float32", "accuracy"], "accuracy_bf16": by.loc["bfloat16", "accuracy"],
                    "same_completions": round(same_completions(f32, b16), 3)})
    return pd.DataFrame(out)


def generation_cpu_seconds(folder: Path) -> float:
    """CPU seconds the study's generation stages took (summary.json's timings)."""
    timings = json.loads((folder / "study" / "summary.json").read_text())["timings"]
    return float(sum(timings["generation_cpu_seconds"].values()))


def projection(rows: pd.DataFrame) -> pd.DataFrame:
    """Projected seconds of the whole ladder (every measured model x family, one rung at a time) per dtype and
    prompts per concept. Wall: per rung, load + fixed + generation seconds per prompt x prompts, as measured
    under this load. CPU: the rung process's CPU seconds with generation rescaled the same way (about the wall
    time on an idle core, since each rung uses one thread)."""
    out = []
    for dtype, group in rows.groupby("dtype", sort=False):
        concepts = group.n_prompts / group.prompts_per_concept
        for ppc in CANDIDATES:
            scale = concepts * ppc / group.n_prompts
            wall = group.load_seconds + group.fixed_seconds + group.generation_seconds * scale
            cpu = group.process_cpu_seconds - group.generation_cpu_seconds + group.generation_cpu_seconds * scale
            out.append({"dtype": dtype, "prompts_per_concept": ppc, "rungs": len(group),
                        "seconds": round(float(wall.sum())), "cpu_seconds": round(float(cpu.sum()))})
    return pd.DataFrame(out)


def markdown(rows: pd.DataFrame, changes: pd.DataFrame, projected: pd.DataFrame, budget: float) -> str:
    loads = [x for pair in rows.load_average_1min for x in pair]
    ppc = int(rows.prompts_per_concept.iloc[0])
    lines = [f"Each rung: `ladder_cell` in its own process, 1 thread, {ppc} prompts per concept, 4 shots, k = 10, "
             f"seed 0; 1-minute load average {min(loads):.1f}-{max(loads):.1f} while the rungs ran (2 cores).", "",
             "| model | dtype | family | load s | peak GiB | study s | s per prompt (generation), wall / CPU | fixed s "
             "(analysis, UMAP, figures) | process s (CPU s) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows.itertuples():
        lines.append(f"| {r.model} | {r.dtype} | {r.family} | {r.load_seconds:.1f} | {r.peak_memory_gib:.2f} | "
                     f"{r.study_seconds:.0f} | {r.generation_seconds / r.n_prompts:.2f} / "
                     f"{r.generation_cpu_seconds / r.n_prompts:.2f} | {r.fixed_seconds:.0f} | "
                     f"{r.process_seconds:.0f} ({r.process_cpu_seconds:.0f}) |")
    lines += ["", "What bfloat16 changes against float32 (the same prompts):", "",
              "| model | family | max abs change of mean TD (layer) | TD peak layer f32 / bf16 | TD at peak f32 / bf16 "
              "| ICL acc f32 / bf16 | identical completions |", "|---|---|---|---|---|---|---|"]
    for c in changes.itertuples():
        lines.append(f"| {c.model} | {c.family} | {c.max_abs_mean_td_change:.3f} ({c.at_layer}) | {c.peak_layer_f32} / "
                     f"{c.peak_layer_bf16} | {c.td_peak_f32:.2f} / {c.td_peak_bf16:.2f} | {c.accuracy_f32:.3f} / "
                     f"{c.accuracy_bf16:.3f} | {c.same_completions:.0%} |")
    dtypes = list(dict.fromkeys(projected.dtype))
    wall = projected.pivot(index="prompts_per_concept", columns="dtype", values="seconds")[dtypes]
    cpu = projected.pivot(index="prompts_per_concept", columns="dtype", values="cpu_seconds")[dtypes]
    lines += ["", f"Projected whole ladder ({int(projected.rungs.iloc[0])} rungs, one at a time), minutes: wall under "
              "the load above, and CPU (about the wall time on an idle core):", "",
              "| prompts per concept | " + " | ".join(f"{d} wall | {d} CPU" for d in dtypes) + " |",
              "|---|" + "---|---|" * len(dtypes)]
    for ppc_value in wall.index:
        lines.append(f"| {ppc_value} | " + " | ".join(f"{wall.loc[ppc_value, d] / 60:.0f} | {cpu.loc[ppc_value, d] / 60:.0f}"
                                                      for d in dtypes) + " |")
    for dtype in dtypes:
        fits = [int(max(table.index[table[dtype] <= budget], default=0)) for table in (wall, cpu)]
        lines.append(f"\nLargest prompts per concept within {budget / 60:.0f} min, {dtype}: {fits[0] or 'none'} by wall "
                     f"time under this load, {fits[1] or 'none'} by CPU time.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--families", default="bitwise,pos")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--shots", default="4")
    parser.add_argument("--prompts-per-concept", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget-minutes", type=float, default=60)
    parser.add_argument("--work", type=Path, default=Path("runs/ladder_dtype"))
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the rungs in --work")
    args = parser.parse_args()
    shots = [int(s) for s in args.shots.split(",")]
    records = []
    for model in args.models.split(","):
        for dtype in args.dtypes.split(","):
            for family in args.families.split(","):
                folder = args.work / model / dtype / family
                if args.report_only and not (folder / "measured.json").exists():
                    continue
                records.append(run_rung(folder, model, family, dtype, shots, args.prompts_per_concept, args.threads))
                print(json.dumps({k: records[-1][k] for k in ("model", "dtype", "family", "load_seconds",
                                                              "study_seconds", "peak_memory_gib")}), flush=True)
    rows = pd.DataFrame(records)
    rows["generation_cpu_seconds"] = [generation_cpu_seconds(args.work / r.model / r.dtype / r.family)
                                      for r in rows.itertuples()]
    changes, projected = compare(args.work, rows), projection(rows)
    write_text(RESULTS.with_suffix(".csv"), rows.drop(columns=["load_average_1min"]).to_csv(index=False))
    write_text(RESULTS, "# The ladder's rungs in float32 and bfloat16 (bench_ladder_dtype.py)\n\n"
               + markdown(rows, changes, projected, args.budget_minutes * 60))
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
