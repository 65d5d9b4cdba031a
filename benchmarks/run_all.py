"""Run every `benchmarks/bench_*.py` (each writes `benchmarks/results/<name>.md`), then assemble
`BENCHMARKS.md` at the repository root: a header naming the machine, the date and the library
versions, then each result file in turn.

    python benchmarks/run_all.py              # run all benchmarks, then assemble
    python benchmarks/run_all.py --assemble   # only assemble the results already written
    python benchmarks/run_all.py --only capture,decodability
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


def assemble() -> Path:
    from conceptlens.storage import write_text

    parts = sorted(RESULTS.glob("*.md"))
    header = ["# Benchmarks", "",
              f"Assembled {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} by `benchmarks/run_all.py`.", "",
              f"- Machine: {machine()}.",
              f"- Libraries (this venv): {versions()}.",
              "- The machine is shared with other jobs: absolute times vary from run to run; the ratios are "
              "measured in the same run. Each section names its own settings; peers not installed in the "
              "project's venv come from a separate benchmark venv named in their section.", ""]
    body = []
    for part in parts:
        body += [part.read_text().strip(), "", f"_Source: `benchmarks/results/{part.name}` "
                 f"(written {datetime.datetime.fromtimestamp(part.stat().st_mtime):%Y-%m-%d %H:%M})._", ""]
    target = ROOT / "BENCHMARKS.md"
    write_text(target, "\n".join(header + (body or ["No results yet: run `python benchmarks/run_all.py`.", ""])))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assemble", action="store_true", help="do not run anything, only assemble")
    parser.add_argument("--only", help="comma-separated names, e.g. capture,decodability")
    args = parser.parse_args()
    if not args.assemble:
        scripts = sorted(HERE.glob("bench_*.py"))
        if args.only:
            wanted = {name.strip() for name in args.only.split(",")}
            scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
        failed = []
        for script in scripts:
            print(f"== {script.name}", flush=True)
            start = time.perf_counter()
            done = subprocess.run([sys.executable, str(script)], cwd=ROOT)
            print(f"== {script.name}: exit {done.returncode} in {time.perf_counter() - start:.0f} s", flush=True)
            if done.returncode:
                failed.append(script.name)
        if failed:
            print(f"failed: {', '.join(failed)} (their old results, if any, are kept)", file=sys.stderr)
    print(f"wrote {assemble()}")
    if not args.assemble and failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
