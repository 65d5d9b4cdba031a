"""The surface control of TD: the same kNN on a vector no model computed, the mean input embedding of
chosen tokens of each prompt (the demonstrations' answer tokens; or the query's input tokens).

When that vector already decodes the concept, a layer's TD shows the prompts' surface, not an
encoding. DECISION: a layer's TD *exceeds* the control when the paired bootstrap interval of
TD - control (prompts resampled within each concept, the same resample for both) lies above 0;
per concept and for the mean. The control uses the same k and the same seeded tie rule.

    control = surface_decodability(model.get_input_embeddings().weight, answer_ids, labels, k=10)
    verdict = exceeds_control(result, control, layer=result.best_layer)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from conceptlens.decodability.knn import DecodabilityResult, task_decodability
from conceptlens.decodability.statistics import bootstrap_per_class, percentile_interval
from conceptlens.errors import ConceptLensError


def mean_input_embedding(embedding, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """`[prompts, d]` float64: per prompt, the mean of the rows of `embedding` `[vocab, d]` at its ids.

    `token_ids[p]` lists prompt p's token ids (with repeats: a token seen twice counts twice), e.g. the
    ids of every demonstration's answer, `tokenizer(" " + answer, add_special_tokens=False).input_ids`.
    `embedding` may be a torch tensor (the model's input embedding weight) or an array; only the rows
    used are read and converted.
    """
    shape = tuple(embedding.shape)
    if len(shape) != 2:
        raise ConceptLensError(f"embedding has shape {shape}; [vocab, d] is needed.",
                               "pass the input embedding matrix, e.g. model.get_input_embeddings().weight.")
    means = np.empty((len(token_ids), shape[1]))
    for p, ids in enumerate(token_ids):
        ids = np.asarray(list(ids), dtype=np.int64)
        if ids.size == 0 or ids.min() < 0 or ids.max() >= shape[0]:
            problem = "no token ids" if ids.size == 0 else f"token ids outside 0..{shape[0] - 1}"
            raise ConceptLensError(f"token_ids[{p}] has {problem}.",
                                   "give every prompt at least one id of the model's vocabulary.")
        if hasattr(embedding, "detach"):
            import torch

            rows = embedding.detach()[torch.from_numpy(ids).to(embedding.device)].double().cpu().numpy()
        else:
            rows = np.asarray(embedding[ids], dtype=np.float64)
        means[p] = rows.mean(axis=0)
    return means


def surface_decodability(embedding, token_ids: Sequence[Sequence[int]], labels: Sequence, k: int = 10,
                         seed: int = 0) -> DecodabilityResult:
    """TD of the mean input embedding per prompt: one 'layer' (index 0), the kNN, k and ties of TD."""
    return task_decodability(mean_input_embedding(embedding, token_ids), labels, k=k, layers=[0], seed=seed)


def exceeds_control(result: DecodabilityResult, control: DecodabilityResult, layer: int, n_boot: int = 1000,
                    seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Per concept and for the mean ("mean" row): TD at `layer`, the control, both intervals, the paired
    interval of their difference, and `exceeds` (that interval above 0). Same prompts, same order."""
    if control.concepts != result.concepts or not np.array_equal(control.codes, result.codes):
        raise ConceptLensError("the control was computed on other prompts (or another order) than the TD.",
                               "compute the control from the same prompts and labels, in the same order.")
    if layer not in result.layers:
        raise ConceptLensError(f"layer {layer} is not among the layers {result.layers}.", "pass one of them.")
    paired = np.stack([result.correct[result.layers.index(layer)], control.correct[0]])
    samples = bootstrap_per_class(paired, result.codes, n_boot, seed)  # [n_boot, 2, concepts]
    samples = np.concatenate([samples, samples.mean(axis=2, keepdims=True)], axis=2)
    point = np.stack([result.per_class_matrix[result.layers.index(layer)], control.per_class_matrix[0]])
    point = np.concatenate([point, point.mean(axis=1, keepdims=True)], axis=1)  # [2, concepts + 1]
    td_ci, control_ci = percentile_interval(samples[:, 0], level), percentile_interval(samples[:, 1], level)
    diff_ci = percentile_interval(samples[:, 0] - samples[:, 1], level)
    names = [*result.concepts, "mean"]
    return pd.DataFrame({"layer": layer, "concept": names, "td": point[0], "td_ci_low": td_ci[:, 0],
                         "td_ci_high": td_ci[:, 1], "control_td": point[1], "control_ci_low": control_ci[:, 0],
                         "control_ci_high": control_ci[:, 1], "difference": point[0] - point[1],
                         "difference_ci_low": diff_ci[:, 0], "difference_ci_high": diff_ci[:, 1],
                         "exceeds": diff_ci[:, 0] > 0})
