"""Results of the LLM experiments as typed objects whose files are their serialisation.

`EncodingResult` (TD x layer x shots x concept, ICL accuracy, summary), `InterventionResult`
(accuracy per replicate and condition, the change per concept) and `FinetuneResult` (a study
before and after) read the run folder an experiment writes (`load(folder)`) and write one
(`save(folder)`). DECISION: a table's CSV is the format of record; its Parquet twin is read first
when present, because it keeps dtypes (a concept named "NA" stays a string).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from conceptlens.errors import ConceptLensError
from conceptlens.runs import LOCK
from conceptlens.storage import write_json, write_table


def read_table(path: Path) -> pd.DataFrame:
    """`<name>.parquet` (or `<name>.csv`) as a frame; an empty frame when neither exists."""
    parquet, csv = path.with_suffix(".parquet"), path.with_suffix(".csv")
    if parquet.is_file():
        return pd.read_parquet(parquet)
    if csv.is_file():
        return pd.read_csv(csv, keep_default_na=False, na_values=[""])
    return pd.DataFrame()


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise ConceptLensError(f"{path} does not exist.", "pass the run folder the experiment wrote.")
    return json.loads(path.read_text(encoding="utf-8"))


def write_tables(folder: Path, tables: dict[str, pd.DataFrame], source: Path | None, keep: set[str]) -> Path:
    """Copy `source`'s other files into `folder` (unless they are the same), then write `tables` there."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if source is not None and source.is_dir() and source.resolve() != folder.resolve():
        for path in source.iterdir():
            if path.name == LOCK or path.stem in tables or path.name in keep:
                continue
            if path.is_dir():
                shutil.copytree(path, folder / path.name, dirs_exist_ok=True)
            else:
                shutil.copy2(path, folder / path.name)
    for name, frame in tables.items():
        if not frame.empty:
            write_table(folder / f"{name}.csv", frame)
    return folder


def _layer_column(frame: pd.DataFrame) -> str:
    return "hidden_state" if "hidden_state" in frame.columns else "layer"


def surface_controls(td: pd.DataFrame) -> dict[str, pd.Series]:
    """Mean control TD per (shots, layer) of every surface-control column of a TD table (`surface_answers_td`,
    `surface_query_td`, ...: the TD of a representation no model computed), keyed by the control's name."""
    layer = _layer_column(td)
    columns = [c for c in td.columns if c.startswith("surface_") and c.endswith("_td")]
    return {c.removeprefix("surface_").removesuffix("_td") or "surface": td.groupby(["shots", layer])[c].mean()
            for c in columns if td[c].notna().any()}


@dataclass
class EncodingResult:
    """One encoding study (`llm run`): `td` (shots, layer, concept, td), `accuracy` (shots, concept,
    accuracy, n), `pairwise`, `generations`, `umap`, and `summary` (summary.json); `folder` is where it lives."""

    summary: dict
    td: pd.DataFrame
    accuracy: pd.DataFrame
    pairwise: pd.DataFrame = field(default_factory=pd.DataFrame)
    generations: pd.DataFrame = field(default_factory=pd.DataFrame)
    umap: pd.DataFrame = field(default_factory=pd.DataFrame)
    folder: Path | None = None

    TABLES = {"td": "decodability", "accuracy": "accuracy", "pairwise": "pairwise", "generations": "generations",
              "umap": "umap"}

    @property
    def best_layer(self) -> int:
        return int(self.summary["best_layer"])

    @classmethod
    def load(cls, folder: str | Path) -> "EncodingResult":
        """Read a folder written by `cl.encoding_study` or `conceptlens llm run`."""
        folder = Path(folder)
        summary = read_json(folder / "summary.json")
        tables = {attr: read_table(folder / f"{name}.csv") for attr, name in cls.TABLES.items()}
        if tables["td"].empty:
            raise ConceptLensError(f"{folder} has no decodability table.",
                                   "pass a folder written by an encoding study.")
        return cls(summary=summary, folder=folder, **tables)

    def save(self, folder: str | Path) -> Path:
        """Write summary.json and every table (CSV + Parquet) into `folder`, with the other files of `self.folder`."""
        folder = write_tables(Path(folder), {name: getattr(self, attr) for attr, name in self.TABLES.items()},
                              self.folder, {"summary.json"})
        write_json(folder / "summary.json", self.summary)
        return folder

    def activations(self, shots: int):
        """(activations `[layers, prompts, d_model]`, layer indices, concept labels) of one shots value,
        read at the query separator, as the study stored them (float16 -> float32)."""
        from conceptlens.llm.encoding.study import stage_path
        from conceptlens.safetensors_io import load_tensors, safetensors_metadata

        path = stage_path(Path(self.folder or "."), shots)
        if not path.is_file():
            raise ConceptLensError(f"{path} does not exist.", f"use shots from {sorted(set(self.td.shots))} of a "
                                   "study run in this folder (a reused 'before' study keeps no activations).")
        tensors = load_tensors(path)
        concepts = json.loads(safetensors_metadata(path)["concepts"])
        return (tensors["activations"].float(), tensors["layers"].tolist(),
                [concepts[code] for code in tensors["labels"].tolist()])

    def plot(self, ax=None):
        """Mean TD by layer, one line per shots; chance grey dashed; the surface controls in the line's colour,
        dashed (answers) and dash-dotted (query), where the study wrote them."""
        import matplotlib.pyplot as plt

        fig, ax = (plt.subplots(figsize=(6, 4)) if ax is None else (ax.figure, ax))
        layer = _layer_column(self.td)
        controls = surface_controls(self.td)
        for shots, part in self.td.groupby("shots"):
            mean = part.groupby(layer)["td"].mean()
            line, = ax.plot(mean.index, mean.values, marker="o", ms=3, label=f"{shots} shots")
            for (name, control), style in zip(controls.items(), ("--", "-.", ":")):
                values = control.loc[shots].dropna()
                if len(values):
                    ax.plot(values.index, values.values, ls=style, c=line.get_color(), lw=1,
                            label=f"{shots} shots: surface ({name})")
        if "chance" in self.summary and self.summary["chance"] is not None:
            ax.axhline(self.summary["chance"], ls="--", c="0.6", lw=1, label="chance")
        ax.set(xlabel="layer (hidden-state index)", ylabel="mean TD", ylim=(0, 1.02),
               title=f"{self.summary.get('model', '')} · {self.summary.get('family', '')}")
        ax.legend(fontsize=8)
        return fig


@dataclass
class InterventionResult:
    """One intervention run (`llm intervene`): `accuracy` (tidy rows: replicate x layer x concept x condition),
    `changes` (accuracy change per concept x layer x condition, mean ± std), `summary` (interventions.json)."""

    summary: dict
    accuracy: pd.DataFrame
    changes: pd.DataFrame
    folder: Path | None = None

    @classmethod
    def load(cls, folder: str | Path) -> "InterventionResult":
        folder = Path(folder)
        accuracy = read_table(folder / "interventions.csv")
        if accuracy.empty:
            raise ConceptLensError(f"{folder} has no interventions table.", "pass a folder written by interventions.")
        return cls(summary=read_json(folder / "interventions.json"), accuracy=accuracy,
                   changes=read_table(folder / "interventions_summary.csv"), folder=folder)

    def save(self, folder: str | Path) -> Path:
        folder = write_tables(Path(folder), {"interventions": self.accuracy, "interventions_summary": self.changes},
                              self.folder, {"interventions.json"})
        write_json(folder / "interventions.json", self.summary)
        return folder

    def plot(self):
        """Per layer, each concept's positive and negative accuracy change (bars, ± std over replicates)."""
        from conceptlens.llm.interventions.report import plot

        s = self.summary
        return plot(self.changes, f"{s.get('model', '')} · {s.get('family', '')} · {s.get('shots', '')}-shot · "
                                  f"{s.get('mode', '')} at the query token")


@dataclass
class FinetuneResult:
    """One finetuning run (`llm finetune`): `before` and `after` studies, `train_log`, `summary`."""

    summary: dict
    before: EncodingResult
    after: EncodingResult
    train_log: pd.DataFrame = field(default_factory=pd.DataFrame)
    folder: Path | None = None

    @classmethod
    def load(cls, folder: str | Path) -> "FinetuneResult":
        from conceptlens.storage import read_jsonl

        folder = Path(folder)
        log = folder / "train_log.jsonl"
        return cls(summary=read_json(folder / "summary.json"), before=EncodingResult.load(folder / "before"),
                   after=EncodingResult.load(folder / "after"),
                   train_log=pd.DataFrame(read_jsonl(log)) if log.is_file() else pd.DataFrame(), folder=folder)

    def save(self, folder: str | Path) -> Path:
        folder = write_tables(Path(folder), {}, self.folder, {"summary.json", "before", "after"})
        self.before.save(folder / "before")
        self.after.save(folder / "after")
        write_json(folder / "summary.json", self.summary)
        return folder

    def plot(self, ax=None):
        """Mean TD (Null excluded) by layer, before vs after, at the evaluated shots."""
        import matplotlib.pyplot as plt

        from conceptlens.tasks.family import NULL

        fig, ax = (plt.subplots(figsize=(6, 4)) if ax is None else (ax.figure, ax))
        for name, study, colour in (("pretrained", self.before, "tab:gray"), ("finetuned", self.after, "tab:red")):
            td = study.td[study.td.concept != NULL]
            layer = _layer_column(td)
            curve = td.groupby(layer)["td"].mean()
            ax.plot(curve.index, curve.values, marker=".", color=colour, label=name)
        ax.axvline(self.summary.get("layer", self.before.best_layer), c="k", ls=":", lw=1,
                   label="pretrained best layer")
        ax.set(xlabel="layer (hidden-state index)", ylabel="mean TD (Null excluded)", ylim=(0, 1.02),
               title=f"{self.summary.get('method', '')} {self.summary.get('layers_spec', '')}")
        ax.legend(fontsize=8)
        return fig
