"""Causal interventions on a pretrained LM: edit definitions, the run over conditions, the report."""
