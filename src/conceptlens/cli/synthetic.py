"""`conceptlens synthetic ...` commands: train a regression GPT, then analyse its checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from conceptlens.cli.common import console, progress_bar

app = typer.Typer(no_args_is_help=True)


@app.command()
def train(
    out: Path = typer.Option(..., "--out", help="Run folder (config.yaml, metrics.jsonl, checkpoints/)."),
    config: Optional[str] = typer.Option(None, "--config", help="Config name (quick, paper, six-bases, "
                                         "overlapping, families) or a YAML file. Default: quick, or the "
                                         "run's own config with --resume."),
    set_: list[str] = typer.Option([], "--set", help="Override a field, e.g. --set steps=500 --set seed=1."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run's last intact checkpoint."),
    device: str = typer.Option("cpu", "--device", help="Where to train: cpu, cuda, cuda:1, mps (the paper "
                               "config wants a GPU: ~28 h on 2 CPU cores)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Train several seeds together in one process, "
                                        "e.g. --seeds 0,1,2: each into OUT/seed<S>, as --set seed=S would."),
) -> None:
    """Train a small GPT on an in-context regression mixture (checkpoints dense early, sparse late)."""
    from contextlib import ExitStack

    from conceptlens.synthetic.config import config_from_dict, load_config
    from conceptlens.synthetic.train import load_run_config, train as run_training
    from conceptlens.synthetic.train_seeds import seed_folder, train_seeds

    seed_list = _parse_seeds(seeds, set_) if seeds is not None else None
    folders = [out] if seed_list is None else [seed_folder(out, seed) for seed in seed_list]
    if config is None and resume and (folders[0] / "config.yaml").is_file():
        cfg = config_from_dict(load_run_config(folders[0]).model_dump(mode="json"), set_)
    else:
        cfg = load_config(config or "quick", set_)
    from conceptlens.runs import RunFolder

    # kind and lock here; the config policy (only train.steps may grow) stays with `train`
    with ExitStack() as folders_held, progress_bar() as bar:
        for folder in folders:
            folders_held.enter_context(RunFolder(folder, "synthetic-train"))
        task = bar.add_task(f"train {cfg.name}", total=cfg.train.steps, info="")

        first: list[tuple[int, float]] = []  # this session's first (step, elapsed): a resumed run starts late

        def update(step: int, info: dict) -> None:
            if not first:
                first.append((step, info["elapsed_s"]))
            if step % 25 and step != cfg.train.steps:
                return
            seconds = info["elapsed_s"] - first[0][1]
            rate = (step - first[0][0]) / seconds if seconds > 0 else 0.0
            test = info["record"].get("test_mse_mean")
            losses = "/".join(f"{loss:.4f}" for loss in info["losses"])
            text = f"loss {losses}" + (f" test {test:.4f}" if test is not None else "")
            bar.update(task, completed=step, info=f"{text} {rate:.1f} steps/s")

        if seed_list is None:
            run_training(cfg, out, resume=resume, callback=update, device=device)
        else:
            train_seeds(cfg, seed_list, out, resume=resume, callback=update, device=device)
    written = ", ".join(str(folder) for folder in folders)
    console.print(f"run written to [bold]{written}[/]; next: conceptlens synthetic analyze {out}")


def _parse_seeds(text: str, overrides: list[str]) -> list[int]:
    """`--seeds 0,1,2` -> [0, 1, 2]; refused beside a seed set with --set."""
    from conceptlens.errors import ConceptLensError

    if any(item.split("=", 1)[0].strip() == "seed" for item in overrides):
        raise ConceptLensError("--seeds and a seed set with --set both choose the seed.",
                               "pass the seeds with --seeds only, e.g. --seeds 0,1,2.")
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ConceptLensError(f"--seeds '{text}' is not a comma-separated list of integers.",
                               "write e.g. --seeds 0,1,2.") from None


@app.command()
def analyze(
    run: Path = typer.Argument(..., help="A run folder written by `conceptlens synthetic train` (with --seeds: "
                                "its --out, every seed analysed, then the seeds side by side)."),
    max_checkpoints: int = typer.Option(40, help="Analyse at most this many checkpoints (evenly spread)."),
    sequences_per_basis: int = typer.Option(100, help="Test sequences per basis for TD, UMAP, patching."),
    token: str = typer.Option("y", help="Token for moments and UMAP: y (the paper's: y of the K-th "
                              "demonstration) or x (last example's x). TD is written for both."),
    block: Optional[int] = typer.Option(None, help="Block (0-based) for moments, UMAP and patching "
                                        "(default: the paper's depth, 5 of 12, never the last block)."),
    separation_td: float = typer.Option(0.9, help="Per-basis TD at which a basis counts as separated."),
    patch_mode: list[str] = typer.Option(["replace", "add", "shift"], help="Patch modes: replace (by the target "
                                         "mean), add (h + mean_T), shift (h - mean_S + mean_T); repeatable."),
    baseline_sequences: int = typer.Option(25, help="Sequences per basis for the (slow) Lasso baseline."),
    no_umap: bool = typer.Option(False, "--no-umap", help="Skip UMAP (saves ~20 s of numba compilation)."),
) -> None:
    """Per-basis error, TD per block x checkpoint (both tokens), moments, UMAP, patching, head pruning."""
    from conceptlens.errors import ConceptLensError
    from conceptlens.synthetic.analysis import analyze as run_analysis, analyze_seeds, seed_folders
    from conceptlens.synthetic.patching import PATCH_MODES

    if token not in ("x", "y"):
        raise ConceptLensError(f"unknown token '{token}'.", "use --token y or --token x.")
    for mode in patch_mode:
        if mode not in PATCH_MODES:
            raise ConceptLensError(f"unknown patch mode '{mode}'.", f"use --patch-mode {' or '.join(PATCH_MODES)}.")
    with progress_bar() as bar:
        task = bar.add_task("checkpoints", total=None, info="")

        def update(done: int, total: int, step: int) -> None:
            bar.update(task, completed=done, total=total, info=f"step {step}")

        options = dict(max_checkpoints=max_checkpoints, sequences_per_basis=sequences_per_basis, token=token,
                       block=block, separation_td=separation_td, patch_modes=tuple(patch_mode),
                       baseline_sequences_per_basis=baseline_sequences, umap=not no_umap, progress=update)
        seeds = seed_folders(run)  # a `train --seeds` folder: every seed, then the seeds side by side
        results = analyze_seeds(run, **options) if seeds else {None: run_analysis(run, **options)}
    for seed, result in results.items():
        moments = result.moments
        console.print(("" if seed is None else f"seed {seed} ") +
                      f"moments: (a) {moments['a']}  (b) {moments['b']}  (c) {moments['c']}  "
                      f"at block {moments['block']} ({moments['token']} token); "
                      f"final best-block TD {moments['final_td_best_block']:.2f}")
        console.print(f"wrote {', '.join(result.files)} in [bold]{seeds.get(seed, run)}[/]")
    if seeds:
        console.print(f"wrote seeds_loss_per_basis.csv, seeds_decodability.csv, seeds_moments.json, seeds.png "
                      f"in [bold]{run}[/]")
