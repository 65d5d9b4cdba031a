"""The Python front door: each experiment of the paper as one call that returns a typed result.

`cl.encoding_study(lm, "bitwise")` measures TD by layer x shots and ICL accuracy (paper 4.1-4.2),
`cl.interventions` the accuracy change when the query state is edited with a concept mean (4.3),
`cl.finetune` TD and accuracy before vs after layer-selective finetuning (4.4), and
`cl.train_synthetic` / `cl.analyze_synthetic` the emergence study on regression GPTs (part 1).
Each builds the typed spec of `conceptlens.specs` and calls `conceptlens.experiments`, exactly as
the CLI does, inside a `RunFolder` with the CLI's record, so a notebook's folder resumes from the
command line and back. DECISION: without `out`, a run goes to a fresh temporary folder (named in
`result.folder`); a family's split and seed travel with the family `cl.load_family` returns.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from conceptlens.api_model import LanguageModel, as_language_model, load_model
from conceptlens.api_results import EncodingResult, FinetuneResult, InterventionResult
from conceptlens.errors import ConceptLensError
from conceptlens.prompts import Prompt, PromptFormat  # noqa: F401  (re-exported: cl.Prompt, cl.PromptFormat)
from conceptlens.specs import EncodingStudySpec, FinetuneSpec, InterventionSpec, ModelSpec, build
from conceptlens.tasks.family import TaskFamily

__all__ = ["load_model", "load_family", "few_shot_prompts", "task_decodability", "encoding_study", "interventions",
           "finetune", "transfer", "ladder", "train_synthetic", "analyze_synthetic", "LanguageModel", "EncodingResult", "InterventionResult",
           "FinetuneResult", "SyntheticAnalysis", "ModelSpec", "EncodingStudySpec", "InterventionSpec", "FinetuneSpec",
           "PromptFormat", "Prompt", "ConceptLensError"]


def __getattr__(name: str):
    if name == "SyntheticAnalysis":  # pulls in the synthetic package only when asked for
        from conceptlens.synthetic.results import SyntheticAnalysis

        return SyntheticAnalysis
    raise AttributeError(f"module 'conceptlens.api' has no attribute {name!r}")


def task_decodability(acts, labels: Sequence, k: int = 10, layers: Sequence[int] | None = None, seed: int = 0):
    """Leave-one-out kNN TD of `acts` `[layers, N, d]` (or `[N, d]`) per layer and concept.

        td = cl.task_decodability(acts, labels, k=10)
        td.per_class.head(); td.mean; td.best_layer
    """
    from conceptlens.decodability import task_decodability as _task_decodability

    return _task_decodability(acts, labels, k=k, layers=layers, seed=seed)


def load_family(name: str | Path, split: str = "test", seed: int = 0, null: bool = True) -> TaskFamily:
    """"pos", "pos-synthetic", "bitwise", or a folder with one .json/.jsonl file per concept; the seeded `split`.

        family = cl.load_family("bitwise")
        family.concept_names, family.concepts["AND"][:3]
    The family's `origin` ({"family", "split", "seed", "null"}) goes into the spec of a study run on it.
    """
    from conceptlens.tasks.registry import load_family as _load_family

    family = _load_family(str(name), split=split, seed=seed, null=null)
    family.origin = {"family": str(name), "split": split, "seed": seed, "null": null}
    return family


def few_shot_prompts(family, shots: int = 4, prompts_per_concept: int = 100, seed: int = 0, fmt=None,
                     state_concept: bool = False) -> tuple[list, list[str]]:
    """Seeded k-shot `Prompt`s of every concept of `family` and their concept labels, as a study samples them.

        prompts, labels = cl.few_shot_prompts(family, shots=4, prompts_per_concept=20)
        acts = lm.capture(prompts, position="query_separator")
    """
    from conceptlens.prompts import sample_prompts

    family = load_family(family) if isinstance(family, (str, Path)) else family
    prompts, labels = [], []
    for concept in family.concept_names:
        prompts += sample_prompts(family, concept, prompts_per_concept, shots, seed, fmt or PromptFormat(),
                                  state_concept=state_concept)
        labels += [concept] * prompts_per_concept
    return prompts, labels


def _family_source(family, seed: int | None, kind: str) -> tuple[str, dict]:
    """(name or folder for the spec, the family's own split/seed/null settings)."""
    origin = getattr(family, "origin", None)
    if isinstance(family, TaskFamily) and isinstance(origin, dict):
        if seed is not None and seed != origin["seed"]:
            raise ConceptLensError(f"the family was split with seed {origin['seed']}, the {kind} asks for seed {seed}.",
                                   f"pass seed={origin['seed']}, or load the family with seed={seed}.")
        return origin["family"], {key: origin[key] for key in ("split", "seed", "null")}
    if isinstance(family, (str, Path)):
        return str(family), {}
    raise ConceptLensError(f"family is a {type(family).__name__} that cl.load_family did not load.",
                           "pass a family name ('bitwise', 'pos'), a folder, or cl.load_family(...).")


@contextlib.contextmanager
def _run_folder(out, kind: str, record: dict, progress: bool) -> Iterator[tuple[Path, object]]:
    """(folder, progress bar or None) inside the `RunFolder` of `kind`; `out=None`: a new temporary folder."""
    from conceptlens.progress import progress_bar
    from conceptlens.runs import RunFolder

    folder = Path(tempfile.mkdtemp(prefix=f"conceptlens-{kind}-")) if out is None else Path(out).expanduser()
    with RunFolder(folder, kind, record), (progress_bar() if progress else contextlib.nullcontext()) as bar:
        yield folder, bar


def _given(**values) -> dict:
    """The settings the caller gave (None: the spec's own default, so a default is stated once, in specs.py)."""
    return {name: value for name, value in values.items() if value is not None}


def _with_family(given: dict, own: dict, kind: str) -> dict:
    """`given` plus the split/seed/null a `cl.load_family` family was loaded with (a conflict is refused)."""
    for name, value in own.items():
        if name in given and given[name] != value:
            raise ConceptLensError(f"the family was loaded with {name}={value!r}, the {kind} asks for {given[name]!r}.",
                                   f"leave `{name}` out, or load the family with {name}={given[name]!r}.")
    return {**given, **own}


def encoding_study(lm, family, shots: Sequence[int] | None = None, prompts_per_concept: int | None = None, *,
                   k: int | None = None, seed: int | None = None, out: str | Path | None = None, batch_size: int = 16,
                   progress: bool = True, **settings) -> EncodingResult:
    """TD x layers x shots and ICL accuracy (`conceptlens llm run`); resumes a finished stage in `out`.

    `settings`: any other field of `EncodingStudySpec` (split, null, state_concept, separator, ...).

        result = cl.encoding_study(lm, "bitwise", shots=[1, 4, 10], prompts_per_concept=100)
        result.td.head(); result.accuracy; result.plot()
    """
    from conceptlens.experiments import check_study, encoding_study as run

    lm = as_language_model(lm)
    source, own = _family_source(family, seed, "study")
    values = _with_family(_given(shots=list(shots) if shots is not None else None,
                                 prompts_per_concept=prompts_per_concept, k=k, seed=seed, **settings), own, "study")
    spec = build(EncodingStudySpec, family=source, **values)
    task_family = check_study(spec)  # a bad setting fails before any folder exists
    record = {"model": lm.model_spec.model_dump(), "study": spec.model_dump(), "revisions": None}
    with _run_folder(out, "encoding-study", record, progress) as (folder, bar):
        run(lm, spec, folder, batch_size=batch_size, progress=bar, family=task_family)
    return EncodingResult.load(folder)


def interventions(lm, family, layers: Sequence[int] | int | str | None = None, shots: int | None = None,
                  prompts_per_concept: int | None = None, replicates: int | None = None, mode: str | None = None, *,
                  seed: int | None = None, from_run: str | Path | None = None, out: str | Path | None = None,
                  batch_size: int = 16, progress: bool = True, **settings) -> InterventionResult:
    """Edit the query-token state with concept means, Null and controls: accuracy change (`llm intervene`).

    `settings`: any other field of `InterventionSpec` (separator, means_per_concept, ...); left out,
    each setting takes the spec's default.

        result = cl.interventions(lm, "bitwise", replicates=5)
        result.changes; result.plot()
    """
    from conceptlens.experiments import intervention_families, interventions as run

    lm = as_language_model(lm)
    source, own = _family_source(family, seed, "intervention")
    if own.get("split", "test") != "test":
        raise ConceptLensError(f"interventions evaluate the test split, the family holds the '{own['split']}' split.",
                               "pass the family's name, or cl.load_family(name) with the default split.")
    layers = [layers] if isinstance(layers, int) else layers
    values = _given(layers=layers if layers is None or isinstance(layers, str) else list(layers), shots=shots,
                    prompts_per_concept=prompts_per_concept, replicates=replicates, mode=mode, seed=seed, **settings)
    spec = build(InterventionSpec, family=source, **_with_family(values, {"seed": own["seed"]} if own else {},
                                                                 "intervention"))
    intervention_families(spec)  # a bad family fails before any folder exists
    record = {"model": lm.model_spec.model_dump(), "intervention": spec.model_dump(),
              "from_run": str(from_run) if from_run else None}
    with _run_folder(out, "intervention", record, progress) as (folder, bar):
        run(lm, spec, folder, from_run=Path(from_run) if from_run else None, batch_size=batch_size, progress=bar)
    return InterventionResult.load(folder)


def finetune(lm, family, layers: str | None = None, method: str | None = None, *, train_samples: int | None = None,
             shots: int | None = None, prompts_per_concept: int | None = None, k: int | None = None,
             seed: int | None = None, out: str | Path | None = None, before_run: str | Path | None = None,
             batch_size: int = 8, progress: bool = True, **settings) -> FinetuneResult:
    """Finetune only `layers` (LoRA or full), then TD and accuracy before vs after (`llm finetune`).

    `settings`: any other field of `FinetuneSpec` (epochs, lr, rank, alpha, dropout, evaluations, ...).
    A killed run resumes when called again with the same `out` and settings (other settings are refused).

        result = cl.finetune(lm, "bitwise", layers="first:10", train_samples=600)
        result.summary["after"]["td_mean"]; result.plot()
    """
    from conceptlens.experiments import finetune as run

    lm = as_language_model(lm)
    source, own = _family_source(family, seed, "finetuning")
    values = _given(layers=None if layers is None else str(layers), method=method, train_samples=train_samples,
                    shots=shots, prompts_per_concept=prompts_per_concept, k=k, seed=seed, **settings)
    spec = build(FinetuneSpec, family=source, **_with_family(values, {"seed": own["seed"]} if own else {},
                                                             "finetuning"))
    record = {"model": lm.model_spec.model_dump(), "finetune": spec.model_dump()}
    with _run_folder(out, "finetune", record, progress) as (folder, bar):
        # the RunFolder admits only this spec, so the driver may always resume (its own check would
        # otherwise take the folder's record and lock for another run's files)
        run(lm, spec, folder, batch_size=batch_size, resume=True,
            before_run=Path(before_run) if before_run else None, progress=bar)
    return FinetuneResult.load(folder)


def train_synthetic(config="quick", out: str | Path | None = None, *, overrides: Sequence[str] = (),
                    resume: bool = False, device: str = "cpu", progress: bool = True) -> Path:
    """Train a small GPT on an in-context regression mixture (`conceptlens synthetic train`); returns the run folder.

        run = cl.train_synthetic("quick", "runs/quick", overrides=["train.steps=2000"])
        analysis = cl.analyze_synthetic(run)
    """
    from conceptlens.synthetic.config import RunConfig, config_from_dict, load_config
    from conceptlens.synthetic.train import train

    if isinstance(config, RunConfig):
        config = config_from_dict(config.model_dump(mode="json"), list(overrides))
    else:
        config = load_config(config, list(overrides))
    with _run_folder(out, "synthetic-train", None, progress) as (folder, bar):
        task = bar.add_task(f"train {config.name}", total=config.train.steps, info="") if bar else None

        def callback(step: int, info: dict) -> None:
            if bar:
                bar.update(task, completed=step, info=f"loss {info['loss']:.4f}")

        train(config, folder, resume=resume, callback=callback, device=device)
    return folder


def analyze_synthetic(run: str | Path, **options):
    """Per-basis error, TD per block x checkpoint, moments (a)(b)(c), UMAP, patching (`synthetic analyze`).

        analysis = cl.analyze_synthetic("runs/quick", max_checkpoints=10, umap=False)
        analysis.decodability.head(); analysis.moments
    Options are those of `conceptlens.synthetic.analysis.analyze`; returns its `SyntheticAnalysis`.
    """
    from conceptlens.synthetic.analysis import analyze

    return analyze(Path(run).expanduser(), **options)


def transfer(lm, family, shots: int | None = None, layers: Sequence[int] | str | None = None,
             prompts_per_concept: int | None = None, *, seed: int | None = None, out: str | Path | None = None,
             batch_size: int = 16, progress: bool = True, **settings) -> dict:
    """Task vectors patched into zero-shot prompts at every layer, beside TD (`llm transfer`).

        result = cl.transfer(lm, "bitwise", shots=4, prompts_per_concept=50)
        result["transfer"].head(); result["summary"]["best_transfer_layer"]
    Returns {"transfer": rows, "td": rows, "summary": dict, "folder": Path}.
    """
    from conceptlens.experiments import transfer as run, transfer_families
    from conceptlens.specs import TransferSpec

    lm = as_language_model(lm)
    values = _given(shots=shots, layers=list(layers) if layers is not None and not isinstance(layers, str) else layers,
                    prompts_per_concept=prompts_per_concept, seed=seed, **settings)
    spec = build(TransferSpec, family=str(getattr(family, "origin", {}).get("family", family)), **values)
    transfer_families(spec)  # a bad family fails before any folder exists
    record = {"model": lm.model_spec.model_dump(), "transfer": spec.model_dump()}
    with _run_folder(out, "transfer", record, progress) as (folder, bar):
        rows, td, summary = run(lm, spec, folder, batch_size=batch_size, progress=bar)
    return {"transfer": rows, "td": td, "summary": summary, "folder": folder}


def ladder(models: Sequence[str], families: Sequence[str] = ("pos", "bitwise"), out: str | Path | None = None, *,
           ray: bool = False, **settings):
    """The encoding study on each model, then the scaling table beside the paper's models (`llm ladder`).

        table = cl.ladder(["smollm2-135m", "qwen2.5-coder-0.5b"], ["bitwise"], "runs/ladder")
    `settings`: any other field of `LadderSpec` (shots, prompts_per_concept, dtype, ...); returns ladder.csv's frame.
    """
    from conceptlens.llm.ladder.run import run_ladder
    from conceptlens.specs import LadderSpec

    spec = build(LadderSpec, models=list(models), families=list(families), **settings)
    folder = Path(out).expanduser() if out is not None else Path(tempfile.mkdtemp(prefix="conceptlens-ladder-"))
    return run_ladder(spec, folder, ray=ray)
