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
) -> None:
    """Train a small GPT on an in-context regression mixture (checkpoints dense early, sparse late)."""
    from conceptlens.synthetic.config import config_from_dict, load_config
    from conceptlens.synthetic.train import load_run_config, train as run_training

    if config is None and resume and (out / "config.yaml").is_file():
        cfg = config_from_dict(load_run_config(out).model_dump(mode="json"), set_)
    else:
        cfg = load_config(config or "quick", set_)
    from conceptlens.runs import RunFolder

    # kind and lock here; the config policy (only train.steps may grow) stays with `train`
    with RunFolder(out, "synthetic-train"), progress_bar() as bar:
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
            text = f"loss {info['loss']:.4f}" + (f" test {test:.4f}" if test is not None else "")
            bar.update(task, completed=step, info=f"{text} {rate:.1f} steps/s")

        run_training(cfg, out, resume=resume, callback=update, device=device)
    console.print(f"run written to [bold]{out}[/]; next: conceptlens synthetic analyze {out}")


@app.command()
def analyze(
    run: Path = typer.Argument(..., help="A run folder written by `conceptlens synthetic train`."),
    max_checkpoints: int = typer.Option(40, help="Analyse at most this many checkpoints (evenly spread)."),
    sequences_per_basis: int = typer.Option(100, help="Test sequences per basis for TD, UMAP, patching."),
    token: str = typer.Option("x", help="Representation token: x (last example's x) or y (last demo's y)."),
    layer: Optional[int] = typer.Option(None, help="Layer for moments, UMAP and patching (default: best TD)."),
    separation_td: float = typer.Option(0.9, help="Per-basis TD at which a basis counts as separated."),
    patch_mode: str = typer.Option("replace", help="replace (by the target mean) or shift (by mean_T - mean_S)."),
    baseline_sequences: int = typer.Option(25, help="Sequences per basis for the (slow) Lasso baseline."),
    no_umap: bool = typer.Option(False, "--no-umap", help="Skip UMAP (saves ~20 s of numba compilation)."),
) -> None:
    """Per-basis error, TD per layer x checkpoint, moments (a)(b)(c), UMAP, patching, head pruning."""
    from conceptlens.errors import ConceptLensError
    from conceptlens.synthetic.analysis import analyze as run_analysis

    if token not in ("x", "y"):
        raise ConceptLensError(f"unknown token '{token}'.", "use --token x or --token y.")
    if patch_mode not in ("replace", "shift"):
        raise ConceptLensError(f"unknown patch mode '{patch_mode}'.", "use --patch-mode replace or shift.")
    with progress_bar() as bar:
        task = bar.add_task("checkpoints", total=None, info="")

        def update(done: int, total: int, step: int) -> None:
            bar.update(task, completed=done, total=total, info=f"step {step}")

        result = run_analysis(run, max_checkpoints=max_checkpoints, sequences_per_basis=sequences_per_basis,
                              token=token, layer=layer, separation_td=separation_td, patch_mode=patch_mode,
                              baseline_sequences_per_basis=baseline_sequences, umap=not no_umap, progress=update)
    moments = result["moments"]
    console.print(f"moments: (a) {moments['a']}  (b) {moments['b']}  (c) {moments['c']}  "
                  f"at layer {moments['layer']}; final best-layer TD {moments['final_td_best_layer']:.2f}")
    console.print(f"wrote {', '.join(result['files'])} in [bold]{run}[/]")
