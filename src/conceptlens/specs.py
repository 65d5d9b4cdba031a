"""Typed experiment specs: what a model, an encoding study, an intervention or a finetuning run is.

The CLI, the sweep cells, `reproduce` and notebooks build these and pass them on, so a setting has
one name, one default and one rule everywhere (e.g. TD needs k + 1 prompts per concept; with fewer
than 2(k + 1) only the held-out layer choice is skipped, with a note). DECISION: run options that
cannot change a result (batch size, progress, resume) and paths of other runs stay outside the
specs, so a run folder's identity is its spec.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from conceptlens.errors import ConceptLensError

Spec = TypeVar("Spec", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def build(spec_class: type[Spec], **values) -> Spec:
    """`spec_class(**values)`, with pydantic's complaints turned into one `ConceptLensError`."""
    try:
        return spec_class(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or spec_class.__name__
        raise ConceptLensError(f"{spec_class.__name__}: `{name}` {first['msg'][0].lower()}{first['msg'][1:]} "
                               f"(got {first.get('input')!r}).", f"give a valid `{name}`.") from exc


def one_of(name: str, value, choices: tuple, label: str | None = None):
    """`value` if it is one of `choices`, else a `ConceptLensError` naming the parameter."""
    if value not in choices:
        raise ConceptLensError(f"unknown {label or f'`{name}`'} '{value}'.",
                               f"use one of {', '.join(str(c) for c in choices if c is not None)}"
                               + (" (or leave it out)." if None in choices else "."))
    return value


def heldout_rule(prompts_per_concept: int, k: int) -> None:
    """Refuse only what TD cannot compute: the leave-one-out vote needs k + 1 prompts of every concept.

    With fewer than 2(k + 1) the study still runs; only the held-out layer choice (k + 1 per concept in
    each half) is skipped, and summary.json says why (`heldout_layer_choice`).
    """
    if prompts_per_concept < k + 1:
        raise ConceptLensError(f"{prompts_per_concept} prompts per concept are too few for k = {k}: TD's leave-one-out "
                               f"vote needs k + 1 = {k + 1} prompts of every concept.",
                               f"use prompts_per_concept={max(2 * (k + 1), 100)} (or at least {k + 1}), or a smaller k.")


def visible_separator(separator: str) -> str:
    """A prompt separator must show: the query ends on its last token."""
    if not separator.strip():
        raise ConceptLensError("`separator` must contain a visible character.", "use e.g. separator=' ->'.")
    return separator


class _PromptFormatFields(_Strict):
    """The prompt format of an experiment (`prompts.PromptFormat`): the edit or read hits the separator's last
    token; `fit_format` moves a whitespace-only first answer token into the separator (prompts.py)."""

    separator: str = " ->"
    answer_prefix: str = " "
    fit_format: bool = True

    @field_validator("separator")
    @classmethod
    def _visible_separator(cls, separator: str) -> str:
        return visible_separator(separator)


class ModelSpec(_Strict):
    """Which model, and how it is loaded (`models.from_spec.load_model`)."""

    name: str = "smollm2-135m"  # embedded name, local HF folder, or hub id
    revision: str | None = None
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    device: str | None = None  # cpu, cuda, cuda:1, mps ... (None: where the weights load)
    device_map: str | None = None  # "auto": spread over devices (accelerate)
    load_in: Literal["8bit", "4bit"] | None = None
    trust_remote_code: bool = False

    @field_validator("dtype", mode="before")
    @classmethod
    def _known_dtype(cls, dtype):
        return one_of("dtype", dtype, ("float32", "float16", "bfloat16", "auto"), label="dtype")

    @field_validator("load_in", mode="before")
    @classmethod
    def _known_quantisation(cls, load_in):
        return one_of("load_in", load_in, ("8bit", "4bit", None))


class EncodingStudySpec(_PromptFormatFields):
    """TD x layers x shots, ICL accuracy (paper 4.1-4.2)."""

    family: str  # pos | bitwise | a folder of concept files
    shots: list[int] = Field(default_factory=lambda: [1, 4, 10])
    prompts_per_concept: int = Field(100, ge=1)
    seed: int = 0
    split: Literal["test", "train", "all"] = "test"
    null: bool = True
    state_concept: bool = False
    k: int = Field(10, ge=1)  # neighbours of the kNN vote

    @field_validator("shots")
    @classmethod
    def _distinct_shots(cls, shots: list[int]) -> list[int]:
        if not shots:
            raise ConceptLensError("no shots given.", "pass e.g. shots=1,4,10.")
        if len(set(shots)) != len(shots) or min(shots) < 0:
            raise ConceptLensError(f"shots {shots} must be distinct non-negative integers.", "pass e.g. shots=1,4,10.")
        return shots

    @field_validator("split", mode="before")
    @classmethod
    def _known_split(cls, split):
        return one_of("split", split, ("train", "test", "all"), label="split")

    @model_validator(mode="after")
    def _enough_prompts(self) -> "EncodingStudySpec":
        heldout_rule(self.prompts_per_concept, self.k)
        return self


class InterventionSpec(_PromptFormatFields):
    """Add (or write) a concept mean at the query-token activation (paper 4.3, Appendix C)."""

    family: str
    # HF hidden-state layers; "sweep": the TD rise over the surface control; "best": the TD peak
    layers: list[int] | Literal["sweep", "best"] = "sweep"
    shots: int = 4  # counts are checked by the intervention run itself, before any model call
    prompts_per_concept: int = 25
    replicates: int = 5
    mode: Literal["add", "add_centered", "replace"] = "add"  # add: the paper's h_task, the raw mean
    means_per_concept: int | None = Field(None, ge=1)  # held-out prompts per concept (means, TD sweep); None: as evaluated
    cross_at: Literal["peak", "all"] = "peak"  # the cross-concept matrix at the TD peak only, or at every layer
    max_sweep_layers: int = Field(6, ge=1)  # "sweep": at most this many layers, evenly spaced over the TD rise
    seed: int = 0

    @field_validator("mode", mode="before")
    @classmethod
    def _known_mode(cls, mode):
        return one_of("mode", mode, ("add", "add_centered", "replace"), label="intervention mode")


class FinetuneSpec(_PromptFormatFields):
    """Layer-selective finetuning (LoRA or full), TD and accuracy before vs after (paper 4.4)."""

    family: str
    layers: str = "first:10"  # before-peak, after-peak, first:N, last:N, first:33%, A-B (0-based) or one block
    method: Literal["lora", "full"] = "lora"
    rank: int = Field(16, ge=1)
    alpha: float = 16.0
    dropout: float = 0.1  # [0, 1): checked with the training config
    train_samples: int = Field(600, ge=1)
    epochs: int = Field(1, ge=1)
    lr: float = 2e-4  # peak learning rate (linear warm-up and decay)
    shots: int = Field(4, ge=0)
    prompts_per_concept: int = Field(100, ge=1)
    seed: int = 0
    checkpoint_every: int = Field(25, ge=1)
    evaluations: int = Field(4, ge=0)
    k: int = Field(10, ge=1)

    @field_validator("method", mode="before")
    @classmethod
    def _known_method(cls, method):
        return one_of("method", method, ("lora", "full"))

    @model_validator(mode="after")
    def _enough_prompts(self) -> "FinetuneSpec":
        heldout_rule(self.prompts_per_concept, self.k)
        return self


class TransferSpec(_PromptFormatFields):
    """Task-vector transfer (Hendel et al. 2023) beside TD on every layer (`llm.transfer`)."""

    family: str  # pos | bitwise | a folder of concept files; task vectors from its train split, inputs from test
    shots: int = Field(4, ge=1)
    layers: list[int] | Literal["all"] = "all"  # HF hidden-state layers (checked against the model)
    prompts_per_concept: int = Field(50, ge=2)  # test inputs per concept (each with fresh demonstrations)
    seed: int = 0
    k: int = Field(10, ge=1)  # neighbours of TD's kNN vote (capped at prompts_per_concept - 1)


class LadderSpec(_Strict):
    """A model ladder (`llm.ladder`): the encoding study on each model, the same settings on every rung."""

    models: list[str]  # names --model takes, smallest first
    families: list[str] = Field(default_factory=lambda: ["pos", "bitwise"])
    shots: list[int] = Field(default_factory=lambda: [4])
    # the CPU defaults: 4 models x 2 families in under an hour on 2 loaded cores; bfloat16 costs 1.8-3.6x less
    # CPU per prompt there (AMX) and moves TD at the peak by at most 0.02 (docs/results/ladder.md, "float32
    # vs bfloat16 per rung"); a GPU run: shots [1, 4, 10], 100 prompts per concept
    prompts_per_concept: int = Field(50, ge=1)
    seed: int = 0
    k: int = Field(10, ge=1)
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "bfloat16"
    interventions: bool = False  # the paper's intervention test at each rung's TD peak (slower)
    intervention_prompts: int = Field(20, ge=1)

    @field_validator("models", "families")
    @classmethod
    def _some(cls, names: list[str]) -> list[str]:
        if not names or any(not name.strip() for name in names) or len(set(names)) != len(names):
            raise ConceptLensError(f"{names} must be distinct, non-empty names.",
                                   "pass e.g. models=['smollm2-135m', 'qwen2.5-coder-0.5b'].")
        return names
