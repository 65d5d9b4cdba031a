"""Tables for the report: small CSVs in full, large ones summarised as a pivot or their first rows.

A tidy table (one row per model x layer x shots x concept x seed) is long; a reader wants the
pivot: mean TD by layer x shots, accuracy by concept x shots, loss by step x basis. `SUMMARIES`
says which pivot suits which file; any other large table shows its first rows, and the note
under every summarised table names the file that holds all of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

MAX_ROWS = 30
MAX_COLUMNS = 14
MAX_CSV_BYTES = 50 * 2**20


@dataclass
class Cell:
    text: str
    css: str = ""


@dataclass
class TableView:
    """A table ready to render: header, rows of cells, a caption and a note."""

    title: str
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""
    note: str = ""
    index_columns: int = 0


@dataclass(frozen=True)
class Summary:
    """How to pivot a long table: value column (first present), row keys, one column key."""

    values: tuple[str, ...]
    index: tuple[str, ...]
    columns: tuple[str, ...]
    caption: str
    best: str = ""  # "max" or "min": highlight the best value of every column


SUMMARIES: dict[str, Summary] = {
    "decodability.csv": Summary(("td", "mean_td"), ("token", "block", "layer"), ("shots", "step", "revision", "condition", "concept"),
                                "mean TD over concepts, by layer", best="max"),
    "before_decodability.csv": Summary(("td",), ("layer",), ("shots", "concept"), "TD before finetuning, by layer",
                                       best="max"),
    "accuracy.csv": Summary(("accuracy", "acc"), ("concept",), ("shots", "step", "revision", "condition"),
                            "ICL accuracy by concept", best="max"),
    "loss_per_basis.csv": Summary(("mse", "loss"), ("step",), ("concept", "basis"), "test MSE by training step",
                                  best="min"),
    "patching.csv": Summary(("delta_loss", "loss_change", "delta", "change"), ("moment", "mode", "window", "source"), ("target",),
                            "loss change, source (rows) x target (columns)"),
    "head_importance.csv": Summary(("delta_loss", "loss_change", "delta", "importance"), ("block", "layer", "head"),
                                   ("concept", "basis"), "loss change when the head is removed"),
    "baselines.csv": Summary(("mse", "error"), ("n_examples",), ("baseline",), "mean error over bases", best="min"),
    "interventions.csv": Summary(("accuracy",), ("concept",), ("condition", "direction"),
                                 "ICL accuracy without (baseline) and with the interventions", best="max"),
    "interventions_summary.csv": Summary(("mean_change", "change"), ("concept",), ("condition", "direction"),
                                         "mean change in accuracy under the interventions"),
    "interventions_cross.csv": Summary(("accuracy_vs_target",), ("source",), ("target",),
                                       "fraction of a source concept's prompts answering as the target concept "
                                       "under the target's vector (source rows x target columns)"),
    "pairwise.csv": Summary(("td",), ("concept_a",), ("concept_b",), "pairwise TD (mean over shots)"),
    "pairwise_td.csv": Summary(("td",), ("moment", "basis_a"), ("basis_b",), "pairwise TD of the bases, by moment"),
}

LISTED_ONLY = {"umap.csv": "2-D coordinates drawn in the UMAP figure",
               "generations.csv": "every prompt's greedy completion"}


def fmt(value) -> str:
    """Numbers as a reader wants them: floats with 3 decimals, integers plain, NaN as a dash."""
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isnan(number):
            return "–"
        if number != 0 and (abs(number) >= 1e5 or abs(number) < 1e-3):
            return f"{number:.3g}"
        return f"{number:.3f}"
    return str(value)


def _first(frame: pd.DataFrame, names: tuple[str, ...], numeric: bool = False) -> str | None:
    for name in names:
        if name in frame.columns and (not numeric or pd.api.types.is_numeric_dtype(frame[name])):
            return name
    return None


def _thin(frame: pd.DataFrame, limit: int) -> tuple[pd.DataFrame, str]:
    """At most `limit` evenly spaced rows (first and last kept), and a note saying so."""
    if len(frame) <= limit:
        return frame, ""
    picks = sorted({round(i * (len(frame) - 1) / (limit - 1)) for i in range(limit)})
    return frame.iloc[picks], f"{len(picks)} of {len(frame)} rows shown, evenly spaced"


def frame_view(frame: pd.DataFrame, title: str, caption: str = "", note: str = "", index_columns: int = 0,
               best: str = "") -> TableView:
    """Render a DataFrame (at most MAX_COLUMNS columns) into cells, marking each column's best value."""
    notes = [note] if note else []
    if frame.shape[1] > MAX_COLUMNS:
        notes.append(f"first {MAX_COLUMNS} of {frame.shape[1]} columns shown")
        frame = frame.iloc[:, :MAX_COLUMNS]
    best_rows: dict[int, set[int]] = {}
    if best:
        for j in range(index_columns, frame.shape[1]):
            column = pd.to_numeric(frame.iloc[:, j], errors="coerce")
            if column.notna().sum() > 1 and column.nunique() > 1:
                target = column.max() if best == "max" else column.min()
                best_rows[j] = set(((column == target).to_numpy()).nonzero()[0].tolist())
    rows = []
    for i, record in enumerate(frame.itertuples(index=False)):
        cells = []
        for j, value in enumerate(record):
            css = "key" if j < index_columns else ("num" if _is_number(value) else "")
            if i in best_rows.get(j, ()):
                css += " best"
            cells.append(Cell(fmt(value), css.strip()))
        rows.append(cells)
    return TableView(title, [str(c) for c in frame.columns], rows, caption, "; ".join(notes), index_columns)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def summarise(frame: pd.DataFrame, name: str) -> TableView:
    """A long table as the file's pivot (`SUMMARIES`); a short one in full; else its first rows.

    Columns with one value in every row (model, family, ...) are dropped and named in the note.
    """
    size = f"{len(frame)} rows x {frame.shape[1]} columns"
    spec = SUMMARIES.get(name)
    if spec is not None and len(frame) > 12:
        pivot = pivot_table(frame, spec)
        if pivot is not None:
            view, index_columns = pivot
            view, thinned = _thin(view, MAX_ROWS)
            note = f"summary of {name} ({size}{_constants(frame)})" + (f"; {thinned}" if thinned else "")
            return frame_view(view, name, caption=spec.caption, note=note, index_columns=index_columns,
                              best=spec.best)
    constants = _constants(frame)
    if constants and len(frame) > 1:
        frame = frame.loc[:, [c for c in frame.columns if frame[c].nunique(dropna=False) > 1]]
    if len(frame) <= MAX_ROWS:
        return frame_view(frame, name, caption=f"{size}", note=constants.lstrip("; "))
    head = frame.head(15)
    return frame_view(head, name, caption="first 15 rows", note=f"first 15 of {len(frame)} rows{constants}; all in {name}")


def _constants(frame: pd.DataFrame) -> str:
    """"; model = m, family = pos in every row" for the columns with a single value, else ""."""
    if len(frame) < 2:
        return ""
    same = [f"{c} = {fmt(frame[c].iloc[0])}" for c in frame.columns if frame[c].nunique(dropna=False) == 1]
    return f"; {', '.join(same)} in every row" if same else ""


def pivot_table(frame: pd.DataFrame, spec: Summary) -> tuple[pd.DataFrame, int] | None:
    """Mean of the value column over everything but the row keys and the column key."""
    value = _first(frame, spec.values, numeric=True)
    index = [c for c in spec.index if c in frame.columns]
    if value is None or not index:
        return None
    column = next((c for c in spec.columns if c in frame.columns and c not in index
                   and 1 < frame[c].nunique() <= MAX_COLUMNS), None)
    if column is None:
        grouped = frame.groupby(index, sort=True)[value].mean().reset_index()
        return grouped.rename(columns={value: f"mean {value}"}), len(index)
    table = frame.pivot_table(index=index, columns=column, values=value, aggfunc="mean", sort=True)
    table.columns = [f"{column} {c}" for c in table.columns]
    return table.reset_index(), len(index)


def read_csv_view(path: Path, relative: str) -> TableView:
    """A CSV file as a TableView (never raises: an unreadable file becomes a note)."""
    size = path.stat().st_size
    if size > MAX_CSV_BYTES:
        return TableView(relative, [], [], note=f"{relative} is {size / 2**20:.0f} MiB: too large to show here")
    try:
        frame = pd.read_csv(path)
    except Exception as exc:  # empty, malformed, binary: say so instead of failing the report
        return TableView(relative, [], [], note=f"{relative} could not be read ({type(exc).__name__})")
    return summarise(frame, path.name)


def markdown_blocks(text: str) -> list[tuple[str, object]]:
    """Split Markdown into ("heading"|"paragraph"|"table", content); tables become TableViews."""
    blocks: list[tuple[str, object]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(set(c) <= set("-: ") for c in cells):
                    rows.append(cells)
                i += 1
            if rows:
                header, body = rows[0], rows[1:]
                blocks.append(("table", TableView("", header, [[Cell(c.replace("**", "")) for c in r] for r in body],
                                                  index_columns=1)))
            continue
        if line.startswith("#"):
            blocks.append(("heading", line.lstrip("#").strip()))
        elif line:
            blocks.append(("paragraph", line))
        i += 1
    return blocks
