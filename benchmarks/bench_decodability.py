"""Benchmark: leave-one-out kNN TD over 31 layers x 700 points (d = 576, 7 concepts x 100) against a
scikit-learn loop over layers (`NearestNeighbors(k + 1, algorithm="brute")`, self dropped, majority
vote), plus the exact leave-one-out `KNeighborsClassifier` refit per point on one layer as a check.
With `--scale`, TD at scale instead: the k nearest neighbours of one layer of N points x 4,096 dims
(ours blockwise vs scikit-learn brute vs faiss `IndexFlatL2`, each in its own process for its peak
memory), FLOPs and the fraction of this machine's float32 matmul peak (`pip install .[bench]`).

    python benchmarks/bench_decodability.py [--layers 31 --points 700 --dim 576 --k 10 --repeats 3]
    python benchmarks/bench_decodability.py --scale 700,5000,50000 --threads 2   # -> results/decodability_scale.md
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def make_activations(layers: int, points: int, dim: int, concepts: int, seed: int = 0):
    """Clusters that separate more in the middle layers, on a shared random offset (like real residuals)."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(concepts), points // concepts)
    centres = rng.normal(size=(concepts, dim))
    offset = rng.normal(size=dim) * 5
    strength = np.sin(np.linspace(0, np.pi, layers)) * 0.6
    acts = np.stack([offset + s * centres[codes] + rng.normal(size=(len(codes), dim)) for s in strength])
    return acts.astype(np.float32), [f"concept{c}" for c in codes], codes


def sklearn_loop(acts: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """Mean per-concept LOO accuracy per layer, the usual scikit-learn way."""
    from sklearn.neighbors import NearestNeighbors

    n_classes = codes.max() + 1
    means = []
    for points in acts:
        index = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(points).kneighbors(
            points, return_distance=False)
        rows = np.arange(len(points))[:, None]
        not_self = index != rows
        # drop self (or the farthest, should self be missing among equal distances)
        keep = np.where(not_self.all(axis=1)[:, None], np.arange(k + 1) < k, not_self)
        neighbours = index[keep].reshape(len(points), k)
        counts = np.apply_along_axis(np.bincount, 1, codes[neighbours], minlength=n_classes)
        predicted = counts.argmax(axis=1)  # ties to the lowest label, as KNeighborsClassifier
        correct = predicted == codes
        means.append(np.mean([correct[codes == c].mean() for c in range(n_classes)]))
    return np.array(means)


def timed(fn, repeats: int, clock=time.perf_counter):
    """Median and least time of `repeats` calls on `clock` (process CPU time at one thread), last value."""
    times, value = [], None
    for _ in range(repeats):
        start = clock()
        value = fn()
        times.append(clock() - start)
    return float(np.median(times)), float(min(times)), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=31)
    parser.add_argument("--points", type=int, default=700)
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--concepts", type=int, default=7)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "1")))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--scale", default="", help="comma-separated point counts: run the scale benchmark")
    parser.add_argument("--scale-dim", type=int, default=4096)
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # one method in this process
    parser.add_argument("--save", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        return run_case(args)
    if args.scale:
        return scale(args)
    args.out = args.out or HERE / "results" / "decodability.md"
    import torch

    torch.set_num_threads(args.threads)

    import sklearn
    from threadpoolctl import threadpool_info, threadpool_limits

    from conceptlens.decodability import task_decodability
    from conceptlens.decodability.knn import neighbours, vote
    from conceptlens.storage import write_text

    from limits import matmul_peak, peak_line

    acts, labels, codes = make_activations(args.layers, args.points, args.dim, args.concepts)
    clock = time.process_time if args.threads == 1 else time.perf_counter  # one thread, shared box: CPU time
    with threadpool_limits(args.threads):
        ours_med, ours_min, ours = timed(lambda: task_decodability(acts, labels, k=args.k), args.repeats, clock)
        sk_med, sk_min, theirs = timed(lambda: sklearn_loop(acts, codes, args.k), args.repeats, clock)
        # exactness on one layer against refitting KNeighborsClassifier without each point
        from sklearn.neighbors import KNeighborsClassifier

        layer = args.layers // 2
        points = acts[layer].astype(np.float64)
        start = clock()
        loo, tied = [], []
        for i in range(len(points)):
            keep = np.arange(len(points)) != i
            knn = KNeighborsClassifier(n_neighbors=args.k, algorithm="brute").fit(points[keep], codes[keep])
            loo.append(knn.predict(points[i:i + 1])[0])
            near = np.bincount(codes[keep][knn.kneighbors(points[i:i + 1], return_distance=False)[0]])
            tied.append((near == near.max()).sum() > 1)
        refit_s = clock() - start
        loo, tied = np.array(loo), np.array(tied)
        mine = vote(codes[neighbours(points, args.k)], args.concepts)
    agree = float((mine == loo)[~tied].mean())
    blas = ", ".join(sorted({f"{i['internal_api']} {i.get('version')} ({i.get('threading_layer', '')})"
                             for i in threadpool_info()}))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    flops = 2 * args.layers * args.points ** 2 * args.dim  # every pair's distance, every layer
    peak = matmul_peak(args.threads, "float32")
    fraction = lambda seconds: f"{flops / seconds / 1e9:.1f} | {flops / seconds / peak:.3f}"  # noqa: E731
    lines = [f"## Concept decodability: {args.layers} layers x {args.points} points, d = {args.dim}, "
             f"{args.concepts} concepts, k = {args.k}", "",
             f"Synthetic clustered activations, {args.threads} BLAS thread(s) ({blas}); median of {args.repeats} "
             f"runs (min in brackets), {'CPU' if args.threads == 1 else 'wall'} seconds (load average "
             f"{os.getloadavg()[0]:.1f}). Process peak RSS {rss:.0f} MB. FLOPs needed: 2 N² d per layer (all pairs), "
             f"{flops / 1e9:.1f} GFLOP; {peak_line(args.threads)}.", "",
             "| method | seconds | ratio | GFLOP/s | fraction of float32 peak |", "|---|---|---|---|---|",
             f"| conceptlens `task_decodability` (all layers, vectorised) | {ours_med:.2f} ({ours_min:.2f}) | 1.00 | "
             f"{fraction(ours_med)} |",
             f"| scikit-learn loop: `NearestNeighbors(k+1, brute)` per layer, drop self, vote | {sk_med:.2f} "
             f"({sk_min:.2f}) | {sk_med / ours_med:.2f} | {fraction(sk_med)} |",
             f"| scikit-learn exact LOO: `KNeighborsClassifier` refit without each point, one layer only | "
             f"{refit_s:.2f} | {refit_s * args.layers / ours_med:.0f} (projected to {args.layers} layers) | - | - |", "",
             f"- conceptlens is **{sk_med / ours_med:.2f}x** the speed of the scikit-learn loop "
             f"(target: no slower, ratio >= 1).",
             f"- Mean TD per layer, conceptlens vs the loop: max difference "
             f"{np.abs(ours.mean - theirs).max():.4f} (the loop gives ties to the lowest label; ours to the "
             f"nearest tied concept).",
             f"- Layer {layer}: predictions equal the exact leave-one-out `KNeighborsClassifier` at "
             f"{agree:.1%} of the {int((~tied).sum())} points whose vote is not tied ({int(tied.sum())} tied).",
             "", f"Versions: numpy {np.__version__}, scikit-learn {sklearn.__version__}; "
             f"Python {platform.python_version()}.", ""]
    write_text(args.out, "\n".join(lines))
    print("\n".join(lines))


def scale_points(points: int, dim: int, concepts: int = 7, seed: int = 0) -> np.ndarray:
    """`[points, dim]` float32 clusters on a shared offset, made in place (no float64 temporaries)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((points, dim), dtype=np.float32)
    centres = rng.standard_normal((concepts, dim), dtype=np.float32) * 0.6
    x += centres[np.arange(points) % concepts]
    x += rng.standard_normal(dim, dtype=np.float32) * 5
    return x


def memory_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_case(args) -> None:
    """One method on one N, in a fresh process: seconds, peak RSS above the data, neighbours saved."""
    import json

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    x = scale_points(args.points, args.scale_dim)
    k = args.k
    before = memory_mb("VmRSS")
    with threadpool_limits(args.threads):
        start = time.perf_counter()
        if args.case == "conceptlens":
            from conceptlens.decodability import nearest_neighbours

            found = nearest_neighbours(x, k).indices
        elif args.case == "sklearn":
            from sklearn.neighbors import NearestNeighbors

            index = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", n_jobs=args.threads).fit(x)
            found = drop_self(index.kneighbors(x, return_distance=False), k)
        elif args.case == "faiss":
            import faiss

            faiss.omp_set_num_threads(args.threads)
            flat = faiss.IndexFlatL2(x.shape[1])
            flat.add(x)
            found = drop_self(flat.search(x, k + 1)[1], k)
        elif args.case == "peak":  # float32 matmul rate on these threads, best of 3
            a = torch.randn(4096, 4096)
            torch.mm(a, a)
            best = min(_timed_mm(a) for _ in range(3))
            print(json.dumps({"gflops": 2 * 4096 ** 3 / best / 1e9}))
            return
        seconds = time.perf_counter() - start
    peak = memory_mb("VmHWM")
    if args.save:
        np.save(args.save, np.asarray(found, dtype=np.int64))
    print(json.dumps({"seconds": seconds, "extra_mb": max(0.0, peak - before), "data_mb": x.nbytes / 2 ** 20}))


def _timed_mm(a) -> float:
    import torch

    start = time.perf_counter()
    torch.mm(a, a)
    return time.perf_counter() - start


def drop_self(index: np.ndarray, k: int) -> np.ndarray:
    """`[N, k + 1]` neighbours including (usually) self -> `[N, k]` without self."""
    rows = np.arange(len(index))[:, None]
    not_self = index != rows
    keep = np.where(not_self.all(axis=1)[:, None], np.arange(k + 1) < k, not_self)
    return index[keep].reshape(len(index), k)


def scale(args) -> None:
    """Each method at each N in its own process; the neighbour sets compared with ours."""
    import json
    import subprocess
    import sys
    import tempfile

    from conceptlens.storage import write_text

    def case(method: str, points: int, save: Path | None = None) -> dict:
        command = [sys.executable, __file__, "--case", method, "--points", str(points), "--scale-dim",
                   str(args.scale_dim), "--threads", str(args.threads), "--k", str(args.k)]
        command += ["--save", str(save)] if save else []
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        return json.loads(output.strip().splitlines()[-1])

    peak = case("peak", 0)["gflops"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for points in [int(p) for p in args.scale.split(",")]:
            flops = 2 * points * points * args.scale_dim
            found = {}
            for method in ("conceptlens", "faiss", "sklearn"):
                result = case(method, points, Path(tmp) / f"{method}.npy")
                found[method] = np.load(Path(tmp) / f"{method}.npy")
                rows.append((points, method, result, flops))
                print(points, method, result, flush=True)
            for method in ("faiss", "sklearn"):
                same = np.mean([set(a) == set(b) for a, b in zip(found["conceptlens"], found[method])])
                rows[-2 if method == "faiss" else -1][2]["same_sets"] = float(same)
    lines = scale_table(rows, peak, args)
    out = args.out or HERE / "results" / "decodability_scale.md"
    write_text(out, "\n".join(lines))
    print("\n".join(lines))


def scale_table(rows, peak: float, args) -> list[str]:
    lines = [f"## TD at scale: k = {args.k} nearest neighbours of every point, one layer, d = {args.scale_dim}", "",
             f"Synthetic clustered float32 points on a shared offset; {args.threads} thread(s) for every method "
             f"(torch, BLAS, OpenMP), one process per cell; the machine is shared with other jobs, so the "
             f"times are upper bounds. Float32 matmul peak measured on the same threads (4096^3 `torch.mm`, best "
             f"of 3): **{peak:.0f} GFLOP/s**. FLOPs needed: 2 N^2 d (all pairs); conceptlens computes one "
             f"triangle (N^2 d) and reports the fraction of peak for the 2 N^2 d a full search needs. "
             f"Extra memory: peak RSS above the resident data (VmHWM - VmRSS before the search).", "",
             "| N | method | seconds | ratio to conceptlens | GFLOP needed | fraction of peak | extra memory (MB) "
             "| data (MB) | same neighbour sets as conceptlens |", "|---|---|---|---|---|---|---|---|---|"]
    ours = {points: result["seconds"] for points, method, result, _ in rows if method == "conceptlens"}
    for points, method, result, flops in rows:
        rate = flops / result["seconds"] / 1e9
        same = f"{result['same_sets']:.2%}" if "same_sets" in result else "-"
        lines.append(f"| {points:,} | {method} | {result['seconds']:.2f} | {result['seconds'] / ours[points]:.2f} | "
                     f"{flops / 1e9:,.0f} | {rate / peak:.2f} | {result['extra_mb']:.0f} | {result['data_mb']:.0f} "
                     f"| {same} |")
    return lines + ["", "Versions: " + ", ".join(_versions()), ""]


def _versions() -> list[str]:
    import importlib.metadata

    found = []
    for name in ("numpy", "torch", "scikit-learn", "faiss-cpu"):
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return found


if __name__ == "__main__":
    main()
