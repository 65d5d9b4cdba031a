"""A language model for notebooks: `LoadedModel` plus `capture`, the hidden states of prompts at one token.

`lm.capture(prompts, layers="all", position="last")` gives `[layers, prompts, d_model]` in HF's
`output_hidden_states` convention (layer 0 = embeddings, the last layer after the final norm), read
from left-padded batches with position ids from the attention mask, so padding never changes a
value. DECISION: a token is chosen by role (`prompts.Prompt` objects) or by its index in the
unpadded prompt; a role name is refused for plain strings, which carry no roles.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral
from typing import Sequence

from conceptlens.errors import ConceptLensError
from conceptlens.models.loader import LoadedModel
from conceptlens.prompts import ROLES, Prompt, role_position, token_roles
from conceptlens.specs import ModelSpec


@dataclass
class LanguageModel(LoadedModel):
    """A causal LM, its tokenizer (left padding) and layout; usable wherever the library takes a `LoadedModel`.

        lm = cl.load_model("smollm2-135m")
        acts = lm.capture(["2 + 2 =", "The capital of France is"])   # [31, 2, 576]
    """

    spec: ModelSpec | None = None  # how it was loaded (recorded in run folders)

    @property
    def model_spec(self) -> ModelSpec:
        return self.spec if self.spec is not None else ModelSpec(name=self.name)

    def encode(self, prompts: Sequence[str | Prompt],
               position: int | str = "last") -> tuple[list[list[int]], list[int]]:
        """Token ids of each prompt (with the tokenizer's special tokens) and the unpadded index read."""
        if isinstance(prompts, (str, Prompt)):
            prompts = [prompts]
        encoded, positions = [], []
        for number, prompt in enumerate(prompts):
            if isinstance(prompt, Prompt):
                ids, roles = token_roles(self.tokenizer, prompt)
            elif isinstance(prompt, str):
                ids, roles = list(self.tokenizer(prompt)["input_ids"]), None
            else:
                raise ConceptLensError(f"prompts[{number}] is a {type(prompt).__name__}, not a string or a Prompt.",
                                       "pass strings, or Prompt objects from conceptlens.prompts.")
            if not ids:
                raise ConceptLensError(f"prompts[{number}] has no tokens.", "give every prompt some text.")
            encoded.append(ids)
            positions.append(_position(position, roles, number))
        limit = getattr(self.model.config, "max_position_embeddings", None)
        too_long = [i for i, row in enumerate(encoded) if limit and len(row) > limit]
        if too_long:
            raise ConceptLensError(f"prompts[{too_long[0]}] has {len(encoded[too_long[0]])} tokens, beyond the model's "
                                   f"context of {limit}.", "shorten the prompt or use fewer shots.")
        return encoded, positions

    def capture(self, prompts: Sequence[str | Prompt], layers: str | int | Sequence[int] = "all",
                position: int | str = "last", component: str = "resid_post", batch_size: int = 32,
                progress=None):
        """Activations `[layers, prompts, d_model]` (float32, on the CPU) at one token of each prompt.

        `layers`: "all", one index or a list (HF hidden-state indices for `resid_post`, block indices
        for `resid_pre`, `attn_out`, `mlp_out`; `head_out` gives `[layers, prompts, heads, d_head]`).
        `position`: "last", an index in the unpadded prompt (negative counts from the end), or, for
        `Prompt` objects, a token role such as "query_separator" (its last token).
        """
        from conceptlens.activations.capture import capture_activations

        encoded, positions = self.encode(prompts, position)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        _, acts = capture_activations(self.model, self.layout, encoded, positions=positions, layers=_layers(layers),
                                      component=component, batch_size=batch_size, pad_id=pad_id,
                                      model_name=self.name, progress=progress)
        return acts

    def layers(self, layers: str | int | Sequence[int] = "all", component: str = "resid_post") -> list[int]:
        """The layer indices `capture(..., layers=layers)` returns, in order (for `task_decodability(layers=...)`)."""
        from conceptlens.activations.capture import component_points

        return component_points(self.layout, component, _layers(layers))[0]


def _layers(layers) -> list[int] | None:
    if isinstance(layers, str):
        if layers.strip().lower() == "all":
            return None
        raise ConceptLensError(f"layers '{layers}' is not 'all', an index or a list of indices.",
                               "pass layers='all', layers=5 or layers=[0, 5, 10].")
    if isinstance(layers, Integral) and not isinstance(layers, bool):
        return [int(layers)]
    try:
        values = [int(layer) for layer in layers]
    except (TypeError, ValueError) as exc:
        raise ConceptLensError(f"layers {layers!r} is not 'all', an index or a list of indices.",
                               "pass layers='all', layers=5 or layers=[0, 5, 10].") from exc
    if not values:
        raise ConceptLensError("layers is an empty list.", "pass layers='all' or at least one index.")
    return values


def _position(position, roles: list[str] | None, number: int) -> int:
    """The unpadded token index `position` names in one prompt."""
    if isinstance(position, Integral) and not isinstance(position, bool):
        return int(position)
    if position == "last":
        return -1
    if position in ROLES:
        if roles is None:
            raise ConceptLensError(f"position '{position}' is a token role, but prompts[{number}] is a plain string.",
                                   "pass Prompt objects (conceptlens.prompts.PromptFormat().build(...)) to read by "
                                   "role, or use position='last' or an index.")
        return role_position(roles, position)
    raise ConceptLensError(f"unknown position {position!r}.",
                           f"use 'last', a token index, or a role: {', '.join(ROLES)}.")


def load_model(name: str | ModelSpec = "smollm2-135m", *, revision: str | None = None, dtype: str = "float32",
               device: str | None = None, device_map: str | None = None, load_in: str | None = None,
               trust_remote_code: bool = False) -> LanguageModel:
    """Any model `--model` takes (embedded name, local HF folder, hub id), or a `ModelSpec`.

        lm = cl.load_model("smollm2-135m")
        lm = cl.load_model("/models/my-llama", dtype="bfloat16", device="cuda")
    """
    from conceptlens.models.from_spec import load_model as load_from_spec
    from conceptlens.specs import build

    spec = name if isinstance(name, ModelSpec) else build(
        ModelSpec, name=str(name), revision=revision, dtype=dtype, device=device, device_map=device_map,
        load_in=load_in, trust_remote_code=trust_remote_code)
    loaded = load_from_spec(spec)
    return LanguageModel(name=loaded.name, model=loaded.model, tokenizer=loaded.tokenizer, layout=loaded.layout,
                         spec=spec)


def as_language_model(lm) -> LanguageModel:
    """`lm` itself, or a `LoadedModel` (from the library) wrapped without copying its weights."""
    if isinstance(lm, LanguageModel):
        return lm
    if isinstance(lm, LoadedModel):
        return LanguageModel(name=lm.name, model=lm.model, tokenizer=lm.tokenizer, layout=lm.layout)
    raise ConceptLensError(f"lm is a {type(lm).__name__}, not a loaded model.", "pass lm = cl.load_model(...).")
