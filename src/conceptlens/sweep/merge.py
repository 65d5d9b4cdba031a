"""Merge the tidy tables of every finished cell into one table per file name.

`DIR/<cell>/decodability.csv` of all cells -> `DIR/merged/decodability.csv` with a `cell` column
and the cell's grid values as extra columns (a grid key that is already a column with the same
value is left as it is; one that differs is added as `grid_<key>`). Tables in subfolders merge by
their relative path (`llm/pos/accuracy.csv` -> `merged/llm__pos__accuracy.csv`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from conceptlens.storage import write_table

SKIP_PARTS = {"checkpoints", "merged", "__pycache__"}


def _grid_text(value) -> object:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return value


def tables_of(folder: Path) -> dict[str, Path]:
    """Relative CSV path -> file, for every CSV in a cell folder (not in checkpoints or hidden folders)."""
    found = {}
    for path in sorted(folder.rglob("*.csv")):
        parts = path.relative_to(folder).parts
        if any(p.startswith(".") or p in SKIP_PARTS or p.endswith(".parts") for p in parts):
            continue
        found["/".join(parts)] = path
    return found


def with_grid(frame: pd.DataFrame, cell_id: str, grid: dict) -> pd.DataFrame:
    frame = frame.copy()
    frame.insert(0, "cell", cell_id)
    for key, value in grid.items():
        value = _grid_text(value)
        if key not in frame.columns:
            frame[key] = value
        elif not (frame[key].astype(str) == str(value)).all():
            frame[f"grid_{key}"] = value
    return frame


def merge_tables(out: Path, cells: list[dict]) -> dict[str, int]:
    """Write `out/merged/*.csv` (+ Parquet) from the finished cells; returns {file: rows}."""
    collected: dict[str, list[pd.DataFrame]] = {}
    for cell in cells:
        folder = out / cell["id"]
        if not (folder / "DONE").exists():
            continue
        for relative, path in tables_of(folder).items():
            try:
                frame = pd.read_csv(path)
            except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
                continue
            collected.setdefault(relative, []).append(with_grid(frame, cell["id"], cell["grid"]))
    written = {}
    for relative, frames in collected.items():
        merged = pd.concat(frames, ignore_index=True, sort=False)
        for column in merged.columns:
            if merged[column].dtype == object:
                merged[column] = merged[column].map(lambda v: v if pd.isna(v) else str(v))
        name = relative.replace("/", "__")
        write_table(out / "merged" / name, merged)
        written[name] = len(merged)
    return written
