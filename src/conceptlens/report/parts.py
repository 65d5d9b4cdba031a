"""Study parts of the report: a folder a study wrote gets its finding in words above the generic view.

A transfer folder (transfer.csv, td.csv, summary.json) becomes "Decodable vs usable", a ladder folder
(ladder.csv) "Model ladder": each part brings a title, statements computed from the folder's numbers,
figures drawn in memory (never written into the run folder), tables, and the files it replaces.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path

from conceptlens.report.tables import TableView

TRANSFER_FILES = {"transfer.csv", "td.csv", "summary.json"}
LADDER_FILES = {"ladder.csv"}


@dataclass
class Figure:
    name: str
    caption: str
    data_uri: str
    number: int = 0
    wide: bool = False  # spans the page (a study part's main figure)


@dataclass
class Part:
    """What a study part adds to its folder's section (statements first, then its figures and tables)."""

    title: str
    statements: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    comparisons: list[TableView] = field(default_factory=list)
    tables: list[TableView] = field(default_factory=list)
    skip: dict[str, str] = field(default_factory=dict)  # file name -> why the part replaces it
    notes: list[str] = field(default_factory=list)


def figure_uri(fig, dpi: int = 90) -> str:
    """A matplotlib figure as a PNG data URI (the figure is closed)."""
    from conceptlens.figures import plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def study_part(run: Path, folder: Path, files: dict[str, Path]) -> Part | None:
    """The study part of `folder` (transfer or ladder), or None; a part that cannot be built says why."""
    if TRANSFER_FILES <= set(files):
        from conceptlens.report.transfer_section import transfer_part

        return _safely(lambda: transfer_part(run, folder), "Decodable vs usable")
    if LADDER_FILES <= set(files):
        from conceptlens.report.ladder_section import ladder_part

        return _safely(lambda: ladder_part(folder), "Model ladder")
    return None


def _safely(build, title: str) -> Part:
    """A part, or (when the folder's files do not read as that study's) a part holding only the reason."""
    try:
        return build()
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        return Part(title, notes=[f"the {title.lower()} part could not be built from this folder "
                                  f"({type(exc).__name__}: {str(exc)[:200]}); its files are shown as they are."])
