"""What one sweep cell runs: a library call per command (never a subprocess).

`llm run`, `llm finetune`, `llm intervene` and `synthetic train` call the same functions as the
CLI commands; `python` calls a function named in the sweep file, which must live inside the
`conceptlens` package (a dotted path `conceptlens.module.function`, resolved without importing
anything else), so a sweep file can never run arbitrary code. Each runner takes `out` (the
cell's folder) and keyword arguments; `check_kwargs` rejects unknown and missing keys up front.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any, Callable

from conceptlens.errors import ConceptLensError


def _load(model: str, revision: str | None, dtype: str, device_map: str | None, load_in: str | None):
    """The cell's model, on this worker's GPU when it was given one (and no device map spreads it)."""
    from conceptlens.models.from_spec import load_model, on_gpu_if_free
    from conceptlens.specs import ModelSpec, build

    return load_model(on_gpu_if_free(build(ModelSpec, name=model, revision=revision, dtype=dtype,
                                           device_map=device_map, load_in=load_in)))


def llm_run(out: Path, model: str = "smollm2-135m", family: str = "pos", shots: list[int] | int = (1, 4, 10),
            prompts_per_concept: int = 100, seed: int = 0, revision: str | None = None, dtype: str = "float32",
            device_map: str | None = None, load_in: str | None = None, state_concept: bool = False,
            batch_size: int = 16, k: int = 10, split: str = "test", null: bool = True, separator: str = " ->",
            answer_prefix: str = " ", fit_format: bool = True) -> None:
    """`conceptlens llm run` for one model × family × shots × seed × revision (× prompt format)."""
    from conceptlens.experiments import check_study, encoding_study
    from conceptlens.specs import EncodingStudySpec, build

    spec = build(EncodingStudySpec, family=family, shots=[shots] if isinstance(shots, int) else list(shots),
                 prompts_per_concept=prompts_per_concept, seed=seed, split=split, null=null,
                 state_concept=state_concept, k=k, separator=separator, answer_prefix=answer_prefix,
                 fit_format=fit_format)
    task_family = check_study(spec)  # before the model loads
    encoding_study(_load(model, revision, dtype, device_map, load_in), spec, out, batch_size=batch_size,
                   family=task_family)


def llm_finetune(out: Path, model: str = "smollm2-135m", family: str = "pos", layers: str = "first:10",
                 method: str = "lora", rank: int = 16, alpha: float = 16.0, dropout: float = 0.1,
                 train_samples: int = 600, epochs: int = 1, lr: float = 2e-4, shots: int = 4,
                 prompts_per_concept: int = 100, seed: int = 0, revision: str | None = None, dtype: str = "float32",
                 device_map: str | None = None, load_in: str | None = None, batch_size: int = 8,
                 checkpoint_every: int = 25, evaluations: int = 4, separator: str = " ->", answer_prefix: str = " ",
                 fit_format: bool = True) -> None:
    """`conceptlens llm finetune` for one model × family × layer range × seed (resumes a killed cell);
    `layers` takes before-peak / after-peak too."""
    from conceptlens.experiments import finetune
    from conceptlens.specs import FinetuneSpec, build

    spec = build(FinetuneSpec, family=family, layers=layers, method=method, rank=rank, alpha=alpha, dropout=dropout,
                 train_samples=train_samples, epochs=epochs, lr=lr, shots=shots,
                 prompts_per_concept=prompts_per_concept, seed=seed, checkpoint_every=checkpoint_every,
                 evaluations=evaluations, separator=separator, answer_prefix=answer_prefix, fit_format=fit_format)
    finetune(_load(model, revision, dtype, device_map, load_in), spec, out, batch_size=batch_size, resume=True)


def llm_intervene(out: Path, model: str = "smollm2-135m", family: str = "pos", layer: int | str | list[int] = "best",
                  shots: int = 4, prompts_per_concept: int = 25, replicates: int = 5, mode: str = "replace",
                  seed: int = 0, from_run: str | None = None, revision: str | None = None, dtype: str = "float32",
                  device_map: str | None = None, load_in: str | None = None, batch_size: int = 16,
                  separator: str = " ->", answer_prefix: str = " ") -> None:
    """`conceptlens llm intervene` for one model × family × layer × seed (means from the train split)."""
    from conceptlens.experiments import intervention_families, interventions
    from conceptlens.specs import InterventionSpec, build

    spec = build(InterventionSpec, family=family, layers=[layer] if isinstance(layer, int) else layer, shots=shots,
                 prompts_per_concept=prompts_per_concept, replicates=replicates, mode=mode, seed=seed,
                 separator=separator, answer_prefix=answer_prefix)
    intervention_families(spec)  # before the model loads
    interventions(_load(model, revision, dtype, device_map, load_in), spec, out,
                  from_run=Path(from_run) if from_run else None, batch_size=batch_size)


def synthetic_train(out: Path, config: str = "quick", seed: int = 0, set: dict[str, Any] | None = None,
                    analyze: bool = True) -> None:
    """`conceptlens synthetic train` (then `analyze`) for one config × seed × overrides."""
    from conceptlens.synthetic import analyze as run_analysis
    from conceptlens.synthetic import load_config, train

    overrides = [f"{key}={value}" for key, value in (set or {}).items()] + [f"seed={seed}"]
    train(load_config(config, overrides), out, resume=True)
    if analyze:
        run_analysis(out)


RUNNERS: dict[str, Callable[..., None]] = {"llm run": llm_run, "llm finetune": llm_finetune,
                                           "llm intervene": llm_intervene, "synthetic train": synthetic_train}


def resolve_function(dotted: str) -> Callable[..., Any]:
    """`conceptlens.pkg.module.function` -> the function; anything outside `conceptlens` is refused."""
    parts = dotted.split(".")
    if len(parts) < 3 or parts[0] != "conceptlens" or not all(p.isidentifier() for p in parts):
        raise ConceptLensError(f"function '{dotted}' is not a dotted path inside the conceptlens package.",
                               "write e.g. conceptlens.sweep.toy.toy_decodability.")
    module_name, name = ".".join(parts[:-1]), parts[-1]
    if name.startswith("_"):
        raise ConceptLensError(f"function '{dotted}' is private.", "call a public conceptlens function.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConceptLensError(f"module {module_name} is not part of conceptlens ({exc}).",
                               "check the dotted path.") from exc
    function = getattr(module, name, None)
    if not inspect.isfunction(function) or not str(function.__module__).startswith("conceptlens."):
        raise ConceptLensError(f"'{dotted}' is not a function defined in conceptlens.",
                               "name a function defined in a conceptlens module (not one it imports).")
    return function


def runner_for(command: str, function: str | None) -> Callable[..., Any]:
    if command != "python":
        return RUNNERS[command]
    runner = resolve_function(function)
    if "out" not in inspect.signature(runner).parameters:  # e.g. storage.write_text(path, text): a write anywhere
        raise ConceptLensError(f"'{function}' takes no `out` folder, so a cell could write outside the sweep folder.",
                               "call a function whose `out` parameter receives the cell's folder, "
                               "e.g. conceptlens.sweep.toy.toy_decodability.")
    return runner


def check_kwargs(runner: Callable[..., Any], kwargs: dict[str, Any], where: str) -> None:
    """Raise before any work if a cell gives keys the runner does not take, or misses required ones."""
    signature = inspect.signature(runner)
    params = {n: p for n, p in signature.parameters.items() if n != "out"}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ConceptLensError(f"{where}: key(s) {unknown} are not settings of {runner.__name__}.",
                               f"use only: {', '.join(params)}.")
    missing = [n for n, p in params.items() if p.default is p.empty and n not in kwargs
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if missing:
        raise ConceptLensError(f"{where}: {runner.__name__} needs {missing}.", "add them to `grid` or `fixed`.")


def run_cell(command: str, function: str | None, kwargs: dict[str, Any], out: Path) -> None:
    """Run one cell into `out` (the folder exists)."""
    runner = runner_for(command, function)
    if "out" in inspect.signature(runner).parameters:
        runner(out=out, **kwargs)
    else:
        runner(**kwargs)
