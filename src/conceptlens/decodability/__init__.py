"""Concept decodability (TD): leave-one-out kNN per layer, pairwise, probe, honest statistics."""

from conceptlens.decodability.knn import DecodabilityResult, pairwise_decodability, task_decodability
from conceptlens.decodability.probe import probe_decodability
from conceptlens.decodability.statistics import bootstrap_ci, heldout_layer_choice, shuffled_control

__all__ = ["DecodabilityResult", "task_decodability", "pairwise_decodability", "probe_decodability",
           "bootstrap_ci", "heldout_layer_choice", "shuffled_control"]
