"""Run an experiment from its spec: the same call behind the CLI, the sweep cells and `reproduce`.

Each function loads the family splits the spec names (interventions take their concept means from
the train split, never the test prompts they evaluate), then calls the library's study. DECISION:
the study records where its family came from (`split`, `null`, `family_source`) in summary.json.
"""

from __future__ import annotations

from pathlib import Path

from conceptlens.specs import EncodingStudySpec, FinetuneSpec, InterventionSpec, TransferSpec


def study_family(spec: EncodingStudySpec):
    from conceptlens.tasks.registry import load_family

    return load_family(spec.family, split=spec.split, seed=spec.seed, null=spec.null)


def study_settings(spec: EncodingStudySpec) -> dict:
    """What summary.json records of the family (and the format asked for) beside the study's own settings."""
    return {"split": spec.split, "null": spec.null, "family_source": spec.family,
            "separator": spec.separator, "answer_prefix": spec.answer_prefix, "fit_format": spec.fit_format}


def prompt_format(spec: EncodingStudySpec | FinetuneSpec):
    """The spec's `PromptFormat` (before it is fitted to a tokenizer)."""
    from conceptlens.prompts import PromptFormat

    return PromptFormat(separator=spec.separator, answer_prefix=spec.answer_prefix)


def check_study(spec: EncodingStudySpec):
    """Every check that needs the family but not the model; returns the family."""
    from conceptlens.llm.encoding.study import check_settings

    family = study_family(spec)
    check_settings(family, spec.shots, spec.prompts_per_concept, spec.k)
    return family


def encoding_study(lm, spec: EncodingStudySpec, out: str | Path, *, batch_size: int = 16, progress=None,
                   family=None) -> dict:
    """TD x layers x shots and ICL accuracy into `out`; returns the summary dict."""
    from conceptlens.llm.encoding.study import run_study

    family = check_study(spec) if family is None else family
    return run_study(lm, family.name, family, spec.shots, spec.prompts_per_concept, spec.seed, Path(out),
                     state_concept=spec.state_concept, k=spec.k, progress=progress, batch_size=batch_size,
                     settings=study_settings(spec), fmt=prompt_format(spec), fit_format=spec.fit_format)


def intervention_families(spec: InterventionSpec):
    """(test family, means family): held out, the means never see a test example."""
    from conceptlens.tasks.registry import load_family

    return (load_family(spec.family, split="test", seed=spec.seed),
            load_family(spec.family, split="train", seed=spec.seed))


def interventions(lm, spec: InterventionSpec, out: str | Path, *, from_run: Path | None = None,
                  batch_size: int = 16, progress=None):
    """Positive vs Null accuracy change per replicate x layer x concept (tidy rows, also in `out`)."""
    from conceptlens.llm.encoding.study import study_format
    from conceptlens.llm.interventions.run import run_interventions
    from conceptlens.prompts import PromptFormat

    test_family, means_family = intervention_families(spec)
    # the edit hits the token TD is read at: the same fit to the tokenizer as the encoding study
    fmt, _ = study_format(lm.tokenizer, test_family, PromptFormat(separator=spec.separator,
                                                                  answer_prefix=spec.answer_prefix), spec.fit_format)
    return run_interventions(lm, spec.family, test_family, spec.layers, shots=spec.shots,
                             prompts_per_concept=spec.prompts_per_concept, replicates=spec.replicates, mode=spec.mode,
                             seed=spec.seed, means_family=means_family, from_run=from_run, batch_size=batch_size,
                             fmt=fmt, out=Path(out), progress=progress, means_per_concept=spec.means_per_concept,
                             cross_at=spec.cross_at, max_sweep_layers=spec.max_sweep_layers)


def finetune(lm, spec: FinetuneSpec, out: str | Path, *, batch_size: int = 8, resume: bool = False,
             before_run: Path | None = None, progress=None) -> dict:
    """Finetune the spec's layers, then TD and accuracy before vs after; returns the summary."""
    from conceptlens.llm.finetune.driver import finetune as run_finetune
    from conceptlens.llm.finetune.layers import needs_peak, parse_layer_range
    from conceptlens.tasks.registry import load_family

    if not needs_peak(spec.layers):  # before-peak / after-peak wait for the pretrained study's peak
        parse_layer_range(spec.layers, lm.n_layers)
    train_family = load_family(spec.family, split="train", seed=spec.seed)
    test_family = load_family(spec.family, split="test", seed=spec.seed)
    return run_finetune(lm, spec.family, train_family, test_family, layers=spec.layers, method=spec.method,
                        rank=spec.rank, alpha=spec.alpha, dropout=spec.dropout, train_samples=spec.train_samples,
                        epochs=spec.epochs, lr=spec.lr, batch_size=batch_size, shots=spec.shots,
                        prompts_per_concept=spec.prompts_per_concept, seed=spec.seed, out=Path(out), resume=resume,
                        progress=progress, before_run=before_run, checkpoint_every=spec.checkpoint_every,
                        evaluations=spec.evaluations, k=spec.k, fmt=prompt_format(spec), fit_format=spec.fit_format)


def transfer_families(spec: "TransferSpec"):
    """(train family, test family) without Null: task vectors from train, evaluated inputs from test."""
    from conceptlens.tasks.registry import load_family

    return (load_family(spec.family, split="train", seed=spec.seed, null=False),
            load_family(spec.family, split="test", seed=spec.seed, null=False))


def transfer(lm, spec: "TransferSpec", out: str | Path | None = None, *, batch_size: int = 16, progress=None):
    """Task-vector transfer beside TD per layer (`llm.transfer.run_transfer`): (rows, td rows, summary)."""
    from conceptlens.llm.transfer.run import run_transfer
    from conceptlens.prompts import PromptFormat

    train, test = transfer_families(spec)
    return run_transfer(lm, spec.family, train, test, shots=spec.shots, layers=spec.layers,
                        prompts_per_concept=spec.prompts_per_concept, seed=spec.seed, k=spec.k,
                        fmt=PromptFormat(separator=spec.separator, answer_prefix=spec.answer_prefix),
                        fit_format=spec.fit_format, batch_size=batch_size,
                        out=Path(out) if out is not None else None, progress=progress)
