"""The HTML report of a run folder: every figure and table, the paper's values beside ours."""

from conceptlens.report.render import render_report, write_report

__all__ = ["render_report", "write_report"]
