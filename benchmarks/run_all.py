"""Run every benchmark (each writes `benchmarks/results/<section>.md`), then assemble `BENCHMARKS.md` at
the repository root: a header naming the machine, the date and the library versions, then each section
in turn: the measured matmul peak first, then every workload with its FLOPs and fraction of that peak.
A section is its generated result (with the date it was written) followed by `benchmarks/notes/<section>.md`
where one exists: hand-written notes and hand-measured numbers, each with the date it was measured.
A section not rerun keeps its last result and says when it was written.

    python benchmarks/run_all.py              # run all benchmarks, then assemble
    python benchmarks/run_all.py --assemble   # only assemble the results already written
    python benchmarks/run_all.py --only capture,llm_bound
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
NOTES = HERE / "notes"
# step name -> command (a script in benchmarks/ and its arguments); run in this order
STEPS = {
    "limits": ["limits.py", "--threads", "1,2"],
    "capture": ["bench_capture.py"],
    "capture_profile": ["profile_capture.py"],
    "decodability": ["bench_decodability.py"],
    "decodability_scale": ["bench_decodability.py", "--scale", "700,5000,50000", "--threads", "2"],
    "training": ["bench_training.py"],  # also writes training_seeds.md
    "llm": ["bench_llm.py"],
    "llm_bound": ["bench_llm_bound.py"],
}
# the order of BENCHMARKS.md; bf16 is hand-measured (notes only); other results files follow at the end
SECTIONS = ("limits", "capture", "capture_profile", "decodability", "decodability_scale", "training",
            "training_seeds", "llm", "llm_bound", "bf16")
PACKAGES = ("torch", "transformers", "numpy", "scikit-learn", "safetensors", "transformer-lens", "nnsight")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        memory = "unknown RAM"
    load = ", load average %.1f" % os.getloadavg()[0] if hasattr(os, "getloadavg") else ""
    return f"{cpu}, {os.cpu_count()} logical cores, {memory}, {platform.system()} {platform.release()}{load}"


def versions() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not in this venv)")
    return ", ".join(found) + f", Python {platform.python_version()}"


def written(path: Path) -> str:
    """When a result was written: its last commit's date if the file is committed and unchanged (a clone
    sets every file's mtime to the clone's time), else the file's modification time."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args, "--", str(path)], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    if git("ls-files") and not git("status", "--porcelain"):
        date = git("log", "-1", "--format=%cd", "--date=format:%Y-%m-%d %H:%M")
        if date:
            return f"{date}, last commit"
    return f"{datetime.datetime.fromtimestamp(path.stat().st_mtime):%Y-%m-%d %H:%M}"


def section(name: str) -> list[str]:
    """A generated result (with the date it was written), then its hand-written notes."""
    result, notes = RESULTS / f"{name}.md", NOTES / f"{name}.md"
    lines = []
    if result.exists():
        lines += [result.read_text().strip(), "", f"_Source: `benchmarks/results/{result.name}` "
                  f"(written {written(result)})._", ""]
    if notes.exists():
        lines += [notes.read_text().strip(), "", f"_Notes: `benchmarks/notes/{notes.name}`._", ""]
    return lines


def assemble() -> Path:
    from conceptlens.storage import write_text

    header = ["# Benchmarks", "",
              f"Assembled {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} by `benchmarks/run_all.py`.", "",
              f"- Machine: {machine()}.",
              f"- Libraries (this venv): {versions()}.",
              "- The machine is shared with other jobs: absolute times vary from run to run; the ratios are "
              "measured in the same run. Each section names its own settings, its date, and its measured "
              "matmul peak; peers not installed in the project's venv come from a separate benchmark venv named "
              "in their section.", ""]
    extra = sorted(p.stem for p in RESULTS.glob("*.md") if p.stem not in SECTIONS)
    body = [line for name in (*SECTIONS, *extra) for line in section(name)]
    target = ROOT / "BENCHMARKS.md"
    write_text(target, "\n".join(header + (body or ["No results yet: run `python benchmarks/run_all.py`.", ""])))
    return target


def other_benchmarks() -> dict[str, list[str]]:
    """Every `bench_*.py` that STEPS does not run, run with no arguments after the known steps."""
    known = {command[0] for command in STEPS.values()}
    return {path.stem.removeprefix("bench_"): [path.name] for path in sorted(HERE.glob("bench_*.py"))
            if path.name not in known}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assemble", action="store_true", help="do not run anything, only assemble")
    parser.add_argument("--only", help=f"comma-separated steps: {', '.join({**STEPS, **other_benchmarks()})}")
    args = parser.parse_args()
    failed = []
    if not args.assemble:
        steps = {**STEPS, **other_benchmarks()}
        wanted = [name.strip() for name in args.only.split(",")] if args.only else list(steps)
        unknown = [name for name in wanted if name not in steps]
        if unknown:
            parser.error(f"unknown --only step(s) {unknown}; choose from {', '.join(steps)}")
        for name in wanted:
            script, *rest = steps[name]
            print(f"== {name}: {script} {' '.join(rest)}", flush=True)
            start = time.perf_counter()
            done = subprocess.run([sys.executable, str(HERE / script), *rest], cwd=ROOT)
            print(f"== {name}: exit {done.returncode} in {time.perf_counter() - start:.0f} s", flush=True)
            if done.returncode:
                failed.append(name)
        if failed:
            print(f"failed: {', '.join(failed)} (their old results, if any, are kept)", file=sys.stderr)
    print(f"wrote {assemble()}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
