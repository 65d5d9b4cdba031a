"""Concept decodability (TD): leave-one-out kNN per layer (blockwise, exact, seeded ties), pairwise,
probe, honest statistics, and the surface control (mean input embedding of chosen tokens)."""

from conceptlens.decodability.control import exceeds_control, mean_input_embedding, surface_decodability
from conceptlens.decodability.knn import (DecodabilityResult, nearest_neighbours, pairwise_decodability,
                                          task_decodability)
from conceptlens.decodability.probe import probe_decodability
from conceptlens.decodability.statistics import bootstrap_ci, heldout_layer_choice, shuffled_control

__all__ = ["DecodabilityResult", "task_decodability", "nearest_neighbours", "pairwise_decodability",
           "probe_decodability", "bootstrap_ci", "heldout_layer_choice", "shuffled_control",
           "mean_input_embedding", "surface_decodability", "exceeds_control"]
