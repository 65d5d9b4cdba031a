"""Capture activations at chosen layers and token positions, batched, streamed to disk, resumable."""

from conceptlens.activations.capture import capture_activations, hidden_state_point, encode_prompts

__all__ = ["capture_activations", "hidden_state_point", "encode_prompts"]
