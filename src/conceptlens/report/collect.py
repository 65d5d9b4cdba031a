"""Walk a run folder into report sections: one per folder that holds something to show.

A section gathers what its folder holds directly (subfolders are sections of their own): the
texts for the files present, every figure (PNG/JPEG, checked by their magic bytes and embedded
as base64), CSV tables, key numbers from JSON, settings from YAML/JSON, Markdown, and the
paper's values where it has them. A study's folder (task-vector transfer, model ladder) also gets its
finding in words first (`parts`). Nothing read from a file is trusted: it is escaped at render.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from conceptlens.report.compare import comparisons
from conceptlens.report.explain import caption, explain, section_title
from conceptlens.report.parts import Figure, Part, study_part
from conceptlens.report.tables import LISTED_ONLY, Cell, TableView, fmt, markdown_blocks, read_csv_view

SKIP_DIRS = {"checkpoints", "__pycache__", "adapter", "offload", "tmp"}
SKIP_SUFFIXES = (".parquet", ".safetensors", ".sha256", ".tmp", ".pt", ".bin", ".npy", ".lock")
IMAGE_MAGIC = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}
MAX_IMAGE_BYTES = 20 * 2**20
MAX_TEXT_CHARS = 20_000
NUMBER_FILES = ("summary.json", "moments.json")
SETTING_FILES = ("config.yaml", "config.yml", "settings.json", "cell.json", "sweep.yaml")


@dataclass
class Section:
    relative: str
    title: str
    anchor: str
    depth: int
    texts: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[TableView] = field(default_factory=list)
    comparisons: list[TableView] = field(default_factory=list)
    numbers: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)  # (file, [(key, value)])
    settings: list[tuple[str, str]] = field(default_factory=list)
    markdown: list[tuple[str, list]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # problems, shown in red
    info: list[str] = field(default_factory=list)  # files listed but not shown
    status: str = ""
    statements: list[str] = field(default_factory=list)  # a study part's finding in words, shown first


def natural_key(text: str) -> list:
    """'step_10' sorts after 'step_9'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def anchor_for(relative: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", relative.lower()).strip("-")
    return f"s-{slug or 'root'}"


STUDY_ORDER = ["synthetic", "llm", "interventions", "finetune", "comparison", "transfer", "ladder", "merged"]


def _folder_key(path: Path) -> tuple:
    """The study's order first (synthetic, llm, interventions, finetune, comparison), then natural order."""
    rank = STUDY_ORDER.index(path.name) if path.name in STUDY_ORDER else len(STUDY_ORDER)
    return rank, natural_key(path.name)


def folders(run: Path) -> list[Path]:
    """The run folder and every subfolder worth a section, depth first, in the study's order."""
    out = [run]
    for child in sorted((p for p in run.iterdir() if p.is_dir()), key=_folder_key):
        if child.name.startswith(".") or child.name in SKIP_DIRS or child.name.endswith(".parts") or child.is_symlink():
            continue
        out += folders(child)
    return out


def image_uri(path: Path) -> str | None:
    """A base64 data URI for a real PNG or JPEG file (by magic bytes), else None."""
    if path.stat().st_size > MAX_IMAGE_BYTES:
        return None
    data = path.read_bytes()
    mime = next((m for magic, m in IMAGE_MAGIC.items() if data.startswith(magic)), None)
    if mime is None:
        return None
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def flatten(obj, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """Scalars of a JSON object as (dotted key, formatted value); long lists and deep nests shortened."""
    if isinstance(obj, dict):
        if depth >= 3:
            return [(prefix, f"{{{len(obj)} entries}}")]
        pairs = []
        for key, value in obj.items():
            pairs += flatten(value, f"{prefix}.{key}" if prefix else str(key), depth + 1)
        return pairs
    if isinstance(obj, list):
        if len(obj) <= 12 and all(not isinstance(v, (dict, list)) for v in obj):
            return [(prefix, "[" + ", ".join(fmt(v) for v in obj) + "]")]
        return [(prefix, f"[{len(obj)} items]")]
    return [(prefix, fmt(obj))]


def _load_json(path: Path) -> dict | list | None:
    try:
        if path.stat().st_size > 5 * 2**20:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _last_record(path: Path) -> tuple[int, dict] | None:
    """(number of records, the last complete JSON object) of a JSONL log, or None."""
    if path.stat().st_size > 20 * 2**20:
        return None
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a torn last line
        return (len(lines), record) if isinstance(record, dict) else None
    return None


def _read_text(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + f"\n... ({len(text)} characters in all)"


def build_section(run: Path, folder: Path, stage_by_folder: dict[str, dict]) -> Section | None:
    """The section of one folder, or None when it holds nothing to show."""
    relative = folder.relative_to(run).as_posix()
    relative = "" if relative == "." else relative
    files = {p.name: p for p in sorted(folder.iterdir(), key=lambda p: natural_key(p.name))
             if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
             and not p.name.endswith(SKIP_SUFFIXES) and p.name != "report.html"}
    family = _family_hint(files)
    section = Section(relative, section_title(relative, list(files), family), anchor_for(relative),
                      relative.count("/") + bool(relative))
    section.texts = explain(list(files), k=_k_hint(files))
    part = study_part(run, folder, files)
    if part is not None:
        _add_part(section, part, files)
        files = {name: path for name, path in files.items() if name not in part.skip}
    numbers = {name: _add_file(section, name, path) for name, path in files.items()}
    summary = numbers.get("summary.json") or {}
    if isinstance(summary.get("settings"), dict):
        section.settings.append(("summary.json: settings", json.dumps(summary["settings"], indent=2)))
    section.comparisons += comparisons(relative, files, summary, numbers.get("moments.json") or {})
    _add_status(section, stage_by_folder.get(relative), finished="DONE" in files)
    shown = (section.figures or section.tables or section.numbers or section.settings or section.markdown
             or section.comparisons or section.notes or section.info or section.status)
    return section if shown else None


def _add_file(section: Section, name: str, path: Path) -> dict | None:
    """Show one file in its section by kind; returns the JSON object of a numbers file (summary, moments)."""
    suffix = path.suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg"):
        uri = image_uri(path)
        if uri is None:
            section.notes.append(f"{name} was not embedded: not a PNG/JPEG file, or over 20 MiB.")
        else:
            section.figures.append(Figure(name, caption(name), uri))
    elif name in LISTED_ONLY:
        section.info.append(f"{name} ({path.stat().st_size / 1024:.0f} KiB): {LISTED_ONLY[name]}, not shown.")
    elif suffix == ".csv":
        section.tables.append(read_csv_view(path, name))
    elif suffix == ".md":
        section.markdown.append((name, markdown_blocks(_read_text(path))))
    elif name in ("stages.json", "sweep_status.json"):
        return None  # shown on their own (run overview)
    elif name in NUMBER_FILES:
        loaded = _load_json(path)
        if not isinstance(loaded, dict):
            section.notes.append(f"{name} could not be read as a JSON object.")
            return None
        section.numbers.append((name, flatten(loaded)[:80]))
        return loaded
    elif name in SETTING_FILES or suffix in (".yaml", ".yml", ".txt"):
        section.settings.append((name, _read_text(path)))
    elif suffix == ".json":
        loaded = _load_json(path)
        if isinstance(loaded, dict) and any(word in name for word in ("settings", "config", "training", "cell")):
            section.settings.append((name, json.dumps(loaded, indent=2)[:MAX_TEXT_CHARS]))
        elif isinstance(loaded, dict):
            section.numbers.append((name, flatten(loaded)[:40]))
    elif suffix == ".jsonl":
        last = _last_record(path)
        if last is not None:
            count, record = last
            section.numbers.append((f"{name} (last of {count} records)", flatten(record)[:30]))
    return None


def _add_status(section: Section, stage: dict | None, finished: bool) -> None:
    """The stage line of a folder that a stage runner wrote (name, status, seconds, error)."""
    if not stage:
        section.status = "finished" if finished else section.status
        return
    seconds = f", {float(stage['seconds']):.1f} s" if stage.get("seconds") is not None else ""
    section.status = f"stage {stage['name']}: {stage.get('status', '?')}{seconds}"
    section.notes += [f"error: {stage['error']}"] if stage.get("error") else []


def _add_part(section: Section, part: Part, present) -> None:
    """A study part's title, statements, figures and tables, ahead of the folder's generic view."""
    section.title, section.statements = part.title, part.statements
    section.figures += part.figures
    section.comparisons += part.comparisons
    section.tables += part.tables
    section.notes += part.notes
    section.info += [f"{name}: {why}." for name, why in part.skip.items() if name in present]


def _family_hint(files: dict[str, Path]) -> str:
    """The family named in summary.json, if any (for the title of a single command's run folder)."""
    loaded = _load_json(files["summary.json"]) if "summary.json" in files else None
    return str(loaded.get("family", "")) if isinstance(loaded, dict) else ""


def _k_hint(files: dict[str, Path]) -> int | None:
    """The k of the run's kNN vote, from summary.json (its settings) or decodability.json; None if unknown."""
    for name in ("summary.json", "decodability.json"):
        loaded = _load_json(files[name]) if name in files else None
        if isinstance(loaded, dict):
            settings = loaded.get("settings")
            k = settings.get("k") if isinstance(settings, dict) else loaded.get("k")
            if isinstance(k, int) and not isinstance(k, bool):
                return k
    return None


def stage_table(run: Path) -> tuple[TableView | None, dict[str, dict]]:
    """RUN/stages.json as a table (stage, status, seconds) and a map folder -> stage record."""
    loaded = _load_json(run / "stages.json")
    if not isinstance(loaded, dict):
        return None, {}
    rows, by_folder, total = [], {}, 0.0
    for name, record in loaded.items():
        if not isinstance(record, dict):
            continue
        seconds = record.get("seconds")
        total += float(seconds) if isinstance(seconds, (int, float)) else 0.0
        folder = str(record.get("folder", ""))
        by_folder[folder] = {**record, "name": name}
        status = str(record.get("status", "?")) + (" (cached)" if record.get("cached") else "")
        rows.append([Cell(str(name), "key"), Cell(status, f"status-{record.get('status', '')}"),
                     Cell(f"{float(seconds):.1f}" if isinstance(seconds, (int, float)) else "–", "num"),
                     Cell(_minutes(seconds), "num"), Cell(folder),
                     Cell(str(record.get("error") or record.get("reason") or "")[:300])])
    rows.append([Cell("total", "key"), Cell(""), Cell(f"{total:.1f}", "num"), Cell(_minutes(total), "num"), Cell(""),
                 Cell("")])
    view = TableView("stages.json", ["stage", "status", "seconds", "minutes", "folder", "error or reason"], rows,
                     caption="wall time of each stage (a cached stage shows the time of the run that made it)",
                     index_columns=1)
    return view, by_folder


def _minutes(seconds) -> str:
    return f"{float(seconds) / 60:.1f}" if isinstance(seconds, (int, float)) else "–"


def sweep_table(run: Path) -> TableView | None:
    """RUN/sweep_status.json (written by `conceptlens sweep`) as a table of cells."""
    loaded = _load_json(run / "sweep_status.json")
    cells = loaded.get("cells") if isinstance(loaded, dict) else None
    if not isinstance(cells, dict):
        return None
    rows = []
    for cell_id, record in cells.items():
        if not isinstance(record, dict):
            continue
        grid = record.get("grid", {})
        grid_text = ", ".join(f"{k}={v}" for k, v in grid.items()) if isinstance(grid, dict) else str(grid)
        seconds = record.get("seconds")
        rows.append([Cell(str(cell_id), "key"), Cell(grid_text), Cell(str(record.get("status", "?")),
                                                                      f"status-{record.get('status', '')}"),
                     Cell(fmt(float(seconds)) if isinstance(seconds, (int, float)) else "–", "num"),
                     Cell(str(record.get("error", ""))[:300])])
    return TableView("sweep_status.json", ["cell", "grid values", "status", "seconds", "error"], rows,
                     caption="the cells of the sweep", index_columns=1)


def collect(run: Path) -> tuple[list[Section], TableView | None, TableView | None]:
    """All sections of a run folder, the stage table and the sweep table."""
    stages, by_folder = stage_table(run)
    sections = [s for s in (build_section(run, f, by_folder) for f in folders(run)) if s is not None]
    number = 0
    for section in sections:
        for figure in section.figures:
            number += 1
            figure.number = number
    return sections, stages, sweep_table(run)
