"""The software a report was made with: Python, the libraries the numbers depend on, the machine.

Read from package metadata, so nothing heavy is imported. DECISION: these are the versions of
the environment that renders the report; a run that records its own (`environment.json` in the
run folder) shows those too, as settings.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata

PACKAGES = ("conceptlens", "torch", "transformers", "peft", "accelerate", "safetensors", "numpy", "pandas",
            "scikit-learn", "umap-learn", "ray", "bitsandbytes")


def versions() -> list[tuple[str, str]]:
    """[(name, version)] for Python, the packages above (\"not installed\" when absent) and the machine."""
    rows = [("python", sys.version.split()[0])]
    for name in PACKAGES:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    rows.append(("platform", platform.platform()))
    return rows
