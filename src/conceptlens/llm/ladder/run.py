"""A model ladder (issue 20): the encoding study on several models, then how concept encoding scales.

Each (model, family) is a rung, run as a sweep cell (`ladder_cell`) in its own folder, so a killed
ladder resumes at the first unfinished rung and a finished one is never redone; `ray=True` runs the
rungs as Ray tasks (one process each, the sweep runner), otherwise one after another in this process.
Then `ladder.csv` / `ladder.md` / `ladder.png` set our models beside the paper's across scale.
DECISION: every rung uses the same shots, prompts per concept, seed, k and dtype (the spec), so a
difference between rungs is the model's.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from conceptlens.llm.ladder.figure import draw_ladder
from conceptlens.llm.ladder.table import ladder_table
from conceptlens.progress import console, progress_bar
from conceptlens.runs import RunFolder, folder_done
from conceptlens.specs import LadderSpec
from conceptlens.storage import write_json, write_table, write_text
from conceptlens.sweep.spec import SweepSpec, expand

CELL = "conceptlens.llm.ladder.cell.ladder_cell"


def ladder_sweep(spec: LadderSpec) -> SweepSpec:
    """The ladder as a sweep: a grid of models x families of `ladder_cell`, the rest fixed."""
    fixed = spec.model_dump(exclude={"models", "families"})
    return SweepSpec(command="python", function=CELL, grid={"model": list(spec.models), "family": list(spec.families)},
                     fixed=fixed)


def _run_in_process(out: Path, cells: list[dict], statuses: dict[str, str]) -> None:
    from conceptlens.sweep.runner import execute_cell

    todo = [cell for cell in cells if statuses[cell["id"]] != "cached"]
    with progress_bar() as bar:
        task = bar.add_task("ladder", total=len(todo), info="rungs")
        for cell in todo:
            bar.update(task, info=f"{cell['grid']['model']} / {cell['grid']['family']}")
            result = execute_cell("python", CELL, cell, str(out / cell["id"]))
            statuses[cell["id"]] = result["status"]
            if result["status"] == "failed":
                console.print(f"[bold red]rung {cell['id']} failed:[/] {result.get('error', '')}")
            bar.advance(task)


def run_ladder(spec: LadderSpec, out: str | Path, *, ray: bool = False, address: str | None = None,
               num_cpus: int = 2) -> pd.DataFrame:
    """Run (or resume) every rung of the ladder into `out`; returns the scaling table (also written)."""
    out = Path(out)
    sweep = ladder_sweep(spec)
    cells = expand(sweep)
    started = time.perf_counter()
    if ray:
        from conceptlens.sweep.runner import run_sweep

        records = run_sweep(sweep, out, address=address, num_cpus=num_cpus)["status"]["cells"]
        statuses = {cid: record["status"] for cid, record in records.items()}
    else:
        statuses = {cell["id"]: "cached" if folder_done(out / cell["id"]) else "pending" for cell in cells}
        with RunFolder(out, "ladder", spec):
            _run_in_process(out, cells, statuses)
    table = ladder_table(out, cells, statuses)
    write_table(out / "ladder.csv", table)
    draw_ladder(table, out / "ladder.png")
    write_text(out / "ladder.md", ladder_markdown(table))
    write_json(out / "ladder.json", {"spec": spec.model_dump(), "cells": {c["id"]: c["grid"] for c in cells},
                                     "statuses": statuses, "seconds": round(time.perf_counter() - started, 1)})
    return table


def _cell(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def ladder_markdown(table: pd.DataFrame) -> str:
    """The scaling table as Markdown: ours first, then the paper's models (R² and peak depth only)."""
    head = ("| source | model | family | params (M) | TD peak layer | depth | TD peak [95% CI] | surface control | "
            "exceeds | ICL acc | R² [95% CI] | +pos / -neg (pts) | load s | study s | peak GiB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in table.itertuples(index=False):
        params = _cell(row.parameters / 1e6, 0) if pd.notna(row.parameters) else "-"
        td = (f"{_cell(row.td_peak)} [{_cell(row.td_peak_ci_low)}, {_cell(row.td_peak_ci_high)}]"
              if pd.notna(row.td_peak) else "-")
        r2 = f"{_cell(row.r2)} [{_cell(row.r2_ci_low)}, {_cell(row.r2_ci_high)}]" if pd.notna(row.r2_ci_low) else _cell(row.r2)
        effects = (f"{_cell(row.positive_effect, 1)} / {_cell(row.negative_effect, 1)}"
                   if pd.notna(row.positive_effect) else "-")
        layer = f"{int(row.td_peak_layer)} of {int(row.n_layers)}" if pd.notna(row.td_peak_layer) else "-"
        lines.append(f"| {row.source} | {row.model} | {row.family} | {params} | {layer} | {_cell(row.depth_fraction)} | "
                     f"{td} | {_cell(row.surface_control_td)} | {_cell(row.exceeds_surface_control)} | "
                     f"{_cell(row.icl_accuracy)} | {r2} | {effects} | {_cell(row.load_seconds, 1)} | "
                     f"{_cell(row.study_seconds, 0)} | {_cell(row.peak_memory_gib)} |")
    return "\n".join(lines) + "\n"
