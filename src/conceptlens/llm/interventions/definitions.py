"""Causal interventions at one token: replace or add a vector in the residual stream.

The paper's test of concept encoding (section 4, Appendix C): at the peak layer, at the token right
before the answer, add to the activation of a k-shot prompt the mean activation of the correct
concept (positive) or of Null (negative), and see ICL accuracy rise or fall. `ReplaceWith` and `AddVector`
are small, stateless edit functions for `conceptlens.hooks.Trace` (pyvene-like classes, tiny): a vector
and a rule, nothing else. Where an edit landed is recorded by whoever runs it (the decoder's `Touch`
ledger, `GenerationResult.touched`), so one object can be reused across runs and threads.
DECISION: the concept means come from held-out prompts (other examples than those evaluated), at
the same token role and layer convention (HF hidden states) as the capture.
"""

from __future__ import annotations

from typing import Sequence

import torch

from conceptlens.activations.capture import capture_activations, hidden_state_point
from conceptlens.errors import ConceptLensError
from conceptlens.models.loader import LoadedModel
from conceptlens.prompts import Prompt, PromptFormat, role_position, sample_prompts, token_roles
from conceptlens.tasks.family import TaskFamily


class Intervention:
    """Edit `hidden [batch, seq, *shape]` at one position per row (`positions [batch]`, padded coords).

    `vector` is `shape` (one vector for every row, e.g. `[d_model]`) or `[batch, *shape]` (one per
    row, in the order of the rows of the batch). Subclasses define `combine(current, vector)`.
    """

    kind = "intervention"

    def __init__(self, vector: torch.Tensor):
        self.vector = torch.as_tensor(vector).detach()

    def combine(self, current: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _rows(self, hidden: torch.Tensor) -> torch.Tensor:
        """The vector as `[batch, *shape]`, in the dtype and on the device of `hidden`."""
        shape = tuple(hidden.shape[2:])
        vector = self.vector.to(device=hidden.device, dtype=hidden.dtype)
        if tuple(vector.shape) == shape:
            return vector.expand(hidden.shape[0], *shape)
        if tuple(vector.shape) == (hidden.shape[0],) + shape:
            return vector
        raise ConceptLensError(f"an intervention vector of shape {tuple(vector.shape)} does not fit activations of "
                               f"shape {tuple(hidden.shape)} ([batch, seq, ...]).",
                               f"give a vector of shape {shape} or {(hidden.shape[0],) + shape}.")

    def __call__(self, hidden: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        if positions is None:
            raise ConceptLensError(f"{self.kind} needs one token position per row.",
                                   "run it inside a Trace given positions= (e.g. the query separator).")
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        pos = positions.to(hidden.device)
        edited = hidden.clone()
        edited[rows, pos] = self.combine(hidden[rows, pos], self._rows(hidden))
        return edited

    def describe(self) -> dict:
        return {"kind": self.kind, "vector_shape": list(self.vector.shape),
                "vector_norm": float(self.vector.float().norm(dim=-1).mean())}


class ReplaceWith(Intervention):
    """Set the activation at the position to `vector` (activation patching)."""

    kind = "replace"

    def combine(self, current: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        return vector.clone()


class AddVector(Intervention):
    """Add `scale * vector` to the activation at the position (steering)."""

    kind = "add"

    def __init__(self, vector: torch.Tensor, scale: float = 1.0):
        super().__init__(vector)
        self.scale = float(scale)

    def combine(self, current: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        return current + self.scale * vector

    def describe(self) -> dict:
        return {**super().describe(), "scale": self.scale}


def edits_at(lm: LoadedModel, layer: int, intervention: Intervention) -> dict[str, Intervention]:
    """`{point: intervention}` for HF hidden-state layer `layer` (0 = embeddings, n_layers = final norm)."""
    return {hidden_state_point(layer, lm.n_layers): intervention}


def query_positions(lm: LoadedModel, prompts: Sequence[Prompt], role: str = "query_separator") -> tuple[list[list[int]], list[int]]:
    """Token ids of each prompt and the (unpadded) index of its last `role` token."""
    encoded, positions = [], []
    for prompt in prompts:
        ids, roles = token_roles(lm.tokenizer, prompt)
        encoded.append(ids)
        positions.append(role_position(roles, role))
    return encoded, positions


def heldout_prompts(family: TaskFamily, shots: int, n_per_concept: int, seed: int,
                    fmt: PromptFormat = PromptFormat()) -> tuple[list[Prompt], list[str]]:
    """`n_per_concept` k-shot prompts of every concept of `family` (Null included) and their labels."""
    prompts, labels = [], []
    for concept in family.concept_names:
        batch = sample_prompts(family, concept, n_per_concept, shots, seed, fmt)
        prompts += batch
        labels += [concept] * len(batch)
    return prompts, labels


def query_activations(lm: LoadedModel, prompts: Sequence[Prompt], layers: Sequence[int], *,
                      role: str = "query_separator", batch_size: int = 16, progress=None) -> torch.Tensor:
    """Hidden states `[layers, N, d_model]` at the last `role` token of each prompt (HF layer indices)."""
    encoded, positions = query_positions(lm, prompts, role)
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    _, acts = capture_activations(lm.model, lm.layout, encoded, positions=positions, layers=list(layers),
                                  component="resid_post", batch_size=batch_size, pad_id=pad_id,
                                  model_name=lm.name, progress=progress)
    return acts


def means_by_concept(acts: torch.Tensor, labels: Sequence[str]) -> dict[str, torch.Tensor]:
    """`acts [layers, N, d]` and one label per prompt -> `{concept: mean [layers, d]}`."""
    out = {}
    for concept in dict.fromkeys(labels):
        index = torch.tensor([i for i, label in enumerate(labels) if label == concept])
        out[concept] = acts[:, index].mean(dim=1)
    return out


def concept_means(lm: LoadedModel, family: TaskFamily, layers: Sequence[int], shots: int, n_per_concept: int,
                  seed: int, *, fmt: PromptFormat = PromptFormat(), role: str = "query_separator",
                  batch_size: int = 16, progress=None) -> dict[str, torch.Tensor]:
    """Mean hidden state `[layers, d_model]` of each concept at the query token of k-shot prompts.

    Pass a family (or seed) other than the evaluated one: the means must come from held-out prompts.
    """
    for layer in layers:
        hidden_state_point(layer, lm.n_layers)  # validates the layer
    prompts, labels = heldout_prompts(family, shots, n_per_concept, seed, fmt)
    acts = query_activations(lm, prompts, layers, role=role, batch_size=batch_size, progress=progress)
    return means_by_concept(acts, labels)
