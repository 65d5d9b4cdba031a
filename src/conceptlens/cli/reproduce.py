"""`conceptlens reproduce`: the paper's whole study in one command, cached and resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from conceptlens.cli.common import DEVICE_MAP, LOAD_IN, console


def reproduce(
    out: Path = typer.Option(..., help="run folder (rerun the same command to resume)"),
    quick: bool = typer.Option(False, "--quick", help="2 CPU cores, ~15 minutes, embedded SmolLM2 (default)"),
    full: bool = typer.Option(False, "--full", help="paper scale: 12-layer synthetic GPT, 100 prompts per concept, "
                                                    "10K finetuning samples per run (GPU)"),
    model: Optional[str] = typer.Option(None, help="model for the LM stages (default smollm2-135m)"),
    dtype: Optional[str] = typer.Option(None, help="float32 | bfloat16 | float16"),
    device_map: Optional[str] = DEVICE_MAP,
    load_in: Optional[str] = LOAD_IN,
    seed: Optional[int] = typer.Option(None),
    separator: str = typer.Option(" ->", help="prompt text between input and answer; TD is read at its last token"),
    answer_prefix: str = typer.Option(" ", help="prompt text before each answer"),
    fit_format: bool = typer.Option(True, help="move a whitespace-only first answer token into the separator"),
    only: Optional[str] = typer.Option(None, help="comma-separated stage names to run"),
    report: bool = typer.Option(True, help="write RUN/report.html at the end"),
) -> None:
    """Reproduce the whole study (synthetic emergence, both families, interventions, finetuning)."""
    from conceptlens.errors import ConceptLensError
    from conceptlens.study import preset, reproduce as run

    if quick and full:
        raise ConceptLensError("--quick and --full exclude each other.", "pass one of them.")
    settings = preset("full" if full else "quick", model=model, dtype=dtype, device_map=device_map, load_in=load_in,
                      seed=seed, prompt={"separator": separator, "answer_prefix": answer_prefix, "fit_format": fit_format})
    status = run(settings, out, only=set(only.split(",")) if only else None)
    if report:
        from conceptlens.report import write_report

        path = write_report(out)
        console.print(f"report: {path}")
    failed = [name for name, record in status.items() if record.get("status") != "done"]
    for name, record in status.items():
        console.print(f"{name:32s} {record.get('status'):8s} {record.get('seconds', 0):8.1f} s")
    if failed:
        console.print(f"[bold red]{len(failed)} stage(s) did not finish:[/] {', '.join(failed)} (rerun to resume)")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command(help="Reproduce the paper's whole study in one command (cached, resumable stages).")(reproduce)
