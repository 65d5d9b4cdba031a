"""The paper's whole study on one model, as one command: `conceptlens reproduce --quick`.

Stages: the synthetic emergence run (train + analyze), TD and ICL accuracy for the POS and
bitwise families at 1/4/10 shots, the prompting variant (concept stated), interventions at the
best layer, LoRA on the first vs last layers, the comparison table, and the HTML report.
`--quick` is sized for 2 CPU cores on the embedded SmolLM2; `--full` is the paper's scale (GPU).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from conceptlens.study.stages import Stage, run_stages


class ReproduceSettings(BaseModel):
    """Everything `reproduce` varies; saved as `RUN/settings.json`."""

    model_config = ConfigDict(extra="forbid")

    model: str = "smollm2-135m"
    dtype: str = "float32"
    device_map: str | None = None
    load_in: str | None = None  # 8bit | 4bit (bitsandbytes)
    seed: int = 0
    synthetic_config: str = "quick"
    synthetic_overrides: list[str] = Field(default_factory=list)
    synthetic_shipped: str | None = None  # analyse a checkpoint series shipped in the package instead of training
    synthetic_analyze: dict = Field(default_factory=dict)
    families: list[str] = Field(default_factory=lambda: ["pos", "bitwise"])
    shots: list[int] = Field(default_factory=lambda: [1, 4, 10])
    stated_shots: list[int] | None = None  # shots of the prompting variant (None: the same as `shots`)
    prompts_per_concept: int = 100
    batch_size: int = 16
    intervention_shots: int = 4
    intervention_prompts: int = 100
    intervention_replicates: int = 5
    finetune_layers: list[str] = Field(default_factory=lambda: ["first:10", "last:10"])
    finetune_train_samples: int = 10000
    finetune_epochs: int = 1
    finetune_shots: int = 4
    finetune_prompts: int = 100
    finetune_evaluations: int = 4  # held-out accuracy checks during training (0: only the study after it)


def preset(name: str, **overrides) -> ReproduceSettings:
    """`quick`: 2 CPU cores, about 15 minutes; `full`: the paper's settings, for a GPU."""
    if name == "quick":
        base = ReproduceSettings(synthetic_config="quick", synthetic_shipped="quick-seed0", prompts_per_concept=24,
                                 stated_shots=[4], intervention_prompts=24, intervention_replicates=3,
                                 finetune_train_samples=48, finetune_prompts=24, finetune_evaluations=0,
                                 synthetic_analyze={"max_checkpoints": 10, "sequences_per_basis": 100})
    elif name == "full":
        base = ReproduceSettings(synthetic_config="paper")
    else:
        raise ValueError(name)
    return base.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def _load(settings: ReproduceSettings):
    from conceptlens.models import load_model

    return load_model(settings.model, dtype=settings.dtype, device_map=settings.device_map, load_in=settings.load_in)


class _Model:
    """Load the LM once, on first use, and share it between stages."""

    def __init__(self, settings: ReproduceSettings):
        self.settings, self._lm = settings, None

    def __call__(self):
        if self._lm is None:
            self._lm = _load(self.settings)
        return self._lm


def build_stages(settings: ReproduceSettings, out: Path) -> list[Stage]:
    from conceptlens.cli.common import progress_bar

    lm = _Model(settings)
    stages: list[Stage] = []

    def synthetic_train(folder: Path) -> None:
        from conceptlens.synthetic import load_config, train
        from conceptlens.synthetic.shipped import copy_shipped_run, shipped_runs

        if settings.synthetic_shipped and settings.synthetic_shipped in shipped_runs():
            copy_shipped_run(settings.synthetic_shipped, folder)
            return

        config = load_config(settings.synthetic_config, settings.synthetic_overrides + [f"seed={settings.seed}"])
        train(config, folder, resume=True)

    def synthetic_analyze(folder: Path) -> None:
        from conceptlens.synthetic import analyze

        analyze(out / "synthetic", **settings.synthetic_analyze)

    stages.append(Stage("synthetic_train", "synthetic", synthetic_train))
    stages.append(Stage("synthetic_analyze", "synthetic/analysis", synthetic_analyze, needs=("synthetic_train",)))

    for family_name in settings.families:
        def study(folder: Path, family_name=family_name, stated=False) -> None:
            from conceptlens.llm.encoding.study import run_study
            from conceptlens.tasks.registry import load_family

            family = load_family(family_name, split="test", seed=settings.seed)
            shots = (settings.stated_shots or settings.shots) if stated else settings.shots
            with progress_bar() as bar:
                run_study(lm(), family_name, family, shots, settings.prompts_per_concept, settings.seed,
                          folder, state_concept=stated, progress=bar)

        def stated(folder: Path, family_name=family_name) -> None:
            study(folder, family_name, stated=True)

        def intervene(folder: Path, family_name=family_name) -> None:
            from conceptlens.llm.interventions.run import run_interventions
            from conceptlens.tasks.registry import load_family

            family = load_family(family_name, split="test", seed=settings.seed)
            means_family = load_family(family_name, split="train", seed=settings.seed)  # held-out means
            with progress_bar() as bar:
                run_interventions(lm(), family_name, family, layers="best", means_family=means_family,
                                  shots=settings.intervention_shots,
                                  prompts_per_concept=settings.intervention_prompts,
                                  replicates=settings.intervention_replicates, mode="replace", seed=settings.seed,
                                  out=folder, from_run=out / "llm" / family_name, progress=bar)

        stages.append(Stage(f"llm_{family_name}", f"llm/{family_name}", study))
        stages.append(Stage(f"llm_{family_name}_stated", f"llm/{family_name}_stated", stated))
        stages.append(Stage(f"interventions_{family_name}", f"interventions/{family_name}", intervene,
                            needs=(f"llm_{family_name}",)))
        for layers in settings.finetune_layers:
            slug = layers.replace(":", "").replace("-", "_")

            def finetune(folder: Path, family_name=family_name, layers=layers) -> None:
                from conceptlens.llm.finetune.driver import finetune as run_finetune
                from conceptlens.tasks.registry import load_family

                train_family = load_family(family_name, split="train", seed=settings.seed)
                test_family = load_family(family_name, split="test", seed=settings.seed)
                with progress_bar() as bar:
                    run_finetune(lm(), family_name, train_family, test_family, layers=layers,
                                 train_samples=settings.finetune_train_samples, epochs=settings.finetune_epochs,
                                 shots=settings.finetune_shots, prompts_per_concept=settings.finetune_prompts,
                                 seed=settings.seed, out=folder, resume=True, progress=bar,
                                 evaluations=settings.finetune_evaluations,
                                 before_run=out / "llm" / family_name)

            stages.append(Stage(f"finetune_{family_name}_{slug}", f"finetune/{family_name}_{slug}", finetune))

    def compare(folder: Path) -> None:
        from conceptlens.llm.compare import compare_runs

        runs = [out / "llm" / f for f in settings.families] + [out / "llm" / f"{f}_stated" for f in settings.families]
        runs += sorted((out / "finetune").glob("*")) if (out / "finetune").exists() else []
        compare_runs([r for r in runs if (r / "DONE").exists()], folder, shots=settings.finetune_shots)

    stages.append(Stage("compare", "comparison", compare))
    return stages


def reproduce(settings: ReproduceSettings, out: str | Path, only: set[str] | None = None) -> dict:
    """Run (or resume) every stage into `out`; returns the per-stage status."""
    from conceptlens.storage import write_json

    out = Path(out)
    unknown = sorted(set(only or ()) - {stage.name for stage in build_stages(settings, out)})
    if unknown:  # before anything is written: a typo must not look like a finished study
        from conceptlens.errors import ConceptLensError

        raise ConceptLensError(f"unknown stage(s) {unknown}.",
                               f"use names from: {', '.join(s.name for s in build_stages(settings, out))}.")
    out.mkdir(parents=True, exist_ok=True)
    settings_path = out / "settings.json"
    if settings_path.exists():
        import json

        from conceptlens.errors import ConceptLensError

        defaults = json.loads(ReproduceSettings().model_dump_json())  # for fields added since the run began
        previous = {**defaults, **json.loads(settings_path.read_text())}
        if previous != json.loads(settings.model_dump_json()):
            changed = sorted(k for k in set(previous) | set(settings.model_dump()) if previous.get(k) != settings.model_dump().get(k))
            raise ConceptLensError(f"{out} holds a study run with other settings (differs in {changed}).",
                                   "resume with the same options, or choose a new --out folder.")
    write_json(settings_path, settings.model_dump())
    return run_stages(build_stages(settings, out), out, only=only)
