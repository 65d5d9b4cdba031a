"""`SyntheticAnalysis`: what `analyze` measured on one run, as typed tidy frames; its files are its
serialisation (`save(folder)` writes them, `load(folder)` reads them back).

Column names say what they count: `block` is a 0-based index of the model's transformer blocks
(the output of block b), never an HF hidden-state index (the LLM tables' `hidden_state`, where 0
is the embeddings); `token` is `y` (the K-th demonstration's y token) or `x` (the last x token).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
import json
from pathlib import Path

import pandas as pd

from conceptlens.storage import write_json, write_table

TABLES = ("loss_per_basis", "decodability", "pairwise_td", "patching", "patching_diagonal", "head_importance",
          "baselines", "umap")


@dataclass
class SyntheticAnalysis:
    """`decodability` (step, token, block, concept, td), `patching` (moment, step, block, mode, window,
    source, target, loss_change, clean_loss), `patching_diagonal` (... source, diagonal_minus_row,
    ci_low, ci_high), `loss_per_basis`, `pairwise_td`, `head_importance` (block, head, ...),
    `baselines`, `umap`, and `moments` (the steps of (a), (b), (c) and the analysis block)."""

    moments: dict
    loss_per_basis: pd.DataFrame
    decodability: pd.DataFrame
    pairwise_td: pd.DataFrame
    patching: pd.DataFrame
    patching_diagonal: pd.DataFrame
    head_importance: pd.DataFrame
    baselines: pd.DataFrame
    umap: pd.DataFrame = field(default_factory=pd.DataFrame)
    files: list[str] = field(default_factory=list)

    def save(self, folder: str | Path) -> list[str]:
        """Write every non-empty table as `<name>.csv` and `moments.json`; returns the file names."""
        folder = Path(folder)
        names = []
        for name in TABLES:
            frame = getattr(self, name)
            if not frame.empty:
                write_table(folder / f"{name}.csv", frame)
                names.append(f"{name}.csv")
        write_json(folder / "moments.json", self.moments)
        return names + ["moments.json"]

    @classmethod
    def load(cls, folder: str | Path) -> "SyntheticAnalysis":
        folder = Path(folder)
        tables = {name: (pd.read_csv(folder / f"{name}.csv") if (folder / f"{name}.csv").is_file()
                         else pd.DataFrame()) for name in TABLES}
        return cls(moments=json.loads((folder / "moments.json").read_text(encoding="utf-8")), **tables)

    def __getitem__(self, key: str):  # the dict results of earlier versions: result["moments"]
        if key in {f.name for f in fields(self)}:
            return getattr(self, key)
        raise KeyError(key)
