"""The controls that stand beside every TD of the encoding study: what no model computed can decode.

Two surface controls per shots setting (issue 14): the mean input embedding of the demonstrations'
answer tokens (`answers`), and of the query's input tokens (`query`), decoded with the same kNN, k
and seeded tie rule as TD; then, per concept and for the mean, whether TD at the study layer
exceeds each control beyond the paired bootstrap interval (`decodability.exceeds_control`).
DECISION: the answer tokens are the tokens whose role is `demo_answer` (the answer prefix included,
as the model reads it); a 0-shot prompt has none, so its answer control is skipped with a note.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from conceptlens.decodability import DecodabilityResult, exceeds_control, surface_decodability
from conceptlens.prompts import Prompt, token_roles

CONTROLS = {"answers": "demo_answer", "query": "query_input"}
NOT_DISTINGUISHABLE = "encoding not distinguishable from the {what}' surface"


def role_token_ids(tokenizer, prompts: Sequence[Prompt], role: str) -> list[list[int]]:
    """Per prompt, the ids of its tokens that play `role` (e.g. every demonstration answer's tokens)."""
    out = []
    for prompt in prompts:
        ids, roles = token_roles(tokenizer, prompt)
        out.append([token for token, r in zip(ids, roles) if r == role])
    return out


def surface_controls(lm, prompts: Sequence[Prompt], labels: Sequence[str], td: DecodabilityResult, layer: int,
                     k: int, seed: int) -> tuple[pd.DataFrame, dict]:
    """The controls of one shots setting beside TD at `layer`: tidy rows and a JSON-ready summary.

    Rows: control, concept (and "mean"), td, control_td, the paired difference interval and `exceeds`.
    The summary maps each control to its mean TD, whether TD exceeds it, and a verdict in words; a
    control that cannot be computed (no answer tokens at 0 shots) is skipped with a note.
    """
    embedding = lm.model.get_input_embeddings().weight
    frames, summary = [], {}
    for name, role in CONTROLS.items():
        ids = role_token_ids(lm.tokenizer, prompts, role)
        if any(not row for row in ids):
            summary[name] = {"skipped": True, "note": f"some prompts have no '{role}' token (0 shots?): "
                                                       "this control cannot be computed."}
            continue
        control = surface_decodability(embedding, ids, labels, k=k, seed=seed)
        verdict = exceeds_control(td, control, layer=layer, seed=seed)
        frames.append(verdict.assign(control=name))
        mean = verdict[verdict.concept == "mean"].iloc[0]
        what = "answers" if name == "answers" else "query inputs"
        summary[name] = {"skipped": False, "td": float(mean.control_td),
                         "ci95": [float(mean.control_ci_low), float(mean.control_ci_high)],
                         "exceeds": bool(mean.exceeds),
                         "concepts_exceeding": [str(c) for c in verdict[(verdict.concept != "mean") & verdict.exceeds].concept],
                         "verdict": ("TD exceeds this control" if mean.exceeds
                                     else NOT_DISTINGUISHABLE.format(what=what))}
    columns = ["control", "layer", "concept", "td", "control_td", "control_ci_low", "control_ci_high", "difference",
               "difference_ci_low", "difference_ci_high", "exceeds"]
    frame = pd.concat(frames)[columns] if frames else pd.DataFrame(columns=columns)
    return frame, summary


def study_controls(lm, stages, results: dict, layer: int, k: int, seed: int) -> tuple[pd.DataFrame, dict]:
    """The surface controls of every shots setting of a study at its study `layer`.

    `stages` are the study's stages (prompts and labels per shots) and `results` their TD results keyed
    by shots. Returns the tidy table (a `shots` column added) and `{str(shots): summary}` for summary.json.
    """
    frames, summary = [], {}
    for stage in stages:
        frame, summary[str(stage.shots)] = surface_controls(lm, stage.prompts, stage.labels, results[stage.shots],
                                                            layer, k, seed)
        frames.append(frame.assign(shots=stage.shots))
    table = pd.concat(frames, ignore_index=True)
    return table[["shots", *[c for c in table.columns if c != "shots"]]], summary


def control_columns(decodability: pd.DataFrame, controls: pd.DataFrame) -> pd.DataFrame:
    """`decodability` with one column per control (`surface_answers_td`, `surface_query_td`): that shots
    setting's control TD for the row's concept (the same at every layer: the control has no layer)."""
    out = decodability.copy()
    for name in CONTROLS:
        part = controls[(controls.control == name) & (controls.concept != "mean")]
        values = part.set_index(["shots", "concept"])["control_td"]
        keys = list(zip(out.shots, out.concept))
        out[f"surface_{name}_td"] = [values.get(key, float("nan")) for key in keys]
    return out
