"""Fault injection: kill a conceptlens job with SIGKILL at seeded random moments, then compare.

A resumable job must end, after a kill and a rerun, with exactly the bytes an uninterrupted run
writes (on CPU), and must never leave a corrupt file where a result is expected. This module runs
a command once to time it, kills copies of it at `kill_moments(seed, n)` fractions of that time
with `os.kill(pid, SIGKILL)` (no cleanup handler can run), reruns it to completion and compares
the folders file by file. DECISION: moments are fractions of the measured reference wall time,
so they land in the work on any machine speed; a kill that lands after the job ended is reported
as such (`KillResult.killed is False`), never silently counted as a fault.

Command line (prints a table):
    python scripts/fault_inject.py --kills 5 --seed 0 --compare metrics.jsonl -- \\
        conceptlens synthetic train --out {out} --set train.steps=300 [--resume]
`{out}` is replaced by a fresh folder per run; the rerun appends `--resume` when `--resume-flag`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

# Files that legitimately differ between two identical runs (wall-clock time, machine facts).
VOLATILE = ("timing.jsonl", "stages.json", "DONE", "report.html", "environment.json")


def cli_env(threads: int = 1) -> dict[str, str]:
    """Environment for a reproducible CPU child: fixed thread counts, no GPU, no network, no colour."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "CUDA_VISIBLE_DEVICES": "",
                "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "PYTHONHASHSEED": "0", "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"})
    return env


def conceptlens_bin() -> str:
    """The `conceptlens` console script of the running interpreter's environment."""
    candidate = Path(sys.executable).with_name("conceptlens")
    return str(candidate) if candidate.exists() else "conceptlens"


def run(args: Sequence[str], timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command to completion, capturing text output."""
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env or cli_env())


def kill_moments(seed: int, n: int, low: float = 0.1, high: float = 0.95) -> list[float]:
    """`n` seeded fractions in [low, high), sorted: when to kill, relative to a reference run."""
    rng = random.Random(seed)
    return sorted(round(rng.uniform(low, high), 3) for _ in range(n))


@dataclass
class KillResult:
    delay_s: float
    killed: bool  # False: the job had already ended before the signal
    returncode: int | None
    stderr: str = ""
    work_s: float | None = None  # when not killed: seconds from `when()` to the job's end


def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes of session `sid`: a killed job's children, e.g. Ray's workers."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state ppid pgrp session ...
            members.append(int(stat.parent.name))
    return members


def kill_session(sid: int) -> list[int]:
    """SIGKILL every live process of session `sid` (all started by us), by id; returns their ids."""
    killed = []
    for pid in session_members(sid):
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
    return killed


def run_and_kill(args: Sequence[str], delay_s: float, env: dict | None = None,
                 when: Callable[[], bool] | None = None, timeout: float = 600) -> KillResult:
    """Start `args` in its own session; once `when()` holds (default: at once) wait `delay_s` more,
    then `os.kill(pid, SIGKILL)`, and SIGKILL whatever it started (Ray's workers) the same way."""
    err_file = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(list(args), stdout=subprocess.DEVNULL, stderr=err_file, text=True,
                            env=env or cli_env(), start_new_session=True)
    start = time.monotonic()
    try:
        if when is not None:
            while not when() and proc.poll() is None:
                if time.monotonic() - start > timeout:
                    break
                time.sleep(0.02)
        began = time.monotonic()
        deadline = began + delay_s
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        killed = proc.poll() is None
        if killed:
            os.kill(proc.pid, signal.SIGKILL)
            kill_session(proc.pid)
        proc.wait(timeout=timeout)
        err_file.seek(0)
        return KillResult(delay_s, killed, proc.returncode, err_file.read(),
                          None if killed else time.monotonic() - began)
    finally:
        if proc.poll() is None:  # never leave a child behind
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        kill_session(proc.pid)


# JSON keys that hold wall-clock facts, or say how a run got there (`resumed`, `cached`: a stage
# reloaded from its own finished files) rather than what it computed; dropped before comparing.
VOLATILE_KEYS = ("seconds", "started", "finished", "updated", "timestamp", "host", "pid", "resumed", "cached")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _volatile(key: str, keys: tuple[str, ...]) -> bool:
    return key in keys or "seconds" in key or "elapsed" in key or key.endswith("_s")


def _drop_keys(obj, keys: tuple[str, ...]):
    if isinstance(obj, dict):
        return {k: _drop_keys(v, keys) for k, v in obj.items() if not _volatile(k, keys)}
    if isinstance(obj, list):
        return [_drop_keys(v, keys) for v in obj]
    return obj


def safetensors_digest(path: Path, volatile_keys: tuple[str, ...] = VOLATILE_KEYS) -> str:
    """sha256 of a safetensors file's meaning: every tensor (name, dtype, shape, bytes) and the
    metadata without wall-clock keys. DECISION: needed because safetensors writes the metadata
    of its header in hash-map order, which changes from process to process."""
    import struct

    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + size])
    body = data[8 + size:]
    metadata = header.pop("__metadata__", {}) or {}
    decoded = {}
    for key, value in metadata.items():
        try:
            decoded[key] = json.loads(value)
        except ValueError:
            decoded[key] = value
    digest = hashlib.sha256(json.dumps(_drop_keys(decoded, volatile_keys), sort_keys=True).encode())
    for name in sorted(header):
        info = header[name]
        start, end = info["data_offsets"]
        digest.update(json.dumps([name, info["dtype"], info["shape"]]).encode())
        digest.update(body[start:end])
    return "safetensors:" + digest.hexdigest()


def content_digest(path: Path, volatile_keys: tuple[str, ...] = VOLATILE_KEYS) -> str:
    """sha256 of a file's bytes; of JSON/JSONL content without `volatile_keys` (and keys holding
    `seconds`/`elapsed` or ending in `_s`); of a safetensors file's tensors and non-volatile metadata (see above)."""
    if volatile_keys and path.suffix in (".json", ".jsonl"):
        try:
            text = path.read_text()
            docs = [json.loads(text)] if path.suffix == ".json" else [json.loads(l) for l in text.splitlines() if l]
            blob = json.dumps([_drop_keys(d, volatile_keys) for d in docs], sort_keys=True).encode()
            return "json:" + hashlib.sha256(blob).hexdigest()
        except ValueError:
            pass  # not parseable: compare raw bytes (and let corrupt_files() report it)
    if volatile_keys and path.suffix == ".safetensors":
        try:
            return safetensors_digest(path, volatile_keys)
        except (ValueError, KeyError, IndexError):
            pass
    return sha256(path)


def tree_digest(root: str | Path, ignore: Iterable[str] = VOLATILE,
                volatile_keys: tuple[str, ...] = VOLATILE_KEYS) -> dict[str, str]:
    """`{relative path: digest}` of every regular file under `root` (or of `root` itself), skipping
    volatile file names and the hidden leftovers of killed writes (see `leftovers`). With
    `volatile_keys` (the default) digests are by content (see `content_digest`) and `.sha256`
    sidecars are skipped (they hash raw bytes; `corrupt_files` checks each against its file);
    with `volatile_keys=()` every byte counts."""
    root = Path(root)
    ignore = set(ignore)
    if root.is_file():
        return {root.name: content_digest(root, volatile_keys)}
    return {str(p.relative_to(root)): content_digest(p, volatile_keys) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ignore and not p.name.endswith(".tmp")
            and not _hidden(p.relative_to(root)) and not (volatile_keys and p.name.endswith(".sha256"))}


RUN_FOLDER_FILES = (".conceptlens-run.json", ".conceptlens.lock")  # a run folder's record and lock: never leftovers


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def leftovers(root: str | Path) -> list[str]:
    """What killed writes left behind: temporary files and staging folders, which are hidden
    (`.NAME.xxxx.tmp`, `.adapter.xxxx.staging/`); never read by conceptlens, deleted when a run resumes
    (those older than a minute)."""
    root = Path(root)
    base = root if root.is_dir() else root.parent
    found = set()
    for p in base.rglob("*"):
        rel = p.relative_to(base)
        if p.name in RUN_FOLDER_FILES:
            continue
        if p.name.endswith(".tmp") or _hidden(rel):
            top = next((Path(*rel.parts[:i + 1]) for i, part in enumerate(rel.parts) if part.startswith(".")), rel)
            found.add(str(top))
    return sorted(found)


def corrupt_files(root: str | Path) -> list[str]:
    """Files that do not parse or do not match their `.sha256` sidecar: what a reader would trip on.

    Checks: sidecar checksums, safetensors headers and sizes, JSON and YAML documents, JSONL lines
    (a torn last line is tolerated: readers drop it), CSV files that pandas can read.
    """
    root = Path(root)
    files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file() and not _hidden(p.relative_to(root))]
    bad = []
    for path in files:
        name = path.name
        if name.endswith(".tmp"):
            continue
        try:
            if name.endswith(".sha256"):
                target = path.with_name(name[: -len(".sha256")])
                if target.exists() and sha256(target) != path.read_text().strip():
                    bad.append(f"{target} (checksum)")
            elif name.endswith(".safetensors"):
                from safetensors import safe_open

                with safe_open(str(path), framework="pt") as handle:
                    for key in handle.keys():
                        handle.get_tensor(key)
            elif name.endswith(".json"):
                json.loads(path.read_text())
            elif name.endswith((".yaml", ".yml")):
                import yaml

                yaml.safe_load(path.read_text())
            elif name.endswith(".jsonl"):
                lines = path.read_text().splitlines()
                for line in lines[:-1]:
                    json.loads(line)
            elif name.endswith(".csv"):
                import pandas as pd

                pd.read_csv(path)
        except Exception as exc:  # noqa: BLE001 - any failure to parse is what we report
            bad.append(f"{path} ({type(exc).__name__})")
    return sorted(bad)


def diff_digests(expected: dict[str, str], got: dict[str, str]) -> list[str]:
    """Human-readable differences between two `tree_digest` results (empty: identical)."""
    out = [f"missing {k}" for k in sorted(set(expected) - set(got))]
    out += [f"extra {k}" for k in sorted(set(got) - set(expected))]
    out += [f"differs {k}" for k in sorted(set(expected) & set(got)) if expected[k] != got[k]]
    return out


@dataclass
class FaultReport:
    moment: float
    delay_s: float
    killed: bool
    resumed_rc: int
    differences: list[str] = field(default_factory=list)
    corrupt_after_kill: list[str] = field(default_factory=list)
    corrupt_after_resume: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    files_after_kill: int = 0  # how far the killed run got (files under the compared path)

    @property
    def ok(self) -> bool:
        return self.resumed_rc == 0 and not self.differences and not self.corrupt_after_resume


def timed_run(args: Sequence[str], started: Callable[[], bool] | None = None, env: dict | None = None,
              timeout: float = 600) -> tuple[subprocess.CompletedProcess, float]:
    """Run to completion; return (result, seconds of work): from when `started()` first holds
    (e.g. the first checkpoint exists: imports and model loading are over) to the end."""
    out_file, err_file = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # pipes could fill and block
    proc = subprocess.Popen(list(args), stdout=out_file, stderr=err_file, text=True, env=env or cli_env(),
                            start_new_session=True)
    begin = time.monotonic()
    t0 = None
    try:
        while proc.poll() is None and time.monotonic() - begin < timeout:
            if t0 is None and (started is None or started()):
                t0 = time.monotonic()
            time.sleep(0.02)
        proc.wait(timeout=5)
        out_file.seek(0), err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        kill_session(proc.pid)
    end = time.monotonic()
    result = subprocess.CompletedProcess(list(args), proc.returncode, out, err)
    return result, end - (t0 if t0 is not None else begin)


def fault_cycle(make_args: Callable[[Path, bool], list[str]], out: Path, reference: dict[str, str],
                moment: float, work_s: float, started: Callable[[Path], bool] | None = None,
                check_path: Callable[[Path], Path] | None = None, env: dict | None = None,
                ignore: Iterable[str] = VOLATILE, retries: int = 3) -> FaultReport:
    """Kill `make_args(out, False)` at `moment * work_s` after `started(out)` holds, rerun
    `make_args(out, True)` to the end, and compare `check_path(out)` (default `out`) with `reference`.
    If the copy ends before the kill (it ran faster than the reference), it is run again, up to
    `retries` times, with the moment rescaled to 0.9 of the fastest working time seen."""
    check = check_path or (lambda p: p)
    when = (lambda: started(out)) if started else None
    killed = run_and_kill(make_args(out, False), moment * work_s, env=env, when=when)
    for _ in range(retries):  # this copy ran faster than the reference (a busy machine): aim again
        if killed.killed or killed.work_s is None:
            break
        shutil.rmtree(out, ignore_errors=True)
        work_s = 0.9 * min(work_s, killed.work_s)  # the fastest time seen, with a margin
        killed = run_and_kill(make_args(out, False), moment * work_s, env=env, when=when)
    target = check(out)
    after_kill = corrupt_files(target) if target.exists() else []
    n_files = (sum(1 for p in target.rglob("*") if p.is_file()) if target.is_dir() else int(target.exists()))
    done = run(make_args(out, True), env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
    got = tree_digest(check(out), ignore) if check(out).exists() else {}
    return FaultReport(moment, round(moment * work_s, 2), killed.killed, done.returncode,
                       diff_digests(reference, got), after_kill,
                       corrupt_files(check(out)) if check(out).exists() else [], leftovers(out), n_files)


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("runs/fault_inject"))
    parser.add_argument("--resume-flag", action="store_true", help="append --resume to the rerun")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command; {out} marks the output path")
    ns = parser.parse_args()
    command = [c for c in ns.command if c != "--"]
    if not command or not any("{out}" in c for c in command):
        parser.error("give a command after --, with {out} where the output path goes")

    def make_args(out: Path, resume: bool) -> list[str]:
        args = [c.replace("{out}", str(out)) for c in command]
        return args + (["--resume"] if resume and ns.resume_flag else [])

    ns.workdir.mkdir(parents=True, exist_ok=True)
    ref_out = ns.workdir / "reference"
    ref, reference_s = timed_run(make_args(ref_out, False))
    if ref.returncode != 0:
        sys.exit(f"reference run failed ({ref.returncode}):\n{ref.stderr[-3000:]}")
    reference = tree_digest(ref_out)
    print(f"reference: {reference_s:.1f} s, {len(reference)} files")
    for i, moment in enumerate(kill_moments(ns.seed, ns.kills)):
        report = fault_cycle(make_args, ns.workdir / f"kill_{i}", reference, moment, reference_s)
        print(f"kill {i}: t={report.delay_s:6.2f} s killed={report.killed!s:5} rerun rc={report.resumed_rc} "
              f"ok={report.ok} diffs={report.differences[:3]} corrupt={report.corrupt_after_resume[:3]} "
              f"leftovers={len(report.leftovers)}")


if __name__ == "__main__":
    _main()
