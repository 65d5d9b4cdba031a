"""The numbers the paper publishes (Han et al. 2024, arXiv 2412.12276), as data, for the report.

Every value is copied from `shared/PAPER.md`, which quotes the paper; the report shows them beside
ours. Layers are the paper's (Llama-3.1 8B has 32 blocks), so the report compares the peak layer
as a fraction of depth. DECISION: the paper does not say whether "layer 15" counts the embeddings
as layer 0; we read it as 15 of 32 blocks (fraction 0.47), the same as HF's hidden-state index.
"""

from __future__ import annotations

PAPER = "Han, Song, Gore, Agrawal (2024), arXiv 2412.12276"
MAIN_MODEL = "Llama-3.1 8B"

# TD peak layer of Llama-3.1 8B, out of its 32 blocks.
PEAK_LAYER = {"pos": (15, 32), "bitwise": (13, 32)}

# R² of ICL accuracy against TD across the concepts of a family.
R2 = {"pos": 0.78, "bitwise": 0.53}
R2_OTHER_MODELS = {"pos": (0.42, 0.84), "bitwise": (0.32, 0.78)}

# Intervention effects on accuracy (percentage points) at the peak layer, last prompt token:
# (positive = replace by the correct concept's mean, negative = replace by Null's mean).
INTERVENTION_EFFECT = {"well separated": (14.0, -15.0), "overlapping": (2.0, -6.0)}
WELL_SEPARATED = {"pos": ["Noun", "Pronoun", "Verb"], "bitwise": ["AND", "OR"]}
OVERLAPPING = {"pos": ["Adjective", "Preposition"], "bitwise": ["XOR", "XNOR"]}

DEFAULT_SHOTS = 4
SHOTS_ANALYSED = (1, 4, 10)

# Layer-selective finetuning of Llama-3.1 8B, 4-shot, mean ± std across concepts.
# condition -> family -> (TD mean, TD std, accuracy % mean, accuracy % std)
FINETUNING = {
    "pretrained": {"pos": (0.68, 0.11, 25.5, 6.7), "bitwise": (0.43, 0.13, 26.2, 15.5)},
    "LoRA first 10 layers": {"pos": (0.95, 0.02, 69.4, 14.2), "bitwise": (0.85, 0.11, 90.2, 15.0)},
    "LoRA last 10 layers": {"pos": (0.68, 0.11, 33.9, 12.3), "bitwise": (0.43, 0.13, 66.3, 9.0)},
    "concept stated in prompt": {"pos": (0.97, 0.02, 34.4, 10.3), "bitwise": (0.90, 0.10, 57.2, 30.1)},
}

LORA = {"rank": 16, "alpha": 16, "dropout": 0.1, "train_samples": 10_000, "layers": "first 10 vs last 10"}

# Synthetic study (section 3): the paper's GPT-2 and what it reports.
SYNTHETIC = {
    "model": "GPT-2, 12 layers, 8 heads, d_model 256",
    "task": "sparse linear regression, D = 16, 4 bases of r = 4, K = 20",
    "separation_from_layer": 5,
    "n_layers": 12,
    "staging": "B1 separates first (about epoch 10), the others later (about epoch 40)",
}

FAMILY_NAMES = {"pos": "part of speech", "bitwise": "bitwise arithmetic"}


def peak_fraction(family: str) -> float | None:
    """The paper's TD peak layer as a fraction of depth (None for a family it did not study)."""
    if family not in PEAK_LAYER:
        return None
    layer, depth = PEAK_LAYER[family]
    return layer / depth

# The paper's models across scale (v3 text, PAPER.md): parameters (approximate published sizes) and
# R² of accuracy vs TD across concepts per family. The recurrent model is left out (its size and kind
# are named inconsistently in the text).
MODELS_BY_SCALE = {
    "Gemma-2 2B": (2.6e9, {"pos": 0.422, "bitwise": 0.776}),
    "Llama-3.1 8B": (8.0e9, {"pos": 0.781, "bitwise": 0.528}),
    "Gemma-2 9B": (9.2e9, {"pos": 0.531, "bitwise": 0.452}),
    "Gemma-2 27B": (27.2e9, {"pos": 0.822, "bitwise": 0.590}),
    "Llama-3.1 70B": (70.6e9, {"pos": 0.844, "bitwise": 0.324}),
}
