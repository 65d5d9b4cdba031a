"""What each file of a run folder measured, in one sentence, for the report's section texts.

A section's text is built from the files present (`decodability.csv` -> "TD by layer ..."), so
the report explains any run folder, from one command or the whole study, without knowing which
command wrote it. Unknown files are still shown, with a neutral caption.
"""

from __future__ import annotations

import re

FILE_TEXT: dict[str, str] = {
    "decodability.csv": "Concept decodability (TD): the leave-one-out {k}-nearest-neighbour accuracy of the concept "
                        "label from the hidden state at the token whose output predicts the answer, per layer (and "
                        "per shots, concept or checkpoint). Chance is 1 / number of concepts.",
    "accuracy.csv": "In-context learning accuracy: greedy decoding, exact match with the answer, per concept and "
                    "number of demonstrations.",
    "interventions.csv": "Causal interventions: at each layer of the TD rise, at the last prompt token, the held-out "
                         "mean activation of the correct concept (positive), of Null (negative) or a random vector "
                         "of the same norm (random) is added to the activation (the paper's Appendix C); the change "
                         "in ICL accuracy per concept, over replicates.",
    "interventions_cross.csv": "Cross-concept interventions: the prompts of a source concept get another (target) "
                               "concept's mean; the fraction answering as the target would, beside the baseline's.",
    "loss_per_basis.csv": "Test error (MSE) of the synthetic model for each latent basis, over training.",
    "patching.csv": "Patching matrix: the representation of a sequence from a source basis is replaced by the mean "
                    "representation of a target basis; the change in loss for every source x target pair.",
    "head_importance.csv": "Attention-head pruning: the loss change per basis when one head at a time is removed.",
    "baselines.csv": "Reference errors against the number of in-context examples: OLS over all dimensions, oracle "
                     "OLS on the true basis, Lasso, ridge, beside the model.",
    "pairwise_td.csv": "Pairwise TD of the synthetic bases at the analysis layer: 0.5 means two bases share a "
                       "cluster, 1 that the layer tells them apart.",
    "umap.csv": "2-D UMAP coordinates (n_neighbors 15, min_dist 0.1) of one layer's representations.",
    "pairwise.csv": "Pairwise TD: decodability on each pair of concepts alone, showing which concepts overlap.",
    "comparison.md": "The paper's finetuning table, for this run: mean +/- std across concepts of TD and accuracy "
                     "for the pretrained model, layer-selective finetuning and the prompting variant.",
    "comparison.csv": "The finetuning / prompting comparison as a tidy table.",
    "summary.json": "Key numbers of the run (best layer, held-out layer choice, R² of accuracy against TD, ...).",
    "moments.json": "The training moments the paper names: (a) all bases in one cluster, (b) the first basis "
                    "separated, (c) all bases separated, with the analysis layer and final TD.",
    "metrics.jsonl": "Training metrics, one record per evaluation.",
    "config.yaml": "The configuration the run used.",
    "settings.json": "The settings of the run.",
    "stages.json": "The stages of the study, their status and wall time.",
    "sweep_status.json": "The cells of a sweep, their grid values and status.",
    "before_decodability.csv": "TD by layer before finetuning (the pretrained model).",
    "before_accuracy.csv": "ICL accuracy before finetuning (the pretrained model).",
    "cell.json": "The grid values of this sweep cell.",
    "adapter_model.safetensors": "A saved LoRA adapter (peft format).",
    "transfer.csv": "Task-vector transfer (Hendel et al. 2023): the query-token state of k-shot prompts written over "
                    "the last token of zero-shot prompts at each layer; exact-match accuracy per layer, concept and "
                    "variant, beside the zero-shot and k-shot (ICL) baselines on the same test inputs.",
    "td.csv": "TD of the very task vectors that were patched, per layer and concept.",
    "ladder.csv": "The model ladder: the encoding study run on each model (one rung per model and family), "
                  "beside the paper's models across scale.",
    "rung.json": "One rung of a model ladder: parameters, blocks, dtype, load and study time, peak memory.",
}

FIGURE_WORDS: list[tuple[str, str]] = [
    (r"^ladder", "Concept encoding across scale: our ladder (filled) beside the paper's models (open)"),
    (r"^transfer", "TD and task-vector transfer per layer"),
    (r"td.*layer|decodability.*layer|layer.*td", "TD against layer"),
    (r"td.*concept|per_concept|per_class", "TD per concept"),
    (r"td.*(heatmap|checkpoint|step|training)", "TD over training (layer x checkpoint)"),
    (r"accuracy.*td|td.*accuracy|scatter|fit", "ICL accuracy against TD across concepts, with the linear fit"),
    (r"pairwise", "Pairwise TD between concepts"),
    (r"umap", "UMAP of the representations"),
    (r"intervention.*cross", "Cross-concept interventions: % of prompts answering as the target concept (baseline)"),
    (r"intervention", "Change in ICL accuracy under interventions"),
    (r"loss.*basis|per_basis|loss", "Test error per basis over training"),
    (r"patch", "Patching matrix (source x target loss change)"),
    (r"head", "Attention-head importance per basis"),
    (r"baseline", "Errors against the number of in-context examples, with the baselines"),
    (r"before.*after|finetun", "TD by layer before and after finetuning"),
    (r"compar", "Pretrained vs finetuned vs concept stated"),
    (r"revision|checkpoint|pretraining", "TD and accuracy across training checkpoints"),
    (r"accuracy", "ICL accuracy"),
    (r"decodab|td", "Concept decodability"),
]

PART_TITLES = {
    "synthetic": "Synthetic ICL: emergence during training",
    "analysis": "analysis",
    "llm": "Pretrained LM",
    "pos": "part of speech",
    "bitwise": "bitwise",
    "pos_stated": "part of speech, concept stated",
    "bitwise_stated": "bitwise, concept stated",
    "interventions": "Interventions",
    "finetune": "Finetuning",
    "comparison": "Finetuning and prompting vs the paper",
    "merged": "Merged tables of all cells",
    "transfer": "Decodable vs usable",
    "ladder": "Model ladder",
    "before": "before finetuning (pretrained)",
    "after": "after finetuning",
}


def explain(files: list[str], k: int | None = None) -> list[str]:
    """One sentence per known file, in the order of `FILE_TEXT`; `k`: the run's kNN k (None: unknown)."""
    present = set(files)
    return [text.replace("{k}", str(k) if k is not None else "k") for name, text in FILE_TEXT.items()
            if name in present]


def caption(filename: str) -> str:
    """A figure caption from its file name: a known kind, else the name in words."""
    stem = filename.rsplit(".", 1)[0].lower()
    words = stem.replace("_", " ").replace("-", " ")
    for pattern, text in FIGURE_WORDS:
        if re.search(pattern, stem):
            return text
    return words[:1].upper() + words[1:]


def section_title(relative: str, files: list[str] = (), family: str = "") -> str:
    """`llm/pos` -> "Pretrained LM: part of speech"; unknown parts are kept as they are.

    The run folder itself is named by what it holds (a single command's run), else "Run overview".
    """
    if relative in ("", "."):
        present = set(files)
        if "stages.json" in present or "sweep_status.json" in present:
            return "Run overview"
        if {"moments.json", "loss_per_basis.csv", "metrics.jsonl"} & present:
            return PART_TITLES["synthetic"]
        if "interventions.csv" in present:
            return "Interventions" + (f": {PART_TITLES.get(family, family)}" if family else "")
        if "td_before_after.png" in present or "train_log.jsonl" in present:
            return "Finetuning" + (f": {PART_TITLES.get(family, family)}" if family else "")
        if "decodability.csv" in present and family:
            return f"Pretrained LM: {PART_TITLES.get(family, family)}"
        return "Run overview"
    parts = []
    for part in relative.split("/"):
        if part.startswith("revision="):
            parts.append(f"revision {part.split('=', 1)[1]}")
        else:
            parts.append(PART_TITLES.get(part, part))
    return ": ".join([parts[0], ", ".join(parts[1:])]) if len(parts) > 1 else parts[0]
