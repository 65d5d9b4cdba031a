"""The paper's whole study on one model, as one command: `conceptlens reproduce --quick`.

Stages: the synthetic emergence run (train + analyze), TD and ICL accuracy for the POS and
bitwise families at 1/4/10 shots, the prompting variant (concept stated), interventions over the
TD rise, LoRA on the blocks before vs after the TD peak, the comparison table, task-vector transfer
beside TD (beyond the paper), and the HTML report.
`--quick` is sized for 2 CPU cores on the embedded SmolLM2; `--full` is the paper's scale (GPU).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from conceptlens.progress import progress_bar
from conceptlens.runs import RunFolder, folder_done
from conceptlens.specs import EncodingStudySpec, FinetuneSpec, InterventionSpec, ModelSpec, TransferSpec, build
from conceptlens.study.stages import Stage, run_stages


# --quick finetuning prompts per run: SmolLM2-135M LoRA (9 blocks, batch 8, 4-shot) takes 3.2-4.1 CPU seconds a
# step on one thread, about 2 samples per CPU second (docs/results/finetune_smollm2.md): 120 samples train in
# about 1 min, and with the study after it the stage stays near 2 min
QUICK_TRAIN_SAMPLES = 120


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SyntheticStage(_Strict):
    """The synthetic emergence run: a config to train, or a series shipped in the package."""

    config: str = "quick"
    overrides: list[str] = Field(default_factory=list)
    shipped: str | None = None  # analyse a checkpoint series shipped in the package instead of training
    analyze: dict = Field(default_factory=dict)  # keyword arguments of `synthetic.analyze`


class StudyStage(_Strict):
    """The encoding study of every family (and its prompting variant, the concept stated)."""

    shots: list[int] = Field(default_factory=lambda: [1, 4, 10])
    stated_shots: list[int] | None = None  # shots of the prompting variant (None: the same as `shots`)
    prompts_per_concept: int = 100

    def spec(self, family: str, seed: int, stated: bool = False, fmt: dict | None = None) -> EncodingStudySpec:
        shots = (self.stated_shots or self.shots) if stated else self.shots
        return build(EncodingStudySpec, family=family, shots=shots, prompts_per_concept=self.prompts_per_concept,
                     seed=seed, state_concept=stated, **(fmt or {}))


class InterventionStage(_Strict):
    """Interventions over each family's TD rise (the paper's add mode; positive, Null, random, cross)."""

    shots: int = 4
    prompts_per_concept: int = 100
    replicates: int = 5
    max_sweep_layers: int = 6

    def spec(self, family: str, seed: int) -> InterventionSpec:
        return build(InterventionSpec, family=family, seed=seed, layers="sweep", mode="add", **self.model_dump())


class FinetuneStage(_Strict):
    """LoRA on each layer group of each family: the blocks right before the pretrained TD peak vs those
    from the peak on (`llm/finetune/layers.py`), each the paper's 10/32 of the depth."""

    layers: list[str] = Field(default_factory=lambda: ["before-peak", "after-peak"])
    train_samples: int = 10000  # the paper's 10K (a GPU); --quick trains on QUICK_TRAIN_SAMPLES
    epochs: int = 1
    shots: int = 4
    prompts_per_concept: int = 100
    evaluations: int = 4  # held-out accuracy checks during training (0: only the study after it)

    def spec(self, family: str, layers: str, seed: int, fmt: dict | None = None) -> FinetuneSpec:
        return build(FinetuneSpec, family=family, layers=layers, seed=seed,
                     **self.model_dump(exclude={"layers"}), **(fmt or {}))


class TransferStage(_Strict):
    """Task-vector transfer beside TD at every layer (beyond the paper: decodable vs. usable, issue 17)."""

    shots: int = 4
    prompts_per_concept: int = 50
    layers: list[int] | Literal["all"] = "all"

    def spec(self, family: str, seed: int, fmt: dict | None = None) -> TransferSpec:
        return build(TransferSpec, family=family, seed=seed, **self.model_dump(), **(fmt or {}))


class PromptStage(_Strict):
    """The prompt format of every LM stage (`prompts.PromptFormat`), fitted to the tokenizer unless told not."""

    separator: str = " ->"
    answer_prefix: str = " "
    fit_format: bool = True


class ReproduceSettings(_Strict):
    """Everything `reproduce` varies; saved as `RUN/settings.json`."""

    model: ModelSpec = Field(default_factory=ModelSpec)
    seed: int = 0
    families: list[str] = Field(default_factory=lambda: ["pos", "bitwise"])
    batch_size: int = 16
    synthetic: SyntheticStage = Field(default_factory=SyntheticStage)
    study: StudyStage = Field(default_factory=StudyStage)
    intervention: InterventionStage = Field(default_factory=InterventionStage)
    finetune: FinetuneStage = Field(default_factory=FinetuneStage)
    transfer: TransferStage = Field(default_factory=TransferStage)
    prompt: PromptStage = Field(default_factory=PromptStage)

    @model_validator(mode="after")
    def _specs_are_valid(self) -> "ReproduceSettings":
        """Every stage's spec is built once here, so a bad setting fails before the first stage."""
        fmt = self.prompt.model_dump()
        for family in self.families:
            self.study.spec(family, self.seed, fmt=fmt), self.study.spec(family, self.seed, stated=True, fmt=fmt)
            intervention_spec(self, family)
            self.transfer.spec(family, self.seed, fmt=fmt)
            for layers in self.finetune.layers:
                self.finetune.spec(family, layers, self.seed, fmt=fmt)
        return self


def intervention_spec(settings: ReproduceSettings, family: str) -> InterventionSpec:
    """The intervention stage's spec with the settings' prompt format (fitted to the tokenizer as the study's)."""
    spec = settings.intervention.spec(family, settings.seed)
    format_values = settings.prompt.model_dump()
    return build(InterventionSpec, **{**spec.model_dump(), **format_values})


def preset(name: str, model: str | None = None, dtype: str | None = None, device_map: str | None = None,
           load_in: str | None = None, seed: int | None = None, prompt: dict | None = None) -> ReproduceSettings:
    """`quick`: 2 CPU cores, about 15 minutes; `full`: the paper's settings, for a GPU (10K finetuning
    samples per run). `prompt`: `PromptStage` values (separator, answer_prefix, fit_format)."""
    if name == "quick":
        base = ReproduceSettings(synthetic=SyntheticStage(config="quick", shipped="quick-seed0",
                                                          analyze={"max_checkpoints": 10, "sequences_per_basis": 100}),
                                 study=StudyStage(prompts_per_concept=24, stated_shots=[4]),
                                 intervention=InterventionStage(prompts_per_concept=24, replicates=2, max_sweep_layers=2),
                                 finetune=FinetuneStage(train_samples=QUICK_TRAIN_SAMPLES, prompts_per_concept=24,
                                                        evaluations=0),
                                 transfer=TransferStage(prompts_per_concept=12))
    elif name == "full":
        base = ReproduceSettings(synthetic=SyntheticStage(config="paper"))
    else:
        raise ValueError(name)
    loading = {k: v for k, v in {"name": model, "dtype": dtype, "device_map": device_map, "load_in": load_in}.items()
               if v is not None}
    model_spec = build(ModelSpec, **{**base.model.model_dump(), **loading})
    values = {**base.model_dump(), "model": model_spec.model_dump(), "prompt": {**base.prompt.model_dump(), **(prompt or {})},
              **({"seed": seed} if seed is not None else {})}
    return ReproduceSettings.model_validate(values)  # the specs are checked again with the new values


class _Model:
    """Load the LM once, on first use, and share it between stages."""

    def __init__(self, settings: ReproduceSettings):
        self.settings, self._lm = settings, None

    def __call__(self):
        if self._lm is None:
            from conceptlens.models.from_spec import load_model

            self._lm = load_model(self.settings.model)
        return self._lm


def build_stages(settings: ReproduceSettings, out: Path) -> list[Stage]:
    lm = _Model(settings)
    stages: list[Stage] = [Stage("synthetic_train", "synthetic", lambda folder: _synthetic_train(settings, folder),
                                 kind="synthetic-train"),
                           Stage("synthetic_analyze", "synthetic/analysis", lambda folder: _synthetic_analyze(settings, out),
                                 needs=("synthetic_train",), kind="synthetic-analysis")]
    for family in settings.families:
        stages += _family_stages(settings, out, lm, family)
    stages.append(Stage("compare", "comparison", lambda folder: _compare(settings, out, folder), kind="comparison"))
    return stages


def _synthetic_train(settings: ReproduceSettings, folder: Path) -> None:
    from conceptlens.synthetic import load_config, train
    from conceptlens.synthetic.shipped import copy_shipped_run, shipped_runs

    synthetic = settings.synthetic
    if synthetic.shipped and synthetic.shipped in shipped_runs():
        copy_shipped_run(synthetic.shipped, folder)
        return
    train(load_config(synthetic.config, synthetic.overrides + [f"seed={settings.seed}"]), folder, resume=True)


def _synthetic_analyze(settings: ReproduceSettings, out: Path) -> None:
    from conceptlens.synthetic import analyze

    analyze(out / "synthetic", **settings.synthetic.analyze)


def _family_stages(settings: ReproduceSettings, out: Path, lm: _Model, family: str) -> list[Stage]:
    """The study, its prompting variant, interventions and finetuning of one family."""
    from conceptlens import experiments

    seed, study_run = settings.seed, out / "llm" / family

    fmt = settings.prompt.model_dump()

    def study(folder: Path, stated: bool = False) -> None:
        with progress_bar() as bar:
            experiments.encoding_study(lm(), settings.study.spec(family, seed, stated, fmt=fmt), folder,
                                       batch_size=settings.batch_size, progress=bar)

    def intervene(folder: Path) -> None:
        with progress_bar() as bar:
            experiments.interventions(lm(), intervention_spec(settings, family), folder, from_run=study_run,
                                      batch_size=settings.batch_size, progress=bar)

    def transfer(folder: Path) -> None:
        with progress_bar() as bar:
            experiments.transfer(lm(), settings.transfer.spec(family, seed, fmt=fmt), folder,
                                 batch_size=settings.batch_size, progress=bar)

    stages = [Stage(f"llm_{family}", f"llm/{family}", study),
              Stage(f"llm_{family}_stated", f"llm/{family}_stated", lambda folder: study(folder, stated=True)),
              Stage(f"interventions_{family}", f"interventions/{family}", intervene, needs=(f"llm_{family}",),
                    kind="intervention"),
              Stage(f"transfer_{family}", f"transfer/{family}", transfer, kind="transfer")]
    for layers in settings.finetune.layers:
        def finetune(folder: Path, layers: str = layers) -> None:
            with progress_bar() as bar:
                experiments.finetune(lm(), settings.finetune.spec(family, layers, seed, fmt=fmt), folder, resume=True,
                                     before_run=study_run, progress=bar)

        slug = layers.replace(":", "").replace("-", "_").replace("%", "pc")
        stages.append(Stage(f"finetune_{family}_{slug}", f"finetune/{family}_{slug}", finetune, kind="finetune"))
    return stages


def _compare(settings: ReproduceSettings, out: Path, folder: Path) -> None:
    from conceptlens.llm.compare import compare_runs

    runs = [out / "llm" / f for f in settings.families] + [out / "llm" / f"{f}_stated" for f in settings.families]
    runs += sorted((out / "finetune").glob("*")) if (out / "finetune").exists() else []
    compare_runs([r for r in runs if folder_done(r)], folder, shots=settings.finetune.shots)


def reproduce(settings: ReproduceSettings, out: str | Path, only: set[str] | None = None) -> dict:
    """Run (or resume) every stage into `out`; returns the per-stage status."""
    from conceptlens.errors import ConceptLensError
    from conceptlens.storage import write_json

    out = Path(out)
    stages = build_stages(settings, out)
    unknown = sorted(set(only or ()) - {stage.name for stage in stages})
    if unknown:  # before anything is written: a typo must not look like a finished study
        raise ConceptLensError(f"unknown stage(s) {unknown}.", f"use names from: {', '.join(s.name for s in stages)}.")
    with RunFolder(out, "reproduce", settings, legacy="settings.json"):  # same settings resume; others are refused
        write_json(out / "settings.json", settings.model_dump())
        return run_stages(stages, out, only=only)
