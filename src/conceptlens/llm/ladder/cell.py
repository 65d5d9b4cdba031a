"""One rung of the model ladder: load one model, run the encoding study on one family, record its cost.

The study is `experiments.encoding_study` (the same call as `llm run`), written into `study/`; beside it
`rung.json` records what scale means on this machine: parameters, blocks, dtype, load time, study
time, the process's peak resident memory and torch's thread count (one per cell on Ray, where a
`num_cpus=1` task gets `OMP_NUM_THREADS=1`). With `interventions`, the paper's intervention test runs
at the study's TD peak (`interventions/`). DECISION: peak memory is the process's maximum resident set
(`resource.getrusage`), which includes what earlier rungs of an in-process ladder held: run rungs on Ray
(one process each) when memory per model matters.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

from conceptlens.storage import write_json


def peak_memory_gib() -> float:
    """This process's peak resident memory so far, in GiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


def ladder_cell(out: Path, model: str, family: str, shots: list[int] | int = 4, prompts_per_concept: int = 30,
                seed: int = 0, k: int = 10, dtype: str = "float32", interventions: bool = False,
                intervention_prompts: int = 20, batch_size: int = 16) -> dict:
    """Run one (model, family) rung into `out` (a sweep cell's folder); returns the `rung.json` record."""
    import torch

    from conceptlens.experiments import check_study, encoding_study
    from conceptlens.experiments import interventions as run_interventions
    from conceptlens.models.from_spec import load_model, on_gpu_if_free
    from conceptlens.specs import EncodingStudySpec, InterventionSpec, ModelSpec, build

    out = Path(out)
    spec = build(EncodingStudySpec, family=family, shots=[shots] if isinstance(shots, int) else list(shots),
                 prompts_per_concept=prompts_per_concept, seed=seed, k=k)
    task_family = check_study(spec)  # before the model loads
    start = time.perf_counter()
    lm = load_model(on_gpu_if_free(build(ModelSpec, name=model, dtype=dtype)))
    load_seconds = time.perf_counter() - start
    start = time.perf_counter()
    summary = encoding_study(lm, spec, out / "study", batch_size=batch_size, family=task_family)
    record = {"model": model, "family": family, "dtype": dtype, "parameters": sum(p.numel() for p in lm.model.parameters()),
              "n_layers": lm.n_layers, "threads": torch.get_num_threads(), "load_seconds": round(load_seconds, 2),
              "study_seconds": round(time.perf_counter() - start, 2), "best_layer": summary["best_layer"]}
    if interventions:
        start = time.perf_counter()
        run_interventions(lm, build(InterventionSpec, family=family, layers=[summary["best_layer"]],
                                    shots=max(spec.shots), prompts_per_concept=intervention_prompts, seed=seed),
                          out / "interventions", batch_size=batch_size)
        record["intervention_seconds"] = round(time.perf_counter() - start, 2)
    record["peak_memory_gib"] = round(peak_memory_gib(), 3)
    write_json(out / "rung.json", record)
    return record
