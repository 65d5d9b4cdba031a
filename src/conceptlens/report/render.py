"""Render a run folder into `RUN/report.html`: one self-contained page, figures embedded.

`write_report(run)` walks the folder (`collect`), fills the template (`template`) and writes the
file atomically. The page carries no script and a Content-Security-Policy that forbids every
network request, so it opens the same offline, in a mail attachment or years later.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from conceptlens.errors import ConceptLensError
from conceptlens.report import paper_values
from conceptlens.report.collect import collect
from conceptlens.report.environment import versions
from conceptlens.report.findings import findings_table
from conceptlens.report.template import CSS, TEMPLATE
from conceptlens.storage import write_text


def render_report(run: str | Path) -> str:
    """The report of `run` as one HTML string."""
    import jinja2

    run = Path(run)
    if not run.is_dir():
        raise ConceptLensError(f"run folder {run} does not exist.", "pass the --out folder of a conceptlens command.")
    sections, stages, sweep = collect(run)
    software = versions()
    version = dict(software).get("conceptlens", "?")
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = environment.from_string(TEMPLATE)
    return template.render(css=CSS, run_name=run.resolve().name, run_path=str(run), sections=sections,
                           findings=findings_table(run), stages=stages, sweep=sweep, software=software, version=version,
                           paper=paper_values.PAPER, created=time.strftime("%Y-%m-%d %H:%M"))


def write_report(run: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of `run` to `out` (default `RUN/report.html`) and return its path."""
    path = Path(out) if out else Path(run) / "report.html"
    write_text(path, render_report(run))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # readable like any file the user writes (atomic writes start at 0600)
    return path
