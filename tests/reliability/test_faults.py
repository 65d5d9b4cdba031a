"""Faults: SIGKILL at seeded random moments, then a rerun must end exactly where an uninterrupted run ends.

For each resumable job (synthetic training, capture, finetuning, sweep) one uninterrupted run
in a subprocess is the reference. Then copies are killed with `os.kill(pid, SIGKILL)` at the
five moments `kill_moments(seed=0, n=5)` (fractions of the reference's working time, counted from
the job's first output), checked for unreadable files right after the kill, rerun (`--resume`
where the command has it) and compared file by file with the reference: bitwise on CPU, except
wall-clock fields (`fault_inject.VOLATILE_KEYS`) and hidden leftovers of killed writes.
One moment per job runs in CI; all five with `make test-slow`.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from reliability_helpers import fault_inject, write_family

MOMENTS = fault_inject.kill_moments(seed=0, n=5)
FAST = {2}  # the index of the moment that runs in CI (the middle one)


def moment_params(fast: set[int] = FAST):
    """The five moments as test parameters; those not in `fast` are marked slow (`fast=set()`: all)."""
    return [pytest.param(i, id=f"kill{i}@{MOMENTS[i]:.2f}", marks=() if i in fast else pytest.mark.slow)
            for i in range(len(MOMENTS))]


def log_result(job: str, **fields) -> None:
    """Append one row to $RELIABILITY_LOG (JSONL) when set: RELIABILITY.md is filled from it."""
    path = os.environ.get("RELIABILITY_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps({"job": job, **fields}) + "\n")


def check_cycle(job: str, report: fault_inject.FaultReport, reference_files: int) -> None:
    log_result(job, moment=report.moment, kill_at_s=report.delay_s, killed=report.killed, rerun_rc=report.resumed_rc,
               differences=report.differences[:5], corrupt_after_kill=report.corrupt_after_kill[:5],
               corrupt_after_resume=report.corrupt_after_resume[:5], leftovers=report.leftovers[:5],
               files_after_kill=report.files_after_kill,
               reference_files=reference_files)
    assert report.killed, f"the job ended before the kill at {report.delay_s} s: nothing was tested"
    assert not report.corrupt_after_kill, f"unreadable files right after the kill: {report.corrupt_after_kill}"
    assert report.resumed_rc == 0, "the rerun after the kill failed"
    assert not report.differences, f"the resumed run differs from the uninterrupted one: {report.differences[:10]}"
    assert not report.corrupt_after_resume, report.corrupt_after_resume


class Job:
    """A command, how to tell that it started working, and its reference run (made once)."""

    def __init__(self, name: str, args, started, check=None):
        self.name, self.args, self.started, self.check = name, args, started, check or (lambda out: out)
        self.ignore = fault_inject.VOLATILE
        self._reference: tuple[dict, float] | None = None

    def reference(self, root: Path) -> tuple[dict, float]:
        if self._reference is None:
            out = root / f"{self.name}-reference"
            result, work_s = fault_inject.timed_run(self.args(out, False), started=lambda: self.started(out))
            assert result.returncode == 0, result.stderr[-3000:]
            digest = fault_inject.tree_digest(self.check(out), self.ignore)
            assert digest, "the reference run wrote nothing"
            log_result(self.name, reference_work_s=round(work_s, 2), reference_files=len(digest))
            self._reference = (digest, work_s)
        return self._reference

    def cycle(self, root: Path, index: int) -> None:
        digest, work_s = self.reference(root)
        out = root / f"{self.name}-kill{index}"
        report = fault_inject.fault_cycle(self.args, out, digest, MOMENTS[index], work_s,
                                          started=self.started, check_path=self.check, ignore=self.ignore)
        check_cycle(self.name, report, len(digest))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


BIN = fault_inject.conceptlens_bin()

# ---- synthetic training -----------------------------------------------------------------------------
SYNTHETIC_SETTINGS = ["--set", "train.steps=400", "--set", "model.n_layers=2", "--set", "model.d_model=16",
                      "--set", "model.n_heads=2", "--set", "train.batch_size=16", "--set", "train.warmup=20",
                      "--set", "task.n_points=8", "--set", "schedule.eval_every=25", "--set", "schedule.dense_every=50",
                      "--set", "schedule.eval_per_concept=8", "--set", "train.threads=1"]

SYNTHETIC = Job(
    "synthetic-train",
    lambda out, resume: [BIN, "synthetic", "train", "--out", str(out), *SYNTHETIC_SETTINGS] + (["--resume"] if resume else []),
    lambda out: (out / "checkpoints" / "step_0000000.safetensors.sha256").exists(),
)


@pytest.mark.parametrize("index", moment_params())
def test_synthetic_training_survives_sigkill(index: int, root: Path):
    SYNTHETIC.cycle(root, index)


# ---- capture ----------------------------------------------------------------------------------------
def capture_prompts(path: Path, n: int = 1300) -> Path:
    """`n` prompts of 3-25 numbers: three shards of 512, so a kill can land between shards."""
    rng = random.Random(0)
    lines = [" ".join(str(rng.randrange(100)) for _ in range(rng.randint(3, 25))) + " ->" for _ in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def capture_job(root: Path, tiny_lm: Path) -> Job:
    prompts = capture_prompts(root / "prompts.txt")
    return Job(
        "capture",
        lambda out, resume: [BIN, "capture", "--model", str(tiny_lm), "--prompts", str(prompts), "--batch-size", "8",
                             "--layers", "all", "--out", str(out / "acts.safetensors")],
        lambda out: (out / "acts.safetensors.parts" / "manifest.json").exists(),
    )


@pytest.mark.parametrize("index", moment_params())
def test_capture_survives_sigkill(index: int, root: Path, capture_job: Job):
    capture_job.cycle(root, index)


# ---- finetuning -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def family(root: Path) -> Path:
    return write_family(root / "family")


@pytest.fixture(scope="module")
def finetune_loop_job(tiny_lm: Path, family: Path) -> Job:
    """The training loop of `llm finetune` (LoRA, checkpoints every 2 steps) in a killable process."""
    import sys

    driver = Path(__file__).with_name("finetune_driver.py")
    return Job(
        "finetune-loop",
        lambda out, resume: [sys.executable, str(driver), str(tiny_lm), str(family), str(out)] + (["--resume"] if resume else []),
        lambda out: (out / "train_log.jsonl").exists(),
    )


@pytest.mark.parametrize("index", moment_params())
def test_finetune_loop_survives_sigkill(index: int, root: Path, finetune_loop_job: Job):
    finetune_loop_job.cycle(root, index)


@pytest.fixture(scope="module")
def finetune_cli_job(tiny_lm: Path, family: Path) -> Job:
    """The whole `conceptlens llm finetune` (study before, training, study after, figures)."""
    return Job(
        "finetune-cli",
        lambda out, resume: [BIN, "llm", "finetune", "--model", str(tiny_lm), "--family", str(family), "--layers",
                             "first:1", "--train-samples", "48", "--prompts-per-concept", "22", "--batch-size", "4",
                             "--shots", "2", "--checkpoint-every", "2", "--out", str(out)] + (["--resume"] if resume else []),
        lambda out: (out / "config.json").exists(),
    )


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(MOMENTS)), ids=[f"kill{i}@{m:.2f}" for i, m in enumerate(MOMENTS)])
def test_finetune_cli_survives_sigkill(index: int, root: Path, finetune_cli_job: Job):
    finetune_cli_job.cycle(root, index)


# ---- sweep ------------------------------------------------------------------------------------------
SWEEP_VOLATILE = fault_inject.VOLATILE + ("attempts.jsonl", "sweep_status.json", "timing.jsonl")


@pytest.fixture(scope="module")
def sweep_job(root: Path) -> Job:
    """Three tiny synthetic-training cells on a local Ray; the kill takes Ray's workers down too."""
    import yaml

    pytest.importorskip("ray")

    spec = root / "sweep.yaml"
    settings = {key: value for key, value in (item.split("=", 1) for item in SYNTHETIC_SETTINGS[1::2])}
    settings["train.steps"] = "300"
    spec.write_text(yaml.safe_dump({"command": "synthetic train", "grid": {"seed": [0, 1, 2]},
                                    "fixed": {"config": "quick", "analyze": False,
                                              "set": {k: yaml.safe_load(v) for k, v in settings.items()}}}))
    job = Job(
        "sweep",
        lambda out, resume: [BIN, "sweep", str(spec), "--out", str(out), "--num-cpus", "2"],
        lambda out: any(out.glob("*/checkpoints/step_0000000.safetensors.sha256")),
    )
    job.ignore = SWEEP_VOLATILE
    return job


@pytest.mark.parametrize("index", moment_params())
def test_sweep_survives_sigkill(index: int, root: Path, sweep_job: Job):
    sweep_job.cycle(root, index)
