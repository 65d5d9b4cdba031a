"""Reading what a run wrote (JSON records, tables, logs): a damaged file is named, never a traceback.

Files of a run folder can be torn by a full disk, edited by hand or come from another version;
every reader here turns that into one `ConceptLensError` naming the file and what to do.
DECISION: a damaged JSONL log is repaired by keeping every good line (the damaged ones are set
aside in `<log>.damaged`), never by deleting the log, which would lose the logged steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conceptlens.errors import ConceptLensError
from conceptlens.storage import DAMAGED, write_text


def read_json(path: str | Path, what: str = "file", expect: type | None = dict, fix: str | None = None) -> Any:
    """A JSON file a run or a user wrote; damaged, unreadable or of the wrong shape: one error naming it.

    `expect`: the type the top level must have (dict by default; None: any). `fix`: what to do
    instead (default: rerun the command that wrote it).
    """
    path = Path(path)
    fix = fix or f"rerun the command that wrote {path.name}, or delete it if that command recreates it."
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except FileNotFoundError as exc:
        raise ConceptLensError(f"{what} {path} does not exist.", fix) from exc
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else type(exc).__name__
        raise ConceptLensError(f"{what} {path} is damaged or unreadable ({reason}).", fix) from exc
    if expect is not None and not isinstance(data, expect):
        raise ConceptLensError(f"{what} {path} holds a JSON {type(data).__name__}, not a {expect.__name__}.", fix)
    return data


def read_table_columns(path: str | Path, columns: tuple[str, ...], what: str = "table",
                       fix: str | None = None) -> "Any":
    """A CSV table as a pandas DataFrame, with `columns` checked; one error naming the file otherwise."""
    import pandas as pd

    path = Path(path)
    fix = fix or f"rerun the command that wrote {path.name}."
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ConceptLensError(f"{what} {path} is damaged or unreadable ({type(exc).__name__}).", fix) from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConceptLensError(f"{what} {path} has no column(s) {missing} (it has {list(frame.columns)}).", fix)
    return frame


def repair_jsonl(path: str | Path) -> tuple[int, int]:
    """Keep every parseable line of a JSONL log, move the others to `<path>.damaged`; -> (kept, moved).

    Both files are written atomically (the damaged lines first), so a kill leaves either the old log
    or the repaired one. DECISION: a torn last line counts as damaged too (it is set aside, not lost).
    """
    path = Path(path)
    try:
        lines = path.read_bytes().decode("utf-8", "replace").split("\n")
    except OSError as exc:
        raise ConceptLensError(f"cannot read {path} ({exc.strerror or exc}).", "check the path.") from exc
    good, bad = [], []
    for line in lines:
        if not line.strip():
            continue
        try:
            json.loads(line)
            good.append(line)
        except json.JSONDecodeError:
            bad.append(line)
    if bad:
        side = Path(str(path) + DAMAGED)
        previous = side.read_text(encoding="utf-8", errors="replace") if side.exists() else ""
        write_text(side, previous + "".join(b + "\n" for b in bad))
        write_text(path, "".join(g + "\n" for g in good))
    return len(good), len(bad)
