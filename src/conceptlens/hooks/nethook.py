"""Read and edit canonical components during one forward pass; hooks always remove themselves.

`with Trace(layout, ["blocks.3.resid_post"], positions=pos) as tr: model(ids)` then
`tr.captured["blocks.3.resid_post"]` is `[batch, d_model]` at `pos` (or `[batch, seq, d]` with
`positions=None`). With `stop=True` the forward pass ends right after the last point needed (no
later blocks, no LM head). `edits={point: fn}` replaces a component by `fn(tensor, positions)`.
Written by hand (after baukit's nethook) because it is small and must know our canonical names.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from conceptlens.errors import ConceptLensError
from conceptlens.hooks.components import COMPONENTS, ModelLayout, check_component, first_tensor

Edit = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
_ORDER = {"resid_pre": 0, "head_out": 1, "attn_out": 2, "mlp_out": 3, "resid_post": 4}


class StopForward(Exception):
    """Raised inside a hook to end the forward pass early; swallowed by `Trace`."""


def parse_point(point: str) -> tuple[str, int]:
    """`"blocks.5.attn_out"` -> `("attn_out", 5)`; `"final_norm"` -> `("final_norm", -1)`."""
    if point == "final_norm":
        return "final_norm", -1
    parts = point.split(".")
    if len(parts) != 3 or parts[0] != "blocks" or not parts[1].isdigit():
        raise ConceptLensError(f"'{point}' is not a hook point name.",
                               f"use 'blocks.<layer>.<component>' with a component from {', '.join(COMPONENTS)}, or 'final_norm'.")
    check_component(parts[2])
    return parts[2], int(parts[1])


def point_name(component: str, layer: int) -> str:
    return "final_norm" if component == "final_norm" else f"blocks.{layer}.{component}"


def _order_key(point: str, n_layers: int) -> tuple[int, int]:
    component, layer = parse_point(point)
    return (n_layers, 0) if component == "final_norm" else (layer, _ORDER[component])


def gather_positions(hidden: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """`[batch, seq, ...]` -> `[batch, ...]` at one position per row (or unchanged if None)."""
    if positions is None:
        return hidden
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, positions.to(hidden.device)]


class Trace:
    """Capture and/or edit canonical points during the forward passes run inside the block."""

    def __init__(self, layout: ModelLayout, points: list[str] | tuple[str, ...] = (),
                 positions: torch.Tensor | None = None, edits: dict[str, Edit] | None = None,
                 stop: bool = False, to_cpu: bool = True, dtype: torch.dtype | None = torch.float32):
        self.layout = layout
        self.points = list(points)
        self.positions = positions
        self.edits = dict(edits or {})
        self.stop = stop and not self.edits
        self.to_cpu = to_cpu
        self.dtype = dtype
        self.captured: dict[str, torch.Tensor] = {}
        self._handles: list = []
        for point in self.points + list(self.edits):
            parse_point(point)
        everything = self.points + list(self.edits)
        self._last = max(everything, key=lambda p: _order_key(p, layout.n_layers)) if everything else None

    # -- hook bodies -------------------------------------------------------------------------
    def _decode_step(self, hidden: torch.Tensor) -> bool:
        """True in a cached decoding step of generate(), where the traced positions are not present."""
        return self.positions is not None and hidden.shape[1] <= int(self.positions.max())

    def _store(self, point: str, hidden: torch.Tensor) -> None:
        if point in self.points and not self._decode_step(hidden):
            value = gather_positions(hidden, self.positions).detach()
            if self.dtype is not None:
                value = value.to(self.dtype)
            self.captured[point] = value.cpu() if self.to_cpu else value

    def _edit(self, point: str, hidden: torch.Tensor) -> torch.Tensor:
        fn = self.edits.get(point)
        if fn is None:
            return hidden
        if self._decode_step(hidden):
            return hidden  # the edited position lies in the KV cache already
        return fn(hidden, self.positions)

    def _maybe_stop(self, point: str) -> None:
        if self.stop and point == self._last:
            raise StopForward

    def _output_hook(self, point: str, reshape_heads: bool = False):
        def hook(module: nn.Module, args, output):
            hidden = first_tensor(output)
            new = self._edit(point, hidden)
            self._store(point, new)
            self._maybe_stop(point)
            if new is hidden:
                return None
            if isinstance(output, tuple):
                return (new,) + tuple(output[1:])
            return new
        return hook

    def _input_hook(self, point: str, heads: int | None = None):
        def hook(module: nn.Module, args, kwargs):
            from_kwargs = not args
            hidden = kwargs["hidden_states"] if from_kwargs else args[0]
            view = hidden
            if heads is not None:
                view = hidden.reshape(*hidden.shape[:-1], heads, hidden.shape[-1] // heads)
            new = self._edit(point, view)
            self._store(point, new)
            self._maybe_stop(point)
            if new is view:
                return None
            if heads is not None:
                new = new.reshape(hidden.shape)
            if from_kwargs:
                return args, {**kwargs, "hidden_states": new}
            return (new,) + tuple(args[1:]), kwargs
        return hook

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> "Trace":
        for point in dict.fromkeys(self.points + list(self.edits)):
            component, layer = parse_point(point)
            if component == "final_norm":
                module = self.layout.final_norm
                self._handles.append(module.register_forward_hook(self._output_hook(point)))
                continue
            module = self.layout.module_for(component, layer)
            if component == "resid_pre":
                self._handles.append(module.register_forward_pre_hook(self._input_hook(point), with_kwargs=True))
            elif component == "head_out":
                hook = self._input_hook(point, heads=self.layout.n_heads)
                self._handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
            else:
                self._handles.append(module.register_forward_hook(self._output_hook(point)))
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return exc_type is StopForward
