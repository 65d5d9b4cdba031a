"""ICL accuracy by greedy decoding, with the hidden states read from the same forward pass.

Prompts are sorted by length, left-padded and decoded greedily with the KV cache
(`model.generate`, position ids from the attention mask); a row stops at the first token that
contains the format's newline. A completion is the decoded text up to the end of its line,
stripped; it is correct when it equals the answer exactly (PAPER.md: exact match). A `Trace`
active during the same `generate` call captures the residual stream at one token role (default
the last query separator, the token right before the answer) in the prefill, and applies
`edits` there: each prompt goes through the model once. DECISION: stop tokens are every
vocabulary entry whose text contains the newline (BPE merges "\n" with other characters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from conceptlens.activations.capture import (_check_finite, hidden_state_point, left_pad,
                                             padded_positions)
from conceptlens.errors import ConceptLensError
from conceptlens.hooks import Trace
from conceptlens.models.loader import LoadedModel
from conceptlens.prompts import Prompt, role_position, token_roles

_STOP_CACHE: dict[tuple[int, str], list[int]] = {}


@dataclass
class GenerationResult:
    """Greedy completions of N prompts, their exact-match scores and (optionally) activations."""

    completions: list[str]  # decoded text after the prompt, cut at the end of the line, stripped
    correct: np.ndarray  # bool [N], exact match of the stripped completion with prompt.answer
    layers: list[int]  # hidden-state indices captured (HF convention: 0 = embeddings)
    activations: torch.Tensor | None  # [layers, N, d_model] at the `role` token, from the same prefill

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if len(self.correct) else float("nan")


def first_line(text: str, newline: str = "\n") -> str:
    """The completion a model wrote: everything before the first newline, stripped."""
    return text.split(newline, 1)[0].strip()


def is_correct(completion: str, answer: str, newline: str = "\n") -> bool:
    """Exact match of the first line of a completion (stripped) with the stripped answer."""
    return first_line(completion, newline) == answer.strip()


def stop_token_ids(tokenizer, newline: str = "\n") -> list[int]:
    """Every token whose decoded text contains `newline`, plus EOS (cached per tokenizer)."""
    key = (id(tokenizer), newline)
    if key not in _STOP_CACHE:
        vocab = len(tokenizer)
        texts = tokenizer.batch_decode([[i] for i in range(vocab)])
        ids = [i for i, text in enumerate(texts) if newline in text]
        if tokenizer.eos_token_id is not None:
            ids.append(int(tokenizer.eos_token_id))
        _STOP_CACHE[key] = sorted(set(ids))
    return _STOP_CACHE[key]


def answer_budgets(tokenizer, prompts: Sequence[Prompt]) -> list[int]:
    """Per prompt, new tokens enough for its answer and newline (as tokenized alone), plus 2 spare.

    Each row is cut at its own budget, so a completion never depends on the other prompts of its
    batch; the exact-match verdict does not depend on the budget at all (an answer followed by
    anything but the newline is wrong however long the completion runs).
    """
    return [len(tokenizer(p.completion, add_special_tokens=False)["input_ids"]) + 2 for p in prompts]


@torch.inference_mode()
def greedy_answers(lm: LoadedModel, prompts: list[Prompt], *, batch_size: int = 16, max_new_tokens: int | None = None,
                   capture_layers: list[int] | None = None, role: str = "query_separator",
                   edits: dict[str, Callable] | None = None, progress=None) -> GenerationResult:
    """Greedy-decode every prompt (batched, KV cache), score exact match, capture `capture_layers`.

    `capture_layers` are HF hidden-state indices (0..n_layers); their values at the last `role`
    token come back as `activations [layers, N, d_model]` (float32, CPU). `edits` maps a
    canonical point to `fn(hidden [batch, seq, d], positions [batch]) -> hidden`, applied in the
    prefill with `positions` = the `role` token of each row (padded coordinates). Batches hold
    prompts sorted by length, not in input order: give an edit one vector for every row.
    """
    if not prompts:
        raise ConceptLensError("no prompts to generate from.", "give at least one prompt.")
    if batch_size < 1:
        raise ConceptLensError(f"batch size must be positive, got {batch_size}.", "use e.g. --batch-size 16.")
    tokenizer, model = lm.tokenizer, lm.model
    newline = prompts[0].format.newline
    layers = list(capture_layers or [])
    points = [hidden_state_point(layer, lm.n_layers) for layer in layers]
    encoded, positions = [], []
    for prompt in prompts:
        ids, roles = token_roles(tokenizer, prompt)
        encoded.append(ids)
        positions.append(role_position(roles, role))
    limit = getattr(model.config, "max_position_embeddings", None)
    budgets = [max_new_tokens] * len(prompts) if max_new_tokens else answer_budgets(tokenizer, prompts)
    longest = max(len(row) + budget for row, budget in zip(encoded, budgets))
    if limit and longest > limit:
        raise ConceptLensError(f"a prompt plus its new tokens needs {longest} positions, beyond the model's context "
                               f"of {limit}.", "use fewer shots.")
    stops = stop_token_ids(tokenizer, newline)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[-1]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))  # longest first: peak memory early
    completions: list[str] = [""] * len(prompts)
    acts = None
    device = lm.device
    task = progress.add_task("generate", total=len(prompts), info="") if progress else None
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = [encoded[i] for i in rows]
        ids, mask, _ = left_pad(batch, pad_id)
        pos = padded_positions([len(r) for r in batch], [positions[i] for i in rows], ids.shape[1])
        with Trace(lm.layout, points, positions=pos, edits=edits, stop=False) as trace:
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                 max_new_tokens=max(budgets[i] for i in rows), eos_token_id=stops, pad_token_id=pad_id,
                                 num_beams=1, temperature=None, top_p=None, top_k=None)
        new = out[:, ids.shape[1]:].cpu()
        for row, tokens in zip(rows, new):
            text = tokenizer.decode(tokens[:budgets[row]], skip_special_tokens=True)
            completions[row] = first_line(text, newline)
        if points:
            missing = [p for p in points if p not in trace.captured]
            if missing:
                raise RuntimeError(f"hooks did not fire for {missing}")
            chunk = torch.stack([trace.captured[p] for p in points])  # [layers, batch, d]
            _check_finite(chunk, f"prompts {rows[:3]}...")
            if acts is None:
                acts = torch.empty(len(points), len(prompts), chunk.shape[-1])
            acts[:, rows] = chunk
        if progress:
            progress.advance(task, len(rows))
    correct = np.array([c == p.answer.strip() for c, p in zip(completions, prompts)], dtype=bool)
    return GenerationResult(completions, correct, layers, acts)
