"""Time `conceptlens --threads T capture` on SmolLM2, alone and beside a busy process (issue 19, point 9).

    python tests/reliability/threads_measure.py --write-prompts /tmp/prompts.txt
    python tests/reliability/threads_measure.py /tmp/prompts.txt [--rounds 2] [--threads 1,2]

One JSON line per run: threads, competitor, round, wall and CPU seconds (user + sys of the command),
the one-minute load average at its start. The busy process (`while True: pass`) is started one
second before the command and killed by its pid after it. Not a test (no `test_` prefix).
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

ROOT = Path(__file__).resolve().parents[2]
WORDS = "apple river stone cloud light grass paper glass sound field house water tree bird".split()


def write_prompts(path: Path, n: int = 96) -> None:
    """`n` four-shot prompts "word -> WORD ... word ->" (seeded)."""
    rng = random.Random(0)
    lines = ["  ".join(f"{rng.choice(WORDS)} -> {rng.choice(WORDS).upper()}" for _ in range(4))
             + f" {rng.choice(WORDS)} ->" for _ in range(n)]
    path.write_text("\n".join(lines) + "\n")


def one(prompts: Path, threads: int, competitor: bool, round_: int, out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["HF_HUB_OFFLINE"] = "1"
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if competitor else None
    try:
        time.sleep(1 if busy else 0)
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run([str(ROOT / ".venv" / "bin" / "conceptlens"), "--threads", str(threads), "capture",
                               "--model", "smollm2-135m", "--prompts", str(prompts), "--out", str(out)],
                              env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # before the busy loop is reaped
    finally:
        if busy:
            busy.kill()
            busy.wait()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dict(threads=threads, competitor=competitor, round=round_, wall_s=round(wall, 1), cpu_s=round(cpu, 1),
                load1=round(load, 2), rc=proc.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompts", type=Path)
    parser.add_argument("--write-prompts", action="store_true", help="write the prompts file and stop")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()
    if args.write_prompts:
        write_prompts(args.prompts)
        return
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            for competitor in (False, True):
                for threads in (int(t) for t in args.threads.split(",")):
                    row = one(args.prompts, threads, competitor, round_, Path(folder) / f"t{threads}.safetensors")
                    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
