"""Benchmark: last-token activations of every layer of SmolLM2-135M for 700 few-shot prompts.

Methods, each in its own process, batches of 32, left padded: conceptlens `capture_activations`
(it sorts prompts by length itself); plain HF `output_hidden_states`, both on batches of
consecutive prompts (how it is usually written) and on the very batches conceptlens forms (length
sorted: isolates everything but the sorting); TransformerLens 4.x `run_with_cache` (through
`TransformerBridge.boot_transformers`, with and without a names filter); nnsight `trace`.
Reports capture wall time (model load shown apart), throughput, peak RSS of the process and above
the resident model, and the largest absolute difference from plain HF run on the same batches.
The peers are not dependencies of conceptlens: they run from `--peer-python`, a separate venv with
transformer-lens and nnsight (and conceptlens -e); a peer that cannot run is listed with the reason.

    python benchmarks/bench_capture.py                      # conceptlens on 700, all on 64
    python benchmarks/bench_capture.py --n 700 --peer-n 700 --threads 4
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # run as a script or imported: its helpers sit beside it

METHODS = ("conceptlens", "hf_sorted", "hf", "nnsight", "transformer_lens_filtered", "transformer_lens_full")
LABELS = {"conceptlens": "conceptlens capture_activations", "hf": "plain HF output_hidden_states",
          "hf_sorted": "plain HF output_hidden_states, conceptlens's sorted batches",
          "nnsight": "nnsight trace + save", "transformer_lens_filtered": "TransformerLens run_with_cache (names filter)",
          "transformer_lens_full": "TransformerLens run_with_cache (full cache)"}
SORTED = ("conceptlens", "hf_sorted")  # the others take batches of consecutive prompts


def build_prompts(n: int, seed: int = 0) -> list[str]:
    """Bitwise few-shot prompts (2-4 shots of 5-bit pairs: 50-88 SmolLM2 tokens), `PromptFormat` default."""
    from conceptlens.prompts import PromptFormat
    from conceptlens.tasks.family import Example

    ops = {"AND": lambda a, b: a & b, "OR": lambda a, b: a | b, "XOR": lambda a, b: a ^ b,
           "NAND": lambda a, b: ~(a & b) & 31, "NOR": lambda a, b: ~(a | b) & 31, "XNOR": lambda a, b: ~(a ^ b) & 31}
    rng = random.Random(seed)
    fmt, texts = PromptFormat(), []
    for i in range(n):
        op = list(ops.values())[i % len(ops)]
        examples = [Example(f"{a:05b} {b:05b}", f"{op(a, b):05b}")
                    for a, b in ((rng.getrandbits(5), rng.getrandbits(5)) for _ in range(rng.randint(3, 5)))]
        texts.append(fmt.build(examples[:-1], examples[-1]).text)
    return texts


def make_batches(lengths: list[int], batch_size: int, by_length: bool) -> list[list[int]]:
    """Consecutive prompts, or the batches `capture_activations` forms (longest first, stable sort)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i]) if by_length else list(range(len(lengths)))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def resident_mb() -> float:
    """Current resident set size (the weights are memory-mapped: they count once touched)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ------------------------------------------------------------------ child: one method, one process
def child(method: str, prompts_file: Path, save: Path, threads: int, batch_size: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from conceptlens.models.embedded import embedded_folder

    folder = str(embedded_folder("smollm2-135m"))
    texts = json.loads(prompts_file.read_text())
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    encoded = [tokenizer(t)["input_ids"] for t in texts]
    batches = make_batches([len(e) for e in encoded], batch_size, by_length=method in SORTED)
    n_layers = 30
    out = np.empty((n_layers + 1, len(texts), 576), dtype=np.float32)

    def padded(rows):
        from conceptlens.activations.capture import left_pad

        return left_pad([encoded[i] for i in rows], tokenizer.pad_token_id)

    if method == "conceptlens":
        from conceptlens.activations.capture import capture_activations
        from conceptlens.models import load_model

        lm = load_model(folder)
        loaded, cpu_loaded = time.perf_counter(), time.process_time()
        rss_loaded = peak_rss_mb()
        _, acts = capture_activations(lm.model, lm.layout, encoded, batch_size=batch_size,
                                      pad_id=tokenizer.pad_token_id)
        out[:] = acts.numpy()
    elif method == "baseline":  # libraries + every weight paged in: what any method holds at least
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        loaded = time.perf_counter()
        rss_loaded = peak_rss_mb()
        total = sum(float(p.sum()) for p in model.parameters())  # float32: no large temporaries
        return {"method": method, "resident_mb": resident_mb(), "check": total}
    elif method in ("hf", "hf_sorted", "nnsight"):
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        if method == "nnsight":
            from nnsight import LanguageModel

            wrapped = LanguageModel(model, tokenizer=tokenizer)
        loaded, cpu_loaded = time.perf_counter(), time.process_time()
        rss_loaded = peak_rss_mb()
        with torch.no_grad():
            for rows in batches:
                ids, mask, position_ids = padded(rows)
                if method.startswith("hf"):
                    hidden = model(input_ids=ids, attention_mask=mask, position_ids=position_ids,
                                   output_hidden_states=True).hidden_states
                    out[:, rows] = torch.stack([h[:, -1] for h in hidden]).numpy()
                else:
                    saved = []
                    with wrapped.trace(ids, attention_mask=mask, position_ids=position_ids):
                        saved.append(wrapped.model.embed_tokens.output[:, -1].save())
                        for layer in wrapped.model.layers[:-1]:
                            output = layer.output
                            saved.append((output[0] if isinstance(output, tuple) else output)[:, -1].save())
                        saved.append(wrapped.model.norm.output[:, -1].save())
                    out[:, rows] = torch.stack([torch.as_tensor(s) for s in saved]).numpy()
    elif method.startswith("transformer_lens"):
        from transformer_lens.model_bridge import TransformerBridge

        bridge = TransformerBridge.boot_transformers(folder, tokenizer=tokenizer)
        loaded, cpu_loaded = time.perf_counter(), time.process_time()
        rss_loaded = peak_rss_mb()
        names = (["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(n_layers - 1)]
                 + ["ln_final.hook_out"])
        kwargs = {"names_filter": names} if method.endswith("filtered") else {}
        with torch.no_grad():
            for rows in batches:
                ids, mask, _ = padded(rows)
                _, cache = bridge.run_with_cache(ids, attention_mask=mask, **kwargs)
                out[:, rows] = torch.stack([cache[name][:, -1] for name in names]).numpy()
                del cache
    else:
        raise SystemExit(f"unknown method {method}")
    done, cpu_done = time.perf_counter(), time.process_time()
    np.save(save, out)
    return {"method": method, "n": len(texts), "load_s": loaded - start, "capture_s": done - loaded,
            "cpu_s": cpu_done - cpu_loaded, "lengths": [len(e) for e in encoded],
            "peak_rss_mb": peak_rss_mb(), "rss_after_load_mb": rss_loaded, "threads": threads,
            "tokens": sum(len(e) for e in encoded), "min_len": min(map(len, encoded)),
            "max_len": max(map(len, encoded))}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ parent: run all, write the table
def run_method(python: str, method: str, texts: list[str], work: Path, threads: int, batch_size: int,
               timeout: int) -> dict:
    prompts_file = work / f"prompts_{len(texts)}.json"
    prompts_file.write_text(json.dumps(texts))
    save = work / f"{method}_{len(texts)}.npy"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}
    cmd = [python, str(Path(__file__).resolve()), "--child", method, "--prompts-file", str(prompts_file),
           "--save", str(save), "--threads", str(threads), "--batch-size", str(batch_size)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"method": method, "error": f"did not finish within {timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"method": method, "error": f"exit {done.returncode}: {tail[:300]}"}
    result = json.loads(lines[-1][len("RESULT "):])
    result["save"] = str(save)
    return result


def versions(python: str) -> dict:
    code = ("import json, importlib.metadata as m\nout = {}\n"
            "for p in ('torch', 'transformers', 'transformer-lens', 'nnsight', 'numpy', 'scikit-learn'):\n"
            "    try: out[p] = m.version(p)\n    except Exception: out[p] = 'not installed'\nprint(json.dumps(out))")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child")
    parser.add_argument("--prompts-file", type=Path)
    parser.add_argument("--save", type=Path)
    parser.add_argument("--n", type=int, default=700, help="prompts for the full-size conceptlens run")
    parser.add_argument("--peer-n", type=int, default=64, help="prompts every method runs (the peers are slow here)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "1")))
    parser.add_argument("--peer-python", default=os.environ.get("BENCH_PEER_PYTHON", "/tmp/benchvenv/bin/python"),
                        help="a Python with transformer-lens, nnsight and conceptlens installed")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "capture.md")
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.prompts_file, args.save, args.threads, args.batch_size)),
              flush=True)
        return

    import numpy as np

    python = args.peer_python if Path(args.peer_python).exists() else sys.executable
    texts = build_prompts(max(args.n, args.peer_n))
    runs = [("baseline", "baseline", 1)] + [(m, m, args.peer_n) for m in args.methods.split(",")]
    if args.n != args.peer_n and "conceptlens" in args.methods:
        runs.append(("conceptlens_full", "conceptlens", args.n))
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_capture.") as tmp:
        for key, method, n in runs:
            print(f"{key}: {n} prompts ...", file=sys.stderr, flush=True)
            results[key] = run_method(python, method, texts[:n], Path(tmp), args.threads, args.batch_size,
                                      args.timeout)
            print(f"  {results[key]}", file=sys.stderr, flush=True)
        same_batches = {"conceptlens": "hf_sorted", "hf": "hf_sorted", "nnsight": "hf",
                        "transformer_lens_filtered": "hf", "transformer_lens_full": "hf"}
        for key, ref_key in same_batches.items():
            result, ref = results.get(key, {}), results.get(ref_key, {})
            if "save" in result and "save" in ref:
                mine, theirs = np.load(result["save"]), np.load(ref["save"])
                result["max_abs_diff"] = float(np.abs(mine - theirs).max())
                result["diff_ref"] = ref_key
                result["ref_scale"] = float(np.abs(theirs).max())
    from capture_report import write_report

    write_report(args, python, results, versions(python))


if __name__ == "__main__":
    main()
