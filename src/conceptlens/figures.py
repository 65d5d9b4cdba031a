"""The one way a figure is written: matplotlib on the Agg backend, the PNG renamed into place whole.

Every module that draws (encoding study, interventions, transfer, finetuning, synthetic study, ladder,
comparison) saves through `save_png`, so a killed write never leaves half a PNG and every figure is
closed after saving (a long sweep does not accumulate open figures).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from conceptlens.storage import atomic_path  # noqa: E402


def save_png(fig, path: str | Path, dpi: int = 120, tight: bool = True) -> Path:
    """Write `fig` to `path` as PNG atomically (temporary file, then rename) and close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return path
