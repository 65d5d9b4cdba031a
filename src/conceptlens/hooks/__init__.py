"""Canonical hook points (`resid_pre`, `resid_post`, `attn_out`, `mlp_out`, `head_out`) on any model."""

from conceptlens.hooks.components import COMPONENTS, ModelLayout, layout_for
from conceptlens.hooks.nethook import Trace, StopForward

__all__ = ["COMPONENTS", "ModelLayout", "layout_for", "Trace", "StopForward"]
