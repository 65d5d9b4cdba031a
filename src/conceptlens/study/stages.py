"""Stages that are cached, skipped when done, and resumed after a kill.

A stage writes its outputs into its own run folder (which records the stage's kind and is locked
while it runs) and, last of all, a `DONE` marker; a rerun skips stages with the marker (a killed
stage restarts and resumes from its own checkpoints). The time and status of every stage go to
`RUN/stages.json`, which the report shows. A stage whose measurement does not exist for this model
(`NotComputable`, e.g. after-peak finetuning when the peak is the last layer) is recorded as skipped,
with the reason, and leaves no folder behind; the run goes on.
"""

from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from conceptlens.progress import console
from conceptlens.errors import ConceptLensError, NotComputable
from conceptlens.runs import RunFolder, folder_done, mark_done
from conceptlens.storage import write_json


@dataclass
class Stage:
    name: str
    folder: str  # relative to the run folder
    run: Callable[[Path], object]
    needs: tuple[str, ...] = ()
    kind: str = "encoding-study"  # what the folder holds (conceptlens.runs.KINDS): another command refuses it


def _load_status(path: Path) -> dict:
    from conceptlens.reading import read_json

    return read_json(path, "the study's stage record", fix=f"delete {path} (finished stages are found again by "
                     "their DONE markers), then rerun the same command.") if path.exists() else {}


def run_stages(stages: list[Stage], out: Path, only: set[str] | None = None) -> dict:
    """Run stages in order; returns `{name: {"status", "seconds", "folder"}}` (also in stages.json)."""
    status_path = out / "stages.json"
    status = _load_status(status_path)
    for stage in stages:
        if only and stage.name not in only:
            continue
        folder = out / stage.folder
        record = status.get(stage.name, {})
        if folder_done(folder):
            record.update(status="done", folder=stage.folder, cached=True)
            status[stage.name] = record
            console.print(f"[dim]stage {stage.name}: done already ({record.get('seconds', 0):.0f} s), skipped[/]")
            continue
        failed = [need for need in stage.needs if status.get(need, {}).get("status") != "done"]
        if failed:
            status[stage.name] = {"status": "skipped", "folder": stage.folder, "reason": f"needs {failed}"}
            write_json(status_path, status)
            continue
        console.rule(f"stage {stage.name}")
        start, existed = time.perf_counter(), folder.exists()
        try:
            with RunFolder(folder, stage.kind):  # the study's spec is the run's own (RUN/settings.json)
                stage.run(folder)
                mark_done(folder)
            record = {"status": "done", "seconds": round(time.perf_counter() - start, 1), "folder": stage.folder,
                      "cached": False}
        except NotComputable as exc:
            console.print(f"[yellow]stage {stage.name} skipped:[/] {exc.problem}")
            if not existed:
                shutil.rmtree(folder, ignore_errors=True)
            record = {"status": "skipped", "folder": stage.folder, "reason": exc.problem}
        except ConceptLensError:
            raise
        except Exception as exc:  # one failed stage must not lose the others
            console.print(f"[bold red]stage {stage.name} failed:[/] {type(exc).__name__}: {exc}")
            record = {"status": "failed", "seconds": round(time.perf_counter() - start, 1), "folder": stage.folder,
                      "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
        status[stage.name] = record
        write_json(status_path, status)
    write_json(status_path, status)
    return status
