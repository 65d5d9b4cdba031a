"""`conceptlens report` and `conceptlens sweep`: the study's report, and runs beyond one machine."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from conceptlens.cli.common import console


def report(run: Path = typer.Argument(..., help="a run folder of any conceptlens command, or of the whole study"),
           out: Optional[Path] = typer.Option(None, help="where to write the page (default RUN/report.html)")) -> None:
    """Write RUN/report.html: one self-contained page with every figure, table and the paper's values."""
    from conceptlens.report import write_report

    if out is not None:  # before the report is built: not a folder, not under a file, not a file of the run
        from conceptlens.out_paths import check_output_file

        read = out.exists() and out.suffix.lower() not in (".html", ".htm") and run.exists() \
            and out.resolve().is_relative_to(run.resolve())
        check_output_file(out, inputs=(out,) if read else ())
    path = write_report(run, out)
    size = path.stat().st_size
    console.print(f"wrote {path} ({size / 2**20:.1f} MiB)" if size > 2**20 else f"wrote {path} ({size / 1024:.0f} KiB)")


def sweep(config: Path = typer.Argument(..., help="sweep YAML: a grid of cells and the command each cell runs"),
          out: Optional[Path] = typer.Option(None, help="sweep folder (default: the YAML's `out`); rerun to resume"),
          address: Optional[str] = typer.Option(None, help="Ray cluster, e.g. ray://head:10001 (default: a local Ray)"),
          num_cpus: int = typer.Option(2, help="CPUs of the local Ray started when no --address is given"),
          ship_code: bool = typer.Option(False, help="send this conceptlens source to the cluster's workers "
                                                     "(Ray runtime_env py_modules) instead of using theirs")) -> None:
    """Run a grid of cells (models x families x shots x seeds x ...) as Ray tasks, then merge their tables."""
    from conceptlens.sweep import load_sweep, run_sweep

    spec = load_sweep(config)
    status = run_sweep(spec, out, address=address, num_cpus=num_cpus, ship_code=ship_code)
    if status["failed"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command(help="Write RUN/report.html: every figure and table of a run, beside the paper's values.")(report)
    app.command(help="Run a grid of cells as Ray tasks (local or a cluster) and merge their tables.")(sweep)
