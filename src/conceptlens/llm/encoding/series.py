"""The study across a model's training: one run per checkpoint (hub revision or local folder).

The paper follows OLMo-7B from step 1K to 500K and sees mean TD and ICL accuracy rise together.
Each revision gets its own study folder `out/revision=<label>/` (resumable like any study);
`checkpoint_series.csv` and `.png` line them up in the order given. DECISION: a revision's TD is
taken at its own best layer (max mean TD at the largest shots), since the peak may move in training.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pandas as pd

from conceptlens.errors import ConceptLensError
from conceptlens.llm.encoding.study import check_settings, run_study
from conceptlens.models.loader import LoadedModel
from conceptlens.storage import expand_user, write_table
from conceptlens.tasks.family import TaskFamily


def revision_label(revision: str) -> str:
    """A folder-safe label: a local folder's name, or the revision with odd characters replaced."""
    path = expand_user(revision, "write the revision folder's full path.")
    text = path.name if path.exists() else revision
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "revision"


def series_table(summaries: list[tuple[str, dict]]) -> pd.DataFrame:
    """One row per revision x shots: mean TD at the revision's best layer, mean accuracy (Null left out)."""
    rows = []
    for order, (label, summary) in enumerate(summaries):
        for shots, stats in summary["per_shots"].items():
            rows.append({"revision": label, "order": order, "model": summary["model"], "family": summary["family"],
                         "shots": int(shots), "best_layer": summary["best_layer"], "mean_td": stats["td_best_layer"],
                         "td_peak": stats["td_peak"], "accuracy": stats["accuracy_mean"], "r2": summary["fits"][shots]["r2"]})
    return pd.DataFrame(rows)


def run_checkpoint_series(load: Callable[[str], LoadedModel], revisions: list[str], family_name: str,
                          family: TaskFamily, shots: list[int], prompts_per_concept: int, seed: int, out: Path,
                          state_concept: bool = False, k: int = 10, progress=None, batch_size: int = 16,
                          settings: dict | None = None, fmt=None, fit_format: bool = True) -> pd.DataFrame:
    """Run the study for every revision (`load(revision)` gives the model) and draw the series."""
    from conceptlens.llm.encoding import figures

    if not revisions:
        raise ConceptLensError("no revisions given.", "pass e.g. --revisions step1000,step2000,main.")
    labels = [revision_label(r) for r in revisions]
    doubles = sorted({label for label in labels if labels.count(label) > 1})
    if doubles:
        raise ConceptLensError(f"revisions {doubles} appear twice (as folder labels).", "give each revision once.")
    check_settings(family, shots, prompts_per_concept, k)
    out = Path(out)
    summaries = []
    for revision, label in zip(revisions, labels):
        lm = load(revision)
        lm.name = f"{lm.name}@{label}" if not expand_user(revision).exists() else lm.name
        summary = run_study(lm, family_name, family, shots, prompts_per_concept, seed, out / f"revision={label}",
                            state_concept=state_concept, k=k, progress=progress, batch_size=batch_size,
                            settings={**(settings or {}), "revision": revision}, fmt=fmt, fit_format=fit_format)
        summaries.append((label, summary))
        del lm
    table = series_table(summaries)
    write_table(out / "checkpoint_series.csv", table)
    figures.checkpoint_series(table, out / "checkpoint_series.png")
    return table
