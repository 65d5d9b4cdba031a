"""Sweeps: a grid of cells (models x families x shots x seeds x revisions x layer ranges) as Ray tasks."""

from conceptlens.sweep.runner import run_sweep
from conceptlens.sweep.spec import SweepSpec, expand, load_sweep, parse_sweep

__all__ = ["SweepSpec", "expand", "load_sweep", "parse_sweep", "run_sweep"]
