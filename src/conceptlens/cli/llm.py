"""`conceptlens llm ...` commands."""

from pathlib import Path
from typing import Optional

import typer

from conceptlens.cli.common import ModelFlags, console, with_model_flags
from conceptlens.storage import expand_user

app = typer.Typer(no_args_is_help=True)


# ---- finetune / compare (layer-selective finetuning, paper 4.4) -------------------------------


@with_model_flags()
def finetune_command(
    family: str = typer.Option(..., help="pos | bitwise | a folder of concept files"),
    layers: str = typer.Option(..., help="blocks to train: before-peak | after-peak (the paper's 10/32 of the blocks "
                                         "right before / from the pretrained TD peak), first:N, last:N, first:33%, "
                                         "last:33%, A-B (inclusive, 0-based) or one index"),
    out: Path = typer.Option(..., help="run folder (config, adapter, before/, after/, figures)"),
    method: str = typer.Option("lora", help="lora | full (full: all weights of the chosen blocks)"),
    rank: int = typer.Option(16, min=1, help="LoRA rank"),
    alpha: float = typer.Option(16.0, help="LoRA alpha"),
    dropout: float = typer.Option(0.1, help="LoRA dropout"),
    train_samples: int = typer.Option(600, min=1, help="k-shot training prompts (over the concepts, Null left out)"),
    epochs: int = typer.Option(1, min=1),
    lr: float = typer.Option(2e-4, help="peak learning rate (linear warm-up and decay)"),
    batch_size: int = typer.Option(8, min=1),
    shots: int = typer.Option(4, min=0, help="demonstrations per prompt, in training and evaluation"),
    prompts_per_concept: int = typer.Option(100, help="evaluation prompts per concept (before and after)"),
    seed: int = typer.Option(0),
    resume: bool = typer.Option(False, help="continue a killed run in --out"),
    before_run: Optional[Path] = typer.Option(None, help="reuse the pretrained study of this `llm run` folder"),
    checkpoint_every: int = typer.Option(25, min=1, help="optimizer steps between checkpoints"),
    evaluations: int = typer.Option(4, min=0, help="held-out accuracy checks during training (0: none)"),
    separator: str = typer.Option(" ->", help="text between input and answer; TD is read at its last token"),
    answer_prefix: str = typer.Option(" ", help="text before each answer"),
    fit_format: bool = typer.Option(True, help="move a whitespace-only first answer token into the separator"),
    *, model_flags: ModelFlags,
) -> None:
    """Finetune only some layers (LoRA or full), then TD and accuracy before vs after."""
    from conceptlens.cli.common import experiment_run
    from conceptlens.experiments import finetune
    from conceptlens.specs import FinetuneSpec, build

    spec = build(FinetuneSpec, family=family, layers=layers, method=method, rank=rank, alpha=alpha, dropout=dropout,
                 train_samples=train_samples, epochs=epochs, lr=lr, shots=shots,
                 prompts_per_concept=prompts_per_concept, seed=seed, checkpoint_every=checkpoint_every,
                 evaluations=evaluations, separator=separator, answer_prefix=answer_prefix, fit_format=fit_format)
    with experiment_run(model_flags, out, "finetune", {"finetune": spec.model_dump()}) as (lm, bar):
        summary = finetune(lm, spec, out, batch_size=batch_size, resume=resume, before_run=before_run, progress=bar)
    b, a = summary["before"], summary["after"]
    console.print(summary["blocks"])
    console.print(f"TD at layer {summary['layer']}: {b['td_mean']:.2f} -> {a['td_mean']:.2f}; "
                  f"accuracy {b['acc_mean']:.1f}% -> {a['acc_mean']:.1f}% ({shots}-shot, Null excluded)")
    console.print(f"wrote {out}/summary.json, td_before_after.png, before/, after/")


def compare_command(
    runs: list[Path] = typer.Argument(..., help="`llm run` (pretrained or --state-concept) and `llm finetune` folders"),
    out: Path = typer.Option(..., help="folder for comparison.md, comparison.csv, comparison.png"),
    shots: int = typer.Option(4, help="which shots to compare"),
) -> None:
    """The paper's finetuning table: pretrained vs first/last layers vs concept stated, beside the paper."""
    from conceptlens.llm.compare import compare_runs, markdown_table

    table = compare_runs(runs, out, shots=shots)
    console.print(markdown_table(table), soft_wrap=True, markup=False, highlight=False)
    console.print(f"wrote {out}/comparison.md, comparison.csv, comparison.png")


app.command("finetune")(finetune_command)
app.command("compare")(compare_command)


# ---- intervene (causal interventions at the query token, paper 4.3) ----------------------------


@with_model_flags()
def intervene(
    family: str = typer.Option(..., help="pos | bitwise | a folder of concept files (with a Null concept)"),
    layer: str = typer.Option("sweep", help="HF hidden-state layer L, a list L1,L2,..., 'sweep' (up to 6 layers over the "
                                           "TD rise: from where TD exceeds the surface control to its peak) or 'best' (the peak)"),
    shots: int = typer.Option(4, help="demonstrations per prompt"),
    prompts_per_concept: int = typer.Option(25, help="evaluated prompts per concept and replicate (also the held-out prompts per concept for the means)"),
    replicates: int = typer.Option(5, help="replicates, each with fresh demonstrations"),
    mode: str = typer.Option("add", help="add (the paper: add the held-out concept mean) | add_centered (add the mean "
                                         "minus the mean of all concept means) | replace (write the mean)"),
    from_run: Optional[Path] = typer.Option(None, help="`llm run` folder whose summary.json gives the best layer"),
    means_per_concept: Optional[int] = typer.Option(None, help="held-out prompts per concept for the means and the TD "
                                                                "of the layer sweep (default: --prompts-per-concept)"),
    cross_at: str = typer.Option("peak", help="peak | all: the cross-concept matrix at the TD peak only, or every layer"),
    max_sweep_layers: int = typer.Option(6, min=1, help="--layer sweep: at most this many layers over the TD rise"),
    fit_format: bool = typer.Option(True, help="move a whitespace-only first answer token into the separator"),
    seed: int = typer.Option(0),
    out: Path = typer.Option(..., help="run folder for interventions.csv, _summary.csv, _cross.csv, .png, .json"),
    separator: str = typer.Option(" ->", help="text between input and answer; the edit hits its last token"),
    answer_prefix: str = typer.Option(" ", help="text before each demonstration's answer (use '' with --separator ' -> ' "
                                               "to end the query on the answer's leading space)"),
    batch_size: int = typer.Option(16, min=1),
    *, model_flags: ModelFlags,
) -> None:
    """Add a concept mean at the query token: positive, Null, random and cross-concept accuracy change."""
    from conceptlens.cli.common import experiment_run, parse_int_list
    from conceptlens.errors import ConceptLensError
    from conceptlens.experiments import intervention_families, interventions
    from conceptlens.llm.interventions.report import summarize
    from conceptlens.specs import InterventionSpec, build

    choice = layer.strip().lower()
    layers = choice if choice in ("best", "sweep") else parse_int_list(layer)
    if layers is None:
        raise ConceptLensError("--layer all is not supported (one generation pass per layer).",
                               "give one layer, a list such as 10,14,18, sweep or best.")
    spec = build(InterventionSpec, family=family, layers=layers, shots=shots, prompts_per_concept=prompts_per_concept,
                 replicates=replicates, mode=mode, seed=seed, separator=separator, answer_prefix=answer_prefix,
                 means_per_concept=means_per_concept, cross_at=cross_at, max_sweep_layers=max_sweep_layers,
                 fit_format=fit_format)
    intervention_families(spec)  # a bad family fails before the model loads
    settings = {"intervention": spec.model_dump(), "from_run": str(from_run) if from_run else None}
    with experiment_run(model_flags, out, "intervention", settings) as (lm, bar):
        frame = interventions(lm, spec, out, from_run=from_run, batch_size=batch_size, progress=bar)
    summary = summarize(frame)
    for (layer_id, condition), part in summary.groupby(["layer", "condition"], sort=False):
        effects = ", ".join(f"{r.concept} {100 * r.mean_change:+.1f}" for r in part.itertuples())
        console.print(f"layer {layer_id} {condition}: {effects} (accuracy points, mean of {replicates} replicates)")
    console.print(f"wrote {out}/interventions.csv, interventions_summary.csv, interventions_cross.csv, "
                  "interventions.png, interventions_cross.png, interventions.json")


app.command("intervene")(intervene)


# ---- run (the encoding study: TD x layers x shots, ICL accuracy, checkpoint series; paper 4.1-4.2) ----


@with_model_flags(revision=False)
def run(
    family: str = typer.Option(..., help="pos | bitwise | a folder with one .json/.jsonl file per concept"),
    shots: str = typer.Option("1,4,10", help="comma-separated numbers of demonstrations"),
    prompts_per_concept: int = typer.Option(100, help="prompts per concept and shots value (paper: 100)"),
    seed: int = typer.Option(0),
    out: Path = typer.Option(..., help="run folder (tables, figures, summary.json, activations per shots)"),
    revisions: Optional[str] = typer.Option(None, help="comma-separated hub revisions or local folders: one study each, "
                                                       "in training order, into OUT/revision=<r>/"),
    state_concept: bool = typer.Option(False, help="state the concept in the prompt (the paper's prompting variant)"),
    split: str = typer.Option("test", help="family split the prompts come from: test | train | all"),
    null: bool = typer.Option(True, help="add the Null concept"),
    k: int = typer.Option(10, min=1, help="neighbours in the kNN vote of TD"),
    separator: str = typer.Option(" ->", help="text between input and answer; TD is read at its last token"),
    answer_prefix: str = typer.Option(" ", help="text before each answer"),
    fit_format: bool = typer.Option(True, help="move a whitespace-only first answer token into the separator"),
    batch_size: int = typer.Option(16, min=1),
    *, model_flags: ModelFlags,
) -> None:
    """TD per layer x shots x concept, ICL accuracy, accuracy vs TD, pairwise TD and UMAP (resumable)."""
    from conceptlens.cli.common import checked_run_folder, open_model, parse_int_list, progress_bar
    from conceptlens.errors import ConceptLensError
    from conceptlens.experiments import check_study, encoding_study, prompt_format, study_settings
    from conceptlens.llm.encoding.series import run_checkpoint_series
    from conceptlens.specs import EncodingStudySpec, build

    shot_list = parse_int_list(shots)
    if not shot_list:
        raise ConceptLensError(f"--shots '{shots}' names no shots value.", "pass e.g. --shots 1,4,10.")
    spec = build(EncodingStudySpec, family=family, shots=shot_list, prompts_per_concept=prompts_per_concept, seed=seed,
                 split=split, null=null, state_concept=state_concept, k=k, separator=separator,
                 answer_prefix=answer_prefix, fit_format=fit_format)
    task_family = check_study(spec)
    names = [r.strip() for r in revisions.split(",") if r.strip()] if revisions else None
    model_options, run_folder = checked_run_folder(model_flags, out, "encoding-study",
                                                   {"study": spec.model_dump(), "revisions": names})

    def load(revision: str | None = None):
        if revision and expand_user(revision, "write the revision folder's full path.").exists():
            return open_model(model_options.model_copy(update={"name": revision}))
        return open_model(model_options.model_copy(update={"revision": revision}))

    if names is not None:
        with run_folder, progress_bar() as bar:
            table = run_checkpoint_series(load, names, task_family.name, task_family, spec.shots,
                                          spec.prompts_per_concept, spec.seed, out, state_concept=spec.state_concept,
                                          k=spec.k, progress=bar, batch_size=batch_size, settings=study_settings(spec),
                                          fmt=prompt_format(spec), fit_format=spec.fit_format)
        _print_series(table, max(shot_list), out)
        return
    lm = load()
    with run_folder, progress_bar() as bar:
        summary = encoding_study(lm, spec, out, batch_size=batch_size, progress=bar, family=task_family)
    _print_study(summary, out)


def _print_series(table, shots: int, out: Path) -> None:
    """One line per revision of a checkpoint series, at its largest shots value."""
    for row in table[table.shots == shots].itertuples():
        console.print(f"{row.revision}: mean TD {row.mean_td:.2f} (layer {row.best_layer}), accuracy {row.accuracy:.2f}")
    console.print(f"wrote {out}/checkpoint_series.csv, checkpoint_series.png and one folder per revision")


def _print_study(summary: dict, out: Path) -> None:
    """An encoding study's summary: TD and accuracy per shots, the best layer, R², a fitted prompt format."""
    for s, stats in summary["per_shots"].items():
        console.print(f"{s} shots: mean TD {stats['td_best_layer']:.2f} at layer {summary['best_layer']} "
                      f"(peak {stats['td_peak']:.2f} at {stats['td_peak_layer']}), accuracy {stats['accuracy_mean']:.2f}")
    r2, heldout = summary["r2"], summary["heldout_layer_choice"]
    console.print(f"best layer {summary['best_layer']} of {summary['n_layers']} ("
                  + (heldout["note"] if heldout["skipped"] else
                     f"held out: {summary['best_layer_heldout']}, TD {summary['td_heldout']:.2f}")
                  + "); R² accuracy vs TD " + ("n/a" if r2 is None else f"{r2:.2f}"))
    fitted = summary["format"]["fitted_to_tokenizer"]
    if fitted.get("changed"):
        console.print(f"prompt format: separator {summary['format']['separator']!r}, answer prefix "
                      f"{summary['format']['answer_prefix']!r} ({fitted['reason']})")
    console.print(f"wrote {out}/summary.json, decodability.csv, accuracy.csv, pairwise.csv and figures")


app.command("run")(run)


# transfer and ladder live in their own module (measurements beyond the paper)
from conceptlens.cli.llm_beyond import ladder_command, transfer_command  # noqa: E402

app.command("transfer")(transfer_command)
app.command("ladder")(ladder_command)
