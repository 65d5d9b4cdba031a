"""The FLOP bound of `llm run`'s encoding study, and what the decoding spends above it.

Counts, from SmolLM2's shape and the study's own prompts (1/4/10 shots x 100 prompts per concept),
the FLOPs the study needs: a prefill of each prompt with logits at its last token, then one cached
step per further answer token (answer + newline). Beside it, what batched `generate` executes
(left padding, every row decoded until the batch's longest budget) and what nested demonstrations
would save (one prefill of the 10-shot demonstrations serving the 1- and 4-shot prompts of the same
query). Then, on one batch per shots value, HF directly: prefill with logits at every position vs
the last (`logits_to_keep`), what `generate` asks for, and the decode steps' rate. Optionally times
`conceptlens llm run` on fewer prompts (`--run-ppc`) and scales it. Writes results/llm_bound.md.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_llm_bound.py --threads 1 [--run-ppc 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from limits import forward_flops, generation_flops, matmul_peak
from llm_bound_report import bf16_lines, decode_lines, report

RESULTS = Path(__file__).resolve().parent / "results" / "llm_bound.md"
RUN_CACHE = RESULTS.with_name("llm_bound_run.json")  # the last `llm run` timing, reused with --run-ppc 0


def study_counts(lm, family: str, shots: list[int], ppc: int, seed: int) -> dict[int, list[dict]]:
    """Per shots value, per prompt: tokens, tokens before the query, answer tokens (+ newline)."""
    from conceptlens.llm.encoding.study import plan_study
    from conceptlens.prompts import token_roles
    from conceptlens.tasks.registry import load_family

    stages = plan_study(lm, load_family(family, split="test", seed=seed), shots, ppc, seed)
    counts = {}
    for stage in stages:
        rows = []
        for prompt in stage.prompts:
            ids, roles = token_roles(lm.tokenizer, prompt)
            answer = len(lm.tokenizer(prompt.completion, add_special_tokens=False)["input_ids"])
            rows.append({"ids": ids, "prefix": roles.index("query_input"), "answer": answer})
        counts[stage.shots] = rows
    return counts


def stage_flops(config, rows: list[dict], batch_size: int) -> dict:
    """Needed FLOPs, and what batched, padded decoding to the batch's longest budget (answer + 2) runs."""
    needed = generation_flops(config, [len(r["ids"]) for r in rows], [r["answer"] for r in rows])
    order = sorted(rows, key=lambda r: -len(r["ids"]))
    executed = 0
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        width, steps = len(batch[0]["ids"]), max(r["answer"] + 2 for r in batch)
        executed += generation_flops(config, [width] * len(batch), [steps] * len(batch))
    prefill = forward_flops(config, [len(r["ids"]) for r in rows], logits=1)
    tokens = sum(len(r["ids"]) for r in rows)
    return {"prompts": len(rows), "tokens": tokens, "needed": needed, "prefill": prefill, "decode": needed - prefill,
            "executed": executed,
            "logits_all": forward_flops(config, [len(r["ids"]) for r in rows], logits=None) - prefill}


def nested_saving(config, counts: dict[int, list[dict]]) -> float:
    """FLOPs saved if every smaller-shots prompt reused the largest-shots prompt's demonstrations (same
    query, nested demos): the smaller prompts' demonstration tokens are never prefilled again."""
    largest = max(counts)
    saved = 0
    for shots, rows in counts.items():
        if shots != largest:
            saved += forward_flops(config, [r["prefix"] for r in rows])
    return saved


def stop_ids(tokenizer) -> list[int]:
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return sorted({i for i, t in enumerate(texts) if "\n" in t} | {tokenizer.eos_token_id})


def cpu_seconds(fn, repeats: int = 2) -> float:
    """Least CPU time of `repeats` calls: on one thread, the time the core ran us (other jobs' turns excluded)."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


@torch.inference_mode()
def time_batch(lm, rows: list[dict], stops: list[int]) -> dict:
    """One left-padded batch: prefill with every vs the last position's logits, then `generate`."""
    from conceptlens.activations.capture import left_pad

    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else stops[-1]
    ids, mask, position_ids = left_pad([r["ids"] for r in rows], pad)
    kwargs = dict(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=True)
    all_logits = cpu_seconds(lambda: lm.model(**kwargs, logits_to_keep=0))
    last_logit = cpu_seconds(lambda: lm.model(**kwargs, logits_to_keep=1))
    heads = []
    hook = lm.model.lm_head.register_forward_pre_hook(lambda m, args: heads.append(args[0].shape[1]))
    budget = max(r["answer"] + 2 for r in rows)
    start = time.process_time()
    out = lm.model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=budget,
                            eos_token_id=stops, pad_token_id=pad, num_beams=1, temperature=None, top_p=None,
                            top_k=None)
    generate_s = time.process_time() - start
    hook.remove()
    steps = out.shape[1] - ids.shape[1]
    return {"rows": len(rows), "width": ids.shape[1], "all_logits_s": all_logits, "last_logit_s": last_logit,
            "generate_s": generate_s, "steps": steps, "prefill_logit_rows": heads[0],
            "decode_s": max(generate_s - last_logit, 0.0)}


def last_llm_run(args) -> dict | None:
    """Time `llm run` now (`--run-ppc N`), or reuse the last timing saved beside the results (`--run-ppc 0`)."""
    import datetime

    from conceptlens.storage import write_text

    if args.run_ppc:
        run = time_llm_run(args.family, args.run_ppc, args.threads, args.batch_size)
        run.update(date=f"{datetime.datetime.now():%Y-%m-%d %H:%M}", load=os.getloadavg()[0])
        write_text(RUN_CACHE, json.dumps(run))
        return run
    if not RUN_CACHE.exists():
        return None
    run = json.loads(RUN_CACHE.read_text())
    for key in ("generation", "generation_wall"):
        run[key] = {int(k): v for k, v in run[key].items()}
    return {**run, "reused": True}


@torch.inference_mode()
def decode_batch_sizes(lm, rows: list[dict], stops: list[int], sizes: tuple[int, ...] = (16, 64)) -> list[dict]:
    """Decode-step CPU time per row at several batch sizes (the same prompts): weights are read once a step."""
    from conceptlens.activations.capture import left_pad

    order = sorted(rows, key=lambda r: -len(r["ids"]))
    middle = max(0, len(order) // 2 - max(sizes) // 2)
    out = []
    for size in sizes:
        batch = [r["ids"] for r in order[middle:middle + size]]
        pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else stops[-1]
        ids, mask, position_ids = left_pad(batch, pad)
        prefill = cpu_seconds(lambda: lm.model(input_ids=ids, attention_mask=mask, position_ids=position_ids,
                                               use_cache=True, logits_to_keep=1), repeats=1)
        start = time.process_time()
        generated = lm.model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=8,
                                      min_new_tokens=8, pad_token_id=pad, num_beams=1, temperature=None,
                                      top_p=None, top_k=None)
        steps = generated.shape[1] - ids.shape[1] - 1
        decode = time.process_time() - start - prefill
        out.append({"rows": size, "width": ids.shape[1], "steps": steps, "per_row_step_ms": 1e3 * decode / steps / size})
    return out


def time_llm_run(family: str, ppc: int, threads: int, batch_size: int) -> dict:
    """`conceptlens llm run` on `ppc` prompts per concept: its per-stage generation seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        cli = Path(sys.executable).with_name("conceptlens")
        start = time.perf_counter()
        subprocess.run([str(cli), "llm", "run", "--family", family, "--shots", "1,4,10", "--prompts-per-concept",
                        str(ppc), "--batch-size", str(batch_size), "--out", f"{tmp}/run"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        timings = json.loads(Path(f"{tmp}/run/summary.json").read_text())["timings"]
    return {"ppc": ppc, "wall": wall, "generation": {int(k): v for k, v in timings["generation_cpu_seconds"].items()},
            "generation_wall": {int(k): v for k, v in timings["generation_seconds"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="bitwise")
    parser.add_argument("--shots", default="1,4,10")
    parser.add_argument("--ppc", type=int, default=100, help="prompts per concept of the study counted")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run-ppc", type=int, default=20, help="time `llm run` on this many per concept (0: skip)")
    parser.add_argument("--no-batches", action="store_true", help="count only: no forward pass")
    args = parser.parse_args()
    args.load_start = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    from conceptlens.models import load_model

    lm = load_model("smollm2-135m")
    config = lm.model.config
    counts = study_counts(lm, args.family, [int(s) for s in args.shots.split(",")], args.ppc, args.seed)
    flops = {shots: stage_flops(config, rows, args.batch_size) for shots, rows in counts.items()}
    batches = {} if args.no_batches else time_batches(lm, config, counts, args.batch_size)
    bf16 = None
    if batches:  # the same middle batch of the middle shots value in bfloat16, for the bf16 section
        shots = sorted(counts)[len(counts) // 2]
        bf16 = {"shots": shots, **time_batches(load_model("smollm2-135m", dtype="bfloat16"), config,
                                               {shots: counts[shots]}, args.batch_size)[shots]}
    run = last_llm_run(args)
    decode = decode_batch_sizes(lm, counts[sorted(counts)[len(counts) // 2]], stop_ids(lm.tokenizer)) if batches else []
    peak = matmul_peak(args.threads, "float32")
    from conceptlens.storage import write_text

    lines = report(args, flops, nested_saving(config, counts), batches, run, peak)
    lines += decode_lines(decode) + (bf16_lines(batches, bf16) if bf16 else [])
    write_text(RESULTS, "\n".join(lines) + "\n")
    print("\n".join(lines))


def time_batches(lm, config, counts: dict[int, list[dict]], batch_size: int) -> dict[int, dict]:
    """`time_batch` on the middle batch of each shots value's sorted prompts, with its FLOP rates."""
    stops = stop_ids(lm.tokenizer)
    out = {}
    for shots, rows in counts.items():
        order = sorted(rows, key=lambda r: -len(r["ids"]))
        middle = (len(order) // batch_size // 2) * batch_size
        batch = time_batch(lm, order[middle:middle + batch_size], stops)
        prefill = forward_flops(config, [batch["width"]] * batch["rows"], logits=1)
        decode = generation_flops(config, [batch["width"]] * batch["rows"], [batch["steps"]] * batch["rows"]) - prefill
        out[shots] = {**batch, "prefill_flops": prefill, "decode_flops": decode,
                      "prefill_rate": prefill / batch["last_logit_s"], "decode_rate": decode / max(batch["decode_s"], 1e-9)}
        print(shots, out[shots], flush=True)
    return out


if __name__ == "__main__":
    main()
