"""Run the cells of a sweep as Ray tasks, record their status, skip the finished ones on a rerun.

Each cell runs in its own run folder `DIR/<cell-id>/` (locked while it runs) and writes `DONE` last: a rerun skips cells
with the marker and retries the others. A cell that raises is recorded as failed (its traceback in
`DIR/<cell-id>/error.txt` and `DIR/sweep_status.json`) while the other cells go on. One GPU per
cell where the cluster has GPUs, else one CPU. Without `address` a small local Ray is started
(`address="local"`, so a Ray started by someone else on this machine is never joined).
DECISION: the sweep folder must be visible to every worker (one machine, or a shared file
system); the driver merges the tables from there once all cells have ended.
"""

from __future__ import annotations

import json
import os
import platform
import time
import traceback
from pathlib import Path

from conceptlens.progress import console, progress_bar
from conceptlens.runs import RunFolder, folder_done, mark_done
from conceptlens.errors import ConceptLensError
from conceptlens.storage import append_jsonl, write_json, write_text
from conceptlens.sweep.cells import check_kwargs, run_cell, runner_for
from conceptlens.sweep.merge import merge_tables
from conceptlens.sweep.spec import SweepSpec, expand


def execute_cell(command: str, function: str | None, cell: dict, folder: str) -> dict:
    """Body of one Ray task: run the cell, write `DONE` last; never raises (a failure is returned)."""
    path = Path(folder)
    start = time.perf_counter()
    try:
        with RunFolder(path, "sweep-cell", {"command": command, "function": function, "kwargs": cell["kwargs"]}):
            write_json(path / "cell.json", {"id": cell["id"], "command": command, "function": function,
                                            "grid": cell["grid"], "kwargs": cell["kwargs"]})
            append_jsonl(path / "attempts.jsonl", {"started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                   "host": platform.node(), "pid": os.getpid()})
            try:
                run_cell(command, function, cell["kwargs"], path)
            except Exception:  # one failing cell must not stop the others
                write_text(path / "error.txt", traceback.format_exc())
                raise
            (path / "error.txt").unlink(missing_ok=True)
            mark_done(path)
    except Exception as exc:
        message = f"{exc.problem} {exc.fix or ''}".strip() if isinstance(exc, ConceptLensError) else f"{type(exc).__name__}: {exc}"
        return {"status": "failed", "seconds": round(time.perf_counter() - start, 2), "error": message[:2000],
                "traceback": traceback.format_exc()[-4000:]}
    return {"status": "done", "seconds": round(time.perf_counter() - start, 2)}


def _init_ray(address: str | None, num_cpus: int, ship_code: bool) -> bool:
    """Connect to (or start) Ray; True when this call started it (and so must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    runtime_env = {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}
    if ship_code:
        import conceptlens

        runtime_env["py_modules"] = [conceptlens]
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, object_store_memory=128 * 2**20,
                 runtime_env=runtime_env, log_to_driver=False)
    return True


def _status_path(out: Path) -> Path:
    return out / "sweep_status.json"


def _write_status(out: Path, spec: SweepSpec, records: dict[str, dict]) -> dict:
    counts: dict[str, int] = {}
    for record in records.values():
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    status = {"command": spec.command, "function": spec.function, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "counts": counts, "cells": records}
    write_json(_status_path(out), status)
    return status


def run_sweep(spec: SweepSpec, out: str | Path | None = None, address: str | None = None, num_cpus: int = 2,
              ship_code: bool = False) -> dict:
    """Run every unfinished cell, merge the tables; returns {"done", "cached", "failed", "status"}."""
    out = Path(out or spec.out or "")
    if not str(out) or str(out) == ".":
        raise ConceptLensError("the sweep has no output folder.", "pass `out` (a folder) or set `out:` in the sweep file.")
    cells = expand(spec)
    runner = runner_for(spec.command, spec.function)
    for cell in cells:
        check_kwargs(runner, cell["kwargs"], f"cell {cell['id']}")
    identity = json.loads(spec.model_dump_json(exclude={"out", "resources"}))  # where and how fast: not what
    with RunFolder(out, "sweep", identity):  # one driver per sweep folder; another grid in it is refused
        write_text(out / "sweep.yaml", _yaml(spec))
        return _run_cells(spec, out, cells, address, num_cpus, ship_code)


def _run_cells(spec: SweepSpec, out: Path, cells: list[dict], address: str | None, num_cpus: int,
               ship_code: bool) -> dict:
    previous = json.loads(_status_path(out).read_text()).get("cells", {}) if _status_path(out).exists() else {}
    records: dict[str, dict] = {}
    todo = []
    for cell in cells:
        if folder_done(out / cell["id"]):
            records[cell["id"]] = {**previous.get(cell["id"], {}), "grid": cell["grid"], "status": "cached"}
        else:
            records[cell["id"]] = {"grid": cell["grid"], "status": "pending"}
            todo.append(cell)
    _write_status(out, spec, records)
    console.print(f"sweep: {len(cells)} cells, {len(cells) - len(todo)} finished already, {len(todo)} to run")
    if todo:
        _run_on_ray(spec, out, todo, records, address, num_cpus, ship_code)
    merged = merge_tables(out, cells)
    status = _write_status(out, spec, records)
    failed = [cid for cid, r in records.items() if r["status"] == "failed"]
    for cid in failed:
        console.print(f"[bold red]cell {cid} failed:[/] {records[cid].get('error', '')}")
    console.print(f"sweep: {status['counts']}; merged {len(merged)} table(s) into {out / 'merged'}; "
                  f"status in {_status_path(out)}")
    return {"done": [c for c, r in records.items() if r["status"] == "done"],
            "cached": [c for c, r in records.items() if r["status"] == "cached"], "failed": failed,
            "merged": merged, "status": status}


def _run_on_ray(spec: SweepSpec, out: Path, todo: list[dict], records: dict[str, dict], address: str | None,
                num_cpus: int, ship_code: bool) -> None:
    import ray

    started = _init_ray(address, num_cpus, ship_code)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        options = {"num_cpus": spec.resources.cpus_per_cell, "max_retries": spec.resources.max_retries}
        if gpus and spec.resources.gpus_per_cell:
            options["num_gpus"] = spec.resources.gpus_per_cell
        task = ray.remote(execute_cell).options(**options)
        pending = {task.remote(spec.command, spec.function, cell, str((out / cell["id"]).resolve())): cell
                   for cell in todo}
        for cell in todo:
            records[cell["id"]]["status"] = "running"
        _write_status(out, spec, records)
        with progress_bar() as bar:
            progress = bar.add_task("sweep", total=len(todo), info=f"{'GPU' if 'num_gpus' in options else 'CPU'} cells")
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                cell = pending.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except Exception as exc:  # the worker died (out of memory, node lost) after its retries
                    result = {"status": "failed", "error": f"worker failed: {type(exc).__name__}: {str(exc)[:1500]}"}
                records[cell["id"]].update(result)
                _write_status(out, spec, records)
                colour = "green" if result["status"] == "done" else "red"
                bar.console.print(f"[{colour}]{result['status']}[/] {cell['id']} ({result.get('seconds', 0):.1f} s)")
                bar.advance(progress)
    finally:
        if started:
            ray.shutdown()


def _yaml(spec: SweepSpec) -> str:
    import yaml

    return yaml.safe_dump(json.loads(spec.model_dump_json()), sort_keys=False)
