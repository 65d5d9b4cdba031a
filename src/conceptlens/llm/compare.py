"""The paper's finetuning table: pretrained vs first-N / last-N (or before-peak / after-peak) layers vs the
concept stated in the prompt.

Per family and variant: mean ± std across concepts (Null excluded) of TD at one layer and of
k-shot accuracy, read from `llm run` folders (pretrained, or `--state-concept` = the prompting
variant) and `llm finetune` folders (their `before/` is pretrained, `after/` the finetuned model).
DECISION: TD is read at the pretrained model's best layer (max mean TD) for every row of a family,
as the paper's identical pretrained / last-10 TD implies; each row's own peak is also given.
Standard deviations are across concepts with ddof = 1. The before-peak / after-peak groups
(`finetune/layers.py`) stand beside the paper's first-10 / last-10 rows, which they replace on any
depth; the `paper_row` column says which paper row a row is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from conceptlens.errors import ConceptLensError
from conceptlens.out_paths import check_output_folder
from conceptlens.reading import read_json, read_table_columns
from conceptlens.report.paper_values import FINETUNING
from conceptlens.storage import write_table, write_text
from conceptlens.tasks.family import NULL

# Llama-3.1 8B, 4 shots (PAPER.md "Finetuning"): (TD mean, TD std, accuracy % mean, accuracy % std),
# from the one home of the paper's numbers
_ROWS = {"pretrained": "pretrained", "first": "LoRA first 10 layers", "last": "LoRA last 10 layers",
         "stated": "concept stated in prompt"}
PAPER = {(family, variant): FINETUNING[row][family] for variant, row in _ROWS.items() for family in FINETUNING[row]}
TRAINING_KEYS = ("method", "train_samples", "epochs", "lr", "batch_size", "rank", "alpha", "dropout")
ORDER = {"pretrained": 0, "before-peak": 1, "first": 2, "after-peak": 3, "last": 4, "range": 5, "stated": 6}
# which of the paper's rows each variant stands beside
PAPER_ROW = {"pretrained": ("pretrained", "pretrained"), "first": ("first", "LoRA first 10 layers"),
             "before-peak": ("first", "LoRA first 10 layers"), "last": ("last", "LoRA last 10 layers"),
             "after-peak": ("last", "LoRA last 10 layers"), "stated": ("stated", "concept stated in prompt")}


@dataclass(frozen=True)
class StudyRef:
    """One study folder (decodability.csv + accuracy.csv) and what it measured."""

    folder: Path
    family: str
    variant: str  # pretrained | before-peak | first | after-peak | last | range | stated
    label: str  # row name, e.g. "LoRA first 10 layers"
    model: str
    source: Path  # the run folder given on the command line


def _json(path: Path) -> dict:
    return read_json(path, "run record", fix="pass finished run folders.")


def _finetune_variant(config: dict) -> tuple[str, str]:
    spec, method = str(config.get("layers_spec", "")), "LoRA" if config.get("method", "lora") == "lora" else "full FT"
    layers, n_layers = config.get("layers", []), config.get("n_layers")
    if spec.strip().lower() in ("before-peak", "after-peak") and layers:
        peak = config.get("peak_layer")
        return spec.strip().lower(), (f"{method} {spec.strip().lower()}: blocks {layers[0]}-{layers[-1]} "
                                      f"({len(layers)} of {n_layers}, TD peak layer {peak})")
    if spec.startswith("first:") or (layers and layers[0] == 0 and n_layers and layers[-1] < n_layers - 1):
        return "first", f"{method} first {len(layers)} layers"
    if spec.startswith("last:") or (layers and n_layers and layers[-1] == n_layers - 1):
        return "last", f"{method} last {len(layers)} layers"
    return "range", f"{method} layers {spec}"


def identify(run: str | Path) -> list[StudyRef]:
    """The studies a run folder holds: an `llm run` folder (one) or an `llm finetune` folder (before, after)."""
    run = Path(run)
    if (run / "config.json").exists() and _json(run / "config.json").get("kind") == "finetune":
        config = _json(run / "config.json")
        if not (run / "after" / "summary.json").exists():
            raise ConceptLensError(f"{run} is an unfinished finetuning run (no after/summary.json).",
                                   f"finish it: conceptlens llm finetune ... --out {run} --resume.")
        variant, label = _finetune_variant(config)
        family, model = config["family"], config["model"]
        return [StudyRef(run / "before", family, "pretrained", "pretrained", model, run),
                StudyRef(run / "after", family, variant, label, model, run)]
    if not (run / "summary.json").exists():
        raise ConceptLensError(f"{run} is neither an `llm run` nor an `llm finetune` folder (no summary.json).",
                               "pass folders written by `conceptlens llm run` or `conceptlens llm finetune`.")
    summary = _json(run / "summary.json")
    settings = summary.get("settings") if isinstance(summary.get("settings"), dict) else {}
    stated = bool(settings.get("state_concept", summary.get("state_concept", False)))
    return [StudyRef(run, summary.get("family", run.name), "stated" if stated else "pretrained",
                     "concept stated in prompt" if stated else "pretrained", summary.get("model", "?"), run)]


def read_study(folder: Path, shots: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(TD per layer x concept, accuracy per concept) of one study at `shots`."""
    for name in ("decodability.csv", "accuracy.csv"):
        if not (folder / name).exists():
            raise ConceptLensError(f"{folder} has no {name}.", "pass finished run folders.")
    fix = "pass finished run folders."
    td = read_table_columns(folder / "decodability.csv", ("shots", "layer", "concept", "td"), "TD table", fix)
    acc = read_table_columns(folder / "accuracy.csv", ("shots", "concept", "accuracy"), "accuracy table", fix)
    td, acc = td[td["shots"] == shots], acc[acc["shots"] == shots]
    if td.empty or acc.empty:
        raise ConceptLensError(f"{folder} has no {shots}-shot results.", "pass --shots with a value that run used.")
    return td, acc


def best_layer(td: pd.DataFrame) -> int:
    """The layer of maximum mean TD over all concepts (Null included, as `llm run` chooses it)."""
    return int(td.groupby("layer")["td"].mean().idxmax())


def concept_stats(td: pd.DataFrame, acc: pd.DataFrame, layer: int) -> dict:
    """Mean ± std across concepts (Null excluded) of TD at `layer` and of accuracy (in %)."""
    at = td[(td["layer"] == layer) & (td["concept"] != NULL)]["td"]
    a = acc[acc["concept"] != NULL]["accuracy"] * 100
    return {"td_mean": float(at.mean()), "td_std": float(at.std(ddof=1)), "acc_mean": float(a.mean()),
            "acc_std": float(a.std(ddof=1)), "n_concepts": int(len(a))}


def compare_table(runs: list[str | Path], shots: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary rows: one per family x variant; per-concept rows) from the given run folders."""
    if not runs:
        raise ConceptLensError("no run folders given.", "pass `llm run` and `llm finetune` folders.")
    refs = [ref for run in runs for ref in identify(run)]
    seen, unique = set(), []
    def preference(ref: StudyRef) -> tuple:  # pretrained: an `llm run` folder before a finetune run's before/
        return ref.family, ORDER[ref.variant], ref.variant != "pretrained" or ref.source != ref.folder

    for ref in sorted(refs, key=preference):
        key = (ref.family, ref.label)
        if key not in seen:  # several finetune runs share one pretrained model: keep the first source
            seen.add(key)
            unique.append(ref)
    rows, concept_rows = [], []
    for family in dict.fromkeys(r.family for r in unique):
        group = [r for r in unique if r.family == family]
        pretrained = next((r for r in group if r.variant == "pretrained"), None)
        if pretrained is None:
            raise ConceptLensError(f"no pretrained results for family '{family}'.",
                                   "add an `llm run` folder or an `llm finetune` folder (it holds before/).")
        layer = best_layer(read_study(pretrained.folder, shots)[0])
        for ref in group:
            td, acc = read_study(ref.folder, shots)
            own = best_layer(td)
            paper_variant, paper_row = PAPER_ROW.get(ref.variant, (None, None))
            paper = PAPER.get((family, paper_variant), (None,) * 4)
            training = _json(ref.source / "config.json") if ref.folder.name == "after" else {}
            rows.append({"family": family, "variant": ref.variant, "label": ref.label, "model": ref.model,
                         "shots": shots, "layer": layer, **concept_stats(td, acc, layer), "own_best_layer": own,
                         "td_own_best_mean": concept_stats(td, acc, own)["td_mean"],
                         "paper_td_mean": paper[0], "paper_td_std": paper[1], "paper_acc_mean": paper[2],
                         "paper_acc_std": paper[3], "paper_row": paper_row if paper[0] is not None else None,
                         "prompts_per_concept": int(acc["n"].max()) if "n" in acc else None,
                         **{key: training.get(key) for key in TRAINING_KEYS}, "source": str(ref.folder)})
            merged = td[td["layer"] == layer][["concept", "td"]].merge(acc[["concept", "accuracy"]], on="concept")
            concept_rows.append(merged.assign(family=family, variant=ref.variant, label=ref.label, model=ref.model,
                                              shots=shots, layer=layer))
    per_concept = pd.concat(concept_rows)[["model", "family", "variant", "label", "shots", "layer", "concept", "td",
                                            "accuracy"]]
    return pd.DataFrame(rows), per_concept


def _cell(mean, std, digits: int) -> str:
    if mean is None or pd.isna(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if not pd.isna(std) else f"{mean:.{digits}f}"


def _plain(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def markdown_table(table: pd.DataFrame) -> str:
    """One Markdown table per family, ours beside the paper's (Llama-3.1 8B)."""
    lines = []
    for family, group in table.groupby("family", sort=False):
        first = group.iloc[0]
        lines += [f"### {family} ({first['model']}, {first['shots']}-shot, TD at layer {first['layer']})", "",
                  "| | TD (ours) | TD (paper) | accuracy % (ours) | accuracy % (paper) | own peak TD (layer) "
                  "| paper row |",
                  "|---|---|---|---|---|---|---|"]
        for _, row in group.iterrows():
            lines.append(f"| {row['label']} | {_cell(row['td_mean'], row['td_std'], 2)} | "
                         f"{_cell(row['paper_td_mean'], row['paper_td_std'], 2)} | "
                         f"{_cell(row['acc_mean'], row['acc_std'], 1)} | "
                         f"{_cell(row['paper_acc_mean'], row['paper_acc_std'], 1)} | "
                         f"{row['td_own_best_mean']:.2f} ({row['own_best_layer']}) | "
                         f"{row['paper_row'] if isinstance(row['paper_row'], str) else '–'} |")
        lines.append("")
        for _, row in group.iterrows():
            trained = ", ".join(f"{key} {_plain(row[key])}" for key in TRAINING_KEYS) + "; " if pd.notna(
                row["train_samples"]) else ""
            lines.append(f"- {row['label']}: {trained}{_plain(row['prompts_per_concept'])} test prompts per concept")
        lines.append("")
    lines.append("Mean ± std across concepts (Null excluded, ddof 1). Paper: Llama-3.1 8B, LoRA r16 α16 on 10K "
                 "samples; its rows are matched by variant (first / last / stated; before-peak beside first 10, "
                 "after-peak beside last 10: on Llama-3.1-8B, peak 15 of 32, these are blocks 5-14 and 15-24), "
                 "not by layer count.")
    return "\n".join(lines) + "\n"


def plot_comparison(table: pd.DataFrame, path: Path) -> None:
    """TD and accuracy bars (± std across concepts) per variant and family, the paper's values as diamonds."""
    from conceptlens.figures import plt, save_png
    import numpy as np

    families = list(dict.fromkeys(table["family"]))
    fig, axes = plt.subplots(len(families), 2, figsize=(10, 3.2 * len(families)), squeeze=False)
    for row, family in enumerate(families):
        group = table[table["family"] == family]
        x = np.arange(len(group))
        for col, (metric, name) in enumerate([("td", "TD"), ("acc", "accuracy %")]):
            ax = axes[row, col]
            ax.bar(x, group[f"{metric}_mean"], yerr=group[f"{metric}_std"].fillna(0), color="tab:blue", alpha=0.8,
                   capsize=3, label="ours")
            paper = group[f"paper_{metric}_mean"].astype(float)
            ax.errorbar(x + 0.25, paper, yerr=group[f"paper_{metric}_std"].astype(float), fmt="D", color="black",
                        capsize=3, label="paper (Llama-3.1 8B)")
            ax.set_xticks(x, [label.split(":")[0].replace(" layers", "") for label in group["label"]], rotation=20, fontsize=8)
            ax.set_ylabel(name)
            ax.set_ylim(0, 1.05 if metric == "td" else 105)
            ax.set_title(f"{family}: {name}" + (f" at layer {group['layer'].iloc[0]}" if metric == "td" else ""))
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path, tight=False)


def compare_runs(runs: list[str | Path], out: str | Path, shots: int = 4) -> pd.DataFrame:
    """Write `comparison.md`, `comparison.csv` (+ per-concept `comparison_concepts.csv`) and `comparison.png`."""
    out = check_output_folder(out)
    table, per_concept = compare_table(runs, shots)
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / "comparison.csv", table)
    write_table(out / "comparison_concepts.csv", per_concept)
    write_text(out / "comparison.md", markdown_table(table))
    plot_comparison(table, out / "comparison.png")
    return table
